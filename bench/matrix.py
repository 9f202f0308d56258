"""The client matrix: the daemon's CPU per request with each kind of client, back to back and
with think time — and, given the original's binaries, the same against cgmanager 0.42.

Clients (each its own process, pinned to the daemon's CPU as in the core suite):

* ``ours``: the project's blocking client (``cgmanager.dbus.client``);
* ``jeepney``: jeepney's blocking connection (byte-identical messages, more Python per call);
* ``libdbus``: a small C client on libdbus (``bench/clients/libdbus_client.c``, built here with
  the system compiler) — what LXC and other C callers do;
* ``dbus-send``: one process per call (``dbus-send --peer``: no ``Hello``), its connection
  set-up included — what shell scripts do;
* ``cgm`` (only with ``--c-cgm``): each daemon's own command line, one process per call.

Modes: ``b2b`` (the next call right after the reply) and ``think`` (a pause of ``--think-us``,
1 ms by default, between calls: real clients never send the next call within microseconds, so
the daemon pays an event-loop wake-up per request).  Operations as in the core suite, on
relative paths, so both daemons do the same work on the same kind of cgroups.

Both daemons run confined alike (bench/confine.py), pinned to CPU 0 with their clients; the
driver sits on CPU 1 and only waits.  With ``--c-daemon`` every cell is measured against both
daemons in ABBA order (round r: ours then C when r is even, C then ours when odd), so drift
hits both; the ratio is ours ÷ C per cell from the same run.  Daemon CPU per request is the
schedstat delta of the daemon over the batch ÷ iterations (Create+Remove: one iteration, two
calls), nothing subtracted.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from . import confine, report
from .harness import BenchError, Harness, cpu_ns
from .stats import median, summary_us

HERE = os.path.dirname(os.path.abspath(__file__))
OBJ = "/org/linuxcontainers/cgmanager"
IFACE = "org.linuxcontainers.cgmanager0_0"
CLIENTS = ("ours", "jeepney", "libdbus", "dbus-send")
MODES = ("b2b", "think")
OPS = ("Ping", "GetValue", "Create+Remove", "MovePid", "ListChildren", "GetTasks", "ListKeys")
KIDS, TASKS = 10, 4
ONESHOT = ("dbus-send", "cgm")


def plans(mover: int) -> dict[str, list[list[str]]]:
    """Per operation: alternatives (iteration i runs alternative i % len) of calls
    ``Method sig arg…`` on paths relative to the client's cgroup."""
    return {
        "Ping": [["Ping i 0"]],
        "GetValue": [["GetValue sss pids gv pids.max"]],
        "Create+Remove": [["Create ss pids cr", "Remove ssi pids cr 1"]],
        "MovePid": [[f"MovePid ssi pids m2 {mover}"], [f"MovePid ssi pids m1 {mover}"]],
        "ListChildren": [["ListChildren ss pids kids"]],
        "GetTasks": [["GetTasks ss pids sleepers"]],
        "ListKeys": [["ListKeys ss pids gv"]],
    }


CGM = {  # the same calls as command lines of cgm
    "Ping": "ping",
    "GetValue": "getvalue",
    "Create": "create",
    "Remove": "remove",
    "MovePid": "movepid",
    "ListChildren": "listchildren",
    "GetTasks": "gettasks",
    "ListKeys": "listkeys",
}


def build_libdbus_client(tmp: str) -> str:
    """Compile the C client with the system compiler (libdbus-1-dev)."""
    out = os.path.join(tmp, "libdbus_client")
    flags = subprocess.run(
        ["pkg-config", "--cflags", "--libs", "dbus-1"], capture_output=True, text=True
    )
    if flags.returncode != 0:
        raise BenchError(
            "pkg-config dbus-1 failed: install libdbus-1-dev (scripts/install-test-deps)"
        )
    src = os.path.join(HERE, "clients", "libdbus_client.c")
    subprocess.run(["cc", "-O2", "-o", out, src, *flags.stdout.split()], check=True)
    return out


