"""Empty and remove a cgroup subtree safely.

Used by the per-test `cgdir` teardown, the session cleanup and the sweeper. Only ever
called on trees this harness created (or stale `cgtest-*` roots of dead runs), so every
process found inside belongs to a test run. Processes are signalled through a pidfd
opened *before* re-checking membership, so a recycled pid is never hit.
"""

from __future__ import annotations

import errno
import os
import signal
import time

POLL = 0.005


def walk_top_down(path: str) -> list[str]:
    """All cgroup directories of the subtree, parents before children."""
    out = []
    for dirpath, _dirs, _files in os.walk(path, followlinks=False):
        out.append(dirpath)
    return out


def members(cgroup: str) -> list[int]:
    """Pids listed in cgroup.procs ([] if the cgroup is gone)."""
    try:
        with open(os.path.join(cgroup, "cgroup.procs")) as f:
            return [int(x) for x in f.read().split()]
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENODEV):  # removed under us
            return []
        raise


def subtree_members(path: str) -> dict[str, list[int]]:
    """cgroup -> pids, for every non-empty cgroup of the subtree."""
    out = {}
    for cg in walk_top_down(path):
        pids = members(cg)
        if pids:
            out[cg] = pids
    return out


def populated(path: str, version: int) -> bool:
    """Whether any process is left in the subtree (v2: cgroup.events; v1: a walk)."""
    if version == 2:
        try:
            with open(os.path.join(path, "cgroup.events")) as f:
                for line in f:
                    key, _, val = line.partition(" ")
                    if key == "populated":
                        return val.strip() == "1"
        except FileNotFoundError:
            return False
    return bool(subtree_members(path))


def kill_pid_in(pid: int, cgroup: str) -> bool:
    """SIGKILL `pid` only if it is (still) a member of `cgroup`; True if signalled."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    try:
        if pid not in members(cgroup):  # re-check after pinning the process
            return False
        signal.pidfd_send_signal(fd, signal.SIGKILL)
        return True
    except ProcessLookupError:
        return False
    finally:
        os.close(fd)


def thaw_v1(path: str) -> None:
    """Thaw every v1 freezer cgroup of the subtree: frozen tasks ignore SIGKILL until thawed."""
    for cg in walk_top_down(path):
        state_file = os.path.join(cg, "freezer.state")
        try:
            with open(state_file) as f:
                if f.read().strip() == "THAWED":
                    continue
            with open(state_file, "w") as f:
                f.write("THAWED")
        except OSError:
            pass


def kill_members(path: str, version: int) -> None:
    """Kill everything in the subtree: cgroup.kill on v2, pid by pid on v1."""
    if version == 2:
        try:
            with open(os.path.join(path, "cgroup.kill"), "w") as f:
                f.write("1")
            return
        except FileNotFoundError:
            if not os.path.isdir(path):
                return
        except OSError:
            pass  # fall back to killing pids one by one
    else:
        thaw_v1(path)
    for cg, pids in subtree_members(path).items():
        for pid in pids:
            kill_pid_in(pid, cg)


def wait_empty(path: str, version: int, timeout: float, *, kill: bool) -> bool:
    """Wait until the subtree holds no process, re-killing (forks race with kill)."""
    deadline = time.monotonic() + timeout
    while True:
        if not populated(path, version):
            return True
        if time.monotonic() > deadline:
            return False
        if kill:
            kill_members(path, version)
        time.sleep(POLL)


def rmdir_tree(path: str, timeout: float) -> list[str]:
    """rmdir bottom-up, retrying EBUSY (it lingers briefly after a kill). Returns problems."""
    deadline = time.monotonic() + timeout
    problems = []
    for cg in reversed(walk_top_down(path)):
        while True:
            try:
                os.rmdir(cg)
                break
            except FileNotFoundError:
                break
            except OSError as e:
                if e.errno in (errno.EBUSY, errno.EAGAIN) and time.monotonic() < deadline:
                    time.sleep(POLL)
                    continue
                problems.append(f"rmdir {cg}: {e.strerror} (members: {members(cg)})")
                break
    return problems


def destroy_tree(
    path: str, version: int, *, writable: bool = True, timeout: float = 5.0
) -> list[str]:
    """Kill the subtree's processes, wait for emptiness, rmdir it. Returns problems ([] = gone).

    writable=False (the v1 memory hierarchy) only tries rmdir: never write there.
    """
    if not os.path.isdir(path):
        return []
    problems: list[str] = []
    if writable:
        kill_members(path, version)
        if not wait_empty(path, version, timeout, kill=True):
            problems.append(f"{path}: still populated after {timeout}s: {subtree_members(path)}")
    problems += rmdir_tree(path, timeout if writable else min(timeout, 0.5))
    return problems
