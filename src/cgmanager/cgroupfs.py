"""Operations on the cgroups of one hierarchy, every one resolved beneath its root.

:class:`CgroupTree` pins the hierarchy's mount with an ``O_PATH`` fd and resolves each cgroup
path with ``openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV)`` from it, so no
spelling, symlink or mount trick can make it act outside the hierarchy.  Paths are absolute
hierarchy paths as produced by :mod:`cgmanager.names`; keys are single file names.  This layer
knows nothing of requestors: *whether* an operation is allowed is the permission model's
question, asked before these are called.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from dataclasses import dataclass

from . import escapes, kerneltext, names
from ._linux import open_beneath
from .errors import Busy, CgmError, InvalidArgument, NotFound, from_oserror
from .hierarchy import Hierarchy

log = logging.getLogger(__name__)

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_PATH_DIR = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC

#: v1 files that hand a cgroup over to a delegatee (0.42 before a6f76bf: dir, tasks, procs)
V1_DELEGATE_FILES = ("tasks", "cgroup.procs")
#: used when /sys/kernel/cgroup/delegate cannot be read (kernels < 4.15 lack it)
V2_DEFAULT_DELEGATE_FILES = ("cgroup.procs", "cgroup.threads", "cgroup.subtree_control")

#: cgroup directories one request keeps resolved (see CgroupTree.hold): a request names one or
#: two cgroups and their parents; walks over whole subtrees open the rest as they go
MAX_HELD = 16

#: Upper bound on what one read returns; cgroup files are far smaller (cgroup.procs of a
#: cgroup with every pid of a 4M-pid machine is ~32 MiB, so this is not a functional limit).
MAX_READ = 64 << 20


def read_delegate_files(path: str = "/sys/kernel/cgroup/delegate") -> tuple[str, ...]:
    """The kernel's list of v2 files a delegatee must own, read at run time as runc/LXC do."""
    try:
        with open(path, "rb") as f:
            return tuple(kerneltext.lines(kerneltext.decode(f.read()), path))
    except (OSError, kerneltext.KernelTextError):
        return V2_DEFAULT_DELEGATE_FILES


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """One file of a cgroup directory, as ListKeys reports it."""

    name: str
    uid: int
    gid: int
    mode: int  # full st_mode, file-type bits included (0.42 compatibility)


