"""Reading and writing a cgroup's keys (its files), never through a link.

A key is one file name, checked by :func:`cgmanager.names.check_key`; it is opened beneath the
cgroup's directory with ``O_NOFOLLOW`` and must be a regular file.  A write is one ``write(2)``
of the whole value, because the kernel parses each write on its own.
"""

from __future__ import annotations

import errno
import os
import stat

from .. import kerneltext, names
from ..errors import CgmError, NotFound, from_oserror
from .resolution import PATH_DIR, TreeBase

#: Upper bound on what one read returns; cgroup files are far smaller (cgroup.procs of a
#: cgroup with every pid of a 4M-pid machine is ~32 MiB, so this is not a functional limit).
MAX_READ = 64 << 20


class KeyFiles(TreeBase):
    """Reading and writing the keys of a tree's cgroups."""

    def _open_key(self, path: str, key: str, flags: int) -> int:
        names.check_key(key)
        with self.dirfd(path, PATH_DIR) as fd:
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
