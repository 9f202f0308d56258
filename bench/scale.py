"""Many cgroups: ListChildren, GetTasksRecursive, Remove and Prune over N ∈ {100, 1000, 10000}
child cgroups, each against its kernel floor in the same run.

In each served hierarchy the bench works in (``pids``, v1, and the v2 tree, ``unified``; never
``memory``), for each N: ``<run root>/scale-<hierarchy>-<N>`` gets N children ``c0…c<N-1>``,
made directly on cgroupfs (timed: the mkdir floor); 8 sleeping children of the bench are spread
over them; then, in interleaved rounds (A B, then B A):

* ListChildren of the parent vs ``scandir`` keeping the directories;
* GetTasksRecursive of the parent vs a ``scandir`` walk reading every ``cgroup.procs``;

after moving the sleepers out: the floor (walk + ``rmdir`` of every cgroup, bottom-up),
then — after recreating the tree each time — ``Remove(recursive=1)`` and ``Prune``, checking
that the tree is gone.  Each figure is a median over calls; per-cgroup cost is that over N;
"marginal" is the slope between consecutive sizes (fixed per-call costs cancel), and growth is
linear when the marginal cost per cgroup stays flat from 100→1000 to 1000→10000.

The daemon (a fresh one, pinned to CPU 0 like the bench) runs one blocking client connection;
its CPU time per call comes from schedstat; its VmRSS is read idle, with each N present (after
listing) and after everything was removed (VmHWM: its peak).  Everything is below the run
root, which the harness removes even on SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

from cgmanager.dbus.client import Connection, connect

from .harness import IFACE, OBJ, Child, Daemon, Harness, cpu_ns, expect, proc_status, write_file
from .stats import median

KEYS = ("pids", "unified")
SLEEPERS = 8


def _walk(path: str) -> list[str]:
    """Every cgroup at and below *path*, parents first."""
    out = [path]
    i = 0
    while i < len(out):
        with os.scandir(out[i]) as it:
            out.extend(e.path for e in it if e.is_dir(follow_symlinks=False))
        i += 1
    return out


def floor_listdir(path: str) -> list[str]:
    with os.scandir(path) as it:
        return [e.name for e in it if e.is_dir(follow_symlinks=False)]


def floor_tasks_recursive(path: str) -> list[int]:
    pids: set[int] = set()
    for d in _walk(path):
        with open(os.path.join(d, "cgroup.procs")) as f:
            pids.update(int(x) for x in f.read().split())
    return sorted(pids)


def floor_rmdir_all(path: str) -> None:
    for d in reversed(_walk(path)):
        os.rmdir(d)


def make_tree(path: str, n: int) -> float:
    """mkdir *path* (untimed) and its n children (timed); seconds for the children."""
    os.mkdir(path)
    t0 = time.perf_counter()
    for i in range(n):
        os.mkdir(f"{path}/c{i}")
    return time.perf_counter() - t0


class Meter:
    """Wall time and the daemon's CPU time of one call or floor operation."""

    def __init__(self, daemon: Daemon) -> None:
        self.pid = daemon.pid

    def __call__(self, fn: Callable[[], object], daemon_side: bool) -> tuple[float, float, object]:
        d0 = cpu_ns(self.pid) if daemon_side else 0
        t0 = time.perf_counter_ns()
        out = fn()
        t1 = time.perf_counter_ns()
        d1 = cpu_ns(self.pid) if daemon_side else 0
        return (t1 - t0) / 1000, (d1 - d0) / 1000, out


