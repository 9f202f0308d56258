"""Changing a tree's shape: cgroups made and removed, processes moved in.

A removal that would fail on a busy cgroup deep down is refused before anything is removed;
names with characters the API refuses are never made (only found, when made on cgroupfs).
"""

from __future__ import annotations

import os
import stat

from .. import names
from ..errors import Busy, InvalidArgument, from_oserror
from .listings import Listings
from .resolution import PATH_DIR


class Structure(Listings):
    """Making and removing a tree's cgroups, and moving processes into them."""

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
        with self.dirfd(names.parent(path), PATH_DIR) as pfd:
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

    def rmdir(self, path: str) -> None:
        self._rel(path)
        parts = names.components(path)
        if not parts:
            raise InvalidArgument("the hierarchy root cannot be removed")
        with self.dirfd(names.parent(path), PATH_DIR) as pfd:
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

    def move(self, path: str, pid: int) -> None:
        """Move a whole process (all its threads) into the cgroup."""
        if pid <= 0:
            raise InvalidArgument(f"invalid pid {pid}")
        self.write(path, self.procs_file, str(pid))
