"""Measure server CPU per call over one persistent connection (not a test; run by hand).

    taskset -c 0 .venv/bin/python tests/dbus/perf_ping.py [calls] [rounds] [idle-connections]

Starts the toy server as a child process (inheriting the CPU pinning), then calls
``org.example.Test.Ping(i)`` with the blocking Python client.  Reports, per round, the server's
CPU time per call from ``/proc/<pid>/schedstat`` (the steadiest figure on these machines) and the
client's round-trip latency; prints medians.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time

SERVER = r"""
import asyncio, sys
sys.path.insert(0, sys.argv[2])
from toy import ToyState, make_objects
from cgmanager.dbus.server import Limits, Server
async def main():
    s = Server(make_objects(ToyState()),
               limits=Limits(max_connections=10000, max_connections_per_uid=10000))
    await s.start(sys.argv[1])
    print("ready", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def cpu_ns(pid: int) -> int:
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0])


def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    idle = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    from cgmanager.dbus.client import connect

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "sock")
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, path, os.path.dirname(os.path.abspath(__file__))],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout.readline().strip() == "ready"
            idlers = [connect(f"unix:path={path}") for _ in range(idle)]
            if idle:
                print(f"{idle} idle authenticated connections open")
            with connect(f"unix:path={path}") as c:
                for member, sig, body in [("Ping", "i", (0,)), ("EchoS", "s", ("x" * 20,))]:
                    for _ in range(2000):  # warm-up
                        c.call(
                            "/org/linuxcontainers/cgmanager", "org.example.Test", member, sig, body
                        )
                    cpu, lat = [], []
                    for _ in range(rounds):
                        c0, t0 = cpu_ns(proc.pid), time.perf_counter()
                        for _ in range(calls):
                            c.call(
                                "/org/linuxcontainers/cgmanager",
                                "org.example.Test",
                                member,
                                sig,
                                body,
                            )
                        t1, c1 = time.perf_counter(), cpu_ns(proc.pid)
                        cpu.append((c1 - c0) / calls / 1000)
                        lat.append((t1 - t0) / calls * 1e6)
                    print(
                        f"{member}: server CPU/call median {statistics.median(cpu):.1f} µs "
                        f"(rounds {', '.join(f'{x:.1f}' for x in cpu)}); round trip median "
                        f"{statistics.median(lat):.1f} µs"
                    )
            for i in idlers:
                i.close()
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
