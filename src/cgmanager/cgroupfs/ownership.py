"""Who owns a cgroup and its keys: delegation (chown of the directory and the kernel's
delegation files), 0.42's creator-owns-all, and chmod — never through a link.

Resource files stay with their owner when a cgroup is delegated: they control the parent's
resources (systemd's and the kernel's delegation rules).
"""

from __future__ import annotations

import os
import stat

from .. import names
from ..errors import InvalidArgument, NotFound, from_oserror
from .resolution import PATH_DIR, TreeBase


class Ownership(TreeBase):
    """Changing the owner and mode of a tree's cgroups and keys."""

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
        with self.dirfd(path, PATH_DIR) as fd:
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
