"""Reliability numbers (issue 7, item 5), measured with more care than the tests take time for.

    python -m bench.reliability [--smoke] [--no-save] [--connections N] [--rounds R]
                                [--idle N] [--samples N] [--restarts N] [--sigterms N]

* **held**: N connections (default 1,000) opened at once by 4 client processes and held; R
  rounds of calls over all of them while all are open (a Ping pipelined over every connection,
  then GetValue and ListChildren on each): time to open, calls served, errors, daemon RSS.
* **latency**: a well-behaved one-shot client (connect + Ping + GetValue + close, in this
  process on CPU 1) with none and with N (default 300) idle or half-open connections present
  (a quarter each: no byte sent; a SASL line never ended; authenticated and silent; half a
  method call sent), interleaved over R rounds: percentiles of both.
* **restart**: 3 clients loop Create/SetValue/Chown/MovePid/Remove; the daemon is killed with
  SIGKILL mid-load, cgroupfs is compared with every reply the clients got, and a new daemon is
  started on the same (stale) socket: time from exec to the first successful call, and until
  every client has reconnected; repeated --restarts times (default 10) on the same clients.
* **sigterm**: the same load, then SIGTERM: time to exit (status 0), socket removed, cgroupfs
  as the clients were told; --sigterms times (default 3).

A call that fails, a mismatch in cgroupfs or a daemon that dies unasked fails the run; timings
never do.  Results: bench/results/reliability-<stamp>.json and reliability-latest.json.

Daemon options: everything here runs as root, so the held and latency daemons get
``--max-connections-per-uid`` above what this one uid opens (the default, 256 per uid, is
exercised with four uids in tests/daemon/test_reliability.py); ``--max-connections`` stays at
its default (2048).  The daemon is pinned to CPU 0 (``taskset -c 0``, included in the restart
time), clients to CPU 1.  Root only; uses bench.harness (a marked cgtest-<random> root in
pids and the v2 tree, never memory; everything removed at exit, also on SIGTERM / Ctrl-C).
The client processes are tests/daemon/reliability_client.py (shared with the tests).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pwd
import select
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` and `cgmanager` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import report  # noqa: E402
from bench.harness import (  # noqa: E402
    CPU,
    IFACE,
    OBJ,
    SKIP,
    VENV_BIN,
    BenchError,
    Child,
    Daemon,
    Harness,
    expect,
)
from bench.stats import percentile  # noqa: E402
from cgmanager.dbus.client import connect  # noqa: E402
from cgmanager.dbus.errors import DBusError  # noqa: E402

PY = sys.executable
CLIENT_CPU = 1 - CPU
CLIENT = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "tests",
    "daemon",
    "reliability_client.py",
)
#: owner the work clients Chown their cgroups to (and run their sleeper as): above the
#: login.defs UID_MAX (60000) with no passwd entry, so no real user's
CHOWN_ID = 61111
WORKERS = 3
HOLDERS = 4


def settings(a: argparse.Namespace) -> dict[str, int]:
    """The run's sizes from ``rel_*`` attributes (missing ones: defaults, or smoke sizes)."""
    smoke = bool(getattr(a, "smoke", False))
    defaults = {
        "connections": 100 if smoke else 1000,
        "rounds": 1 if smoke else 5,
        "idle": 40 if smoke else 300,
        "samples": 20 if smoke else 300,
        "restarts": 2 if smoke else 10,
        "sigterms": 1 if smoke else 3,
    }
    return {k: getattr(a, f"rel_{k}", None) or v for k, v in defaults.items()}


def load_client() -> ModuleType:
    spec = importlib.util.spec_from_file_location("reliability_client", CLIENT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def pct_ms(values_s: list[float]) -> dict[str, float]:
    s = sorted(values_s)
    return {
        "p50": 1000 * statistics.median(s),
        "p90": 1000 * percentile(s, 90),
        "p99": 1000 * percentile(s, 99),
        "max": 1000 * s[-1],
        "mean": 1000 * statistics.fmean(s),
        "n": len(s),
    }


def vm_rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line.split()[1] for line in f if line.startswith("VmRSS:")))


# ----------------------------------------------------------------------------- processes


