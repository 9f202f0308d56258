"""The core of a :class:`~cgmanager.cgroupfs.CgroupTree`: one hierarchy opened at a mount, and
every cgroup path resolved beneath its root.

The mount is pinned with an ``O_PATH`` fd and each path is opened from it with ``openat2(
RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV)``, so no spelling, symlink or mount
trick can make the daemon act outside the hierarchy.  A request works on a *view* of the tree
(:meth:`TreeBase.bound`) that keeps the directories it names resolved, so its checks and its
action concern the very same directory.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import Self

from .. import kerneltext, names
from .._linux import open_beneath
from ..errors import InvalidArgument, NotFound, from_oserror
from ..hierarchy import Hierarchy

#: flags of a cgroup directory opened to list it or act on it
DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
#: flags of a cgroup directory opened only to name it (``*at`` calls, fstat, held by a view)
PATH_DIR = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC

#: v1 files that hand a cgroup over to a delegatee (0.42 before a6f76bf: dir, tasks, procs)
V1_DELEGATE_FILES = ("tasks", "cgroup.procs")
#: used when /sys/kernel/cgroup/delegate cannot be read (kernels < 4.15 lack it)
V2_DEFAULT_DELEGATE_FILES = ("cgroup.procs", "cgroup.threads", "cgroup.subtree_control")

#: cgroup directories one request keeps resolved (see TreeBase.bound): a request names one or
#: two cgroups and their parents; walks over whole subtrees open the rest as they go
MAX_HELD = 16


def read_delegate_files(path: str = "/sys/kernel/cgroup/delegate") -> tuple[str, ...]:
    """The kernel's list of v2 files a delegatee must own, read at run time as runc/LXC do."""
    try:
        with open(path, "rb") as f:
            return tuple(kerneltext.lines(kerneltext.decode(f.read()), path))
    except (OSError, kerneltext.KernelTextError):
        return V2_DEFAULT_DELEGATE_FILES


