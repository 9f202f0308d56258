"""Making, handing over and removing cgroups: Create, Chown, Chmod, Remove (0.42).

All relative-family: the cgroup is below the requestor's own.  Multi-controller requests follow
0.42's rule (:class:`~.targets.Denials`).
"""

from __future__ import annotations

from collections.abc import Sequence

from .. import names
from ..cgroupfs import CgroupTree
from ..errors import Busy, CgmError, InvalidArgument, NotFound, NotPermitted
from ..hierarchy import Hierarchy
from ..permission import (
    Access,
    may_hand_over,
    require_access,
    require_depth,
    require_may_chown,
    require_mode,
    require_not_base,
    require_valid_id,
)
from ..victim import Victim
from .context import V2_LEAF, Manager, Request
from .leaf import enable
from .targets import Denials, below, childless, components, owner, reworded, show, tree


def create(m: Manager, req: Request, controller: str, cgroup: str) -> int:
    """Create *cgroup* below the requestor's cgroup in each hierarchy; existed = 1 when it
    already existed in any of them, else -1 (never 0: old clients mishandle it)."""
    parts = components(m, cgroup)
    if not parts:
        return -1
    hs = m.layout.resolve(controller)
    asked = [c for c in controller.split(",") if c]
    existed = False
    denials = Denials(hs)
    for h in hs:
        with denials.skip(h):
            wanted = [c for c in asked if h.version == 2 and c in h.controllers]
            existed |= create_in(m, req, h, parts, wanted)
    denials.settle()
    return 1 if existed else -1


def create_in(
    m: Manager,
    req: Request,
    h: Hierarchy,
    parts: tuple[str, ...],
    wanted: Sequence[str] = (),
    made: list[str] | None = None,
    new: bool = False,
) -> bool:
    """Create the components below the requestor's cgroup in *h*; True if the cgroup existed.

    On v2, *wanted* controllers (the v2 controllers the client named, e.g. ``memory``) are
    enabled top-down from the requestor's own cgroup so the new cgroup has them — never above
    it.  The cgroups made are appended to *made* as soon as they exist (Setup's rollback);
    with *new*, an existing cgroup is Busy (Setup makes new cgroups only)."""
    t, r = tree(req, m, h), req.r
    base, target, shown = below(m, req.requestor, h, parts)
    require_depth(names.depth(target) - names.depth(m.base(h)), m.max_depth, shown)
    cur, existed = base, True
    for part in parts:
        cur_shown = show(h, cur, base)
        if wanted:
            enable(m, req, h, cur, cur_shown, list(wanted))
        nxt = names.join(cur, part)
        nxt_shown = show(h, nxt, base)
        if t.exists(nxt):
            if new and nxt == target:
                raise Busy(f"{nxt_shown}: already exists (Setup makes new cgroups only)")
            require_access(r, owner(t, nxt, None, nxt_shown), Access.READ, nxt_shown)
            existed = True
        else:
            require_access(r, owner(t, cur, None, cur_shown), Access.READ_WRITE, cur_shown)
            with reworded(f"create {nxt_shown}"):
                made_now = t.mkdir(nxt)
            if made_now:
                if made is not None:
                    made.append(nxt)
                _inherit_cpuset(t, cur, nxt)
                if r.uid != 0 or r.gid != 0:
                    try:
                        t.chown_all(nxt, r.uid, r.gid)
                    except CgmError:
                        t.rmdir(nxt)
                        raise
            if not made_now and new and nxt == target:
                raise Busy(f"{nxt_shown}: already exists (Setup makes new cgroups only)")
            existed = not made_now  # (made concurrently by someone else: it existed)
        cur = nxt
    return existed


def _inherit_cpuset(t: CgroupTree, parent: str, child: str) -> None:
    """A new v1 cpuset cgroup has no cpus and mems, so nothing can be moved into it (ENOSPC).
    0.42 set the host-global ``cgroup.clone_children``; we copy the parent's values into each
    cgroup we create instead."""
    if t.v2 or "cpuset" not in t.hierarchy.controllers:
        return
    for key in ("cpuset.cpus", "cpuset.mems"):
        try:
            t.write(child, key, t.read(parent, key).strip() or "\n")
        except CgmError as e:
            t.rmdir(child)
            raise type(e)(f"cpuset of {child}: {e.reason}", reason=e.reason) from None


