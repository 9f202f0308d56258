"""cgroup v2's no-internal-process rule, made transparent to 0.42 clients.

v2 allows no processes in a cgroup that passes controllers to its children.  When a controller
must be enabled where processes sit (a client that moved itself into ``X`` now limits
``X/child``), the processes of ``X`` first move into ``X/.cgm_leaf`` — only if the requestor may
move every one of them — and a MovePid into such a cgroup lands in its leaf.  The leaf is made
only when the rule bites, owned like its parent, hidden from listings, counted as its parent by
GetPidCgroup, and removed with its parent.
"""

from __future__ import annotations

import logging

from .. import names
from ..errors import Busy, NotFound, Unsupported
from ..hierarchy import Hierarchy
from ..permission import Access, may_move, require_access
from ..victim import Victim
from .context import V2_LEAF, Manager, Request
from .targets import owner, reworded, tree

log = logging.getLogger("cgmanager.operations")

_SUBTREE_CONTROL = "cgroup.subtree_control"


def leaf(m: Manager, req: Request, h: Hierarchy, path: str) -> str:
    """path/.cgm_leaf, created if needed and owned like *path* (so its owner keeps the same
    control over the processes moved there)."""
    t = tree(req, m, h)
    path_leaf = names.join(path, V2_LEAF)
    with reworded(f"create {path_leaf}"):
        made = t.mkdir(path_leaf)
    if made:
        st = t.stat(path)
        if st.st_uid != 0 or st.st_gid != 0:
            t.chown(path_leaf, st.st_uid, st.st_gid)
    return path_leaf


def make_room(m: Manager, req: Request, h: Hierarchy, path: str, shown: str) -> bool:
    """Move the processes of *path* into its leaf so controllers can be enabled for its
    children.  Only if the requestor may move every one of them; False if there are none.

    Each is pinned by a pidfd from its check to its move, must still be in *path* when pinned,
    and must still be alive right before the write: a pid recycled meanwhile names a stranger,
    who is never carried into the leaf."""
    t = tree(req, m, h)
    pids = t.procs(path)
    if not pids:
        return False
    victims: list[Victim] = []
    try:
        for pid in pids:
            try:
                v = Victim.open(pid, m.layout)
            except NotFound:
                continue
            victims.append(v)
            if v.cgroups.get(h.key) != path:
                continue  # left, or its pid was recycled: not ours to move
            if not may_move(req.r, v.pid, v.real_uid):
                raise Busy(
                    f"{shown} holds processes of other users; controllers cannot be"
                    " enabled for its children (cgroup v2 allows no processes there)"
                )
        into = leaf(m, req, h, path)
        for v in victims:
            if v.cgroups.get(h.key) != path or not v.alive():
                continue  # exited meanwhile: its pid may name another process now
            try:
                t.move(into, v.pid)
            except NotFound:
                continue
    finally:
        for v in victims:
            v.close()
    log.info("moved %d process(es) of %s:%s into %s", len(pids), h.key, path, V2_LEAF)
    return True


def enable(
    m: Manager, req: Request, h: Hierarchy, path: str, shown: str, wanted: list[str]
) -> None:
    """Make *wanted* v2 controllers available to the children of *path*."""
    t = tree(req, m, h)
    have = set(t.read(path, _SUBTREE_CONTROL).split())
    missing = [c for c in wanted if c not in have]
    if not missing:
        return
    available = set(t.read(path, "cgroup.controllers").split())
    for c in missing:
        if c not in available:
            raise Unsupported(
                f"controller {c} is not available in {shown}: it must be enabled above it"
            )
    key_owner = owner(t, path, _SUBTREE_CONTROL, shown)
    require_access(req.r, key_owner, Access.WRITE, f"{shown} {_SUBTREE_CONTROL}")
    write_subtree_control(m, req, h, path, shown, " ".join("+" + c for c in missing))


def write_subtree_control(
    m: Manager, req: Request, h: Hierarchy, path: str, shown: str, value: str
) -> None:
    """Write ``cgroup.subtree_control``, making room in the leaf when the kernel says the
    cgroup holds processes (EBUSY)."""
    t = tree(req, m, h)
    what = f"write {shown} {_SUBTREE_CONTROL}"
    try:
        try:
            with reworded(what):
                t.write(path, _SUBTREE_CONTROL, value)
        except Busy:
            if not make_room(m, req, h, path, shown):
                raise
            with reworded(what):
                t.write(path, _SUBTREE_CONTROL, value)
    except NotFound:  # the kernel's ENOENT: a controller its parent does not pass on
        raise Unsupported(
            f"{what}: a controller in {value.strip()!r} is not available in {shown};"
            " it must be enabled above it first"
        ) from None