def spawn_daemon(h: Harness, sock: str, options: tuple[str, ...] = ()) -> tuple[Daemon, float]:
    """cgmanager on ``sock`` (replacing a stale socket there), pinned to CPU 0, started in our
    original cgroups -> (daemon, seconds from spawn to the first successful call)."""
    log = f"{sock}.{time.monotonic_ns()}.log"
    argv = [
        "taskset",
        "-c",
        str(CPU),
        f"{VENV_BIN}/cgmanager",
        "--socket",
        sock,
        "--fs-dir",
        f"{sock}.fs",
        "--skip",
        SKIP,
        "--log-level",
        "warning",
        *options,
    ]
    was_in = h.entered
    if was_in:
        h.leave()
    try:
        with open(log, "w") as f:
            t0 = time.perf_counter()
            child = h.spawn(argv, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT)
    finally:
        if was_in:
            h.enter()
    daemon = Daemon(child, sock, log)
    while True:
        try:
            with connect(daemon.address, timeout=10) as c:
                c.call(OBJ, IFACE, "Ping", "i", (0,))
            return daemon, time.perf_counter() - t0
        except DBusError:
            daemon.check_alive()
            if time.perf_counter() - t0 > 30:
                raise BenchError(f"cgmanager did not come up:\n{daemon.log()}") from None
            time.sleep(0.002)


def forget(h: Harness, child: Child) -> None:
    """A child we reaped ourselves (the harness need not stop it)."""
    if child in h.children:
        h.children.remove(child)
    if child.pidfd >= 0:
        os.close(child.pidfd)
        child.pidfd = -1


