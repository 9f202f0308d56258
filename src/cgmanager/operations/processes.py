"""Processes and cgroups: GetPidCgroup(Abs), MovePid(Abs), GetTasks, GetTasksRecursive (0.42).

A process acted on (the *victim*) is pinned by a pidfd before any check
(:class:`~cgmanager.victim.Victim`); the kernel's ``cgroup.procs`` takes a pid, so liveness is
checked again right before each write and after the move.
"""

from __future__ import annotations

import logging

from .. import names
from ..errors import Busy, CgmError, InvalidArgument, NotFound, NotPermitted
from ..hierarchy import Hierarchy
from ..permission import Access, delegatee_accepts, may_move, require_access
from ..victim import Victim
from .context import V2_LEAF, Manager, Request
from .leaf import leaf
from .targets import below, childless, components, logical, lookup, own, owner, reworded, tree

log = logging.getLogger("cgmanager.operations")


def get_pid_cgroup(
    m: Manager, req: Request, controller: str, pid: int, *, absolute: bool, pidfd: int | None = None
) -> str:
    """The cgroup of *pid*, relative to the requestor's cgroup (``xxx/b``, or ``/`` when the
    same) or, *absolute*, to the proxy's (``/xxx/b``)."""
    h = m.layout.resolve_one(controller)
    base = own(m, req.proxy if absolute else req.requestor, h)
    with Victim.open(pid, m.layout, pidfd) as v:
        where = v.cgroups.get(h.key)
    where = where and logical(h, where)
    if where is None or not names.is_under(where, base):
        raise NotFound(f"process {pid}: not found in a {h.key} cgroup below the caller's")
    rel = names.relative_to(where, base)
    if absolute:
        return "/" + rel
    return rel or "/"


def require_movable(req: Request, v: Victim) -> None:
    if not may_move(req.r, v.pid, v.real_uid):
        raise NotPermitted(f"not permitted to move process {v.pid}: it belongs to another user")


def move_pid(
    m: Manager,
    req: Request,
    controller: str,
    cgroup: str,
    pid: int,
    *,
    absolute: bool,
    pidfd: int | None = None,
) -> None:
    """Move process *pid* into *cgroup*, below the requestor's cgroup (MovePid) or the proxy's
    (MovePidAbs: the only way up, and never above the proxy)."""
    if not absolute and cgroup.startswith("/"):
        raise InvalidArgument("invalid cgroup: MovePid takes a relative path (use MovePidAbs)")
    parts = components(m, cgroup)
    hs = m.layout.resolve(controller)
    with Victim.open(pid, m.layout, pidfd) as v:
        require_movable(req, v)
        failures: list[CgmError] = []
        for h in hs:
            try:
                move_in(m, req, h, parts, v, absolute)
            except CgmError as e:
                failures.append(e)
        if not v.alive():
            # it was alive right before each write, but the kernel takes a pid: had it died
            # and its pid been recycled in between, the write may have hit another process,
            # so this is never reported as success
            log.warning("process %d exited during a move", pid)
            failures.insert(0, NotFound(f"process {pid}: exited during the move"))
    if failures:
        raise failures[0]


def move_in(
    m: Manager, req: Request, h: Hierarchy, parts: tuple[str, ...], v: Victim, absolute: bool
) -> None:
    """Move the (pinned, already judged movable) victim into the target in one hierarchy."""
    t = tree(req, m, h)
    base, target, shown = below(m, req.proxy if absolute else req.requestor, h, parts)
    where = v.cgroups.get(h.key)
    where = where and logical(h, where)
    if where is None or not names.is_under(where, base):
        raise NotPermitted(
            f"not permitted to move process {v.pid}: it is not in a {h.key} cgroup below"
            " the caller's"
        )
    directory = owner(t, target, None, shown)
    require_access(req.r, directory, Access.READ, shown)
    procs = owner(t, target, t.procs_file, shown)
    require_access(req.r, procs, Access.WRITE, f"{shown} {t.procs_file}")
    if not delegatee_accepts(req.r, directory.uid, v.pid, v.real_uid):
        raise NotPermitted(
            f"not permitted to move process {v.pid} into {shown}: it is delegated to uid"
            f" {req.r.uid_as_seen(directory.uid)}, and the process belongs to another user"
        )
    v.require_alive()
    try:
        with reworded(f"move {v.pid} to {shown}"):
            t.move(target, v.pid)
    except Busy:
        if not t.v2:
            raise
        # the target passes controllers to its children: its processes live in its leaf
        into = leaf(m, req, h, target)
        with reworded(f"move {v.pid} to {shown}"):
            t.move(into, v.pid)


def tasks(m: Manager, req: Request, h: Hierarchy, path: str) -> list[int]:
    """The tasks listed for one cgroup: v1 threads (``tasks``, as 0.42 listed), v2 processes
    (its leaf's included)."""
    t = tree(req, m, h)
    if not t.v2:
        return t.threads(path)
    pids = t.procs(path)
    path_leaf = names.join(path, V2_LEAF)
    if t.exists(path_leaf):
        pids += t.procs(path_leaf)
    return pids


def get_tasks(m: Manager, req: Request, controller: str, cgroup: str) -> list[int]:
    h = m.layout.resolve_one(controller)
    _, path, shown = lookup(m, req, h, cgroup)
    require_access(req.r, owner(tree(req, m, h), path, None, shown), Access.READ, shown)
    with reworded(f"list tasks of {shown}"):
        return sorted(set(tasks(m, req, h, path)))


def get_tasks_recursive(m: Manager, req: Request, controller: str, cgroup: str) -> list[int]:
    """Union over hierarchies; a hierarchy where the cgroup is missing or unreadable is
    skipped, one outside the caller's reach fails the call.  Missing or unreadable in every
    hierarchy named (one named: in that one) fails with the first hierarchy's error, as
    GetTasks does (0.42 failed for one hierarchy; it answered [] for several)."""
    hs = m.layout.resolve(controller)
    targets = [(h, lookup(m, req, h, cgroup)) for h in hs]
    for h, (_, path, _) in targets:  # tree-sized: known small, or a worker's
        req.scope.expect_small(childless(tree(req, m, h), path))
    result: set[int] = set()
    skipped: CgmError | None = None
    found = False
    for h, (_, path, shown) in targets:
        t = tree(req, m, h)
        try:
            require_access(req.r, owner(t, path, None, shown), Access.READ, shown)
            for p in t.walk(path):
                try:
                    result.update(tasks(m, req, h, p))
                except NotFound:
                    continue
            found = True
        except (NotFound, NotPermitted) as e:
            log.debug("GetTasksRecursive: skipping %s: %s", h.key, e)
            skipped = skipped or e
    if not found and skipped is not None:
        raise skipped
    return sorted(result)