# -- outside -----------------------------------------------------------------------------------


def run(h: Harness, a: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    clients = list(a.matrix_clients)
    skipped: dict[str, str] = {}
    client_binary = None
    if "libdbus" in clients:
        try:
            client_binary = build_libdbus_client(h.tmp)
        except (BenchError, OSError, subprocess.CalledProcessError) as e:
            skipped["libdbus"] = f"cannot build the C client: {e}"
            clients.remove("libdbus")
            log(f"matrix: libdbus client skipped: {e}")
    config = {
        "tmp": h.tmp,
        "client": client_binary,
        "c_daemon": a.c_daemon,
        "c_cgm": a.c_cgm,
        "calls": a.matrix_calls,
        "oneshot_calls": a.matrix_oneshot_calls,
        "rounds": a.matrix_rounds,
        "think_us": a.think_us,
        "ops": [o for o in OPS if o in a.ops],
        "clients": clients,
        "python": sys.executable,
        "cgm": os.path.join(os.path.dirname(sys.executable), "cgm"),
    }
    t0 = time.monotonic()
    out = confine.run_confined(h, "bench.matrix:inside", config)
    log(f"client matrix took {time.monotonic() - t0:.0f} s")
    out["reference_c_jeepney_daemon_cpu_us"] = report.C_JEEPNEY_DAEMON_CPU_US
    out["skipped_clients"] = skipped
    return out


# -- inside the confinement --------------------------------------------------------------------


class Persistent:
    """A client process holding one connection; one command line in, one answer line out."""

    def __init__(self, argv: list[str]) -> None:
        self.p = subprocess.Popen(
            ["taskset", "-c", "0", *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )

    def batch(self, n: int, think_us: int, alts: list[list[str]]) -> list[int]:
        assert self.p.stdin is not None and self.p.stdout is not None
        spec = "|".join(";".join(alt) for alt in alts)
        self.p.stdin.write(f"{n} {think_us} | {spec}\n")
        line = self.p.stdout.readline()
        if not line.startswith("ok"):
            raise BenchError(f"client {self.p.args[3:5]}: {line.strip() or 'exited'}")
        return [int(x) for x in line.split()[1:]]

    def close(self) -> None:
        assert self.p.stdin is not None
        self.p.stdin.close()
        self.p.wait(10)


def _dbus_send_argv(address: str, call: str) -> list[str]:
    method, sig, *args = call.split()
    typed = [f"{'int32' if t == 'i' else 'string'}:{v}" for t, v in zip(sig, args)]
    return [
        "dbus-send",
        f"--peer={address}",
        "--print-reply",
        "--type=method_call",
        OBJ,
        f"{IFACE}.{method}",
        *typed,
    ]


def _cgm_argv(binary: str, call: str) -> list[str]:
    method, _sig, *args = call.split()
    return [binary, CGM[method], *args]


def oneshot_batch(n: int, think_us: int, alts: list[list[list[str]]]) -> list[int]:
    """n iterations of spawning each command of the alternative and waiting for it."""
    devnull = [(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)]
    out = []
    for i in range(n):
        t0 = time.perf_counter_ns()
        for argv in alts[i % len(alts)]:
            pid = os.posix_spawnp(argv[0], argv, os.environ, file_actions=devnull)
            _, status = os.waitpid(pid, 0)
            if os.waitstatus_to_exitcode(status) != 0:
                raise BenchError(f"{' '.join(argv)} exited {os.waitstatus_to_exitcode(status)}")
        out.append(time.perf_counter_ns() - t0)
        if think_us:
            time.sleep(think_us / 1e6)
    return out


def fixture() -> tuple[subprocess.Popen[bytes], list[subprocess.Popen[bytes]]]:
    root = "/sys/fs/cgroup/pids"
    for rel in ("gv", "m1", "m2", "kids", "sleepers"):
        os.mkdir(f"{root}/{rel}")
    for i in range(KIDS):
        os.mkdir(f"{root}/kids/c{i}")
    mover = subprocess.Popen(["sleep", "3600"])
    with open(f"{root}/m1/cgroup.procs", "w") as f:
        f.write(str(mover.pid))
    tasks = [subprocess.Popen(["sleep", "3600"]) for _ in range(TASKS)]
    for t in tasks:
        with open(f"{root}/sleepers/cgroup.procs", "w") as f:
            f.write(str(t.pid))
    return mover, tasks


def inside(cfg: dict[str, Any]) -> dict[str, Any]:
    os.sched_setaffinity(0, {1 % (os.cpu_count() or 1)})
    mover, tasks = fixture()
    daemons = {"ours": confine.start_ours(cfg["tmp"], 0)}
    addresses = {"ours": f"unix:path={confine.OURS_SOCKET}"}
    cgm = {"ours": cfg["cgm"]}
    if cfg["c_daemon"]:
        daemons["c"] = confine.start_c(cfg["c_daemon"], cfg["tmp"], 0)
        addresses["c"] = f"unix:path={confine.C_SOCKET}"
        cgm["c"] = cfg["c_cgm"]
    os.environ["CGM_SOCKET"] = confine.OURS_SOCKET  # our cgm; the C one has its path built in
    clients = list(cfg["clients"])
    if cfg["c_cgm"] and "cgm" not in clients:
        clients.append("cgm")
    persistent: dict[tuple[str, str], Persistent] = {}
    for d, addr in addresses.items():
        for c in clients:
            if c in ("ours", "jeepney"):
                persistent[c, d] = Persistent(
                    [cfg["python"], "-m", "bench.clients.py_client", c, addr]
                )
            elif c == "libdbus":
                persistent[c, d] = Persistent([cfg["client"], addr])
    table = plans(mover.pid)
    cells: list[dict[str, Any]] = []
    try:
        for client in clients:
            oneshot = client in ONESHOT
            n = cfg["oneshot_calls"] if oneshot else cfg["calls"]
            for mode in MODES:
                think = cfg["think_us"] if mode == "think" else 0
                for op in cfg["ops"]:
                    cells.append(
                        _cell(
                            cfg,
                            client,
                            mode,
                            op,
                            n,
                            think,
                            table[op],
                            daemons,
                            addresses,
                            cgm,
                            persistent,
                        )
                    )
    finally:
        for p in persistent.values():
            p.close()
        for d in daemons.values():
            confine.stop(d)
        for t in [mover, *tasks]:
            t.kill()
            t.wait()
    return {
        "settings": {k: cfg[k] for k in ("calls", "oneshot_calls", "rounds", "think_us")},
        "daemons": list(daemons),
        "clients": clients,
        "cells": cells,
    }


def _cell(
    cfg: dict[str, Any],
    client: str,
    mode: str,
    op: str,
    n: int,
    think: int,
    alts: list[list[str]],
    daemons: dict[str, subprocess.Popen[bytes]],
    addresses: dict[str, str],
    cgm: dict[str, str],
    persistent: dict[tuple[str, str], Persistent],
) -> dict[str, Any]:
    names = list(daemons)
    cpu: dict[str, list[float]] = {d: [] for d in names}
    ccpu: dict[str, list[float]] = {d: [] for d in names}
    lat: dict[str, list[int]] = {d: [] for d in names}
    for r in range(cfg["rounds"]):
        for d in names if r % 2 == 0 else reversed(names):
            pid = daemons[d].pid
            if client in ONESHOT:
                addr = addresses[d]
                cmds = [
                    [
                        _dbus_send_argv(addr, c) if client == "dbus-send" else _cgm_argv(cgm[d], c)
                        for c in alt
                    ]
                    for alt in alts
                ]
                oneshot_batch(2, 0, cmds)  # warm the page cache
                d0, c0 = cpu_ns(pid), 0
                got = oneshot_batch(n, think, cmds)
                d1, c1 = cpu_ns(pid), 0
            else:
                cl = persistent[client, d]
                cl.batch(20, 0, alts)  # warm-up
                d0, c0 = cpu_ns(pid), cpu_ns(cl.p.pid)
                got = cl.batch(n, think, alts)
                d1, c1 = cpu_ns(pid), cpu_ns(cl.p.pid)
            if daemons[d].poll() is not None:
                raise BenchError(f"daemon {d} exited during {client} {op}")
            cpu[d].append((d1 - d0) / n / 1000)
            ccpu[d].append((c1 - c0) / n / 1000)
            lat[d] += got
    res: dict[str, Any] = {"client": client, "mode": mode, "op": op, "n": n, "think_us": think}
    for d in names:
        res[d] = {
            "daemon_cpu_us": median(cpu[d]),
            "daemon_cpu_us_rounds": cpu[d],
            "client_cpu_us": median(ccpu[d]) if client not in ONESHOT else None,
            "latency_us": summary_us(lat[d]),
        }
    if "c" in names:
        res["ratio"] = res["ours"]["daemon_cpu_us"] / res["c"]["daemon_cpu_us"]
    return res


# -- report ------------------------------------------------------------------------------------


def print_summary(doc: dict[str, Any]) -> None:
    s = doc["settings"]
    both = "c" in doc["daemons"]
    ref = doc.get("reference_c_jeepney_daemon_cpu_us", {})
    print(
        f"Client matrix: daemon CPU µs per request (median of {s['rounds']} rounds × "
        f"{s['calls']} calls; one-shot clients × {s['oneshot_calls']}), think time "
        f"{s['think_us']} µs; both daemons confined alike, pinned with their clients to CPU 0"
        + ("; ABBA rounds against the C original" if both else "")
    )
    by = {(c["client"], c["mode"], c["op"]): c for c in doc["cells"]}
    blocks = [("ours", "the project's daemon, µs")]
    if both:
        blocks += [("c", "the C original, µs"), ("ratio", "ours ÷ C")]
    for what, title in blocks:
        print(f"\n{title}")
        print("client     mode  " + "".join(f"{op:>14}" for op in OPS))
        for client in doc["clients"]:
            for mode in MODES:
                row = f"{client:<10} {mode:<5} "
                for op in OPS:
                    c = by.get((client, mode, op))
                    if c is None:
                        row += f"{'–':>14}"
                    elif what == "ratio":
                        row += f"{c['ratio']:14.2f}"
                    else:
                        row += f"{c[what]['daemon_cpu_us']:14.1f}"
                print(row)
    for client, why in doc.get("skipped_clients", {}).items():
        print(f"{client}: skipped ({why})")
    if both:
        ratios = [c["ratio"] for c in doc["cells"]]
        print(f"ours ÷ C: {min(ratios):.2f}–{max(ratios):.2f} over {len(ratios)} cells")
    elif ref:
        print(
            "no C original given (--c-daemon): recorded C figures with a jeepney client, "
            "pinned, b2b: " + ", ".join(f"{k} {v}" for k, v in ref.items())
        )


def markdown(doc: dict[str, Any], what: str = "ratio") -> str:
    """A matrix table for docs/PERFORMANCE.md: *what* is "ours", "c" (daemon CPU µs per
    request) or "ratio" (ours ÷ C)."""
    by = {(c["client"], c["mode"], c["op"]): c for c in doc["cells"]}
    lines = ["| client | mode | " + " | ".join(OPS) + " |", "|---|---|" + "---|" * len(OPS)]
    for client in doc["clients"]:
        for mode in MODES:
            cells = []
            for op in OPS:
                c = by.get((client, mode, op))
                if c is None:
                    cells.append("–")
                elif what == "ratio":
                    cells.append(f"{c['ratio']:.2f}")
                else:
                    cells.append(f"{c[what]['daemon_cpu_us']:.1f}")
            lines.append(f"| {client} | {mode} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":  # python -m bench.matrix RESULTS.json [ours|c|ratio]
    import json

    with open(sys.argv[1]) as f:
        print(markdown(json.load(f)["matrix"], sys.argv[2] if len(sys.argv) > 2 else "ratio"))