class Client:
    """A reliability_client process (pinned to CPU 1) spoken to over pipes."""

    def __init__(self, h: Harness, *args: str) -> None:
        self.h = h
        self.child = h.spawn(
            ["taskset", "-c", str(CLIENT_CPU), PY, CLIENT, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.args = args

    def line(self, timeout: float = 120.0) -> str:
        out = self.child.popen.stdout
        assert out is not None
        r, _, _ = select.select([out], [], [], timeout)
        line = out.readline() if r else ""
        if not line:
            err = self.child.popen.stderr.read() if self.child.popen.poll() is not None else ""
            raise BenchError(f"client {self.args[0]} said nothing within {timeout} s: {err}")
        return line

    def send(self, command: str) -> None:
        stdin = self.child.popen.stdin
        assert stdin is not None
        stdin.write(command + "\n")
        stdin.flush()

    def ask(self, command: str) -> Any:
        self.send(command)
        return json.loads(self.line())

    def finish(self, timeout: float = 60.0) -> int | None:
        try:
            if self.child.popen.stdin is not None:
                self.child.popen.stdin.close()
        except BrokenPipeError:
            pass
        try:
            rc = self.child.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        forget(self.h, self.child)
        return rc


# ------------------------------------------------------------------------------- held


def held(
    h: Harness, rc: ModuleType, n: int, rounds: int, log: Callable[[str], None]
) -> dict[str, Any]:
    options = ("--max-connections-per-uid", str(n + 64))
    daemon, _ = spawn_daemon(h, os.path.join(h.tmp, "held.sock"), options)
    rss0 = vm_rss_kb(daemon.pid)
    per = [n // HOLDERS + (i < n % HOLDERS) for i in range(HOLDERS)]
    t0 = time.perf_counter()
    holders = [Client(h, "hold", daemon.address, str(k)) for k in per]
    for c, k in zip(holders, per, strict=True):
        expect(c.line() == f"open {k}\n", f"a client opened its {k} connections")
    opened_s = time.perf_counter() - t0
    sockets = rc.sockets_of(daemon.pid)
    expect(sockets >= n + 1, f"the daemon holds {n} connections (it has {sockets} sockets)")
    rss_open = vm_rss_kb(daemon.pid)
    served: list[float] = []
    for r in range(rounds):
        t0 = time.perf_counter()
        for c in holders:
            c.send("calls")
        results = [json.loads(c.line()) for c in holders]
        served.append(time.perf_counter() - t0)
        for res, k in zip(results, per, strict=True):
            expect(
                res["n_errors"] == 0 and res["ok"] == 3 * k,
                f"round {r}: every call answered ({res})",
            )
        daemon.check_alive()
    expect(rc.sockets_of(daemon.pid) >= n + 1, "all connections still open after the calls")
    for c in holders:
        expect(c.finish() == 0, "a holding client exited cleanly")
    daemon.check_alive()
    calls = 3 * n
    log(
        f"held: {n} connections opened in {opened_s:.2f} s; {calls} calls per round in "
        f"{statistics.median(served):.3f} s (median of {rounds})"
    )
    stop_daemon(h, daemon)
    return {
        "connections": n,
        "client_processes": HOLDERS,
        "daemon_options": list(options),
        "spawn_and_open_s": opened_s,
        "daemon_sockets_while_held": sockets,
        "rounds": rounds,
        "calls_per_round": calls,
        "errors": 0,
        "round_s": served,
        "calls_per_s_median": calls / statistics.median(served),
        "daemon_rss_kb": {"idle": rss0, f"with_{n}": rss_open},
    }


def stop_daemon(h: Harness, daemon: Daemon) -> int | None:
    """SIGTERM and reap -> the exit status."""
    rc = daemon.child.stop(signal.SIGTERM)
    forget(h, daemon.child)
    return rc


# ------------------------------------------------------------------------------- latency


def latency(
    h: Harness, rc: ModuleType, idle: int, samples: int, rounds: int, log: Callable[[str], None]
) -> dict[str, Any]:
    options = ("--max-connections-per-uid", str(idle + 64))
    daemon, _ = spawn_daemon(h, os.path.join(h.tmp, "latency.sock"), options)
    per_kind = idle // len(rc.KINDS)
    none: list[float] = []
    present: list[float] = []
    closed_early = 0
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {CLIENT_CPU})
    try:
        rc.measure(daemon.address, 20)  # warm-up
        for _ in range(rounds):
            none += rc.measure(daemon.address, samples)
            t0 = time.monotonic()
            held_socks = rc.open_idle(daemon.socket, per_kind)
            present += rc.measure(daemon.address, samples)
            status = rc.idle_status(held_socks)
            if time.monotonic() - t0 < 9:  # the SASL timeout (10 s) had not struck yet
                closed_early += sum(status.values())
            for socks in held_socks.values():
                for s in socks:
                    s.close()
    finally:
        os.sched_setaffinity(0, old)
    daemon.check_alive()
    expect(closed_early == 0, f"the idle connections stayed open while measured ({closed_early})")
    stop_daemon(h, daemon)
    a, b = pct_ms(none), pct_ms(present)
    log(
        f"latency: p50 {a['p50']:.2f} / {b['p50']:.2f} ms, p99 {a['p99']:.2f} / "
        f"{b['p99']:.2f} ms, max {a['max']:.2f} / {b['max']:.2f} ms (none / {idle} idle)"
    )
    return {
        "what": "connect + Ping + GetValue + close, one client in this process on CPU 1",
        "idle_connections": per_kind * len(rc.KINDS),
        "kinds": list(rc.KINDS),
        "daemon_options": list(options),
        "rounds": rounds,
        "samples_per_round": samples,
        "none_ms": a,
        "with_idle_ms": b,
    }


# ---------------------------------------------------------------------- restart and SIGTERM


def wait_journals(
    journals: list[str],
    rc: ModuleType,
    pred: Callable[[list[dict]], bool],
    what: str,
    timeout: float = 60.0,
) -> None:
    deadline = time.monotonic() + timeout
    while not all(pred(rc.read_journal(j)) for j in journals):
        if time.monotonic() > deadline:
            raise BenchError(f"clients: {what} did not happen within {timeout} s")
        time.sleep(0.005)


def count(ev: list[dict], kind: str) -> int:
    return sum(e["ev"] == kind for e in ev)


def check_unused_id() -> None:
    try:
        pwd.getpwuid(CHOWN_ID)
    except KeyError:
        return
    raise BenchError(f"uid {CHOWN_ID} belongs to a user here; pick another CHOWN_ID")


def restarts(h: Harness, rc: ModuleType, n: int, log: Callable[[str], None]) -> dict[str, Any]:
    check_unused_id()
    sock = os.path.join(h.tmp, "restart.sock")
    daemon, first = spawn_daemon(h, sock)
    journals = [os.path.join(h.tmp, f"restart-j{i}") for i in range(WORKERS)]
    workers = [
        Client(h, "work", daemon.address, j, f"rel-r{i}", str(CHOWN_ID), str(CHOWN_ID), "-1")
        for i, j in enumerate(journals)
    ]
    up: list[float] = []
    back: list[float] = []
    inflight: list[int] = []
    acked: list[int] = []
    base, hp = h.path("pids"), h.hpath()
    for k in range(n):
        marks = [count(rc.read_journal(j), "ok") for j in journals]
        for j, m in zip(journals, marks, strict=True):
            wait_journals([j], rc, lambda ev, m=m: count(ev, "ok") >= m + 15, "load")
        lost_before = [count(rc.read_journal(j), "lost") for j in journals]
        signal.pidfd_send_signal(daemon.child.pidfd, signal.SIGKILL)
        daemon.child.popen.wait(30)
        forget(h, daemon.child)
        for j, m in zip(journals, lost_before, strict=True):
            wait_journals([j], rc, lambda ev, m=m: count(ev, "lost") > m, "notice the kill")
        try:
            total = rc.check_kernel(base, hp, journals, True)  # counts every epoch's
        except AssertionError as e:
            raise BenchError(f"cgroupfs differs from what clients were told: {e}") from None
        inflight.append(total - sum(inflight))
        acked.append(sum(count(rc.read_journal(j), "ok") for j in journals))
        wall = time.time()
        daemon, t = spawn_daemon(h, sock)
        up.append(t)
        wait_journals(journals, rc, lambda ev, k=k: count(ev, "reconnected") > k, "reconnect")
        back.append(
            max(
                [e["t"] for e in rc.read_journal(j) if e["ev"] == "reconnected"][-1]
                for j in journals
            )
            - wall
        )
        log(
            f"restart {k + 1}/{n}: first call after {1000 * t:.0f} ms, all clients back after "
            f"{1000 * back[-1]:.0f} ms, {inflight[-1]} requests were in flight"
        )
    for w in workers:
        w.send("stop")
    for w in workers:
        expect(w.finish() == 0, "a work client exited cleanly")
    try:
        rc.check_kernel(base, hp, journals, False)
    except AssertionError as e:
        raise BenchError(f"cgroupfs differs from what clients were told: {e}") from None
    stop_daemon(h, daemon)
    return {
        "restarts": n,
        "clients": WORKERS,
        "first_start_ms": 1000 * first,
        "restart_to_first_call_ms": {**pct_ms(up), "all": [1000 * x for x in up]},
        "restart_to_all_clients_back_ms": {**pct_ms(back), "all": [1000 * x for x in back]},
        "replies_before_each_kill": acked,
        "requests_in_flight_at_each_kill": inflight,
        "cgroupfs_matched_replies": True,
    }


def sigterms(h: Harness, rc: ModuleType, n: int, log: Callable[[str], None]) -> dict[str, Any]:
    sock = os.path.join(h.tmp, "sigterm.sock")
    took: list[float] = []
    base, hp = h.path("pids"), h.hpath()
    for k in range(n):
        daemon, _ = spawn_daemon(h, sock)
        journals = [os.path.join(h.tmp, f"sigterm{k}-j{i}") for i in range(WORKERS)]
        workers = [
            Client(h, "work", daemon.address, j, f"rel-t{k}w{i}", str(CHOWN_ID), str(CHOWN_ID), "0")
            for i, j in enumerate(journals)
        ]
        held_socks = rc.open_idle(sock, 3)
        wait_journals(journals, rc, lambda ev: count(ev, "ok") >= 15, "load")
        t0 = time.perf_counter()
        signal.pidfd_send_signal(daemon.child.pidfd, signal.SIGTERM)
        status = daemon.child.popen.wait(60)
        took.append(time.perf_counter() - t0)
        forget(h, daemon.child)
        expect(status == 0, f"cgmanager exited {status} on SIGTERM")
        expect(not os.path.exists(sock), "the socket was removed")
        for w in workers:
            expect(w.finish(30) == 0, "a work client got a reply or EOF and exited")
        for j in journals:
            last = rc.read_journal(j)[-1]
            expect(
                last["ev"] == "lost" and rc.DISCONNECTED in last["error"],
                f"the call in flight got a reply or EOF ({last})",
            )
        expect(
            sum(rc.idle_status(held_socks).values()) == 3 * len(rc.KINDS),
            "every idle connection got EOF",
        )
        for socks in held_socks.values():
            for s in socks:
                s.close()
        try:
            rc.check_kernel(base, hp, journals, False)
        except AssertionError as e:
            raise BenchError(f"cgroupfs differs from what clients were told: {e}") from None
    log(f"sigterm: exit 0 after {1000 * statistics.median(took):.0f} ms (median of {n})")
    return {
        "shutdowns": n,
        "clients": WORKERS,
        "idle_connections": 3 * 4,
        "exit_ms": {**pct_ms(took), "all": [1000 * x for x in took]},
    }


# ------------------------------------------------------------------------------- the suite


def run(h: Harness, a: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    """The reliability suite (fresh daemons on sockets of its own) -> a JSON-able dict."""
    s = settings(a)
    rc = load_client()
    h.enter()  # clients work below the run root (relative paths resolve below them)
    return {
        "settings": s,
        "held": held(h, rc, s["connections"], s["rounds"], log),
        "latency": latency(h, rc, s["idle"], s["samples"], s["rounds"], log),
        "restart": restarts(h, rc, s["restarts"], log),
        "sigterm": sigterms(h, rc, s["sigterms"], log),
    }


def print_summary(doc: dict[str, Any]) -> None:
    hd, lat, rs, st = doc["held"], doc["latency"], doc["restart"], doc["sigterm"]
    print("Reliability (daemon on CPU 0, clients on CPU 1)")
    print(
        f"  held:    {hd['connections']} connections open at once ({hd['client_processes']} "
        f"processes, opened in {hd['spawn_and_open_s']:.2f} s incl. spawning); "
        f"{hd['calls_per_round']} calls per round over all of them, {hd['rounds']} rounds, "
        f"{hd['errors']} errors, {hd['calls_per_s_median']:.0f} calls/s; daemon RSS "
        + " -> ".join(f"{v / 1024:.1f} MiB" for v in hd["daemon_rss_kb"].values())
    )
    a, b = lat["none_ms"], lat["with_idle_ms"]
    print(f"  latency: {lat['what']}; {lat['rounds']} x {lat['samples_per_round']} samples")
    print(f"           {'':24} {'p50':>7} {'p90':>7} {'p99':>7} {'max':>7}  ms")
    for name, v in (("none", a), (f"{lat['idle_connections']} idle/half-open", b)):
        print(
            f"           {name:24} {v['p50']:7.2f} {v['p90']:7.2f} {v['p99']:7.2f} {v['max']:7.2f}"
        )
    r, c = rs["restart_to_first_call_ms"], rs["restart_to_all_clients_back_ms"]
    print(
        f"  restart: kill -9 under load ({rs['clients']} clients) x {rs['restarts']}: cgroupfs "
        f"matched every reply ({sum(rs['requests_in_flight_at_each_kill'])} requests in "
        f"flight in all); exec -> first call mean {r['mean']:.0f} ms (p50 {r['p50']:.0f}, "
        f"max {r['max']:.0f}); all clients back mean {c['mean']:.0f} ms (max {c['max']:.0f})"
    )
    e = st["exit_ms"]
    print(
        f"  sigterm: under load x {st['shutdowns']}: exit 0, socket removed, in {e['p50']:.0f} ms "
        f"median (max {e['max']:.0f})"
    )


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.reliability",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--smoke", action="store_true", help="tiny sizes (CI); saves nothing")
    p.add_argument("--no-save", action="store_true", help="do not write bench/results/")
    p.add_argument(
        "--connections",
        dest="rel_connections",
        type=int,
        help="connections held at once (default 1000)",
    )
    p.add_argument(
        "--rounds",
        dest="rel_rounds",
        type=int,
        help="rounds of calls and of latency batches (default 5)",
    )
    p.add_argument(
        "--idle", dest="rel_idle", type=int, help="idle or half-open connections (default 300)"
    )
    p.add_argument(
        "--samples", dest="rel_samples", type=int, help="latency samples per batch (default 300)"
    )
    p.add_argument(
        "--restarts", dest="rel_restarts", type=int, help="kill -9 and restart cycles (default 10)"
    )
    p.add_argument(
        "--sigterms", dest="rel_sigterms", type=int, help="SIGTERM shutdowns (default 3)"
    )
    return p.parse_args(argv)


def log(msg: str) -> None:
    print(f"reliability: {msg}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    a = parse(sys.argv[1:] if argv is None else argv)
    with Harness() as h:
        doc = run(h, a, log)
    left = h.leftovers()
    expect(not left, f"left behind: {left}")
    doc = {"bench": "reliability", "machine": report.machine(), "source": report.source(), **doc}
    print_summary(doc)
    if not (a.smoke or a.no_save):
        print(f"written: {report.save(doc, prefix='reliability-')}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        log(f"failed: {e}")
        sys.exit(1)
