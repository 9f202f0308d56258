"""``python -m bench``: benchmarks of the cgmanager daemon against the kernel floor.

    python -m bench                    full run; results to bench/results/<stamp>.json, latest.json
    python -m bench --smoke            a few hundred calls, < 20 s (CI): fails only if the daemon
                                       or a call fails, never because of a timing; saves nothing
    python -m bench --profile          profile the daemon on the costliest operations (py-spy if
                                       found, and cProfile); summary to stdout and the JSON

Root only: it runs cgmanager on a private socket and works in a marked cgtest-<random> cgroup in
the pids and v2 hierarchies, all removed at exit (also on SIGTERM / Ctrl-C).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from typing import Any

from cgmanager.dbus.errors import DBusError

from . import daemon_runs, floor, oneshot, report
from .harness import CPU, BenchError, Fixture, Harness


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--smoke", action="store_true", help="tiny run for CI; saves nothing")
    p.add_argument("--calls", type=int, help="calls per batch (default 3000; smoke 50)")
    p.add_argument("--rounds", type=int, help="A/B rounds (default 7; smoke 2)")
    p.add_argument("--oneshot", type=int, help="one-shot repeats (default 30; smoke 2)")
    p.add_argument(
        "--ops",
        default=",".join(daemon_runs.NAMES),
        help="comma-separated operations (default: all)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="profile the daemon instead of timing it (see bench/profile.py)",
    )
    p.add_argument(
        "--profile-ops",
        default="auto",
        help="operations to profile (default: the two with the most daemon CPU in "
        "bench/results/latest.json, else Create+Remove,MovePid)",
    )
    p.add_argument("--profile-calls", type=int, default=5000)
    p.add_argument(
        "--profile-native",
        action="store_true",
        help="py-spy --native (stops the daemon per sample: slow, skewed shares)",
    )
    p.add_argument("--py-spy", default=None, help="py-spy binary (default: PATH, /tmp/pyspy)")
    p.add_argument("--no-save", action="store_true", help="do not write bench/results/")
    a = p.parse_args(argv)
    a.calls = a.calls or (50 if a.smoke else 3000)
    a.rounds = a.rounds or (2 if a.smoke else 7)
    a.oneshot = a.oneshot if a.oneshot is not None else (2 if a.smoke else 30)
    a.ops = tuple(o for o in a.ops.split(",") if o)
    unknown = set(a.ops) - set(daemon_runs.NAMES)
    if unknown:
        p.error(f"unknown operations {sorted(unknown)}; choose from {daemon_runs.NAMES}")
    return a


def timing_run(h: Harness, a: argparse.Namespace) -> dict[str, Any]:
    daemon = h.start_daemon()
    h.enter()
    fx = Fixture.make(h)
    echo = floor.Echo.start(h)
    floor_ops = floor.floors(fx, echo)
    floor.check(fx, floor_ops)
    with daemon.connect() as conn:
        ops = daemon_runs.daemon_ops(conn, fx)
        daemon_runs.check(fx, ops)
        t0 = time.monotonic()
        results = daemon_runs.run_rounds(
            daemon, ops, floor_ops, a.calls, a.rounds, a.ops, progress=log
        )
        log(f"persistent-connection rounds took {time.monotonic() - t0:.1f} s")
    echo.close()
    one = oneshot.run(daemon, a.oneshot) if a.oneshot else {}
    with open(f"/proc/{daemon.pid}/status") as f:
        rss = next((line.split(":", 1)[1].strip() for line in f if line.startswith("VmRSS")), "")
    h.stop_daemon(daemon)
    return {
        "kind": "smoke" if a.smoke else "full",
        "machine": report.machine(),
        "source": report.source(),
        "settings": {
            "calls_per_batch": a.calls,
            "rounds": a.rounds,
            "oneshot_repeats": a.oneshot,
            "pinned_cpu": CPU,
            "daemon": "taskset -c 0 cgmanager --skip "
            "memory,cpuacct,blkio,devices,cpuset,freezer,name=systemd,cpu",
        },
        "operations": results,
        "floor_descriptions": floor.DESCRIPTIONS,
        "oneshot_ms": one,
        "oneshot_client_bytecode_cached": oneshot.client_bytecode_cached(),
        "daemon_vmrss_after": rss,
        "reference": {
            "c_daemon_cpu_us": report.C_DAEMON_CPU_US,
            "c_python_client_latency_us": report.C_PY_CLIENT_LATENCY_US,
            "c_floor_us": report.C_FLOOR_US,
            "c_oneshot_ms": report.C_ONESHOT_MS,
        },
    }


def print_results(doc: dict[str, Any]) -> None:
    m = doc["machine"]
    print(
        f"cgmanager benchmarks ({doc['kind']}): {m['date']}  kernel {m['kernel']}, "
        f"{m['cpu_model']} ×{m['nproc']}, Python {m['python']}, load {m['loadavg']}; "
        f"daemon and client pinned to "
        f"CPU {m['pinned_cpu']}; {doc['settings']['rounds']} rounds × "
        f"{doc['settings']['calls_per_batch']} calls"
    )
    print()
    print(report.table(doc["operations"]))
    print()
    print(report.floors_table(doc["operations"], doc["floor_descriptions"]))
    if doc["oneshot_ms"]:
        print()
        print(report.oneshot_table(doc["oneshot_ms"]))
        if not doc["oneshot_client_bytecode_cached"]:
            print("  (the client's modules have no .pyc: each one-shot client compiled them)")
    print(f"\ndaemon VmRSS at the end: {doc['daemon_vmrss_after']}")
    src = doc["source"]
    print(
        f"measured: {src['package']} at {src['revision'] or '?'}"
        f"{' (+ uncommitted changes)' if src['dirty'] else ''}"
    )


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    os.sched_setaffinity(0, {CPU})
    h = Harness()
    try:
        with h:
            if h.swept:
                log(f"removed stale empty roots of dead runs: {h.swept}")
            if a.profile:
                from . import profile

                doc = profile.run(h, a, log)
                profile.print_summary(doc)
            else:
                doc = timing_run(h, a)
                print_results(doc)
    except (BenchError, DBusError, OSError) as e:
        log(f"FAILED: {type(e).__name__}: {e}")
        traceback.print_exc()
        return 1
    finally:
        left = h.leftovers()
        if left:
            log(f"LEFT BEHIND: {left}")
    if left:
        return 1
    if not a.no_save and not a.smoke:
        path = report.save(doc, latest=not a.profile, prefix="profile-" if a.profile else "")
        log(f"results written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
