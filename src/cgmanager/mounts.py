"""The daemon's private view of the hierarchies: ``/run/cgmanager/fs/<controller>``.

The daemon unshares a mount namespace and bind-mounts each served hierarchy's existing mount
there, visible to no other process.  Binding (rather than mounting afresh) follows the rule
for cgroup2: a fresh cgroup2 mount from the initial cgroup namespace would re-apply *global*
mount options (nsdelegate, memory_recursiveprot) for the whole host; a bind mount changes
nothing.  ``/`` is made a recursive *slave* in the new namespace, so unmounts on the host still
reach the daemon (it pins no host mount) while nothing the daemon mounts leaks back.
"""

from __future__ import annotations

import dataclasses
import logging
import os

from . import _linux
from .hierarchy import Hierarchy, Layout

log = logging.getLogger(__name__)

DEFAULT_FS_DIR = "/run/cgmanager/fs"


def enter_private_namespace() -> None:
    """unshare(CLONE_NEWNS) and stop propagation towards the host."""
    _linux.unshare(_linux.CLONE_NEWNS)
    _linux.mount(None, "/", None, _linux.MS_REC | _linux.MS_SLAVE)


def mount_hierarchies(layout: Layout, fs_dir: str = DEFAULT_FS_DIR) -> Layout:
    """Mount a small tmpfs at *fs_dir* and bind every served hierarchy below it, one directory
    per controller name (``cpu`` and ``cpuacct`` both show the ``cpu,cpuacct`` hierarchy, as in
    0.42).  Must run inside a private mount namespace.  Returns the layout with each
    hierarchy's mount point moved to its private mount."""
    os.makedirs(fs_dir, mode=0o755, exist_ok=True)
    _linux.mount(
        "cgmfs",
        fs_dir,
        "tmpfs",
        _linux.MS_NOSUID | _linux.MS_NODEV | _linux.MS_NOEXEC,
        "size=100k,mode=0755",
    )
    moved: list[Hierarchy] = []
    for h in layout.hierarchies:
        first = None
        for name in h.mount_names:
            target = os.path.join(fs_dir, name)
            os.mkdir(target, 0o755)
            _linux.mount(h.mountpoint, target, None, _linux.MS_BIND)
            first = first or target
            log.debug("mounted %s at %s", h.key, target)
        moved.append(dataclasses.replace(h, mountpoint=first or h.mountpoint))
    return dataclasses.replace(layout, hierarchies=tuple(moved))


def setup(layout: Layout, fs_dir: str = DEFAULT_FS_DIR) -> Layout:
    """Enter a private mount namespace and mount the served hierarchies there."""
    enter_private_namespace()
    return mount_hierarchies(layout, fs_dir)
