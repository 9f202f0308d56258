"""The kernel floor: the work of each operation done directly on cgroupfs from Python, in the
bench process itself (pinned to the same CPU as the daemon), plus a bare Unix-socket echo round
trip as the floor of Ping (a call with no kernel work at all)."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass

from .harness import Fixture, Harness, expect
from .stats import Op

#: floor name -> what it does (for the report)
DESCRIPTIONS = {
    "echo": "Unix socket round trip to a Python echo process (no kernel cgroup work)",
    "read": "open + read + close pids.max",
    "getvalue_by_hand": "read /proc/<pid>/cgroup, realpath, stat, access, open+read+close",
    "mkdir_rmdir": "mkdir + rmdir of a cgroup",
    "write_pid": "write a pid to cgroup.procs (a move)",
    "listdir": "scandir of a cgroup, keep the directories",
    "read_procs": "read + parse cgroup.procs",
    "scandir_stat": "scandir + stat of every file of a cgroup",
}

ECHO = (
    "import socket, sys\n"
    "s = socket.socket(fileno=int(sys.argv[1]))\n"
    "while (d := s.recv(256)):\n"
    "    s.sendall(d)\n"
)


@dataclass
class Echo:
    """A Python echo process on one end of a socketpair (started by the harness)."""

    sock: socket.socket

    @classmethod
    def start(cls, h: Harness) -> Echo:
        mine, theirs = socket.socketpair()
        h.spawn(
            [sys.executable, "-I", "-S", "-c", ECHO, str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
        )
        theirs.close()
        return cls(mine)

    def op(self, i: int) -> None:
        self.sock.sendall(b"ping-request-of-about-the-size-of-a-small-dbus-message" * 2)
        self.sock.recv(256)

    def close(self) -> None:
        self.sock.close()  # the echo process sees EOF and exits


def floors(fx: Fixture, echo: Echo) -> dict[str, Op]:
    """The floor workloads, by name."""
    mypid = os.getpid()
    mount = fx.h.mounts["pids"]
    pids_max = fx.path("gv/pids.max")
    target = fx.hpath("gv")
    crf = fx.path("crf")
    moves = (fx.path("m2/cgroup.procs"), fx.path("m1/cgroup.procs"))
    mover = str(fx.mover.pid)
    kids, tasks, gv = fx.path("kids"), fx.path("sleepers/cgroup.procs"), fx.path("gv")

    def read(i: int) -> str:
        with open(pids_max) as f:
            return f.read()

    def getvalue_by_hand(i: int) -> str:
        with open(f"/proc/{mypid}/cgroup") as f:
            text = f.read()
        own = next(
            line.split(":", 2)[2]
            for line in text.splitlines()
            if "pids" in line.split(":", 2)[1].split(",")
        )
        if not (target + "/").startswith(own.rstrip("/") + "/"):
            raise PermissionError(target)
        path = os.path.realpath(f"{mount}{target}/pids.max")
        os.stat(path)
        if not os.access(path, os.R_OK):
            raise PermissionError(path)
        with open(path) as f:
            return f.read()

    def mkdir_rmdir(i: int) -> None:
        os.mkdir(crf)
        os.rmdir(crf)

    def write_pid(i: int) -> None:
        with open(moves[i & 1], "w") as f:
            f.write(mover)

    def listdir(i: int) -> list[str]:
        with os.scandir(kids) as it:
            return [e.name for e in it if e.is_dir(follow_symlinks=False)]

    def read_procs(i: int) -> list[int]:
        with open(tasks) as f:
            return [int(x) for x in f.read().split()]

    def scandir_stat(i: int) -> list[tuple[str, int, int, int]]:
        out = []
        with os.scandir(gv) as it:
            for e in it:
                if e.is_file(follow_symlinks=False):
                    st = e.stat(follow_symlinks=False)
                    out.append((e.name, st.st_uid, st.st_gid, st.st_mode))
        return out

    ops: dict[str, Callable[[int], object]] = {
        "echo": echo.op,
        "read": read,
        "getvalue_by_hand": getvalue_by_hand,
        "mkdir_rmdir": mkdir_rmdir,
        "write_pid": write_pid,
        "listdir": listdir,
        "read_procs": read_procs,
        "scandir_stat": scandir_stat,
    }
    return ops


def check(fx: Fixture, ops: dict[str, Op]) -> None:
    """One pass of every floor workload, checking it does the work it claims."""
    expect(ops["read"](0) == "max\n", "floor read of pids.max")
    expect(ops["getvalue_by_hand"](0) == "max\n", "floor GetValue by hand")
    ops["mkdir_rmdir"](0)
    ops["write_pid"](0)
    ops["write_pid"](1)  # the mover is back in m1
    expect(
        ops["listdir"](0) and len(ops["listdir"](0)) == fx.KIDS,  # type: ignore[arg-type]
        "floor listdir",
    )
    expect(
        sorted(ops["read_procs"](0)) == sorted(fx.task_pids),  # type: ignore[arg-type]
        "floor read cgroup.procs",
    )
    expect(
        any(k[0] == "pids.max" for k in ops["scandir_stat"](0)),  # type: ignore[union-attr]
        "floor scandir+stat",
    )
    ops["echo"](0)
