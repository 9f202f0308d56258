"""The process a request acts on (MovePid, GetPidCgroup), pinned by a pidfd.

The pidfd is opened before any check, the facts are read through it, and it is checked again
after the move: pid reuse cannot turn a check on one process into an action on another
without being noticed.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Self

from .errors import NotFound
from .hierarchy import Layout
from .procfs import ProcDir
from .requestor import cgroups_of


@dataclass
class Victim:
    pid: int
    uid: int  # real uid, as 0.42 used for victim checks
    cgroups: Mapping[str, str]
    pidfd: int

    @classmethod
    def open(cls, pid: int, layout: Layout, pidfd: int | None = None) -> Victim:
        """Pin process *pid*; *pidfd*, when the kernel handed one over with the pid (SCM_PIDFD),
        is used instead of opening one (it is duplicated: the caller keeps its own)."""
        if pid <= 0:
            raise NotFound(f"process {pid}: not found")
        try:
            pidfd = os.dup(pidfd) if pidfd is not None else os.pidfd_open(pid)
        except (ProcessLookupError, OSError):
            raise NotFound(f"process {pid}: not found") from None
        try:
            with ProcDir(pid, pidfd) as d:
                return cls(pid, d.real_uid(), cgroups_of(d, layout), pidfd)
        except BaseException:
            os.close(pidfd)
            raise

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
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
