"""From a client's ``(controller, cgroup)`` to the cgroups a request acts on.

Path families (0.42 §3.2):

* *lookup* methods (GetValue, SetValue, GetTasks, GetTasksRecursive, ListChildren, ListKeys and
  the cgmanager1 ones): ``""`` is the requestor's cgroup, ``a/b`` is below it, ``/a/b`` is
  absolute in the hierarchy; the result must lie below the *proxy's* cgroup (the requestor's
  for plain calls);
* *relative* methods (Create, Chown, Chmod, MovePid, Remove, RemoveOnEmpty, Prune, Setup):
  always below the requestor's cgroup (the proxy's for MovePidAbs); a leading ``/`` means
  nothing.

Everything is also bounded by the daemon's own cgroup in each hierarchy.  Paths in messages are
shown relative to the caller's cgroup when below it (:func:`show`), so an error never names a
cgroup the caller could not name itself.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import NamedTuple

from .. import names
from ..cgroupfs import CgroupTree
from ..contract import LOOKUP
from ..errors import CgmError, NotFound, NotPermitted
from ..hierarchy import Hierarchy
from ..permission import FileOwner, require_outside, require_reach
from ..requestor import Party
from .context import V2_LEAF, Manager, Request

log = logging.getLogger("cgmanager.operations")


class Target(NamedTuple):
    """A cgroup a request acts on: the bound it was resolved from (the party's cgroup), its
    absolute hierarchy path, and how messages show it."""

    base: str
    path: str
    shown: str


def show(h: Hierarchy, path: str, base: str) -> str:
    """How a path appears in messages: relative to the caller's cgroup when below it."""
    if names.is_under(path, base):
        return f"{h.key}:{names.relative_to(path, base) or '.'}"
    return f"{h.key}:{path}"


def logical(h: Hierarchy, path: str) -> str:
    """A process in X/.cgm_leaf counts as being in X: the daemon put it there."""
    if h.version == 2 and path.endswith("/" + V2_LEAF):
        return names.parent(path)
    return path


def own(m: Manager, party: Party, h: Hierarchy) -> str:
    """*party*'s cgroup in *h*, which must lie within the daemon's subtree."""
    path = logical(h, party.cgroup(h))
    if not names.is_under(path, m.base(h)):
        raise NotFound(f"process {party.cred.pid} is outside this cgmanager's {h.key} subtree")
    return path


def components(m: Manager, cgroup: str) -> tuple[str, ...]:
    """Components of a client's cgroup path.  Names reserved for kernel files are refused in
    every method, not only in Create: they can never be cgroups made through us, and "did not
    exist" would hide a mistake.  (Remembered per path: a pure function of it and of the
    hierarchies served.)"""
    parts = m.valid_paths.get(cgroup)
    if parts is None:
        parts = names.split(cgroup)
        for part in parts:
            names.check_new_name(part, m.reserved)
        if len(m.valid_paths) >= 4096:
            m.valid_paths.clear()
        m.valid_paths[cgroup] = parts
    return parts


def _off_limits(m: Manager, h: Hierarchy, path: str, shown: str) -> None:
    leaf = m.leaves.get(h.key)
    if leaf is not None:
        require_outside(path, leaf, shown)


def below(m: Manager, party: Party, h: Hierarchy, parts: tuple[str, ...]) -> Target:
    """A relative-family target: below the party's cgroup."""
    base = own(m, party, h)
    path = names.join(base, *parts)
    shown = show(h, path, base)
    _off_limits(m, h, path, shown)
    return Target(base, path, shown)


def lookup(m: Manager, req: Request, h: Hierarchy, cgroup: str) -> Target:
    """A lookup-family target, which must lie below the proxy's cgroup."""
    parts = components(m, cgroup)
    if cgroup.startswith("/"):
        path = names.join("/", *parts)
        base, shown = "/", f"{h.key}:{path}"
    else:
        base = own(m, req.requestor, h)
        path = names.join(base, *parts)
        shown = show(h, path, base)
    require_reach(path, own(m, req.proxy, h), shown)
    _off_limits(m, h, path, shown)
    return Target(base, path, shown)


def tree(req: Request, m: Manager, h: Hierarchy) -> CgroupTree:
    """The request's view of *h* (see :class:`~.context.Scope`)."""
    return req.scope.tree(m, h)


def owner(t: CgroupTree, path: str, key: str | None, shown: str) -> FileOwner:
    """Who owns the cgroup directory (or one of its files), for the permission model."""
    try:
        st = t.stat(path, key)
    except CgmError as e:
        what = f"{shown} {key}" if key else shown
        raise type(e)(f"{what}: {e.reason}", reason=e.reason) from None
    return FileOwner(st.st_uid, st.st_gid, st.st_mode)


def childless(t: CgroupTree, path: str) -> bool:
    """Whether a cgroup has no child cgroups (cgroupfs counts child directories in the
    directory's link count, so this costs one fstat).  A missing cgroup counts as childless:
    the request fails at once.  Tree-sized work on a childless cgroup is known small."""
    try:
        return t.stat(path).st_nlink <= 2
    except CgmError:
        return True


class reworded:  # noqa: N801 (used as a function: ``with reworded("create x"):``)
    """Kernel-layer errors re-worded in terms the caller used (``what: reason``).  A class,
    not a generator: it wraps several calls of every request."""

    __slots__ = ("what",)

    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, e: BaseException | None, tb: object) -> None:
        if isinstance(e, CgmError):
            raise type(e)(f"{self.what}: {e.reason}", reason=e.reason) from None


class Denials:
    """0.42's multi-controller rule: a permission refusal in one hierarchy is skipped, any
    other failure aborts.  Unlike 0.42, a request refused everywhere fails::

        denials = Denials(hs)
        for h in hs:
            with denials.skip(h):
                ...
        denials.settle()
    """

    __slots__ = ("_single", "_denied", "_done")

    def __init__(self, hs: Sequence[Hierarchy]) -> None:
        self._single = len(hs) == 1
        self._denied: NotPermitted | None = None
        self._done = 0

    @contextmanager
    def skip(self, h: Hierarchy) -> Iterator[None]:
        try:
            yield
        except NotPermitted as e:
            if self._single:
                raise
            log.debug("skipping %s: %s", h.key, e)
            self._denied = e
        else:
            self._done += 1

    def settle(self) -> None:
        if self._denied is not None and not self._done:
            raise self._denied


def claims(
    m: Manager,
    req: Request,
    family: str,
    absolute: bool,
    controller: str,
    cgroup: str,
    subtree: bool,
) -> list[tuple[str, str, bool]]:
    """The cgroups ``(hierarchy key, path, subtree)`` a request will act on, resolved as the
    operation will resolve them (the daemon serialises requests whose claims overlap).  A
    request whose target cannot be resolved claims nothing: it fails before touching the
    kernel."""
    try:
        out = []
        for h in m.layout.resolve(controller):
            if family == LOOKUP:
                out.append((h.key, lookup(m, req, h, cgroup).path, subtree))
            else:
                party = req.proxy if absolute else req.requestor
                out.append((h.key, below(m, party, h, components(m, cgroup)).path, subtree))
        return out
    except CgmError:
        return []
