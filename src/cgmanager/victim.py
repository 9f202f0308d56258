"""The process a request acts on (MovePid, GetPidCgroup), pinned by a pidfd.

The pidfd is opened before any check, the facts are read through it, and it is checked again
after the move: pid reuse cannot turn a check on one process into an action on another
without being noticed.
"""

from __future__ import annotations

import errno
import os
import signal
from collections.abc import Mapping
from typing import Self

from .errors import NotFound, from_oserror
from .hierarchy import Layout
from .procfs import ProcDir
from .requestor import cgroups_of


class Victim:
    """A process pinned by a pidfd, with its cgroups; its real uid (what 0.42 judged victims
    by) is read through the same pinned /proc directory only when a check needs it — host
    root's moves never do."""

    __slots__ = ("pid", "cgroups", "pidfd", "_uid", "_proc")

    def __init__(
        self,
        pid: int,
        uid: int | None,
        cgroups: Mapping[str, str],
        pidfd: int,
        proc: ProcDir | None = None,
    ) -> None:
        self.pid = pid
        self.cgroups = cgroups
        self.pidfd = pidfd
        self._uid = uid
        self._proc = proc

    @classmethod
    def open(cls, pid: int, layout: Layout, pidfd: int | None = None) -> Victim:
        """Pin process *pid*; *pidfd*, when the kernel handed one over with the pid (SCM_PIDFD),
        is used instead of opening one (it is duplicated: the caller keeps its own)."""
        if pid <= 0:
            raise NotFound(f"process {pid}: not found")
        try:
            pidfd = os.dup(pidfd) if pidfd is not None else os.pidfd_open(pid)
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                raise from_oserror(exc, f"process {pid}") from None
            raise NotFound(f"process {pid}: not found") from None
        d = None
        try:
            d = ProcDir(pid, pidfd)
            return cls(pid, None, cgroups_of(d, layout), pidfd, d)
        except BaseException:
            if d is not None:
                d.close()
            os.close(pidfd)
            raise

    @property
    def uid(self) -> int:
        """The real uid (fails with NotFound once the process has exited)."""
        if self._uid is None:
            if self._proc is None:
                raise NotFound(f"process {self.pid}: exited")
            self._uid = self._proc.real_uid()
        return self._uid

    def real_uid(self) -> int:
        """:attr:`uid` as a call, for checks that learn it only when they need it."""
        return self.uid

    def require_alive(self) -> None:
        """Right before acting on the pid: the checked process still owns it (the kernel takes
        a pid, not a pidfd, in cgroup.procs)."""
        if not self.alive():
            raise NotFound(f"process {self.pid}: exited")

    def alive(self) -> bool:
        try:
            signal.pidfd_send_signal(self.pidfd, 0)
            return True
        except ProcessLookupError:
            return False

    def close(self) -> None:
        if self._proc is not None:
            self._proc.close()
            self._proc = None
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
