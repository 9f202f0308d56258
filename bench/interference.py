"""Interference: how long one client's Ping waits while another client's request does
tree-sized kernel work — head-of-line blocking made visible.

A pinger process (its own connection, pinned to CPU 1) calls Ping with a pause of
``--intf-think-us`` (1 ms) between calls for the whole suite and records each call's send time
and latency (CLOCK_MONOTONIC, shared by every process).  The bench, from another connection,
runs the heavy phases one after another and records when each heavy call was in flight; a Ping
counts for a phase when its own interval overlaps one of the phase's heavy calls.  Phases:

* idle (nothing else happening): the baseline every ratio is taken against;
* for ``pids`` (v1) and the v2 tree, N ∈ ``--intf-sizes`` (1,000 and 10,000) children of one
  cgroup: ListChildren, GetTasksRecursive, Remove(recursive=1) and Prune of the parent (the tree
  is rebuilt directly on cgroupfs between calls, outside the heavy intervals), and the floor:
  the bench itself removing the tree with rmdir, no daemon involved — what the kernel's own
  removal work costs the pinger;
* a Setup rollback: Setup moving 255 processes then failing on the 256th (a zombie of ours —
  it cannot be moved, and its pid cannot be reused while we hold it), so every move is undone;
* reaper storms: ``--intf-storm`` cgroups, each holding one process and watched with
  RemoveOnEmpty, all processes killed at once; the phase lasts until the reaper has removed
  every cgroup.

Per phase: Ping p50 / p99 / max over the overlapping calls, their number, and the ratios to
idle; the heavy call's median duration.  The daemon is pinned to ``--intf-daemon-cpus`` (CPU 0
by default; give "0,1" to let a multi-threaded daemon use both).  Targets (issue 14): Ping max
≤ 5 ms and p99 ≤ 2× idle during the 10,000-cgroup phases.
"""

from __future__ import annotations

import argparse
import array
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from .harness import IFACE, OBJ, Child, Daemon, Harness, expect, write_file
from .stats import percentile

KEYS = ("pids", "unified")
SETUP_PIDS = 255
IFACE1 = "org.linuxcontainers.cgmanager1"


# -- the pinger (its own process) ---------------------------------------------------------------


def pinger_main(address: str, think_us: int, out: str) -> int:
    """Ping until stdin becomes readable (or closes); then write (send ns, latency ns) pairs."""
    from cgmanager.dbus.client import connect

    conn = connect(address, timeout=60)
    call, clock = conn.call, time.monotonic_ns
    for _ in range(20):
        call(OBJ, IFACE, "Ping", "i", (0,))
    samples = array.array("q")
    print("ready", flush=True)
    pause = think_us / 1e6
    poll = select.poll()
    poll.register(sys.stdin.fileno(), select.POLLIN)
    while not poll.poll(0):
        t0 = clock()
        call(OBJ, IFACE, "Ping", "i", (0,))
        samples.append(t0)
        samples.append(clock() - t0)
        if pause:
            time.sleep(pause)
    with open(out, "wb") as f:
        samples.tofile(f)
    return 0


