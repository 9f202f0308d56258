"""Snapshot (``org.linuxcontainers.cgmanager1``): chosen keys of every cgroup of a subtree,
in one request.

Why: ``cgm top`` refreshes every second; through GetValue and ListChildren that is two or more
calls per cgroup and key (tens of thousands a second on a host with 10,000 cgroups).  One
Snapshot per hierarchy reads the same files with the same checks.

Checks, exactly as ListChildren and GetValue make them: the starting cgroup is resolved as a
*lookup* path (below the proxy's cgroup; ``""`` is the caller's own) and must be readable by
the caller, else the request fails as GetValue would.  Below it, a cgroup whose directory the
caller may not read is reported with ``readable`` false and no values, and not descended into
(ListChildren of its parent shows its name anyway); a key the caller may not read, or that the
cgroup lacks, is left out.  The daemon's own leaf and v2 ``.cgm_leaf`` directories are never
shown (the processes of ``X/.cgm_leaf`` count as ``X``'s, as in GetTasks).

Keys are file names (``memory.current``), or ``file/field`` for one line of a flat or nested
keyed file: ``cpu.stat/usage_usec`` is the text after ``usage_usec `` (``123``),
``cpu.pressure/some`` the rest of the ``some`` line.  Values lose their trailing newlines, as
in GetValue.  No v1→v2 key translation (that is GetValue's).

Bounds: at most :data:`MAX_KEYS` keys and :data:`MAX_DEPTH` levels; the reply stops after
:data:`MAX_CGROUPS` cgroups or :data:`MAX_BYTES` bytes of names and values (well inside the
server's output buffer), with ``complete`` false — what was sent is then a prefix of the full
answer.  A subtree (anything but a childless cgroup or ``depth`` 0) is walked on a worker thread
(see cgmanager.daemon.scheduler), so other clients are served meanwhile.

Result: ``a(sba{is})`` — (path relative to the starting cgroup, ``""`` for itself; readable;
{index into *keys*: value}) in pre-order, children sorted by name — and ``b complete``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence

from .. import names
from .._linux import open_beneath
from ..errors import InvalidArgument
from ..permission import Access, FileOwner, may_access, require_access
from .context import V2_LEAF, Manager, Request
from .targets import childless, lookup, owner, tree

MAX_KEYS = 32
MAX_DEPTH = 64
MAX_CGROUPS = 100_000
MAX_BYTES = 2 << 20
#: the longest field name (kernel field names are short identifiers)
MAX_FIELD = 64
#: largest value read from one file (cgroup.procs of a busy cgroup; memory.stat is ~2 KiB)
MAX_VALUE = 1 << 20

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
#: v2 files whose content the daemon's leaf adds to, as GetTasks merges it
_MEMBER_FILES = ("cgroup.procs", "cgroup.threads")

Entry = tuple[str, bool, dict[int, str]]


def parse_keys(keys: Sequence[str]) -> list[tuple[str, str | None]]:
    """(file, field or None) for each key; InvalidArgument for anything else."""
    if not keys:
        raise InvalidArgument("invalid keys: name at least one file")
    if len(keys) > MAX_KEYS:
        raise InvalidArgument(f"invalid keys: at most {MAX_KEYS}")
    out: list[tuple[str, str | None]] = []
    for k in keys:
        file, slash, field = k.partition("/")
        names.check_key(file)
        if slash and (
            not field
            or len(field) > MAX_FIELD
            or not all(c.isascii() and (c.isalnum() or c in "_-.") for c in field)
        ):
            raise InvalidArgument(f"invalid key {k!r}: a field is a word such as usage_usec")
        out.append((file, field if slash else None))
    return out


def snapshot(
    m: Manager, req: Request, controller: str, cgroup: str, keys: Sequence[str], depth: int
) -> tuple[list[Entry], bool]:
    """Chosen keys of every cgroup of a subtree: (entries, complete) — see the module."""
    walk = _Walk(m, req, controller, cgroup, keys, depth)
    req.scope.expect_small(walk.depth == 0 or childless(walk.tree, walk.path))
    walk.run()
    return walk.entries, walk.complete


class _Walk:
    """One Snapshot request: checked on construction, walked by :meth:`run`."""

    def __init__(
        self,
        m: Manager,
        req: Request,
        controller: str,
        cgroup: str,
        keys: Sequence[str],
        depth: int,
    ) -> None:
        self.keys = parse_keys(keys)
        if depth < -1:
            raise InvalidArgument(f"invalid depth {depth}: -1 (as deep as allowed) or more")
        self.depth = MAX_DEPTH if depth == -1 else min(depth, MAX_DEPTH)
        self.m = m
        self.who = req.r
        self.root = req.r.is_host_root
        self.h = m.layout.resolve_one(controller)
        _, self.path, shown = lookup(m, req, self.h, cgroup)
        self.tree = tree(req, m, self.h)
        require_access(req.r, owner(self.tree, self.path, None, shown), Access.READ, shown)
        self.v2 = self.h.version == 2
        self.hidden = m.leaves.get(self.h.key)
        self.entries: list[Entry] = []
        self.complete = True
        self._bytes = 0

    def run(self) -> None:
        """Walk the subtree, parents before children.

        Each child is opened beneath its parent's open directory (one component, no
        symlinks, no other mount), so at most one directory per level is open at a time."""
        with self.tree.dirfd(self.path, _DIR) as fd:
            start = os.dup(fd)
        opened: list[_Open] = []
        stack: list[tuple[_Open | None, str, str, str, int]] = [(None, "", self.path, "", 0)]
        try:
            while stack:
                parent, name, path, rel, level = stack.pop()
                if parent is None:
                    fd = start
                else:
                    try:
                        fd = open_beneath(parent.fd, name, _DIR)
                    except OSError:
                        fd = -1  # removed meanwhile (or not a plain directory): skipped
                    parent.done()
                    if fd < 0:
                        continue
                try:
                    kids = self._visit(fd, path, rel, level < self.depth)
                except BaseException:
                    os.close(fd)
                    raise
                if kids is None:
                    os.close(fd)
                    self.complete = False
                    return
                if not kids:
                    os.close(fd)
                else:
                    here = _Open(fd, len(kids))
                    opened.append(here)
                    for kid in reversed(kids):
                        stack.append(
                            (
                                here,
                                kid,
                                names.join(path, kid),
                                f"{rel}/{kid}" if rel else kid,
                                level + 1,
                            )
                        )
        finally:
            for o in opened:
                o.close()

    def _visit(self, fd: int, path: str, rel: str, descend: bool) -> list[str] | None:
        """Record one cgroup (its directory open as *fd*); its children's names to walk, or
        None when a bound is hit."""
        if len(self.entries) >= MAX_CGROUPS:
            return None
        st = os.fstat(fd)
        if not may_access(self.who, FileOwner(st.st_uid, st.st_gid, st.st_mode), Access.READ):
            return self._add(rel, False, {}, [])
        values: dict[int, str] = {}
        for i, (file, field) in enumerate(self.keys):
            v = self._read(fd, file)
            if v is None:
                continue
            if self.v2 and field is None and file in _MEMBER_FILES:
                v = self._with_leaf(fd, file, v)
            if field is not None:
                v = _field(v, field)
                if v is None:
                    continue
            values[i] = v.rstrip("\n")
        # kernfs counts a directory's subdirectories in its link count: 2 means none
        kids = self._children(fd, path) if descend and st.st_nlink != 2 else []
        return self._add(rel, True, values, kids)

    def _add(
        self, rel: str, readable: bool, values: dict[int, str], kids: list[str]
    ) -> list[str] | None:
        size = 16 + len(rel) + sum(8 + len(v) for v in values.values())
        if self._bytes + size > MAX_BYTES:
            return None
        self._bytes += size
        self.entries.append((rel, readable, values))
        return kids

    def _read(self, dirfd: int, file: str) -> str | None:
        """The file's text if the caller may read it (checked on the very file opened)."""
        try:
            fd = os.open(file, _FILE, dir_fd=dirfd)
        except OSError:
            return None  # absent here, or not readable at all (a write-only knob)
        try:
            if not self.root:  # (host root may read anything: no need to look)
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode) or not may_access(
                    self.who, FileOwner(st.st_uid, st.st_gid, st.st_mode), Access.READ
                ):
                    return None
            data = os.read(fd, 65536)
            if len(data) == 65536:  # a cgroup file answers whole in one read when it fits
                chunks = [data]
                size = len(data)
                while chunk := os.read(fd, 65536):
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > MAX_VALUE:
                        return None
                data = b"".join(chunks)
            return data.decode("utf-8", "replace")
        except OSError:
            return None  # e.g. EISDIR, EOPNOTSUPP, or removed meanwhile
        finally:
            os.close(fd)

    def _with_leaf(self, dirfd: int, file: str, text: str) -> str:
        try:
            leaf = os.open(V2_LEAF, _DIR | os.O_NOFOLLOW, dir_fd=dirfd)
        except OSError:
            return text
        try:
            more = self._read(leaf, file)
        finally:
            os.close(leaf)
        if not more:
            return text
        return text + more if not text or text.endswith("\n") else text + "\n" + more

    def _children(self, dirfd: int, path: str) -> list[str]:
        kids = []
        with os.scandir(dirfd) as it:
            for e in it:
                if not e.is_dir(follow_symlinks=False):
                    continue
                name = e.name
                if self.v2 and name == V2_LEAF:
                    continue
                try:
                    name.encode("utf-8")  # a name D-Bus cannot carry was not made through us
                except UnicodeEncodeError:
                    continue
                if self.hidden is not None and names.join(path, name) == self.hidden:
                    continue
                kids.append(name)
        kids.sort()
        return kids


class _Open:
    """A directory kept open until its children have been opened beneath it."""

    __slots__ = ("fd", "pending")

    def __init__(self, fd: int, pending: int) -> None:
        self.fd = fd
        self.pending = pending

    def done(self) -> None:
        self.pending -= 1
        if self.pending == 0:
            self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _field(text: str, field: str) -> str | None:
    """The rest of the first line whose first word is *field* (kernel lines end at ``\\n``)."""
    head = field + " "
    for line in text.split("\n"):
        if line.startswith(head):
            return line[len(head) :]
    return None
