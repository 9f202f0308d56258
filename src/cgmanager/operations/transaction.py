"""Setup (``org.linuxcontainers.cgmanager1``): a container's set-up as one transaction.

Create a new cgroup in every hierarchy named, chown it, write values in order, move pids in —
each step checked exactly like its single-method twin.  All or nothing: when a step fails, the
processes moved go back and the cgroups made are removed before the error is returned.  The
rollback undoes only what this request did: a cgroup the new owner has added to meanwhile (a
child of its own, a process moved in) is left whole and named in the error.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

from .. import names
from ..cgroupfs import CgroupTree
from ..errors import CgmError, InvalidArgument, NotFound
from ..hierarchy import Hierarchy
from ..permission import require_may_chown, require_valid_id
from ..victim import Victim
from .cgroups import chown_in, create_in
from .context import INLINE_SETUP_ITEMS, Manager, Request
from .processes import move_in, require_movable
from .targets import Target, below, components, logical, show
from .values import check_value, write_key

log = logging.getLogger("cgmanager.operations")

#: most values, and most pids, one Setup request may carry
SETUP_MAX_ITEMS = 256


def setup(
    m: Manager,
    req: Request,
    controllers: str,
    cgroup: str,
    uid: int,
    gid: int,
    values: Mapping[str, str],
    pids: Sequence[int],
) -> list[str]:
    """Set up *cgroup* (new, below the requestor's cgroup) in every hierarchy of
    *controllers*: chown it to uid:gid (-1, -1: keep the requestor's), write *values* in order
    (``file`` → the hierarchy of its prefix, or ``controller:file``), move *pids* in.  Returns
    the cgroups made, as ``hierarchy:path`` relative to the caller's cgroup."""
    parts = components(m, cgroup)
    if not parts:
        raise InvalidArgument("invalid cgroup: Setup needs a name below your own cgroup")
    hs = m.layout.resolve(controllers)
    if (uid == -1) != (gid == -1):
        raise InvalidArgument("invalid owner: give both uid and gid, or -1 for both")
    if len(values) > SETUP_MAX_ITEMS or len(pids) > SETUP_MAX_ITEMS:
        raise InvalidArgument(f"invalid Setup: at most {SETUP_MAX_ITEMS} values and pids")
    if uid != -1:
        require_may_chown(req.r)
        require_valid_id(uid, "uid")
        require_valid_id(gid, "gid")
    writes = [(_hierarchy_of(m, spec, hs), spec, v) for spec, v in values.items()]
    for _, _, value in writes:
        check_value(value)
    for pid in pids:
        if pid <= 0:
            raise InvalidArgument(f"invalid pid {pid}")
    req.scope.expect_small(len(values) + len(pids) <= INLINE_SETUP_ITEMS)
    req.scope.commit()  # judged small: its steps (chown's check of the new cgroup) stay here
    targets = {h.key: below(m, req.requestor, h, parts) for h in hs}
    undo = _Rollback()
    step = "create"
    try:
        for h in hs:
            made = undo.made_in(m.trees[h.key])
            wanted = [c for c in controllers.split(",") if h.version == 2 and c in h.controllers]
            create_in(m, req, h, parts, wanted, made, new=True)
        if uid != -1:
            step = "chown"
            for h in hs:  # every hierarchy: no "skip where refused" in a transaction
                chown_in(m, req, h, parts, uid, gid)
        for h, spec, value in writes:
            step = f"write {spec}"
            write_key(m, req, h, targets[h.key], spec.partition(":")[2] or spec, value)
        for pid in pids:
            step = f"move {pid}"
            _move(m, req, hs, parts, targets, pid, undo)
    except CgmError as e:
        left = undo.run()
        tail = f"; not undone: {'; '.join(left)}" if left else "; nothing was changed"
        raise type(e)(f"Setup failed at {step}: {e.message}{tail}", reason=e.reason) from None
    undo.discard()
    return [targets[h.key].shown for h in hs]


def _move(
    m: Manager,
    req: Request,
    hs: Sequence[Hierarchy],
    parts: tuple[str, ...],
    targets: Mapping[str, Target],
    pid: int,
    undo: _Rollback,
) -> None:
    with Victim.open(pid, m.layout) as v:
        require_movable(req, v)
        for h in hs:
            was = v.cgroups.get(h.key)
            move_in(m, req, h, parts, v, False)
            if was is not None:  # (it was below the caller's cgroup: shown so)
                shown = show(h, logical(h, was), targets[h.key].base)
                undo.move_back(m.trees[h.key], was, v, shown)
        if not v.alive():
            raise NotFound(f"process {pid}: exited during the move")


def _hierarchy_of(m: Manager, spec: str, hs: Sequence[Hierarchy]) -> Hierarchy:
    """The hierarchy a Setup value is for: ``controller:file``, or the file's prefix."""
    controller, sep, key = spec.partition(":")
    if not sep:
        key = spec
        controller = spec.partition(".")[0]
    names.check_key(key)
    try:
        h = m.layout.resolve_one(controller)
    except CgmError:
        raise InvalidArgument(
            f"invalid value name {spec!r}: no hierarchy {controller!r} here"
            " (name one as controller:file)"
        ) from None
    if h not in hs:
        raise InvalidArgument(
            f"invalid value name {spec!r}: {h.key} is not among the controllers set up"
        )
    return h


class _Rollback:
    """What a failed Setup must undo, newest first.  Undoing is done as the daemon, without
    permission checks, and touches only what this request made or moved."""

    def __init__(self) -> None:
        self._made: list[tuple[CgroupTree, list[str]]] = []
        self._moves: list[tuple[CgroupTree, str, Victim, str]] = []

    def made_in(self, t: CgroupTree) -> list[str]:
        """The list the request fills with the cgroups it makes in *t* (parents first)."""
        made: list[str] = []
        self._made.append((t, made))
        return made

    def move_back(self, t: CgroupTree, was: str, v: Victim, shown: str) -> None:
        back = Victim(v.pid, None, v.cgroups, os.dup(v.pidfd))  # its pid and liveness only
        self._moves.append((t, was, back, shown))

    def run(self) -> list[str]:
        """Undo everything; the steps that could not be undone, described."""
        left = []
        for t, was, v, shown in reversed(self._moves):
            try:
                v.require_alive()
                t.move(was, v.pid)
            except (CgmError, OSError) as e:
                log.error("Setup rollback: moving %d back failed: %s", v.pid, e)
                left.append(f"move {v.pid} back to {shown}")
        for t, made in reversed(self._made):
            left += _remove_made(t, made)
        self.discard()
        return left

    def discard(self) -> None:
        for _, _, v, _ in self._moves:
            v.close()
        self._moves.clear()
        self._made.clear()


def _remove_made(t: CgroupTree, made: list[str]) -> list[str]:
    """Remove the cgroups this request made, bottom-up — unless someone (the new owner) has
    added a cgroup below them meanwhile: then all are left as they are, and said so."""
    if not made:
        return []
    mine = set(made)
    try:
        foreign = [p for p in t.walk(made[0]) if p not in mine]
    except NotFound:
        return []  # removed by someone else already
    except (CgmError, OSError) as e:
        log.error("Setup rollback: listing %s:%s failed: %s", t.hierarchy.key, made[0], e)
        return [f"remove {t.hierarchy.key}:{made[0]}"]
    if foreign:
        return [
            f"remove the new cgroups in {t.hierarchy.key}: their new owner added"
            f" {len(foreign)} cgroup(s) below them"
        ]
    for p in reversed(made):
        try:
            t.rmdir(p)
        except (CgmError, OSError) as e:
            log.error("Setup rollback: removing %s:%s failed: %s", t.hierarchy.key, p, e)
            return [f"remove the new cgroups in {t.hierarchy.key} ({e})"]
    return []
