"""Reading what a cgroup holds: GetValue, SetValue, ListKeys, ListChildren (0.42).

All lookup-family.  On a v2 hierarchy, a v1 key with no real file of that name is translated
(:mod:`cgmanager.translate`), each resulting read or write checked like a direct one.
"""

from __future__ import annotations

from .. import names, translate
from ..errors import InvalidArgument, NotFound
from ..hierarchy import Hierarchy
from ..permission import (
    Access,
    require_access,
    require_not_base,
    require_settable_key,
)
from .context import INLINE_CHILDREN, V2_LEAF, Manager, Request
from .leaf import write_subtree_control
from .targets import Target, lookup, owner, reworded, tree

#: largest value SetValue writes (cgroup files take far less; this bounds memory per request)
MAX_VALUE = 1 << 20


def read_key(m: Manager, req: Request, h: Hierarchy, path: str, shown: str, key: str) -> str:
    names.check_key(key)
    t = tree(req, m, h)
    require_access(req.r, owner(t, path, key, shown), Access.READ, f"{shown} {key}")
    with reworded(f"read {shown} {key}"):
        return t.read(path, key)


def _translates(m: Manager, req: Request, h: Hierarchy, path: str, key: str) -> bool:
    """A v1 key on a v2 hierarchy, with no real file of that name to shadow."""
    if h.version != 2 or not translate.applies(key):
        return False
    try:
        tree(req, m, h).stat(path, key)
        return False
    except NotFound:
        return True


class _Reader:
    """Reads of one cgroup's keys for a translation, each checked like a direct read."""

    __slots__ = ("m", "req", "h", "path", "shown")

    def __init__(self, m: Manager, req: Request, h: Hierarchy, path: str, shown: str) -> None:
        self.m, self.req, self.h, self.path, self.shown = m, req, h, path, shown

    def __call__(self, key: str) -> str:
        return read_key(self.m, self.req, self.h, self.path, self.shown, key)


def get_value(m: Manager, req: Request, controller: str, cgroup: str, key: str) -> str:
    """Read a key; all trailing newlines stripped, as 0.42 did."""
    names.check_key(key)
    h = m.layout.resolve_one(controller)
    _, path, shown = lookup(m, req, h, cgroup)
    require_access(req.r, owner(tree(req, m, h), path, None, shown), Access.READ, shown)
    if _translates(m, req, h, path, key):
        with reworded(f"{shown} {key}"):
            return translate.get(key, _Reader(m, req, h, path, shown)).rstrip("\n")
    return read_key(m, req, h, path, shown, key).rstrip("\n")


def set_value(m: Manager, req: Request, controller: str, cgroup: str, key: str, value: str) -> None:
    """Write a key from the hierarchy's allowlist (a newline is appended as 0.42 did).  On v2,
    a v1 key becomes the writes to its v2 file(s), each checked like a direct write."""
    names.check_key(key)
    check_value(value)
    h = m.layout.resolve_one(controller)
    write_key(m, req, h, lookup(m, req, h, cgroup), key, value)


def check_value(value: str) -> None:
    if len(value) > MAX_VALUE:
        raise InvalidArgument(f"invalid value: longer than {MAX_VALUE} bytes")
    if "\0" in value:
        raise InvalidArgument("invalid value: contains a NUL byte")


def write_key(m: Manager, req: Request, h: Hierarchy, target: Target, key: str, value: str) -> None:
    """SetValue's checks and writes on a resolved target (Setup calls this for each value)."""
    _, path, shown = target
    require_not_base(path, m.base(h), shown)
    t = tree(req, m, h)
    require_access(req.r, owner(t, path, None, shown), Access.READ, shown)
    if _translates(m, req, h, path, key):
        with reworded(f"{shown} {key}"):
            writes = translate.set_(key, value, _Reader(m, req, h, path, shown))
    else:
        writes = [(key, value)]
    for k, _ in writes:
        require_settable_key(k, h.controllers)
        require_access(req.r, owner(t, path, k, shown), Access.WRITE, f"{shown} {k}")
    for k, v in writes:
        data = v if not v or v.endswith("\n") else v + "\n"
        if h.version == 2 and k == "cgroup.subtree_control":
            write_subtree_control(m, req, h, path, shown, data)
            continue
        with reworded(f"write {shown} {k}"):
            t.write(path, k, data)


def list_children(m: Manager, req: Request, controller: str, cgroup: str) -> list[str]:
    h = m.layout.resolve_one(controller)
    _, path, shown = lookup(m, req, h, cgroup)
    t = tree(req, m, h)
    directory = owner(t, path, None, shown)
    require_access(req.r, directory, Access.READ, shown)
    req.scope.expect_small(t.stat(path).st_nlink - 2 <= INLINE_CHILDREN)
    with reworded(f"list {shown}"):
        kids = t.children(path)
    return [k for k in kids if not (h.version == 2 and k == V2_LEAF)]


def list_keys(
    m: Manager, req: Request, controller: str, cgroup: str
) -> list[tuple[str, int, int, int]]:
    """(name, uid, gid, mode) of each file, ids as the requestor's namespace shows them."""
    h = m.layout.resolve_one(controller)
    _, path, shown = lookup(m, req, h, cgroup)
    t = tree(req, m, h)
    require_access(req.r, owner(t, path, None, shown), Access.READ, shown)
    r = req.r
    with reworded(f"list keys of {shown}"):
        keys = t.keys(path)
    return [(k.name, r.uid_as_seen(k.uid), r.gid_as_seen(k.gid), k.mode) for k in keys]
