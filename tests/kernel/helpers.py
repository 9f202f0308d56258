"""Glue between the harness's absolute host paths and the layer's hierarchy paths."""

from __future__ import annotations

import os
import time

from cgmanager.cgroupfs import CgroupTree
from cgmanager.hierarchy import Layout, discover_host

_layout: Layout | None = None


def host_layout() -> Layout:
    global _layout
    if _layout is None:
        _layout = discover_host()
    return _layout


def tree(name: str) -> CgroupTree:
    """A CgroupTree over the host's own mount of hierarchy *name*."""
    return CgroupTree(host_layout().lookup(name))


def hpath(t: CgroupTree, abspath: str) -> str:
    """Absolute host path of a cgroup directory → its hierarchy path."""
    rel = os.path.relpath(abspath, t.mountpoint)
    return "/" if rel == "." else "/" + rel


def wait_for(pred, timeout: float = 10.0, interval: float = 0.01) -> bool:
    """Poll *pred* until true (a hang guard, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return pred()


def snapshot(abspath: str) -> dict[str, tuple[int, int, int]]:
    """Every directory and file below *abspath* with owner, group and mode: used to assert
    that a refused request changed nothing on the kernel side."""
    result = {}
    for dirpath, dirnames, filenames in os.walk(abspath):
        for n in [*dirnames, *filenames, ""]:
            p = os.path.join(dirpath, n) if n else dirpath
            st = os.lstat(p)
            result[os.path.relpath(p, abspath)] = (st.st_uid, st.st_gid, st.st_mode)
    return result
