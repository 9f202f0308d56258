"""Child processes tracked by pidfd.

pid_max is 32768 here and pids wrap within minutes, so a pid stored across a test is not
an identity: every process the harness starts is held by a pidfd, signalled with
`pidfd_send_signal`, and reaped by its Popen.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from . import cgtree

if TYPE_CHECKING:
    from .users import TestUser


def pidfd_exited(pidfd: int) -> bool:
    """True once the process behind `pidfd` has terminated (zombie or reaped)."""
    p = select.poll()
    p.register(pidfd, select.POLLIN)
    return bool(p.poll(0))


def pidfd_wait_exit(pidfd: int, timeout: float) -> bool:
    """Wait up to `timeout` seconds for termination (without reaping)."""
    p = select.poll()
    p.register(pidfd, select.POLLIN)
    return bool(p.poll(max(0, int(timeout * 1000))))


def pidfd_kill(pidfd: int, sig: int = signal.SIGKILL) -> bool:
    """Signal through a pidfd; False if the process is already gone."""
    try:
        signal.pidfd_send_signal(pidfd, sig)
        return True
    except ProcessLookupError:
        return False


def _cgroup_lines(pid: int) -> list[tuple[str, str]]:
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            out = []
            for line in f:
                _hid, ctrls, path = line.rstrip("\n").split(":", 2)
                out.append((ctrls, path))
            return out
    except OSError:
        return []


def thaw_if_ours(pid: int, freezer_mount: str | None, run_rel: str | None) -> None:
    """Thaw the v1 freezer cgroup holding `pid`, but only inside our run root.

    A task frozen by the v1 freezer does not die on SIGKILL until thawed.
    """
    if not freezer_mount or not run_rel:
        return
    for ctrls, path in _cgroup_lines(pid):
        if "freezer" in ctrls.split(",") and (path == run_rel or path.startswith(run_rel + "/")):
            cgtree.thaw_v1(os.path.join(freezer_mount, run_rel.lstrip("/")))


class Proc:
    """A child started by `ProcTracker.spawn`: Popen + pidfd."""

    def __init__(self, popen: subprocess.Popen, argv: Sequence[str], user: TestUser | None):
        self.popen = popen
        self.pid: int = popen.pid
        self.argv = list(argv)
        self.user = user
        # The child is not reaped before we wait for it, so this pidfd is the right process.
        self.pidfd: int = os.pidfd_open(popen.pid)

    def alive(self) -> bool:
        """Still running (not yet terminated). A closed Proc was reaped: not alive."""
        return self.pidfd >= 0 and not pidfd_exited(self.pidfd)

    def signal(self, sig: int) -> bool:
        """Send `sig` via the pidfd; False if it has already terminated."""
        return self.pidfd >= 0 and pidfd_kill(self.pidfd, sig)

    def kill(self, timeout: float = 5.0) -> int | None:
        """SIGKILL and reap; returns the exit status (None if it would not die in time)."""
        self.signal(signal.SIGKILL)
        return self.wait(timeout)

    def wait(self, timeout: float | None = None) -> int | None:
        """Reap and return the returncode, or None on timeout."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def close(self) -> None:
        for stream in (self.popen.stdin, self.popen.stdout, self.popen.stderr):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1

    def __repr__(self) -> str:
        return f"Proc(pid={self.pid}, argv={self.argv!r})"


def _make_preexec(
    cgroup: str | None, user: TestUser | None, chained: Callable[[], Any] | None
) -> Callable[[], None] | None:
    """Runs in the child between fork and exec: join the cgroup first (as root), then drop ids."""
    if cgroup is None and user is None and chained is None:
        return None
    procs_file = os.path.join(cgroup, "cgroup.procs") if cgroup else None
    groups = list(user.groups) if user else []

    def preexec() -> None:
        if procs_file:
            fd = os.open(procs_file, os.O_WRONLY)
            try:
                os.write(fd, b"0")  # "0" = the writing process (v1 and v2)
            finally:
                os.close(fd)
        if user is not None:
            os.setgroups(groups)
            os.setresgid(user.gid, user.gid, user.gid)
            os.setresuid(user.uid, user.uid, user.uid)
        if chained is not None:
            chained()

    return preexec


class ProcTracker:
    """`procs` fixture: spawn tracked children; teardown kills and reaps survivors."""

    def __init__(
        self,
        on_spawn: Callable[[Proc], None] | None = None,
        on_stuck: Callable[[int], None] | None = None,
    ):
        """on_spawn(proc): e.g. register with the run; on_stuck(pid): called for a process
        that survives SIGKILL for 0.5 s (e.g. thaw its v1 freezer cgroup if it is ours)."""
        self.procs: list[Proc] = []
        self._on_spawn = on_spawn
        self._on_stuck = on_stuck

    def spawn(
        self,
        argv: Sequence[str],
        *,
        user: TestUser | None = None,
        cgroup: str | None = None,
        **popen_kw: Any,
    ) -> Proc:
        """Start `argv`; `cgroup` (absolute cgroup dir) is joined before exec, then `user` is
        assumed (setgroups/setresgid/setresuid). Other keywords go to subprocess.Popen.

        Note: joining a cgroup uses preexec_fn (Python code between fork and exec, which
        Python warns is unsafe with threads); `user` alone uses Popen's own user/group/
        extra_groups, done in C.
        """
        chained = popen_kw.pop("preexec_fn", None)
        drop_ids_in_preexec = user is not None and (cgroup is not None or chained is not None)
        if user is not None:
            popen_kw["env"] = user.env(popen_kw.get("env"))
            popen_kw.setdefault("cwd", user.home)
            if not drop_ids_in_preexec:
                popen_kw.update(user.popen_kwargs())
        preexec = _make_preexec(cgroup, user if drop_ids_in_preexec else None, chained)
        popen = subprocess.Popen(list(argv), preexec_fn=preexec, **popen_kw)  # noqa: PLW1509
        proc = Proc(popen, argv, user)
        self.procs.append(proc)
        if self._on_spawn:
            self._on_spawn(proc)
        return proc

    def cleanup(self, timeout: float = 5.0) -> list[str]:
        """SIGKILL every survivor via its pidfd, reap all; return what would not die."""
        problems = []
        for p in self.procs:
            p.signal(signal.SIGKILL)
        deadline = time.monotonic() + timeout
        for p in self.procs:
            if p.pidfd >= 0 and not pidfd_wait_exit(p.pidfd, 0.5):
                if self._on_stuck:
                    self._on_stuck(p.pid)
                p.signal(signal.SIGKILL)
            if p.wait(max(0.0, deadline - time.monotonic())) is None:
                problems.append(f"process {p.pid} {p.argv!r} did not die")
                continue
            p.close()
        self.procs = [p for p in self.procs if p.pidfd >= 0]
        return problems