class TreeBase:
    """One hierarchy, opened at a mount point of it: resolution, held views, ``stat``."""

    def __init__(
        self,
        hierarchy: Hierarchy,
        mountpoint: str | None = None,
        delegate_files: tuple[str, ...] | None = None,
    ) -> None:
        self.hierarchy = hierarchy
        self.mountpoint = mountpoint or hierarchy.mountpoint
        self.v2 = hierarchy.version == 2
        self.root_fd = os.open(self.mountpoint, PATH_DIR)
        if self.v2:
            self.delegate_files = delegate_files or read_delegate_files()
        else:
            self.delegate_files = V1_DELEGATE_FILES
        #: the file listing the member processes (0.42 listed v1 threads from ``tasks``)
        self.procs_file = "cgroup.procs"
        self.threads_file = "cgroup.threads" if self.v2 else "tasks"
        #: resolved paths (pure function of the path; bounded)
        self._rels: dict[str, str] = {}
        #: in a request's view (see :meth:`bound`): path -> O_PATH fd resolved once for it
        self._held: dict[str, int] | None = None

    def close(self) -> None:
        if self.root_fd >= 0:
            os.close(self.root_fd)
            self.root_fd = -1

    def __repr__(self) -> str:
        return f"CgroupTree({self.hierarchy.key!r} at {self.mountpoint!r})"

    def _rel(self, path: str) -> str:
        """Hierarchy path → path relative to the mount (which may show a subtree)."""
        rel = self._rels.get(path)
        if rel is None:
            rel = self._resolve_rel(path)
            if len(self._rels) >= 4096:
                self._rels.clear()
            self._rels[path] = rel
        return rel

    def _resolve_rel(self, path: str) -> str:
        """The uncached :meth:`_rel`: the names on cgroupfs (escaped components decoded, see
        :func:`cgmanager.escapes.escape`), relative to the mount.

        Re-validates the components (defence in depth: '..' must never reach a system
        call)."""
        if not path.startswith("/"):
            raise InvalidArgument(f"internal: cgroup path {path!r} is not absolute")
        parts = names.split(path)
        root = self.hierarchy.mount_root
        if root != "/":
            if not names.is_under(path, root):
                raise NotFound(
                    f"cgroup {path}: not reachable through this mount",
                    reason="not reachable through this mount",
                )
            parts = names.components(names.relative_to(names.join("/", *parts), root))
        return "/".join(names.unescape(p) for p in parts)

    def _what(self, path: str, key: str | None = None) -> str:
        where = f"{self.hierarchy.key}:{path}"
        return f"{where} {key}" if key else where

    def _open(self, path: str, flags: int = DIR) -> int:
        try:
            return open_beneath(self.root_fd, self._rel(path), flags)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.EXDEV, errno.ENOTDIR):
                # a symlink, a mount or a file where a cgroup directory was expected
                raise InvalidArgument(
                    f"cgroup {self._what(path)}: not a cgroup (a file, link or mount)",
                    reason="not a cgroup (a file, link or mount of that name exists)",
                ) from None
            raise from_oserror(exc, f"cgroup {self._what(path)}") from None

    def dirfd(self, path: str, flags: int = DIR) -> Dirfd:
        """An fd of the cgroup directory for a ``with`` block (closed at its end, unless it
        is held for the request)."""
        held = self._held
        if held is not None:
            fd = held.get(path)
            if flags == PATH_DIR:
                if fd is not None:
                    return Dirfd(fd, False)
                if len(held) < MAX_HELD:
                    fd = held[path] = self._open(path, flags)
                    return Dirfd(fd, False)
            elif fd is not None and flags == DIR:  # the very directory that was checked
                try:
                    return Dirfd(os.open(".", flags, dir_fd=fd), True)
                except OSError as exc:
                    raise from_oserror(exc, f"cgroup {self._what(path)}") from None
        return Dirfd(self._open(path, flags), True)

    def bound(self, held: dict[str, int]) -> Self:
        """A view of this tree for one request: each cgroup path it names is resolved once,
        into *held* (the request's, closed by it with :func:`release`), so the request's checks
        and its action concern the very same directory and repeated ``openat2`` calls are
        saved.  Only the first ``MAX_HELD`` paths are held (a request walking 10,000 cgroups
        must not hold 10,000 fds).  Views share the mount and the path cache; each request,
        on whichever thread it runs, has its own."""
        view = object.__new__(type(self))
        view.__dict__.update(self.__dict__)
        view._held = held
        return view

    def _forget(self, path: str) -> None:
        """*path* and its descendants were removed: resolve them afresh if asked again."""
        held = self._held
        if held:
            prefix = path.rstrip("/") + "/"
            for p in [p for p in held if p == path or p.startswith(prefix)]:
                os.close(held.pop(p))

    def exists(self, path: str) -> bool:
        try:
            with self.dirfd(path, PATH_DIR):
                return True
        except NotFound:
            return False

    def stat(self, path: str, key: str | None = None) -> os.stat_result:
        """stat of the cgroup directory, or of one of its files (never following a link)."""
        with self.dirfd(path, PATH_DIR) as fd:
            if key is None:
                return os.fstat(fd)
            names.check_key(key)
            try:
                st = os.stat(key, dir_fd=fd, follow_symlinks=False)
            except OSError as exc:
                raise from_oserror(exc, f"key {self._what(path, key)}") from None
            if not stat.S_ISREG(st.st_mode):
                raise NotFound(
                    f"key {self._what(path, key)}: not found (not a file)",
                    reason="not found (not a file)",
                )
            return st


def release(held: dict[str, int]) -> None:
    """Close what a request's views held (see :meth:`TreeBase.bound`)."""
    for fd in held.values():
        os.close(fd)
    held.clear()


class Dirfd:
    """``with tree.dirfd(path) as fd``: cheaper than a generator-based context manager, which
    matters at several per request."""

    __slots__ = ("fd", "owned")

    def __init__(self, fd: int, owned: bool) -> None:
        self.fd = fd
        self.owned = owned

    def __enter__(self) -> int:
        return self.fd

    def __exit__(self, *exc: object) -> None:
        if self.owned:
            os.close(self.fd)