def _size(
    h: Harness,
    conn: Connection,
    meter: Meter,
    key: str,
    n: int,
    sleepers: list[Child],
    a: argparse.Namespace,
    daemon: Daemon,
) -> dict[str, Any]:
    rel = f"scale-{key}-{n}"
    host, hp = h.path(key, rel), h.hpath(rel)
    call = conn.call
    res: dict[str, Any] = {"hierarchy": key, "n": n}
    samples: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}

    def add(name: str, us: float, dcpu: float | None = None) -> None:
        samples.setdefault(name, []).append(us)
        if dcpu is not None:
            cpu.setdefault(name, []).append(dcpu)

    add("mkdir_floor", make_tree(host, n) * 1e6)
    for j, s in enumerate(sleepers):
        write_file(f"{host}/c{(j * n) // len(sleepers)}/cgroup.procs", str(s.pid))
    want_pids = sorted(s.pid for s in sleepers)
    want_kids = sorted(f"c{i}" for i in range(n))
    # check once that both sides do the work
    expect(
        sorted(call(OBJ, IFACE, "ListChildren", "ss", (key, hp))[0]) == want_kids,
        f"ListChildren {key} {n}",
    )
    expect(sorted(floor_listdir(host)) == want_kids, f"floor listdir {key} {n}")
    got = call(OBJ, IFACE, "GetTasksRecursive", "ss", (key, hp))[0]
    expect(sorted(got) == want_pids, f"GetTasksRecursive {key} {n}: {sorted(got)} != {want_pids}")
    expect(floor_tasks_recursive(host) == want_pids, f"floor tasks {key} {n}")

    reps = max(1, a.scale_items // n)
    daemon_ops = {
        "ListChildren": lambda: call(OBJ, IFACE, "ListChildren", "ss", (key, hp)),
        "GetTasksRecursive": lambda: call(OBJ, IFACE, "GetTasksRecursive", "ss", (key, hp)),
    }
    floor_ops = {
        "ListChildren": lambda: floor_listdir(host),
        "GetTasksRecursive": lambda: floor_tasks_recursive(host),
    }
    for r in range(a.scale_rounds):
        for op in daemon_ops:
            sides = (("d", daemon_ops[op]), ("f", floor_ops[op]))
            for side, fn in sides if r % 2 == 0 else sides[::-1]:
                for _ in range(reps):
                    us, dcpu, _ = meter(fn, side == "d")
                    if side == "d":
                        add(op, us, dcpu)
                    else:
                        add(f"{op}_floor", us)
    res["rss_kb_present"] = proc_status(daemon.pid)
    for s in sleepers:  # back to the run root: the tree is empty now
        write_file(h.path(key, "cgroup.procs"), str(s.pid))

    for r in range(max(1, a.scale_removals // n)):
        if r:
            add("mkdir_floor", make_tree(host, n) * 1e6)
        us, _, _ = meter(lambda: floor_rmdir_all(host), False)
        add("Remove_floor", us)
        add("mkdir_floor", make_tree(host, n) * 1e6)
        us, dcpu, out = meter(lambda: call(OBJ, IFACE, "Remove", "ssi", (key, rel, 1)), True)
        expect(out == (1,) and not os.path.exists(host), f"Remove {key} {rel}: {out!r}")
        add("Remove", us, dcpu)
        add("mkdir_floor", make_tree(host, n) * 1e6)
        us, dcpu, out = meter(lambda: call(OBJ, IFACE, "Prune", "ss", (key, rel)), True)
        expect(not os.path.exists(host), f"Prune {key} {rel} left {host}")
        add("Prune", us, dcpu)
    daemon.check_alive()
    res["us"] = {k: median(v) for k, v in samples.items()}
    res["daemon_cpu_us"] = {k: median(v) for k, v in cpu.items()}
    res["samples"] = {k: len(v) for k, v in samples.items()}
    res["rss_kb_after_removal"] = proc_status(daemon.pid)
    return res


#: daemon op -> its floor (the key in res["us"])
OPS = (
    ("ListChildren", "ListChildren_floor"),
    ("GetTasksRecursive", "GetTasksRecursive_floor"),
    ("Remove", "Remove_floor"),
    ("Prune", "Remove_floor"),
    ("mkdir_floor", None),
)


def growth(rows: list[dict[str, Any]], op: str) -> dict[str, Any]:
    """Per-cgroup and marginal (slope between consecutive sizes) µs, and whether it is linear.
    Daemon operations are judged by the daemon's CPU time, which other load on the machine
    barely moves (their wall time it does); the mkdir floor by its wall time."""
    rows = sorted(rows, key=lambda r: r["n"])
    field = "daemon_cpu_us" if op in rows[0]["daemon_cpu_us"] else "us"
    per = {r["n"]: r[field][op] / r["n"] for r in rows}
    marginal = {}
    for lo, hi in zip(rows, rows[1:], strict=False):
        marginal[f"{lo['n']}-{hi['n']}"] = (hi[field][op] - lo[field][op]) / (hi["n"] - lo["n"])
    m = list(marginal.values())
    ratio = m[-1] / m[0] if len(m) >= 2 and m[0] > 0 else None
    if ratio is None:
        verdict = "–"
    else:
        verdict = (
            "linear" if 0.67 <= ratio <= 1.5 else "superlinear" if ratio > 1.5 else "sublinear"
        )
    return {
        "measure": field,
        "per_cgroup_us": per,
        "marginal_us": marginal,
        "marginal_ratio": ratio,
        "verdict": verdict,
    }


def run(h: Harness, a: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    daemon = h.start_daemon(label="scale")
    h.enter()
    meter = Meter(daemon)
    idle = proc_status(daemon.pid)
    sleepers = [h.sleeper() for _ in range(SLEEPERS)]  # born in the run root (both hierarchies)
    rows = []
    with connect(daemon.address, timeout=600) as conn:
        for key in KEYS:
            for n in a.scale_sizes:
                t0 = time.monotonic()
                rows.append(_size(h, conn, meter, key, n, sleepers, a, daemon))
                log(f"scale: {key} N={n} took {time.monotonic() - t0:.1f} s")
    for s in sleepers:
        s.stop()
        h.children.remove(s)
    end = proc_status(daemon.pid)
    h.stop_daemon(daemon)
    growth_by = (
        {
            key: {op: growth([r for r in rows if r["hierarchy"] == key], op) for op, _ in OPS}
            for key in KEYS
        }
        if len(a.scale_sizes) >= 2
        else {}
    )
    return {
        "sizes": list(a.scale_sizes),
        "hierarchies": list(KEYS),
        "sleepers": SLEEPERS,
        "rounds": a.scale_rounds,
        "rows": rows,
        "growth": growth_by,
        "rss_kb": {"idle": idle, "end": end},
    }


def print_summary(doc: dict[str, Any]) -> None:
    print(
        f"Scale: N child cgroups (flat) of one cgroup, {doc['sleepers']} sleeping processes "
        "spread over them; daemon and client on CPU 0; medians: wall ms per call, and daemon "
        "CPU µs per cgroup (the mkdir floor: wall µs per cgroup)"
    )
    head = ["hierarchy", "operation"]
    for n in doc["sizes"]:
        head += [f"N={n} ms", "CPU µs/cg"]
    head += ["floor ms @max", "×floor @max", "marginal CPU µs/cg", "growth"]
    rows = [tuple(head)]
    top = max(doc["sizes"])
    for key in doc["hierarchies"]:
        by_n = {r["n"]: r for r in doc["rows"] if r["hierarchy"] == key}
        for op, floor in OPS:
            row = [key, op]
            for n in doc["sizes"]:
                us = by_n[n]["us"][op]
                cpu = by_n[n]["daemon_cpu_us"].get(op, us)
                row += [f"{us / 1000:.2f}", f"{cpu / n:.1f}"]
            t = by_n[top]
            if floor:
                f = t["us"][floor]
                row += [f"{f / 1000:.2f}", f"{t['us'][op] / f:.1f}"]
            else:
                row += ["–", "–"]
            g = doc["growth"].get(key, {}).get(op)
            if g:
                row += ["/".join(f"{v:.1f}" for v in g["marginal_us"].values()), g["verdict"]]
            else:
                row += ["–", "–"]
            rows.append(tuple(row))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [
        "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    print("\n".join(lines))
    rss = doc["rss_kb"]
    present = ", ".join(
        f"{r['hierarchy']} N={r['n']}: {r['rss_kb_present']['VmRSS'] / 1024:.1f}"
        for r in doc["rows"]
        if r["n"] == top
    )
    print(
        f"  daemon VmRSS MB: idle {rss['idle']['VmRSS'] / 1024:.1f}; with the tree present "
        f"(after listing) {present}; at the end {rss['end']['VmRSS'] / 1024:.1f} "
        f"(peak {rss['end']['VmHWM'] / 1024:.1f})"
    )
