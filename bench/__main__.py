"""``python -m bench``: benchmarks of the cgmanager daemon against the kernel floor.

    python -m bench                    full run of every suite; results to
                                       bench/results/<stamp>.json (and latest.json with core)
    python -m bench --suite S[,S…]     only these suites (core, batch, concurrency, scale,
                                       startup, reliability)
    python -m bench --smoke            tiny versions of every suite, < 40 s (CI): fails only if
                                       the daemon or a call fails, never because of a timing;
                                       saves nothing
    python -m bench --profile          profile the daemon on the costliest operations (py-spy if
                                       found, and cProfile); summary to stdout and the JSON

Suites (each on a fresh daemon, in the same run root; see each module's docstring):

    core          daemon CPU and latency per request against the floor; one-shot processes
    batch         a container's set-up: one Setup call vs separate calls vs direct writes
                  (bench/batch.py)
    concurrency   up to 1,000 clients at once: throughput, p50/p99/max, daemon RSS (bench/concurrency.py)
    scale         10,000 cgroups: ListChildren, GetTasksRecursive, Remove, Prune (bench/scale.py)
    startup       connect + authenticate + first call vs a persistent connection; round trips
                  (bench/startup.py)
    reliability   1,000 connections held, latency with 300 idle/half-open connections, restart
                  after kill -9, SIGTERM under load (bench/reliability.py; also standalone)
    matrix        daemon CPU per request with each kind of client (ours, jeepney, libdbus C,
                  dbus-send), back to back and with think time; with --c-daemon (and --c-cgm)
                  the same against the C original, confined alike, ABBA (bench/matrix.py)
    interference  one client's Ping while another removes/prunes/lists 1,000-10,000 cgroups,
                  a Setup rolls back, or the reaper handles a storm (bench/interference.py)
    connections   10,000 connections held: p99, RSS per connection (bench/connections.py)

The C original is never built here: build it outside the repository (docs/PERFORMANCE.md)
and give its binaries with --c-daemon PATH --c-cgm PATH.

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

from . import (
    batch,
    concurrency,
    connections,
    daemon_runs,
    floor,
    interference,
    matrix,
    oneshot,
    reliability,
    report,
    scale,
    startup,
)
from .harness import CPU, BenchError, Fixture, Harness

#: suite name -> (run(h, args, log) -> JSON-able dict, print_summary(dict)); run in this order.
SUITES: dict[str, tuple[Any, Any]] = {
    "core": (None, None),  # timing_run / print_core below (its keys stay at the top level)
    "batch": (batch.run, batch.print_summary),
    "concurrency": (concurrency.run, concurrency.print_summary),
    "scale": (scale.run, scale.print_summary),
    "startup": (startup.run, startup.print_summary),
    "reliability": (reliability.run, reliability.print_summary),
    "matrix": (matrix.run, matrix.print_summary),
    "interference": (interference.run, interference.print_summary),
    "connections": (connections.run, connections.print_summary),
}


def ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x)


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
    p.add_argument(
        "--suite",
        default=",".join(SUITES),
        help=f"comma-separated suites to run (default: all of {','.join(SUITES)})",
    )
    g = p.add_argument_group("concurrency")
    g.add_argument("--conc-levels", type=ints, help="connections per level (default 1,10,100,1000)")
    g.add_argument("--conc-calls", type=int, help="calls per op and level (default 20000)")
    g.add_argument("--conc-procs", type=int, help="client processes at most (default 4)")
    g = p.add_argument_group("scale")
    g.add_argument("--scale-sizes", type=ints, help="child cgroups (default 100,1000,10000)")
    g.add_argument(
        "--scale-items",
        type=int,
        help="cgroups listed per round and op: calls = this / N (default 10000)",
    )
    g.add_argument("--scale-rounds", type=int, help="interleaved rounds (default 3)")
    g.add_argument(
        "--scale-removals",
        type=int,
        help="cgroups removed per op: removals = this / N, at least 1 (default 1000)",
    )
    g = p.add_argument_group("batch")
    g.add_argument("--batch-calls", type=int, help="set-ups per variant and round (default 300)")
    g.add_argument("--batch-rounds", type=int, help="interleaved rounds (default 5)")
    g = p.add_argument_group("matrix (and the C original)")
    g.add_argument("--c-daemon", help="the C original's cgmanager binary (built outside the repo)")
    g.add_argument("--c-cgm", help="the C original's cgm binary")
    g.add_argument("--matrix-calls", type=int, help="calls per batch (default 1000; smoke 20)")
    g.add_argument("--matrix-oneshot-calls", type=int, help="one-shot calls (default 40; smoke 3)")
    g.add_argument("--matrix-rounds", type=int, help="ABBA rounds (default 4; smoke 2)")
    g.add_argument(
        "--matrix-clients",
        type=lambda t: tuple(x for x in t.split(",") if x),
        help=f"clients (default {','.join(matrix.CLIENTS)})",
    )
    g.add_argument("--think-us", type=int, default=1000, help="pause between calls (µs)")
    g = p.add_argument_group("interference")
    g.add_argument("--intf-sizes", type=ints, help="cgroups per tree (default 1000,10000)")
    g.add_argument("--intf-reps", type=int, help="heavy calls per op (default 3; smoke 1)")
    g.add_argument("--intf-storm", type=int, help="processes in a reaper storm (default 1000)")
    g.add_argument("--intf-setup-pids", type=int, help="pids a rolled-back Setup moves (255)")
    g.add_argument("--intf-think-us", type=int, default=1000, help="pinger's pause (µs)")
    g.add_argument("--intf-idle", type=float, help="seconds of the idle baseline (default 3)")
    g.add_argument("--intf-daemon-cpus", default="0", help="taskset list for the daemon")
    g = p.add_argument_group("connections")
    g.add_argument("--conns", type=int, help="connections held (default 10000; smoke 200)")
    g.add_argument("--conns-spread", type=float, help="paced phase spread, s (default 2)")
    g.add_argument("--conns-probe", type=int, help="probe calls per op (default 1000)")
    g = p.add_argument_group("startup")
    g.add_argument("--startup-calls", type=int, help="iterations per batch (default 300)")
    g.add_argument("--startup-rounds", type=int, help="interleaved rounds (default 5)")
    a = p.parse_args(argv)
    smoke = a.smoke
    a.suites = tuple(x for x in a.suite.split(",") if x)
    bad = set(a.suites) - set(SUITES)
    if bad:
        p.error(f"unknown suites {sorted(bad)}; choose from {list(SUITES)}")
    a.conc_levels = a.conc_levels or ((1, 50) if smoke else (1, 10, 100, 1000))
    a.conc_calls = a.conc_calls or (100 if smoke else 20000)
    a.conc_procs = a.conc_procs or (2 if smoke else 4)
    a.scale_sizes = a.scale_sizes or ((10, 100) if smoke else (100, 1000, 10000))
    a.scale_items = a.scale_items or (200 if smoke else 10000)
    a.scale_rounds = a.scale_rounds or (1 if smoke else 3)
    a.scale_removals = a.scale_removals or (10 if smoke else 1000)
    a.batch_calls = a.batch_calls or (5 if smoke else 300)
    a.batch_rounds = a.batch_rounds or (1 if smoke else 5)
    a.startup_calls = a.startup_calls or (10 if smoke else 300)
    a.startup_rounds = a.startup_rounds or (1 if smoke else 5)
    a.matrix_calls = a.matrix_calls or (20 if smoke else 1000)
    a.matrix_oneshot_calls = a.matrix_oneshot_calls or (3 if smoke else 40)
    a.matrix_rounds = a.matrix_rounds or (2 if smoke else 4)
    a.matrix_clients = a.matrix_clients or matrix.CLIENTS
    a.intf_sizes = a.intf_sizes or ((20,) if smoke else (1000, 10000))
    a.intf_reps = a.intf_reps or (1 if smoke else 3)
    a.intf_storm = a.intf_storm or (10 if smoke else 1000)
    a.intf_setup_pids = a.intf_setup_pids or (5 if smoke else 255)
    a.intf_idle = a.intf_idle or (0.2 if smoke else 3.0)
    a.conns = a.conns or (200 if smoke else 10000)
    a.conns_spread = a.conns_spread or (0.2 if smoke else 2.0)
    a.conns_probe = a.conns_probe or (20 if smoke else 1000)
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
        f"cgmanager benchmarks ({doc['kind']}; suites {','.join(doc['suites'])}): {m['date']}  "
        f"kernel {m['kernel']}, {m['cpu_model']} ×{m['nproc']}, Python {m['python']}, "
        f"load {m['loadavg']} at the start (this machine is shared: other load shows up as noise)"
    )
    if "operations" in doc:
        print_core(doc)
    for name in doc["suites"]:
        show = SUITES[name][1]
        if show is not None and name in doc:
            print()
            show(doc[name])
    for name, why in doc.get("failed", {}).items():
        print(f"\nsuite {name} FAILED: {why}")
    src = doc["source"]
    print(
        f"\nmeasured: {src['package']} at {src['revision'] or '?'}"
        f"{' (+ uncommitted changes)' if src['dirty'] else ''}"
    )


def print_core(doc: dict[str, Any]) -> None:
    print(
        f"\nCore: daemon and client pinned to CPU {doc['settings']['pinned_cpu']}; "
        f"{doc['settings']['rounds']} rounds × {doc['settings']['calls_per_batch']} calls"
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


def run_suites(h: Harness, a: argparse.Namespace) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "kind": "smoke" if a.smoke else "full",
        "suites": list(a.suites),
        "machine": report.machine(),
        "source": report.source(),
    }
    for name in SUITES:  # fixed order: core first, as before
        if name not in a.suites:
            continue
        t0 = time.monotonic()
        log(f"suite {name} …")
        try:
            if name == "core":
                doc.update(timing_run(h, a))
            else:
                doc[name] = SUITES[name][0](h, a, log)
        except (BenchError, DBusError, OSError) as e:
            # the other suites' results stay (printed and saved); the run still fails
            log(f"suite {name} FAILED: {type(e).__name__}: {e}")
            traceback.print_exc()
            doc.setdefault("failed", {})[name] = f"{type(e).__name__}: {e}"
        doc.setdefault("suite_seconds", {})[name] = round(time.monotonic() - t0, 1)
        log(f"suite {name} took {time.monotonic() - t0:.1f} s")
    return doc


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    os.sched_setaffinity(0, {CPU})
    h = Harness()
    failed: dict[str, str] = {}
    try:
        with h:
            if h.swept:
                log(f"removed stale empty roots of dead runs: {h.swept}")
            if a.profile:
                from . import profile

                doc = profile.run(h, a, log)
                profile.print_summary(doc)
            else:
                doc = run_suites(h, a)
                print_results(doc)
                failed = doc.get("failed", {})
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
        # latest.json is what --profile reads (the core operations): only a run with core
        path = report.save(
            doc,
            latest=not a.profile and "core" in a.suites,
            prefix="profile-" if a.profile else "",
        )
        log(f"results written to {path}")
    if failed:
        log(f"FAILED suites: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