class CgroupTree:
    """One hierarchy, opened at a mount point of it."""

    def __init__(
        self,
        hierarchy: Hierarchy,
        mountpoint: str | None = None,
        delegate_files: tuple[str, ...] | None = None,
    ) -> None:
        self.hierarchy = hierarchy
        self.mountpoint = mountpoint or hierarchy.mountpoint
        self.v2 = hierarchy.version == 2
        self.root_fd = os.open(self.mountpoint, _PATH_DIR)
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

    # -- resolution -----------------------------------------------------------------------

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

    def _open(self, path: str, flags: int = _DIR) -> int:
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

    def dirfd(self, path: str, flags: int = _DIR) -> _Dirfd:
        """An fd of the cgroup directory for a ``with`` block (closed at its end, unless it
        is held for the request)."""
        held = self._held
        if held is not None:
            fd = held.get(path)
            if flags == _PATH_DIR:
                if fd is not None:
                    return _Dirfd(fd, False)
                if len(held) < MAX_HELD:
                    fd = held[path] = self._open(path, flags)
                    return _Dirfd(fd, False)
            elif fd is not None and flags == _DIR:  # the very directory that was checked
                try:
                    return _Dirfd(os.open(".", flags, dir_fd=fd), True)
                except OSError as exc:
                    raise from_oserror(exc, f"cgroup {self._what(path)}") from None
        return _Dirfd(self._open(path, flags), True)

    def bound(self, held: dict[str, int]) -> CgroupTree:
        """A view of this tree for one request: each cgroup path it names is resolved once,
        into *held* (the request's, closed by it with :func:`release`), so the request's checks
        and its action concern the very same directory and repeated ``openat2`` calls are
        saved.  Only the first ``MAX_HELD`` paths are held (a request walking 10,000 cgroups
        must not hold 10,000 fds).  Views share the mount and the path cache; each request,
        on whichever thread it runs, has its own."""
        view = object.__new__(CgroupTree)
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
            with self.dirfd(path, _PATH_DIR):
                return True
        except NotFound:
            return False

    def stat(self, path: str, key: str | None = None) -> os.stat_result:
        """stat of the cgroup directory, or of one of its files (never following a link)."""
        with self.dirfd(path, _PATH_DIR) as fd:
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

    # -- structure --------------------------------------------------------------------------

    def mkdir(self, path: str, mode: int = 0o755) -> bool:
        """Create one cgroup whose parent exists; False if it already existed."""
        self._rel(path)
        parts = names.components(path)
        if not parts:
            return False
        name = parts[-1]
        if len(name.encode("utf-8", "surrogateescape")) > names.NAME_MAX:
            # (cgroupfs itself takes names up to about PATH_MAX; cgmanager makes none longer
            # than other file systems allow)
            raise InvalidArgument(
                f"cgroup {self._what(path)}: a name is at most {names.NAME_MAX} bytes",
                reason=f"a name is at most {names.NAME_MAX} bytes",
            )
        if names.is_escaped(name):
            # an escaped form names a cgroup made directly on cgroupfs; never made through us
            if self.exists(path):
                return False
            raise InvalidArgument(
                f"cgroup {self._what(path)}: cgmanager does not create names with characters"
                " it refuses (U+FFFD stands for them in names made directly on cgroupfs)",
                reason="cgmanager does not create names with characters it refuses",
            )
        with self.dirfd(names.parent(path), _PATH_DIR) as pfd:
            try:
                os.mkdir(name, mode, dir_fd=pfd)
            except FileExistsError:
                st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
                if not stat.S_ISDIR(st.st_mode):
                    raise InvalidArgument(
                        f"cgroup {self._what(path)}: a file of that name exists",
                        reason="a file of that name exists",
                    ) from None
                return False
            except OSError as exc:
                raise from_oserror(exc, f"create {self._what(path)}") from None
        return True

    def create(self, path: str) -> list[str]:
        """Create *path* and any missing parents; returns the paths created, top first."""
        created = []
        parts = names.components(path)
        for i in range(1, len(parts) + 1):
            p = "/" + "/".join(parts[:i])
            if self.mkdir(p):
                created.append(p)
        return created

    def children(self, path: str) -> list[str]:
        """Names of the child cgroups, in directory order."""
        with self.dirfd(path) as fd:
            return _child_names(fd)

    def populated(self, path: str) -> bool:
        """Whether the cgroup or a descendant holds a process."""
        if self.v2:
            return self.events(path).get("populated", 0) != 0
        return any(self.procs(p) for p in self.walk(path))

    def walk(self, path: str) -> list[str]:
        """*path* and all its descendants, parents before children (no recursion on client
        data: an iterative walk, so a very deep tree cannot exhaust the stack)."""
        result, stack = [], [path]
        while stack:
            p = stack.pop()
            result.append(p)
            try:
                kids = self.children(p)
            except NotFound:
                if p == path:
                    raise
                continue  # removed concurrently
            for k in reversed(kids):
                try:
                    stack.append(names.join(p, k))
                except InvalidArgument:
                    # deeper than PATH_MAX (a delegatee can chdir and mkdir on): no path
                    # reaches it, so it is left out rather than failing the whole walk
                    log.warning("%s: a child cgroup beyond PATH_MAX left out", self._what(p))
        return result

    def rmdir(self, path: str) -> None:
        self._rel(path)
        parts = names.components(path)
        if not parts:
            raise InvalidArgument("the hierarchy root cannot be removed")
        with self.dirfd(names.parent(path), _PATH_DIR) as pfd:
            try:
                os.rmdir(names.unescape(parts[-1]), dir_fd=pfd)
            except OSError as exc:
                raise from_oserror(exc, f"remove {self._what(path)}") from None
        self._forget(path)

    def remove(self, path: str, recursive: bool = False) -> None:
        """Remove a cgroup (and with *recursive*, its descendants, bottom-up).

        A populated subtree is refused before anything is removed, so a request that would
        fail on a busy cgroup deep down changes nothing.
        """
        tree = self.walk(path) if recursive else [path]
        if not recursive and self.children(path):
            raise Busy(
                f"remove {self._what(path)}: busy (it has child cgroups)",
                reason="busy (it has child cgroups)",
            )
        if self.populated(path):
            raise Busy(
                f"remove {self._what(path)}: busy (it or a descendant holds processes)",
                reason="busy (it or a descendant holds processes)",
            )
        for p in reversed(tree):
            self.rmdir(p)

    # -- processes --------------------------------------------------------------------------

    def _read_ids(self, path: str, filename: str) -> list[int]:
        text = self.read(path, filename)
        try:
            return kerneltext.ids(text, filename)
        except kerneltext.KernelTextError as e:
            raise CgmError(f"{self._what(path, filename)}: {e}", reason=str(e)) from None

    def procs(self, path: str) -> list[int]:
        """Processes (thread-group ids) in the cgroup itself."""
        return self._read_ids(path, self.procs_file)

    def threads(self, path: str) -> list[int]:
        """Threads in the cgroup itself (v1 ``tasks``, v2 ``cgroup.threads``)."""
        return self._read_ids(path, self.threads_file)

    def procs_recursive(self, path: str, threads: bool = False) -> list[int]:
        """Sorted, unique ids of the cgroup and all its descendants."""
        ids: set[int] = set()
        for p in self.walk(path):
            try:
                ids.update(self.threads(p) if threads else self.procs(p))
            except NotFound:
                if p == path:
                    raise
        return sorted(ids)

    def move(self, path: str, pid: int) -> None:
        """Move a whole process (all its threads) into the cgroup."""
        if pid <= 0:
            raise InvalidArgument(f"invalid pid {pid}")
        self.write(path, self.procs_file, str(pid))

    # -- keys -------------------------------------------------------------------------------

    def keys(self, path: str) -> list[KeyInfo]:
        """Every regular file of the cgroup with its owner, group and mode."""
        result = []
        with self.dirfd(path) as fd:
            try:
                with os.scandir(fd) as it:
                    for e in it:
                        st = e.stat(follow_symlinks=False)
                        if stat.S_ISREG(st.st_mode):
                            name = escapes.escape(e.name)  # kernel names: unchanged
                            result.append(KeyInfo(name, st.st_uid, st.st_gid, st.st_mode))
            except OSError as exc:
                raise from_oserror(exc, f"list keys of {self._what(path)}") from None
        return result

    def _open_key(self, path: str, key: str, flags: int) -> int:
        names.check_key(key)
        with self.dirfd(path, _PATH_DIR) as fd:
            try:
                kfd = os.open(key, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.EISDIR):
                    raise NotFound(
                        f"key {self._what(path, key)}: not found (not a file)",
                        reason="not found (not a file)",
                    ) from None
                raise from_oserror(exc, f"key {self._what(path, key)}") from None
        if not stat.S_ISREG(os.fstat(kfd).st_mode):
            os.close(kfd)
            raise NotFound(
                f"key {self._what(path, key)}: not found (not a file)",
                reason="not found (not a file)",
            )
        return kfd

    def open_key_fd(self, path: str, key: str, flags: int = os.O_RDONLY) -> int:
        """An fd of one key, for callers that poll it (cgroup.events); the caller closes it."""
        return self._open_key(path, key, flags)

    def read_bytes(self, path: str, key: str) -> bytes:
        fd = self._open_key(path, key, os.O_RDONLY)
        try:
            chunks, size = [], 0
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_READ:
                    raise CgmError(
                        f"key {self._what(path, key)}: larger than {MAX_READ} bytes",
                        reason=f"larger than {MAX_READ} bytes",
                    )
            return b"".join(chunks)
        except OSError as exc:
            raise from_oserror(exc, f"read {self._what(path, key)}") from None
        finally:
            os.close(fd)

    def read(self, path: str, key: str) -> str:
        return kerneltext.decode(self.read_bytes(path, key))

    def write(self, path: str, key: str, value: str | bytes) -> None:
        """One write(2) of the whole value, as the kernel parses each write separately."""
        data = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
        fd = self._open_key(path, key, os.O_WRONLY)
        try:
            n = os.write(fd, data)
            if n != len(data):
                raise CgmError(
                    f"write {self._what(path, key)}: short write ({n} of {len(data)})",
                    reason=f"short write ({n} of {len(data)})",
                )
        except OSError as exc:
            raise from_oserror(exc, f"write {self._what(path, key)}") from None
        finally:
            os.close(fd)

    def events(self, path: str, key: str = "cgroup.events") -> dict[str, int]:
        """A flat-keyed file such as cgroup.events or pids.events, as a dict."""
        try:
            return kerneltext.flat_keyed(self.read(path, key), key)
        except kerneltext.KernelTextError as e:
            raise CgmError(f"{self._what(path, key)}: {e}", reason=str(e)) from None

    # -- ownership --------------------------------------------------------------------------

    def chown(self, path: str, uid: int, gid: int) -> list[str]:
        """Delegate a cgroup: its directory plus the kernel's delegation files (v1: ``tasks``
        and ``cgroup.procs``; v2: /sys/kernel/cgroup/delegate's list, those that exist here).
        Resource files stay with their owner: they control the parent's resources.
        Returns the files chowned besides the directory."""
        done = []
        with self.dirfd(path) as fd:
            try:
                os.fchown(fd, uid, gid)
            except OSError as exc:
                raise from_oserror(exc, f"chown {self._what(path)}") from None
            for f in self.delegate_files:
                try:
                    os.chown(f, uid, gid, dir_fd=fd, follow_symlinks=False)
                    done.append(f)
                except FileNotFoundError:
                    continue  # e.g. memory.oom.group where memory is not enabled
                except OSError as exc:
                    raise from_oserror(exc, f"chown {self._what(path, f)}") from None
        return done

    def chown_all(self, path: str, uid: int, gid: int) -> None:
        """Give the directory and every file in it to uid:gid (0.42's Create: the creator owns
        all knobs of the cgroups it creates; the kernel keeps children within the parent)."""
        with self.dirfd(path) as fd:
            try:
                os.fchown(fd, uid, gid)
                with os.scandir(fd) as it:
                    for e in it:
                        if e.is_file(follow_symlinks=False):
                            os.chown(e.name, uid, gid, dir_fd=fd, follow_symlinks=False)
            except OSError as exc:
                raise from_oserror(exc, f"chown {self._what(path)}") from None

    def chmod(self, path: str, key: str | None, mode: int) -> None:
        """chmod the cgroup directory (*key* None) or one of its files, never through a link."""
        if mode < 0 or mode > 0o7777:
            raise InvalidArgument(f"invalid mode {mode:o}")
        if key is None:
            with self.dirfd(path) as fd:
                try:
                    os.fchmod(fd, mode)
                except OSError as exc:
                    raise from_oserror(exc, f"chmod {self._what(path)}") from None
            return
        names.check_key(key)
        with self.dirfd(path, _PATH_DIR) as fd:
            try:
                kfd = os.open(key, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except OSError as exc:
                raise from_oserror(exc, f"key {self._what(path, key)}") from None
        try:
            if not stat.S_ISREG(os.fstat(kfd).st_mode):
                raise NotFound(
                    f"key {self._what(path, key)}: not found (not a file)",
                    reason="not found (not a file)",
                )
            # fchmod refuses O_PATH fds; the /proc magic link names exactly this inode
            # (write-only knobs such as cgroup.kill cannot be opened for reading).
            os.chmod(f"/proc/self/fd/{kfd}", mode)
        except OSError as exc:
            raise from_oserror(exc, f"chmod {self._what(path, key)}") from None
        finally:
            os.close(kfd)


def release(held: dict[str, int]) -> None:
    """Close what a request's views held (see :meth:`CgroupTree.bound`)."""
    for fd in held.values():
        os.close(fd)
    held.clear()


class _Dirfd:
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


def _child_names(fd: int) -> list[str]:
    """Child cgroups as clients see them: a name made directly on cgroupfs with characters
    the API refuses (bytes that are not UTF-8, line separators…) in its one escaped form, so
    a listing never fails on it and never carries it raw (see :func:`escapes.escape`)."""
    try:
        with os.scandir(fd) as it:
            raw = [e.name for e in it if e.is_dir(follow_symlinks=False)]
    except OSError as exc:  # EMFILE (scandir duplicates the fd), ENOENT if removed meanwhile
        raise from_oserror(exc, "list child cgroups") from None
    if escapes.escape("/".join(raw)) == "/".join(raw):  # the usual case: one check for all
        return raw
    return [escapes.escape(n) for n in raw]
