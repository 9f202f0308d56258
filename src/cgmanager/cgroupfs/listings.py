"""What a cgroup holds: its child cgroups (one level, or the whole subtree), its keys, its
processes and threads, and whether anything below it is populated.

Names made directly on cgroupfs may carry characters the API refuses; listings show them in
their one escaped form (:func:`cgmanager.escapes.escape`), so a listing never fails on such a
name and never carries it raw.  Walks are iterative: a very deep tree cannot exhaust the stack.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass

from .. import escapes, kerneltext, names
from ..errors import CgmError, InvalidArgument, NotFound, from_oserror
from .keys import KeyFiles

log = logging.getLogger("cgmanager.cgroupfs")


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """One file of a cgroup directory, as ListKeys reports it."""

    name: str
    uid: int
    gid: int
    mode: int  # full st_mode, file-type bits included (0.42 compatibility)


class Listings(KeyFiles):
    """Listing a tree's cgroups, keys and processes."""

    def children(self, path: str) -> list[str]:
        """Names of the child cgroups, in directory order."""
        with self.dirfd(path) as fd:
            return _child_names(fd)

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

    def populated(self, path: str) -> bool:
        """Whether the cgroup or a descendant holds a process."""
        if self.v2:
            return self.events(path).get("populated", 0) != 0
        return any(self.procs(p) for p in self.walk(path))

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
