"""Host-side checks for the proxy tests: cgroup snapshots, pid translation, dbus-send output."""

from __future__ import annotations

import fcntl
import os
import re

from proxy import container as ct


def snapshot(cgroots) -> dict[str, tuple[int, int, int]]:
    """Every cgroup directory below the run's roots with its owner and mode: what a refused
    request must leave unchanged."""
    out: dict[str, tuple[int, int, int]] = {}
    for _h, root in cgroots.items():
        for dirpath, _dirs, _files in os.walk(root):
            try:
                st = os.stat(dirpath)
            except FileNotFoundError:
                continue
            out[dirpath] = (st.st_uid, st.st_gid, st.st_mode)
    return out


NS_GET_PARENT = 0xB702  # _IO(0xb7, 0x2)


def _nspid(pid: int) -> list[int]:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("NSpid:"):
                return [int(x) for x in line.split()[1:]]
    return []


def _pidns_at(pid: int, depth: int) -> int:
    """Inode of the pid namespace *depth* levels above that of *pid*."""
    fd = os.open(f"/proc/{pid}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        for _ in range(depth):
            parent = fcntl.ioctl(fd, NS_GET_PARENT)
            os.close(fd)
            fd = parent
        return os.fstat(fd).st_ino
    finally:
        os.close(fd)


def host_pid(pid1_host: int, inner: int) -> int:
    """The host pid of the process that the pid namespace of host pid *pid1_host* (or one
    nested in it) calls *inner*."""
    want = os.stat(f"/proc/{pid1_host}/ns/pid").st_ino
    level = len(_nspid(pid1_host)) - 1
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            ids = _nspid(int(name))
            if (
                len(ids) > level
                and ids[level] == inner
                and _pidns_at(int(name), len(ids) - 1 - level) == want
            ):
                return int(name)
        except (OSError, ValueError):
            continue
    raise LookupError(f"no process {inner} in the pid namespace of {pid1_host}")


def in_box(box: ct.Container, inner: int) -> int:
    """Host pid of container pid *inner*."""
    return host_pid(box.child.inner_pid, inner)


def host_cgroup(pid: int, key: str) -> str:
    """The cgroup of host pid *pid* in hierarchy *key* (``pids``, ``unified``…), host view."""
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            hid, ctrls, path = line.rstrip("\n").split(":", 2)
            if key == "unified" and hid == "0" and not ctrls:
                return path
            if key != "unified" and ctrls and key.split(",")[0] in ctrls.split(","):
                return path
    raise LookupError(f"{pid} has no {key} cgroup")


def hpath(cgroots, key: str, abspath: str) -> str:
    """A host cgroup directory as a hierarchy path (how /proc/<pid>/cgroup shows it)."""
    name = key.split(",")[0].removeprefix("name=")
    mount = cgroots.mount(name if name != "systemd" else "systemd")
    return "/" + os.path.relpath(abspath, mount)


def owner(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return (st.st_uid, st.st_gid)


def read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def dbus_strings(out: str) -> list[str]:
    return re.findall(r'string "([^"]*)"', out)


def dbus_ints(out: str) -> list[int]:
    return [int(x) for x in re.findall(r"int32 (-?\d+)", out)]


def ok(res: tuple):
    """The reply body of a successful py_call; fails the test with the error otherwise."""
    assert res[0] == "ok", res
    return res[1]


def refused(res: tuple, kind: str | None = None) -> str:
    """A py_call that must fail; returns the message."""
    assert res[0] == "err", res
    if kind is not None:
        assert res[1] == ct.ERR + kind, res
    return res[2]