class Pinger:
    def __init__(self, h: Harness, daemon: Daemon, think_us: int) -> None:
        self.out = os.path.join(h.tmp, "pings.bin")
        argv = ["taskset", "-c", "1", sys.executable, "-m", "bench.interference"]
        argv += [daemon.address, str(think_us), self.out]
        self.child = h.spawn(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.child.popen.stdout.readline()  # type: ignore[union-attr]
        expect(line.strip() == "ready", f"pinger did not start: {line!r}")

    def finish(self) -> list[tuple[int, int]]:
        self.child.popen.stdin.write("stop\n")  # type: ignore[union-attr]
        self.child.popen.stdin.flush()  # type: ignore[union-attr]
        rc = self.child.popen.wait(60)
        expect(rc == 0, f"pinger exited {rc}")
        a = array.array("q")
        with open(self.out, "rb") as f:
            a.frombytes(f.read())
        return list(zip(a[0::2], a[1::2]))


# -- phases -----------------------------------------------------------------------------------


class Phases:
    """Heavy calls' intervals per phase (monotonic ns)."""

    def __init__(self) -> None:
        self.spans: dict[str, list[tuple[int, int]]] = {}
        self.meta: dict[str, dict[str, Any]] = {}

    def timed(self, phase: str, fn: Callable[[], object], **meta: Any) -> object:
        t0 = time.monotonic_ns()
        try:
            return fn()
        finally:  # a call answered with an error (Setup's rollback) counts as well
            self.spans.setdefault(phase, []).append((t0, time.monotonic_ns()))
            self.meta.setdefault(phase, meta)

    def summary(self, pings: list[tuple[int, int]]) -> list[dict[str, Any]]:
        rows = []
        for phase, spans in self.spans.items():
            lat = sorted(lat for t, lat in pings if any(t < e and t + lat > s for s, e in spans))
            dur = sorted(e - s for s, e in spans)
            rows.append(
                {
                    "phase": phase,
                    **self.meta[phase],
                    "heavy_calls": len(spans),
                    "heavy_ms_median": dur[len(dur) // 2] / 1e6,
                    "pings": len(lat),
                    "p50_us": percentile(lat, 50) / 1000,
                    "p99_us": percentile(lat, 99) / 1000,
                    "max_us": (lat[-1] / 1000) if lat else float("nan"),
                }
            )
        idle = next(r for r in rows if r["phase"] == "idle")
        for r in rows:
            r["p99_over_idle"] = r["p99_us"] / idle["p99_us"]
            r["max_over_idle"] = r["max_us"] / idle["max_us"]
        return rows


def _tree(path: str, n: int) -> None:
    os.mkdir(path)
    for i in range(n):
        os.mkdir(f"{path}/c{i}")


def _rmtree(path: str, n: int) -> None:
    for i in range(n):
        os.rmdir(f"{path}/c{i}")
    os.rmdir(path)


def _gone(path: str) -> bool:
    return not os.path.exists(path)


def tree_phases(h: Harness, conn: Any, ph: Phases, a: argparse.Namespace) -> None:
    call = conn.call
    for key in KEYS:
        for n in a.intf_sizes:
            rel = f"intf-{key}-{n}"
            host, hp = h.path(key, rel), h.hpath(rel)
            reps = max(1, a.intf_reps)
            _tree(host, n)
            meta = {"hierarchy": key, "n": n}
            for _ in range(reps * 10):
                got = ph.timed(
                    f"ListChildren {key} {n}",
                    lambda key=key, hp=hp: call(OBJ, IFACE, "ListChildren", "ss", (key, hp)),
                    op="ListChildren",
                    **meta,
                )
            expect(len(got[0]) == n, f"ListChildren {key} {n}")  # type: ignore[index]
            for _ in range(reps):
                ph.timed(
                    f"GetTasksRecursive {key} {n}",
                    lambda key=key, hp=hp: call(OBJ, IFACE, "GetTasksRecursive", "ss", (key, hp)),
                    op="GetTasksRecursive",
                    **meta,
                )
            ph.timed(  # the floor: the same tree removed by this process itself, no daemon
                f"rmdir {key} {n} (no daemon)",
                lambda host=host, n=n: _rmtree(host, n),
                op="rmdir",
                **meta,
            )
            for op, args in (("Remove", "ssi"), ("Prune", "ss")):
                for _ in range(reps):
                    _tree(host, n)
                    argv = (key, rel, 1) if op == "Remove" else (key, rel)
                    ph.timed(
                        f"{op} {key} {n}",
                        lambda op=op, args=args, argv=argv: call(  # type: ignore[misc]
                            OBJ, IFACE, op, args, argv
                        ),
                        op=op,
                        **meta,
                    )
                    expect(_gone(f"{host}/c0"), f"{op} {key} {n} left c0")
                    if os.path.exists(host):
                        os.rmdir(host)


def setup_phase(h: Harness, conn: Any, ph: Phases, a: argparse.Namespace) -> None:
    src = "intf-setup-src"
    h.mkdir(src, ("pids",))
    kids = [h.sleeper(src) for _ in range(min(SETUP_PIDS, a.intf_setup_pids))]
    zombie = h.spawn(["true"])
    os.waitid(os.P_PID, zombie.pid, os.WEXITED | os.WNOWAIT)  # a zombie: its pid stays ours
    pids = [k.pid for k in kids] + [zombie.pid]
    for _ in range(max(1, a.intf_reps)):
        try:
            ph.timed(
                "Setup rollback",
                lambda: conn.call(
                    OBJ, IFACE1, "Setup", "ssiia{ss}ai", ("pids", "intf-su", -1, -1, {}, pids)
                ),
                op="Setup rollback",
                hierarchy="pids",
                n=len(pids),
            )
            raise AssertionError("Setup with a zombie succeeded")
        except AssertionError:
            raise
        except Exception as e:  # the D-Bus error we want
            expect("Setup failed at move" in str(e), f"Setup rollback: {e}")
        expect(not os.path.exists(h.path("pids", "intf-su")), "Setup rollback left intf-su")
    for k in [*kids, zombie]:
        _stop(h, k)


def _stop(h: Harness, child: Child) -> None:
    child.stop()
    h.children.remove(child)


def storm_phases(h: Harness, conn: Any, ph: Phases, a: argparse.Namespace) -> None:
    n = a.intf_storm
    for key in KEYS:
        rel = f"intf-storm-{key}"
        base = h.path(key, rel)
        os.mkdir(base)
        kids = []
        for i in range(n):
            os.mkdir(f"{base}/c{i}")
            kid = h.spawn(["sleep", "3600"], stdin=subprocess.DEVNULL)
            write_file(f"{base}/c{i}/cgroup.procs", str(kid.pid))
            kids.append(kid)
            conn.call(OBJ, IFACE, "RemoveOnEmpty", "ss", (key, f"{rel}/c{i}"))

        def storm(base: str = base, kids: list[Child] = kids) -> None:
            for k in kids:
                signal.pidfd_send_signal(k.pidfd, signal.SIGKILL)
            deadline = time.monotonic() + 120
            while any(e.is_dir() for e in os.scandir(base)):
                if time.monotonic() > deadline:
                    raise AssertionError(f"the reaper left cgroups in {base}")
                time.sleep(0.005)

        ph.timed(f"reaper storm {key} {n}", storm, op="reaper storm", hierarchy=key, n=n)
        for k in kids:
            _stop(h, k)
        os.rmdir(base)


def run(h: Harness, a: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    opts = ("--max-connections-per-uid", "1000")
    daemon = h.start_daemon(label="intf", options=opts, cpus=a.intf_daemon_cpus)
    h.enter()
    conn = daemon.connect()
    was = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {1 % (os.cpu_count() or 1)})  # the heavy client beside the pinger
    pinger = Pinger(h, daemon, a.intf_think_us)
    ph = Phases()
    try:
        ph.timed("idle", lambda: time.sleep(a.intf_idle), op="idle", hierarchy="", n=0)
        log("interference: idle done")
        tree_phases(h, conn, ph, a)
        log("interference: tree phases done")
        setup_phase(h, conn, ph, a)
        storm_phases(h, conn, ph, a)
        log("interference: storms done")
        pings = pinger.finish()
    finally:
        os.sched_setaffinity(0, was)
        conn.close()
    daemon.check_alive()
    h.stop_daemon(daemon)
    return {
        "settings": {
            "think_us": a.intf_think_us,
            "sizes": list(a.intf_sizes),
            "reps": a.intf_reps,
            "storm": a.intf_storm,
            "daemon_cpus": a.intf_daemon_cpus,
            "pings_total": len(pings),
        },
        "phases": ph.summary(pings),
    }


def print_summary(doc: dict[str, Any]) -> None:
    s = doc["settings"]
    print(
        f"Interference: one client's Ping (pause {s['think_us']} µs between calls) while "
        f"another's request runs; daemon on CPU {s['daemon_cpus']}; targets at 10,000 "
        "cgroups: max ≤ 5 ms, p99 ≤ 2× idle"
    )
    print(
        f"{'phase':<30} {'heavy ms':>9} {'pings':>6} {'p50 µs':>9} {'p99 µs':>10} "
        f"{'max µs':>10} {'p99÷idle':>9} {'max÷idle':>9}"
    )
    for r in doc["phases"]:
        print(
            f"{r['phase']:<30} {r['heavy_ms_median']:9.1f} {r['pings']:6d} {r['p50_us']:9.0f} "
            f"{r['p99_us']:10.0f} {r['max_us']:10.0f} {r['p99_over_idle']:9.1f} "
            f"{r['max_over_idle']:9.1f}"
        )


if __name__ == "__main__":
    sys.exit(pinger_main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