def chown(m: Manager, req: Request, controller: str, cgroup: str, uid: int, gid: int) -> None:
    """Hand a cgroup to uid:gid (the directory and the kernel's delegation files)."""
    require_may_chown(req.r)
    require_valid_id(uid, "uid")
    require_valid_id(gid, "gid")
    parts = components(m, cgroup)
    hs = m.layout.resolve(controller)
    for h in hs:  # tree-sized (every process below is checked): known small, or a worker's
        req.scope.expect_small(
            uid == 0 or childless(tree(req, m, h), below(m, req.requestor, h, parts).path)
        )
    denials = Denials(hs)
    for h in hs:
        with denials.skip(h):
            chown_in(m, req, h, parts, uid, gid)
    denials.settle()


def chown_in(
    m: Manager, req: Request, h: Hierarchy, parts: tuple[str, ...], uid: int, gid: int
) -> None:
    t = tree(req, m, h)
    _, target, shown = below(m, req.requestor, h, parts)
    require_not_base(target, m.base(h), shown)
    require_access(req.r, owner(t, target, None, shown), Access.READ_WRITE, shown)
    if uid != 0:
        _no_foreign_processes(m, req, h, target, shown, uid)
        if t.v2:
            for key, limit in m.quota.items():  # before the hand-over: its owner cannot raise it
                with reworded(f"quota of {shown}"):
                    t.write(target, key, str(limit))
    with reworded(f"chown {shown}"):
        t.chown(target, uid, gid)


def _no_foreign_processes(
    m: Manager, req: Request, h: Hierarchy, path: str, shown: str, uid: int
) -> None:
    t = tree(req, m, h)
    pids = t.procs(path) if childless(t, path) else t.procs_recursive(path)
    for pid in pids:
        try:
            with Victim.open(pid, m.layout) as v:
                if not may_hand_over(uid, req.r.pid, pid, v.uid):
                    raise NotPermitted(
                        f"not permitted: {shown} holds process {pid} of another user than"
                        f" uid {uid}; it cannot be delegated to uid {uid}"
                    )
        except NotFound:
            continue


def chmod(m: Manager, req: Request, controller: str, cgroup: str, file: str, mode: int) -> None:
    """chmod the cgroup directory (*file* ``""``) or one of its files."""
    if "/" in file or "\\" in file:
        raise InvalidArgument("invalid file: must be a file name, without '/' or '\\'")
    key = file or None
    if key is not None:
        names.check_key(key)
    require_mode(mode)
    parts = components(m, cgroup)
    hs = m.layout.resolve(controller)
    denials = Denials(hs)
    for h in hs:
        with denials.skip(h):
            t = tree(req, m, h)
            _, target, shown = below(m, req.requestor, h, parts)
            require_not_base(target, m.base(h), shown)
            require_access(req.r, owner(t, target, key, shown), Access.READ_WRITE, shown)
            with reworded(f"chmod {shown}"):
                t.chmod(target, key, mode)
    denials.settle()


def remove(m: Manager, req: Request, controller: str, cgroup: str, recursive: int) -> int:
    """Remove a cgroup (recursively unless *recursive* is 0, as 0.42); existed 1 / -1."""
    parts = components(m, cgroup)
    hs = m.layout.resolve(controller)
    if recursive:
        for h in hs:
            req.scope.expect_small(
                childless(tree(req, m, h), below(m, req.requestor, h, parts).path)
            )
    existed = False
    denials = Denials(hs)
    for h in hs:
        with denials.skip(h):
            existed |= remove_in(m, req, h, parts, recursive != 0)
    denials.settle()
    return 1 if existed else -1


def remove_in(
    m: Manager, req: Request, h: Hierarchy, parts: tuple[str, ...], recursive: bool
) -> bool:
    """Remove in one hierarchy; False if it did not exist.  Like rmdir(2) for the caller: it
    needs write access to the parent of everything removed, and a busy tree is refused before
    anything is removed."""
    t = tree(req, m, h)
    base, working, shown = below(m, req.requestor, h, parts)
    if not t.exists(working):
        return False
    require_not_base(working, m.base(h), shown)
    doomed = t.walk(working) if recursive else [working]
    for d in doomed:
        parent = names.parent(d)
        pshown = show(h, parent, base)
        require_access(req.r, owner(t, parent, None, pshown), Access.WRITE, pshown)
    if not recursive and t.v2 and t.children(working) == [V2_LEAF]:
        recursive = True  # only the daemon's leaf below: it goes with its cgroup
    with reworded(f"remove {shown}"):
        t.remove(working, recursive)
    return True
