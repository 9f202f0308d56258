"""Removing cgroups once empty: RemoveOnEmpty and Prune (0.42), without a release agent.

The watching itself is the daemon's reaper (``cgmanager.daemon.reaper``); these operations check
the request like any other and hand it the cgroups to watch.
"""

from __future__ import annotations

import logging

from .. import names
from ..errors import CgmError, Unsupported
from ..permission import Access, FileOwner, require_access, require_not_base
from .context import Manager, Reaper, Request
from .targets import Denials, below, childless, components, owner, tree

log = logging.getLogger("cgmanager.operations")


def _reaper(m: Manager) -> Reaper:
    if m.reaper is None:
        raise Unsupported("remove-on-empty is not available in this process")
    return m.reaper


def remove_on_empty(m: Manager, req: Request, controller: str, cgroup: str) -> None:
    """Remove the cgroup (recursively) once no process is left in it."""
    reaper = _reaper(m)
    parts = components(m, cgroup)
    hs = m.layout.resolve(controller)
    denials = Denials(hs)
    for h in hs:
        with denials.skip(h):
            _, working, shown = below(m, req.requestor, h, parts)
            t = tree(req, m, h)
            require_access(req.r, owner(t, working, None, shown), Access.WRITE, shown)
            require_not_base(working, m.base(h), shown)
            reaper.watch(m.trees[h.key], working, req.r.uid)
    denials.settle()


def prune(m: Manager, req: Request, controller: str, cgroup: str) -> None:
    """Remove every empty cgroup at and below *cgroup* now, and watch the others until they
    empty.  Cgroups the caller could not rmdir itself (parent not writable) are left alone.
    With several hierarchies, failures are only logged, as in 0.42."""
    reaper = _reaper(m)
    parts = components(m, cgroup)
    hs = m.layout.resolve(controller)
    for h in hs:  # tree-sized: known small, or a worker's
        req.scope.expect_small(childless(tree(req, m, h), below(m, req.requestor, h, parts).path))
    for h in hs:
        try:
            t = tree(req, m, h)
            _, working, shown = below(m, req.requestor, h, parts)
            require_access(req.r, owner(t, working, None, shown), Access.WRITE, shown)
            for d in reversed(t.walk(working)):
                if d == m.base(h):
                    continue
                try:
                    st = t.stat(names.parent(d))
                    parent = FileOwner(st.st_uid, st.st_gid, st.st_mode)
                    require_access(req.r, parent, Access.WRITE, d)
                except CgmError:
                    continue
                try:
                    if t.children(d):
                        reaper.watch(m.trees[h.key], d, req.r.uid)
                    else:
                        t.rmdir(d)
                except CgmError:
                    reaper.watch(m.trees[h.key], d, req.r.uid)
        except CgmError as e:
            if len(hs) == 1:
                raise
            log.debug("Prune: %s: %s", h.key, e)
