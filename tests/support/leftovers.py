"""What a run must not leave behind: cgroups, mounts, users, processes, the hugetlb hold.

Checked after every fixture is torn down; anything found is printed and fails the run.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import cgroots as _cgroots
from . import hugetlb, mounts, users

if TYPE_CHECKING:
    from .run import Run


@dataclass(frozen=True)
class MountSnapshot:
    """Mount ids -> description, of our mount namespace and of pid 1's."""

    own: dict[int, str]
    pid1: dict[int, str]


def _mount_map(pid: str | int) -> dict[int, str]:
    try:
        return {e.mount_id: e.describe() for e in mounts.read_mountinfo(pid)}
    except OSError:
        return {}


def snapshot_mounts() -> MountSnapshot:
    return MountSnapshot(own=_mount_map("self"), pid1=_mount_map(1))


def new_mounts(start: MountSnapshot) -> list[str]:
    """Mounts present now that were not there at the start.

    (pid 1's namespace is shared with other test runs, which may briefly add mounts too;
    a mount that outlives a run is a leak either way.)
    """
    now = snapshot_mounts()
    out = [f"mount {d} (our mount namespace)" for i, d in now.own.items() if i not in start.own]
    out += [
        f"mount {d} (pid 1's mount namespace)"
        for i, d in now.pid1.items()
        if i not in start.pid1 and i not in now.own
    ]
    return out


def live_children() -> list[tuple[int, str]]:
    """Our direct children that are not zombies: (pid, cmdline)."""
    out = []
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/children") as f:
                pids = [int(x) for x in f.read().split()]
        except OSError:
            continue
        for pid in pids:
            try:
                with open(f"/proc/{pid}/stat", "rb") as f:
                    state = f.read().rsplit(b")", 1)[1].split()[0]
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                continue
            if state not in (b"Z", b"X"):
                out.append((pid, cmd))
    return out


def kill_children(children: list[tuple[int, str]]) -> None:
    """SIGKILL leftover direct children by pidfd (they are ours by definition)."""
    for pid, _cmd in children:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            signal.pidfd_send_signal(fd, signal.SIGKILL)
        except ProcessLookupError:
            pass
        finally:
            os.close(fd)
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


def find(run: Run) -> list[str]:
    """Everything this run left behind (empty list: clean)."""
    left: list[str] = []
    hs = mounts.hierarchies()
    if run.roots_name:
        for h in hs:
            path = os.path.join(h.mount, run.roots_name)
            if os.path.exists(path):
                left.append(f"cgroup {path} ({h.label})")
    for path in _cgroots.marked_roots(run.mark, hs):
        if not run.roots_name or os.path.basename(path) != run.roots_name:
            left.append(f"cgroup {path} (marked {run.mark})")
    for path, _version, _w in run.extra_cgroups:
        if os.path.exists(path):
            left.append(f"cgroup {path} (created outside the run root)")
    left += new_mounts(run.mounts_start)
    for u in run.all_users:
        left += users.user_leftovers(u)
    for h in run.processes:
        if h.alive():
            left.append(f"process {h.pid} still alive: {h!r}")
    for pid, cmd in live_children():
        left.append(f"process {pid} (a child of the test run, not tracked): {cmd}")
    if hugetlb.holder_exists(run.mark):
        left.append(f"hugetlb holder {hugetlb.HOLDERS}/{run.mark}")
    return left
