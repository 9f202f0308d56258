"""Beyond 0.42 (``org.linuxcontainers.cgmanager1``): Freeze, Thaw, Kill, GetEvents, GetStat.

Lookup-family, with the permission model of 0.42.  Freezing or killing a subtree never reaches
another user's processes: every process below must be one the requestor may move (MovePid's
victim rule), and the daemon's own cgroup is never frozen or killed.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass

from .. import names
from ..cgroupfs import CgroupTree
from ..errors import NotFound, NotPermitted, Unsupported
from ..hierarchy import Hierarchy
from ..permission import Access, may_move, require_access, require_not_base
from ..victim import Victim
from .context import Manager, Request
from .targets import childless, lookup, owner, reworded, tree
from .values import read_key


@dataclass(frozen=True)
class Settling:
    """What Freeze/Thaw return: the kernel finishes freezing asynchronously, and the caller
    waits until :meth:`reached`.  v2 raises ``POLLPRI`` on ``cgroup.events`` when ``frozen``
    changes (*notifies*); the v1 freezer has no notification and must be polled."""

    tree: CgroupTree
    path: str
    frozen: bool

    @property
    def notifies(self) -> bool:
        return self.tree.v2

    @property
    def events_key(self) -> str:
        return "cgroup.events"

    def reached(self) -> bool:
        if self.tree.v2:
            return self.tree.events(self.path).get("frozen", 0) == int(self.frozen)
        want = "FROZEN" if self.frozen else "THAWED"
        return self.tree.read(self.path, "freezer.state").strip() == want


def victims(m: Manager, req: Request, h: Hierarchy, path: str) -> list[Victim]:
    """Every process below *path*, pinned; each must be one the requestor may act on.  The
    caller closes them."""
    found: list[Victim] = []
    try:
        for pid in tree(req, m, h).procs_recursive(path):
            try:
                v = Victim.open(pid, m.layout)
            except NotFound:
                continue  # exited meanwhile
            where = v.cgroups.get(h.key)
            if where is None or not names.is_under(where, path):
                v.close()  # left, or its pid was recycled: a stranger, not a victim
                continue
            found.append(v)
            if not may_move(req.r, v.pid, v.real_uid):
                raise NotPermitted(
                    f"not permitted: process {pid} in {h.key}:{path} belongs to another user"
                )
    except BaseException:
        for v in found:
            v.close()
        raise
    return found


def _freezer_key(h: Hierarchy) -> str:
    if h.version == 2:
        return "cgroup.freeze"
    if "freezer" in h.controllers:
        return "freezer.state"
    raise Unsupported(f"the {h.key} hierarchy cannot freeze; use freezer or unified")


def freeze(m: Manager, req: Request, controller: str, cgroup: str, frozen: bool) -> Settling:
    """Start freezing (or thawing) a subtree; the caller waits for the returned state."""
    h = m.layout.resolve_one(controller)
    _, path, shown = lookup(m, req, h, cgroup)
    require_not_base(path, m.base(h), shown)  # freezing it would freeze the daemon too
    t = tree(req, m, h)
    require_access(req.r, owner(t, path, None, shown), Access.READ, shown)
    key = _freezer_key(h)
    require_access(req.r, owner(t, path, key, shown), Access.WRITE, f"{shown} {key}")
    req.scope.expect_small(childless(t, path))
    for v in victims(m, req, h, path):
        v.close()
    with reworded(f"freeze {shown}"):
        if t.v2:
            t.write(path, key, "1" if frozen else "0")
        else:
            t.write(path, key, "FROZEN" if frozen else "THAWED")
    return Settling(m.trees[h.key], path, frozen)


def kill(m: Manager, req: Request, controller: str, cgroup: str) -> int:
    """SIGKILL every process of the subtree; returns how many were found.  v2 uses
    ``cgroup.kill`` (safe against forks); v1 freezes first where it can, then kills each
    process through its pidfd, until the subtree is empty."""
    h = m.layout.resolve_one(controller)
    _, path, shown = lookup(m, req, h, cgroup)
    require_not_base(path, m.base(h), shown)  # killing it would kill the daemon too
    t = tree(req, m, h)
    require_access(req.r, owner(t, path, None, shown), Access.READ, shown)
    key = "cgroup.kill" if t.v2 else t.procs_file
    require_access(req.r, owner(t, path, key, shown), Access.WRITE, f"{shown} {key}")
    req.scope.expect_small(childless(t, path))
    found = victims(m, req, h, path)
    try:
        if t.v2:
            with reworded(f"kill {shown}"):
                t.write(path, "cgroup.kill", "1")
            return len(found)
        return _kill_v1(m, req, h, path, shown, found)
    finally:
        for v in found:
            v.close()


def _kill_v1(
    m: Manager, req: Request, h: Hierarchy, path: str, shown: str, found: list[Victim]
) -> int:
    t = tree(req, m, h)
    freezer = "freezer" in h.controllers
    if freezer:
        with reworded(f"freeze {shown}"):
            t.write(path, "freezer.state", "FROZEN")
    killed: set[int] = set()
    try:
        for _ in range(100):  # a fork bomb cannot outrun a frozen cgroup; others get 100 rounds
            for v in found:
                if v.pid not in killed:
                    try:
                        signal.pidfd_send_signal(v.pidfd, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    killed.add(v.pid)
            for v in found:
                v.close()
            found[:] = victims(m, req, h, path)
            if not [v for v in found if v.pid not in killed]:
                break
    finally:
        if freezer:
            with reworded(f"thaw {shown}"):
                t.write(path, "freezer.state", "THAWED")
    return len(killed)


def events(m: Manager, req: Request, controller: str, cgroup: str) -> dict[str, int]:
    """``cgroup.events`` (v2); on v1 the same facts computed: populated, and frozen where the
    hierarchy has the freezer."""
    h = m.layout.resolve_one(controller)
    _, path, shown = lookup(m, req, h, cgroup)
    t = tree(req, m, h)
    require_access(req.r, owner(t, path, None, shown), Access.READ, shown)
    if t.v2:
        with reworded(f"events of {shown}"):
            return t.events(path)
    req.scope.expect_small(childless(t, path))
    with reworded(f"events of {shown}"):
        result = {"populated": int(t.populated(path))}
    if "freezer" in h.controllers:
        state = read_key(m, req, h, path, shown, "freezer.state")
        result["frozen"] = int(state.strip() == "FROZEN")
    return result


def stat(m: Manager, req: Request, controller: str, cgroup: str) -> dict[str, int]:
    """``cgroup.stat`` (v2); on v1, ``nr_descendants`` counted."""
    h = m.layout.resolve_one(controller)
    _, path, shown = lookup(m, req, h, cgroup)
    t = tree(req, m, h)
    require_access(req.r, owner(t, path, None, shown), Access.READ, shown)
    if t.v2:
        with reworded(f"stat of {shown}"):
            return t.events(path, "cgroup.stat")
    req.scope.expect_small(childless(t, path))
    with reworded(f"stat of {shown}"):
        return {"nr_descendants": len(t.walk(path)) - 1}
