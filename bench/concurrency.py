"""Many clients at once: throughput, latency and daemon memory with up to 1,000 connections.

For each level C (1, 10, 100, 1000 connections): worker processes pinned to CPU 1 (the daemon
is on CPU 0) open C connections at once with the asyncio client (``cgmanager.dbus.aio_client``),
send one warm-up Ping on each, then, for Ping and for GetValue in turn, every connection makes
its share of the calls in a closed loop (one call in flight per connection), all connections
concurrently.  Per phase: throughput (calls / wall time from the first call to the last
reply), latency of every call (p50, p99, max, as the client sees it: it includes queueing in
the daemon and in the client's own loop), each connection's completion time (fairness), the
daemon's and the clients' CPU time, and how busy each CPU was (others share this machine).

What limits it: the daemon is one single-threaded asyncio loop, so throughput cannot exceed
1 / (daemon CPU per call); when the daemon is ~100 % busy that ceiling *is* the throughput, and
latency is the queue in front of it (Little's law: p50 ≈ C × daemon CPU per call).

Memory: the daemon's VmRSS idle, with all C connections open, after the calls, and after
they closed (growth would show there); its open fds with C connections.

The worker side of this module runs as ``python -m bench.concurrency --worker`` (a child of
the bench: started, tracked and killed by the harness); it takes commands on stdin and writes
each phase's figures to a JSON file, announcing it with one line on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import select
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .harness import IFACE, OBJ, BenchError, Child, Daemon, Harness, cpu_ns, expect, proc_status
from .stats import percentile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: the clients' CPU (the daemon is pinned to harness.CPU, 0); the same one on a 1-CPU machine
CLIENT_CPU = 1 if (os.cpu_count() or 1) > 1 else 0
#: seconds a worker may take for one command before the run is declared broken
WORKER_TIMEOUT = 300.0
REL = "conc"
#: extra open-use-close cycles of the largest level, for the memory-growth check
CYCLES = 2
CYCLE_CALLS = 5
#: connections a worker opens at once (4 workers × 512 stay below a backlog of 4096)
WAVE = 512


# ------------------------------------------------------------------------------------------
# worker (a separate process)


def _calls(gv: str) -> dict[str, tuple[str, str, tuple, tuple]]:
    """op -> (member, signature, args, expected reply)."""
    return {
        "Ping": ("Ping", "i", (0,), ()),
        "GetValue": ("GetValue", "sss", ("pids", gv, "pids.max"), ("max",)),
    }


async def _phase(
    conns: list[Any], op: str, k: int, gv: str, spread_s: float = 0.0
) -> dict[str, Any]:
    """Every connection makes k calls, one in flight each; with *spread_s*, each call waits a
    random pause in [0, spread_s) first (an open loop of calls spread over time rather than a
    burst)."""
    import random

    from cgmanager.dbus.errors import DBusError

    member, sig, args, expected = _calls(gv)[op]
    clock = time.perf_counter_ns
    errors: Counter[str] = Counter()
    wrong = 0
    start = time.monotonic_ns()

    async def one(conn: Any) -> tuple[list[int], int]:
        nonlocal wrong
        lat = []
        for _ in range(k):
            if spread_s:
                await asyncio.sleep(random.uniform(0, spread_s))
            t0 = clock()
            try:
                body = await conn.call(OBJ, IFACE, member, sig, args)
            except DBusError as e:
                errors[f"{e.name}: {e.message}"[:200]] += 1
                continue
            lat.append(clock() - t0)
            if body != expected:
                wrong += 1
        return lat, time.monotonic_ns()

    c0 = cpu_ns("self")
    outs = await asyncio.gather(*(one(c) for c in conns))
    c1 = cpu_ns("self")
    end = time.monotonic_ns()
    return {
        "op": op,
        "calls_per_connection": k,
        "start_ns": start,
        "end_ns": end,
        "client_cpu_ns": c1 - c0,
        "latencies_ns": [x for lat, _ in outs for x in lat],
        "done_ns": [t - start for _, t in outs],
        "errors": dict(errors),
        "wrong_replies": wrong,
    }


async def _worker(address: str, n: int, gv: str, out: str) -> None:
    from cgmanager.dbus import aio_client

    loop = asyncio.get_running_loop()
    t0 = time.perf_counter()
    got: list[Any] = []
    # in waves: more connect()s at once than the listen backlog (SOMAXCONN, 4096 here) get
    # EAGAIN from the kernel, as with any server; a worker opens at most WAVE at a time
    for start in range(0, n, WAVE):
        got += await asyncio.gather(
            *(aio_client.connect(address, timeout=120) for _ in range(min(WAVE, n - start))),
            return_exceptions=True,
        )
    conns = [c for c in got if isinstance(c, aio_client.AsyncConnection)]
    failed = [repr(e)[:200] for e in got if not isinstance(e, aio_client.AsyncConnection)]
    _emit(
        {
            "event": "open",
            "open_s": time.perf_counter() - t0,
            "opened": len(conns),
            "failed": len(failed),
            "errors": failed[:5],
        }
    )
    seq = 0
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        cmd = line.split()
        if not cmd or cmd[0] == "close":
            break
        _, op, k, *spread = cmd
        res = await _phase(conns, op, int(k), gv, float(spread[0]) if spread else 0.0)
        seq += 1
        path = f"{out}.{seq}.json"
        with open(path, "w") as f:
            json.dump(res, f)
        _emit({"event": "phase", "file": path})
    for c in conns:
        c.close()
    _emit({"event": "closed"})


def raise_nofile(want: int) -> tuple[int, int]:
    """Raise RLIMIT_NOFILE to *want* (the hard limit too when we may: root); returns the
    limits now in force (the caller says so when they fall short)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
        except (ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def _emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def worker_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.concurrency --worker")
    p.add_argument("--worker", action="store_true")
    p.add_argument("--address", required=True)
    p.add_argument("--connections", type=int, required=True)
    p.add_argument("--gv", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--cpu", type=int, default=CLIENT_CPU)
    a = p.parse_args(argv)
    os.sched_setaffinity(0, {a.cpu})
    raise_nofile(a.connections + 64)
    asyncio.run(_worker(a.address, a.connections, a.gv, a.out))
    return 0


# ------------------------------------------------------------------------------------------
# the bench side


@dataclass
class Worker:
    """One client process: commands on its stdin, one JSON line per event on its stdout."""

    child: Child

    def send(self, line: str) -> None:
        stdin = self.child.popen.stdin
        assert stdin is not None
        stdin.write((line + "\n").encode())
        stdin.flush()

    def event(self, timeout: float = WORKER_TIMEOUT) -> dict[str, Any]:
        out = self.child.popen.stdout
        assert out is not None
        buf = b""
        deadline = time.monotonic() + timeout
        while not buf.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([out], [], [], left)[0]:
                raise BenchError(f"concurrency worker {self.child.pid}: no answer in {timeout} s")
            chunk = os.read(out.fileno(), 4096)
            if not chunk:
                raise BenchError(
                    f"concurrency worker {self.child.pid} exited {self.child.popen.wait()}"
                )
            buf += chunk
        return json.loads(buf)


def _spawn_workers(
    h: Harness, daemon: Daemon, c: int, procs: int, gv: str, tag: str
) -> list[Worker]:
    procs = max(1, min(procs, c))
    shares = [c // procs + (1 if i < c % procs else 0) for i in range(procs)]
    workers = []
    for i, n in enumerate(shares):
        argv = [
            sys.executable,
            "-m",
            "bench.concurrency",
            "--worker",
            "--address",
            daemon.address,
            "--connections",
            str(n),
            "--gv",
            gv,
            "--out",
            os.path.join(h.tmp, f"conc-{tag}-{i}"),
        ]
        child = h.spawn(argv, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
        workers.append(Worker(child))
    return workers


def cpu_busy() -> dict[int, tuple[int, int]]:
    """Per CPU: (busy, total) jiffies from /proc/stat (busy excludes idle and iowait)."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                name, *vals = line.split()
                v = [int(x) for x in vals]
                total = sum(v[:8])
                out[int(name[3:])] = (total - v[3] - v[4], total)
    return out


def busy_share(
    before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]]
) -> dict[str, float | None]:
    """Share of each CPU's time spent busy between two :func:`cpu_busy` readings (None when
    less than a jiffy passed)."""
    out: dict[str, float | None] = {}
    for cpu in after:
        db = after[cpu][0] - before[cpu][0]
        dt = after[cpu][1] - before[cpu][1]
        out[str(cpu)] = db / dt if dt else None
    return out


def _summarise(
    phases: list[dict[str, Any]], daemon_cpu_ns: int, busy: dict[str, float | None], c: int
) -> dict[str, Any]:
    lat = sorted(x for p in phases for x in p["latencies_ns"])
    done = sorted(x for p in phases for x in p["done_ns"])
    calls = len(lat)
    errors: Counter[str] = Counter()
    for p in phases:
        errors.update(p["errors"])
    start = min(p["start_ns"] for p in phases)
    end = max(p["end_ns"] for p in phases)
    wall = (end - start) / 1e9
    ncalls = calls + sum(errors.values())
    dcpu = daemon_cpu_ns / max(ncalls, 1) / 1000
    client_cpu = sum(p["client_cpu_ns"] for p in phases) / 1e9
    daemon_util = daemon_cpu_ns / 1e9 / wall if wall else float("nan")
    client_util = client_cpu / wall if wall else float("nan")
    cpu0 = busy.get("0") or 0.0
    if daemon_util >= 0.85:
        limit = "daemon CPU"
    elif client_util >= 0.85:
        limit = "client CPU"
    elif cpu0 >= 0.9:
        limit = "CPU 0 shared with other load"
    elif c == 1:
        limit = "round trips (1 in flight)"
    else:
        limit = "not saturated"
    return {
        "op": phases[0]["op"],
        "connections": c,
        "calls": calls,
        "calls_per_connection": phases[0]["calls_per_connection"],
        "wall_s": wall,
        "throughput_per_s": calls / wall if wall else float("nan"),
        "latency_us": {
            "p50": percentile(lat, 50) / 1000,
            "p99": percentile(lat, 99) / 1000,
            "max": (lat[-1] / 1000) if lat else float("nan"),
            "min": (lat[0] / 1000) if lat else float("nan"),
        },
        "connection_done_ms": {
            "first": done[0] / 1e6 if done else float("nan"),
            "median": percentile(done, 50) / 1e6,
            "last": done[-1] / 1e6 if done else float("nan"),
        },
        "daemon_cpu_us_per_call": dcpu,
        "daemon_ceiling_per_s": 1e6 / dcpu if dcpu else float("nan"),
        "daemon_busy": daemon_util,
        "client_cpu_us_per_call": client_cpu * 1e6 / max(calls, 1),
        "client_busy": client_util,
        "cpu_busy": busy,
        "limited_by": limit,
        "errors": dict(errors),
        "wrong_replies": sum(p["wrong_replies"] for p in phases),
    }


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def run(h: Harness, a: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    """The concurrency suite on a fresh daemon; one result per (level, op)."""
    levels: list[int] = a.conc_levels
    top = max(levels)
    h.mkdir(REL, ("pids",))
    gv = h.hpath(REL)
    daemon = h.start_daemon(
        label="conc",
        options=(
            "--max-connections",
            str(max(2048, top + 64)),
            "--max-connections-per-uid",
            str(top + 64),
        ),
    )
    h.enter()  # the workers inherit the run's cgroup: GetValue's path is below them
    memory: dict[str, Any] = {"idle": proc_status(daemon.pid), "idle_fds": _fds(daemon.pid)}
    results: list[dict[str, Any]] = []
    opens: list[dict[str, Any]] = []
    for c in levels:
        d0 = cpu_ns(daemon.pid)
        t0 = time.monotonic()
        workers = _spawn_workers(h, daemon, c, a.conc_procs, gv, str(c))
        events = [w.event() for w in workers]
        opened = sum(e["opened"] for e in events)
        failed = [err for e in events for err in e["errors"]]
        expect(opened == c, f"{c} connections opened (got {opened}; {failed[:3]})")
        open_cpu = cpu_ns(daemon.pid) - d0
        opens.append(
            {
                "connections": c,
                "workers": len(workers),
                "slowest_worker_open_s": max(e["open_s"] for e in events),
                "daemon_cpu_us_per_connection": open_cpu / c / 1000,
                "spawn_and_open_s": time.monotonic() - t0,
            }
        )
        for w in workers:  # warm-up: one Ping per connection (not counted)
            w.send("go Ping 1")
        for w in workers:
            _load(w.event())
        if c == top:
            memory[f"open_{c}"] = proc_status(daemon.pid)
            memory[f"open_{c}_fds"] = _fds(daemon.pid)
        for op in ("Ping", "GetValue"):
            k = max(1, a.conc_calls // c)
            before, d0 = cpu_busy(), cpu_ns(daemon.pid)
            for w in workers:
                w.send(f"go {op} {k}")
            phases = [_load(w.event()) for w in workers]
            d1, after = cpu_ns(daemon.pid), cpu_busy()
            daemon.check_alive()
            r = _summarise(phases, d1 - d0, busy_share(before, after), c)
            expect(not r["errors"], f"{op} × {c} connections: errors {r['errors']}")
            expect(r["wrong_replies"] == 0, f"{op} × {c}: {r['wrong_replies']} wrong replies")
            expect(r["calls"] == k * c, f"{op} × {c}: {r['calls']} of {k * c} calls answered")
            results.append(r)
            log(
                f"concurrency: {c} connections, {op}: {r['throughput_per_s']:.0f} calls/s, "
                f"p99 {r['latency_us']['p99']:.0f} µs"
            )
        if c == top:
            memory[f"after_calls_{c}"] = proc_status(daemon.pid)
        _close_workers(h, workers)
        if c == top:
            memory[f"closed_{c}"] = _settled_rss(daemon)
            memory[f"closed_{c}_fds"] = _fds(daemon.pid)
    # leak check: open, use and close the top level's connections again; RSS should not climb
    memory["cycles"] = []
    for i in range(CYCLES):
        workers = _spawn_workers(h, daemon, top, a.conc_procs, gv, f"again{i}")
        expect(sum(w.event()["opened"] for w in workers) == top, "connections reopened")
        for w in workers:
            w.send(f"go GetValue {CYCLE_CALLS}")
        for w in workers:
            p = _load(w.event())
            expect(not p["errors"] and not p["wrong_replies"], f"cycle {i}: {p['errors']}")
        _close_workers(h, workers)
        memory["cycles"].append(_settled_rss(daemon))
    log_text = daemon.log()
    h.stop_daemon(daemon)
    warnings = [line for line in log_text.splitlines() if line.strip()]
    return {
        "levels": levels,
        "worker_processes": a.conc_procs,
        "client_cpu": CLIENT_CPU,
        "results": results,
        "connect": opens,
        "memory_kb": memory,
        "daemon_log_lines": len(warnings),
        "daemon_log_head": warnings[:10],
    }


def _close_workers(h: Harness, workers: list[Worker]) -> None:
    for w in workers:
        w.send("close")
    for w in workers:
        expect(w.event()["event"] == "closed", "worker closed its connections")
        expect(w.child.popen.wait(30) == 0, "worker exit status")
    for w in workers:
        w.child.stop()
        h.children.remove(w.child)


def _settled_rss(daemon: Daemon) -> dict[str, int]:
    """RSS once the daemon has noticed every close (its fd count stops falling)."""
    last = -1
    for _ in range(50):
        n = _fds(daemon.pid)
        if n == last:
            break
        last = n
        time.sleep(0.1)
    return proc_status(daemon.pid)


def _load(event: dict[str, Any]) -> dict[str, Any]:
    if event.get("event") != "phase":
        raise BenchError(f"concurrency worker: unexpected {event!r}")
    with open(event["file"]) as f:
        data = json.load(f)
    os.unlink(event["file"])
    return data


# ------------------------------------------------------------------------------------------
# report


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x:.0%}"


def _mb(kb: int) -> str:
    return f"{kb / 1024:.1f}"


def print_summary(doc: dict[str, Any]) -> None:
    print(
        "Concurrency: daemon on CPU 0, asyncio clients on CPU 1 "
        f"({doc['worker_processes']} worker processes at most); one call in flight per connection"
    )
    head = (
        "conns",
        "op",
        "calls/s",
        "p50 µs",
        "p99 µs",
        "max µs",
        "conn done ms first/last",
        "daemon CPU/call µs",
        "1/that calls/s",
        "daemon busy",
        "client CPU/call µs",
        "client busy",
        "CPU0/CPU1 busy",
        "limited by",
    )
    rows = [head]
    for r in doc["results"]:
        lat = r["latency_us"]
        d = r["connection_done_ms"]
        rows.append(
            (
                str(r["connections"]),
                r["op"],
                f"{r['throughput_per_s']:.0f}",
                f"{lat['p50']:.0f}",
                f"{lat['p99']:.0f}",
                f"{lat['max']:.0f}",
                f"{d['first']:.0f}/{d['last']:.0f}",
                f"{r['daemon_cpu_us_per_call']:.1f}",
                f"{r['daemon_ceiling_per_s']:.0f}",
                f"{r['daemon_busy']:.0%}",
                f"{r['client_cpu_us_per_call']:.1f}",
                f"{r['client_busy']:.0%}",
                f"{_pct(r['cpu_busy'].get('0'))}/{_pct(r['cpu_busy'].get('1'))}",
                r["limited_by"],
            )
        )
    print(_table(rows))
    print(
        "  limited by: daemon/client CPU = that process ≥ 85 % busy; 'CPU 0 shared' = CPU 0 was "
        "busy but mostly not with the daemon (other sessions); latencies include queueing"
    )
    for o in doc["connect"]:
        print(
            f"  opening {o['connections']} connections at once: slowest worker "
            f"{o['slowest_worker_open_s'] * 1000:.0f} ms; daemon CPU "
            f"{o['daemon_cpu_us_per_connection']:.0f} µs per connection (accept, SASL)"
        )
    m = doc["memory_kb"]
    top = max(doc["levels"])
    idle = m["idle"]["VmRSS"]
    line = f"  daemon VmRSS: idle {_mb(idle)} MB ({m['idle_fds']} fds)"
    if f"open_{top}" in m:
        opened = m[f"open_{top}"]["VmRSS"]
        line += (
            f"; {top} connections open {_mb(opened)} MB ({m[f'open_{top}_fds']} fds, "
            f"{(opened - idle) / top:.1f} kB per connection)"
            f"; after their calls {_mb(m[f'after_calls_{top}']['VmRSS'])} MB"
            f"; closed {_mb(m[f'closed_{top}']['VmRSS'])} MB ({m[f'closed_{top}_fds']} fds)"
            f"; peak {_mb(m[f'closed_{top}']['VmHWM'])} MB"
        )
    if m.get("cycles"):
        line += (
            "\n  after each further cycle of opening, using and closing "
            f"{top} connections: " + ", ".join(f"{_mb(x['VmRSS'])}" for x in m["cycles"]) + " MB"
        )
    print(line)
    if doc["daemon_log_lines"]:
        print(f"  daemon log: {doc['daemon_log_lines']} lines, e.g. {doc['daemon_log_head'][:3]}")


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            c.ljust(w) if i in (1, len(widths) - 1) else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
