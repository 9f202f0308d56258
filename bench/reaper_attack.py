"""The reaper attacks of issue 12, measured (not tests: numbers, before and after).

    python -m bench.reaper_attack [--src DIR] [--processes N] [--exits N] [--levels N]
                                  [--gap-ms MS] [--smoke] [--no-save]

* **fds**: a chain of ``--levels`` (15) cgroups in v1 ``pids``, ``--processes`` (1,300)
  sleeping processes at the bottom, RemoveOnEmpty on every level: the daemon's open fds
  before and after, how long the 15 requests took, and whether root's ListChildren is still
  served (before the fix it failed ``Failed: internal error`` once the fds ran out).
* **stall**: the same chain with ``--exits`` (1,000) processes that are killed one every
  ``--gap-ms`` (5 ms) while another client pings (a 1 ms pause between calls, as real clients
  pause): that client's Ping latency (median, p99, max) and the daemon's CPU during the exits.
  Ping latency with nothing going on is measured first, for the ratio.

``--src DIR`` runs the daemon from another source tree (``DIR/src``: e.g. the code before the
fix, exported with ``git archive <commit> src | tar -x -C DIR``), with this venv's Python;
without it, the installed one.  The daemon is started with ``--max-depth 32`` (the chain is
deeper than the default 16 below the run root) and pinned to CPU 0; clients run on CPU 1.
Root only; bench.harness makes a marked cgtest root in pids and the v2 tree and removes
everything at exit (also on SIGTERM).  The requests come from root: the per-uid caps (2,048
processes) admit the default scenario, so what is measured is the cost, not a refusal.
Results: bench/results/reaper_attack-<stamp>.json.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from typing import Any

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import report  # noqa: E402
from bench.harness import IFACE, OBJ, BenchError, Daemon, Harness, cpu_ns, expect  # noqa: E402
from bench.stats import summary_us  # noqa: E402
from cgmanager.dbus.client import connect  # noqa: E402
from cgmanager.dbus.errors import DBusError  # noqa: E402


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def chain(levels: int) -> list[str]:
    return ["/".join(f"l{i}" for i in range(1, k + 1)) for k in range(1, levels + 1)]


def start(h: Harness, src: str | None) -> Daemon:
    wrapper: tuple[str, ...] = ()
    if src:
        wrapper = (
            "env",
            f"PYTHONPATH={os.path.join(os.path.abspath(src), 'src')}",
            sys.executable,
            "-m",
        )
    return h.start_daemon(wrapper=wrapper, label="reaper", options=("--max-depth", "32"))


def build(h: Harness, d: Daemon, levels: int, n: int, name: str) -> tuple[list[str], list[Any]]:
    """The chain below the run root (made with the daemon's Create), *n* sleepers at its
    bottom; returns the chain's paths relative to the run root and the sleepers."""
    rels = [f"{name}/{p}" for p in chain(levels)]
    with d.connect() as c:
        c.call(OBJ, IFACE, "Create", "ss", ("pids", rels[-1]))
    kids = [h.sleeper(rels[-1]) for _ in range(n)]
    return rels, kids


def pinger(address: str, stop: threading.Event, out: list[int], pause: float) -> None:
    os.sched_setaffinity(0, {1})
    with connect(address, timeout=30) as c:
        while not stop.is_set():
            t0 = time.perf_counter_ns()
            c.call(OBJ, IFACE, "Ping", "i", (0,))
            out.append(time.perf_counter_ns() - t0)
            time.sleep(pause)


def measure_fds(h: Harness, src: str | None, levels: int, n: int) -> dict[str, Any]:
    d = start(h, src)
    try:
        rels, kids = build(h, d, levels, n, "fds")
        time.sleep(0.2)
        before = fds(d.pid)
        t0 = time.perf_counter()
        errors = []
        with d.connect() as c:
            for rel in rels:
                try:
                    c.call(OBJ, IFACE, "RemoveOnEmpty", "ss", ("pids", rel))
                except DBusError as e:
                    errors.append(f"{e.name}: {e.message}")
        took = time.perf_counter() - t0
        after = fds(d.pid)
        listing = "ok"
        try:
            with d.connect() as c:
                c.call(OBJ, IFACE, "ListChildren", "ss", ("pids", h.hpath()))
        except (DBusError, OSError) as e:
            listing = f"{type(e).__name__}: {e}"
        for k in kids:
            k.stop()
        top = h.path("pids", rels[0])
        deadline = time.monotonic() + 60
        while os.path.exists(top) and time.monotonic() < deadline:
            time.sleep(0.05)
        return {
            "levels": levels,
            "processes": n,
            "fds_before": before,
            "fds_after_watching": after,
            "fds_held": after - before,
            "remove_on_empty_seconds": round(took, 3),
            "errors": errors,
            "root_list_children": listing,
            "chain_removed_after_exits": not os.path.exists(top),
            "fds_at_end": fds(d.pid),
        }
    finally:
        h.stop_daemon(d)


def measure_stall(
    h: Harness, src: str | None, levels: int, n: int, gap: float, idle_s: float
) -> dict[str, Any]:
    d = start(h, src)
    try:
        idle: list[int] = []
        stop = threading.Event()
        t = threading.Thread(target=pinger, args=(d.address, stop, idle, 0.001))
        t.start()
        time.sleep(idle_s)
        stop.set()
        t.join()
        rels, kids = build(h, d, levels, n, "stall")
        with d.connect() as c:
            for rel in rels:
                c.call(OBJ, IFACE, "RemoveOnEmpty", "ss", ("pids", rel))
        busy: list[int] = []
        stop = threading.Event()
        t = threading.Thread(target=pinger, args=(d.address, stop, busy, 0.001))
        t.start()
        time.sleep(0.2)
        cpu0, t0 = cpu_ns(d.pid), time.perf_counter()
        for k in kids:  # one exit every gap seconds
            signal.pidfd_send_signal(k.pidfd, signal.SIGKILL)
            time.sleep(gap)
        top = h.path("pids", rels[0])
        deadline = time.monotonic() + 120
        while os.path.exists(top) and time.monotonic() < deadline:
            time.sleep(0.01)
        wall, cpu = time.perf_counter() - t0, cpu_ns(d.pid) - cpu0
        time.sleep(0.2)
        stop.set()
        t.join()
        for k in kids:
            k.stop()
        expect(not os.path.exists(top), "the chain was removed once its processes exited")
        bi, bb = summary_us(idle), summary_us(busy)
        return {
            "levels": levels,
            "exits": n,
            "gap_ms": gap * 1000,
            "idle_ping_us": {**bi, "max": max(idle) / 1000},
            "ping_during_exits_us": {**bb, "max": max(busy) / 1000},
            "max_ratio_to_idle_p99": round(max(busy) / 1000 / bi["p99"], 1),
            "daemon_cpu_during_exits_s": round(cpu / 1e9, 3),
            "exits_wall_s": round(wall, 3),
        }
    finally:
        h.stop_daemon(d)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--src", help="run the daemon from DIR/src (e.g. the code before the fix)")
    p.add_argument("--levels", type=int, default=15)
    p.add_argument("--processes", type=int, default=1300)
    p.add_argument("--exits", type=int, default=1000)
    p.add_argument("--gap-ms", type=float, default=5.0)
    p.add_argument("--smoke", action="store_true", help="a few seconds: 4 levels, 40 processes")
    p.add_argument("--no-save", action="store_true")
    a = p.parse_args(argv)
    if a.smoke:
        a.levels, a.processes, a.exits = 4, 40, 40
    os.sched_setaffinity(0, {1})
    with Harness() as h:
        h.enter()
        doc: dict[str, Any] = {
            "suite": "reaper_attack",
            "machine": report.machine(),
            "source": report.source(),
            "daemon_src": a.src or "installed",
        }
        doc["fds"] = measure_fds(h, a.src, a.levels, a.processes)
        print(f"fds: {doc['fds']}")
        doc["stall"] = measure_stall(h, a.src, a.levels, a.exits, a.gap_ms / 1000, 2.0)
        print(f"stall: {doc['stall']}")
        if not a.no_save:
            print(f"results: {report.save(doc, latest=False, prefix='reaper_attack-')}")
    if h.leftovers():
        raise BenchError(f"left behind: {h.leftovers()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
