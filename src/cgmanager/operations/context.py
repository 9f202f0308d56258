"""What every operation works with: the daemon's state, one request, and its scope.

* :class:`Manager` is the daemon-wide state the operations read (layout, the trees, the daemon's
  own cgroups, limits, the reaper).  Operations are plain functions ``op(m, req, *args)`` in the
  sibling modules; nothing here decides a permission.
* :class:`Request` is who asks (the requestor r) and through whom (the proxy p, == r for plain
  calls), plus the request's :class:`Scope`.
* A :class:`Scope` holds the cgroup directories the request resolved (each path is opened once,
  and the check and the action then concern the same directory) and says whether the request
  runs on the event loop (*inline*) or on a worker thread.  An inline request that finds it
  would touch a subtree of unknown size raises :class:`Escalate` *before changing anything*;
  the daemon then runs it again on a worker (see ``cgmanager.daemon.scheduler``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from ..cgroupfs import CgroupTree, release
from ..hierarchy import Hierarchy, Layout
from ..permission import Identity
from ..requestor import Party

#: where the daemon moves a v2 cgroup's processes when a controller must be enabled for its
#: children (the no-internal-process rule); reserved, hidden, and transparent to clients
V2_LEAF = ".cgm_leaf"

#: the most child cgroups an inline request lists; a bigger directory is listed on a worker
INLINE_CHILDREN = 512
#: the most values plus pids an inline Setup carries; a bigger one runs on a worker
INLINE_SETUP_ITEMS = 32


class Escalate(Exception):
    """An inline request would do work whose size grows with a subtree: run it on a worker.
    Raised before the request has changed anything."""


class Reaper(Protocol):
    """Removes cgroups once they are empty (RemoveOnEmpty, Prune)."""

    def watch(self, tree: CgroupTree, path: str, owner: int) -> None:
        """Remove *path* once empty; *owner* (the requestor's uid) is charged for the watch."""


class Scope:
    """One request's resolved directories (bounded per tree, closed at its end)."""

    __slots__ = ("may_escalate", "_held", "_views")

    def __init__(self, may_escalate: bool = True) -> None:
        #: runs on the event loop and has changed nothing yet
        self.may_escalate = may_escalate
        self._held: dict[str, dict[str, int]] = {}
        self._views: dict[str, CgroupTree] = {}

    def tree(self, m: Manager, h: Hierarchy) -> CgroupTree:
        view = self._views.get(h.key)
        if view is None:
            held = self._held[h.key] = {}
            view = self._views[h.key] = m.trees[h.key].bound(held)
        return view

    def expect_small(self, small: bool) -> None:
        """An inline request whose coming work is not known to be small goes to a worker.
        Called before the request changes anything (see :meth:`commit`)."""
        if self.may_escalate and not small:
            raise Escalate

    def commit(self) -> None:
        """From here on the request changes things: it is never escalated (re-run) again, so
        a later :meth:`expect_small` of a step it reuses is a no-op."""
        self.may_escalate = False

    def close(self) -> None:
        for held in self._held.values():
            release(held)
        self._held.clear()
        self._views.clear()

    def __enter__(self) -> Scope:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Request:
    """Who asks (the requestor r) and through whom (the proxy p, == r for plain calls), and
    the request's scope.  (A slotted class: one is made per request.)"""

    __slots__ = ("requestor", "proxy", "scope")

    def __init__(self, requestor: Party, proxy: Party, scope: Scope | None = None) -> None:
        self.requestor = requestor
        self.proxy = proxy
        self.scope = scope if scope is not None else Scope()

    @property
    def r(self) -> Identity:
        return self.requestor.identity


class Manager:
    """The daemon-wide state operations read; see the module docstring."""

    def __init__(
        self,
        layout: Layout,
        trees: Mapping[str, CgroupTree],
        daemon: Party,
        *,
        max_depth: int = 16,
        reaper: Reaper | None = None,
        leaves: Mapping[str, str] | None = None,
        quota: Mapping[str, int] | None = None,
    ) -> None:
        self.layout = layout
        self.trees = dict(trees)
        self.daemon = daemon
        self.max_depth = max_depth
        self.reaper = reaper
        #: hierarchy key -> the leaf the daemon itself lives in (when started delegated)
        self.leaves = dict(leaves or {})
        #: v2 limits set on every cgroup delegated (chowned) to a non-root uid, e.g.
        #: {"cgroup.max.descendants": 1000}: the kernel-native per-delegation quota
        self.quota = dict(quota or {})
        #: controller names: ``<controller>.*`` is never a cgroup name
        self.reserved = frozenset(c for h in layout.hierarchies for c in h.controllers)
        #: client paths found valid, as their components (see targets.components)
        self.valid_paths: dict[str, tuple[str, ...]] = {}

    def base(self, h: Hierarchy) -> str:
        """The daemon's own cgroup: the bound of everything it does in *h*."""
        return self.daemon.cgroup(h)

    def close(self) -> None:
        for t in self.trees.values():
            t.close()


def open_trees(layout: Layout) -> dict[str, CgroupTree]:
    return {h.key: CgroupTree(h) for h in layout.hierarchies}
