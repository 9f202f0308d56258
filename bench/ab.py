"""A/B of two source trees of the daemon: its CPU per request, same clients, same run.

    python -m bench.ab --a /tmp/snap/src --b src [--ops Ping,GetValue] [--clients libdbus,ours]
                       [--modes b2b,think] [--calls 2000] [--rounds 6] [--loop asyncio|uvloop]

How each change to the transport was judged (docs/PERFORMANCE.md): two daemons, each started
with its tree first on PYTHONPATH (``git archive <rev> src | tar -x -C DIR`` makes a tree),
both pinned to CPU 0 with the clients of bench/matrix.py (also on CPU 0), batches interleaved
A B B A …; daemon CPU per request from schedstat; B ÷ A per cell, with each round's figures so
the spread shows.  Not confined (a transport change does not need it); not part of ``python -m
bench``.  Extra daemon environment per side: ``--a-env K=V``, ``--b-env K=V``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from typing import Any

from .harness import BenchError, Harness, cpu_ns
from .matrix import OPS, Persistent, build_libdbus_client, plans
from .stats import median


def fixture(h: Harness) -> int:
    for rel in ("gv", "m1", "m2", "kids", "sleepers"):
        h.mkdir(rel, ("pids",))
    for i in range(10):
        h.mkdir(f"kids/c{i}", ("pids",))
    for _ in range(4):
        h.sleeper("sleepers")
    return h.sleeper("m1").pid


def start(h: Harness, label: str, tree: str, env: list[str]) -> Any:
    e = {"PYTHONPATH": os.path.abspath(tree)}
    e.update(kv.split("=", 1) for kv in env)  # type: ignore[arg-type]
    old = {k: os.environ.get(k) for k in e}
    os.environ.update(e)
    try:
        return h.start_daemon(label=label)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__)
    p.add_argument("--a", required=True, help="source tree A (its src/ directory)")
    p.add_argument("--b", required=True, help="source tree B")
    p.add_argument("--a-env", action="append", default=[])
    p.add_argument("--b-env", action="append", default=[])
    p.add_argument("--ops", default="Ping,GetValue")
    p.add_argument("--clients", default="libdbus,ours")
    p.add_argument("--modes", default="b2b,think")
    p.add_argument("--think-us", type=int, default=1000)
    p.add_argument("--calls", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=6)
    a = p.parse_args(argv)
    ops = [o for o in a.ops.split(",") if o]
    bad = set(ops) - set(OPS)
    if bad:
        p.error(f"unknown ops {sorted(bad)}")
    with Harness() as h:
        mover = fixture(h)
        h.enter()
        daemons = {
            "A": start(h, "a", a.a, a.a_env),
            "B": start(h, "b", a.b, a.b_env),
        }
        binary = build_libdbus_client(h.tmp)
        clients: dict[tuple[str, str], Persistent] = {}
        for side, d in daemons.items():
            for c in a.clients.split(","):
                argv_c = (
                    [binary, d.address]
                    if c == "libdbus"
                    else [sys.executable, "-m", "bench.clients.py_client", c, d.address]
                )
                clients[c, side] = Persistent(argv_c)
        table = plans(mover)
        print(f"B ÷ A, daemon CPU µs per request (median of {a.rounds} rounds × {a.calls})")
        try:
            for c in a.clients.split(","):
                for mode in a.modes.split(","):
                    think = a.think_us if mode == "think" else 0
                    for op in ops:
                        cpu: dict[str, list[float]] = {"A": [], "B": []}
                        for r in range(a.rounds):
                            for side in ("A", "B") if r % 2 == 0 else ("B", "A"):
                                cl, pid = clients[c, side], daemons[side].pid
                                cl.batch(20, 0, table[op])
                                d0 = cpu_ns(pid)
                                cl.batch(a.calls, think, table[op])
                                cpu[side].append((cpu_ns(pid) - d0) / a.calls / 1000)
                        ma, mb = median(cpu["A"]), median(cpu["B"])
                        print(
                            f"{c:<8} {mode:<5} {op:<14} A {ma:7.1f}  B {mb:7.1f}  "
                            f"B÷A {mb / ma:5.2f}   A {[round(x, 1) for x in cpu['A']]} "
                            f"B {[round(x, 1) for x in cpu['B']]}",
                            flush=True,
                        )
        finally:
            for cl in clients.values():
                cl.close()
        for d in daemons.values():
            d.check_alive()
            h.stop_daemon(d)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (BenchError, subprocess.CalledProcessError) as e:
        print(f"bench.ab: FAILED: {e}", file=sys.stderr)
        sys.exit(1)
