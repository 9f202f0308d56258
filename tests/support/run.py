"""The run-wide registry: everything a test run creates, and its ordered cleanup.

Session fixtures hand out resources from here; the cleanup runs once after pytest has
torn down every fixture (and again from `atexit`, as a backup for a run that dies
another way), in dependency order:

    tracked processes -> cgroup roots (+ extra cgroups) -> hugetlb hold -> test users
    -> untracked direct children

A SIGTERM (e.g. from `timeout`) becomes a KeyboardInterrupt, which makes pytest stop
and tear down; a second SIGTERM, or one arriving while a test's fixtures are being torn
down or while the cleanup runs, is deferred or ignored so teardown is never cut short.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any, Protocol

from . import cgroots as _cgroots
from . import cgtree, hugetlb, leftovers, marks, mounts, procs, users


class ProcessHandle(Protocol):
    """What the registry needs from a tracked process (procs.Proc, ns.NsChild)."""

    pid: int
    pidfd: int

    def alive(self) -> bool: ...
    def kill(self, timeout: float = 5.0) -> int | None: ...


class Run:
    """One test run's resources (a singleton per pytest process; see `current`)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.mark = marks.my_mark()
        self.mounts_start = leftovers.snapshot_mounts()
        self._roots: _cgroots.CgRoots | None = None
        self._roots_error: str | None = None
        self.processes: list[ProcessHandle] = []
        self.users: list[users.TestUser] = []
        self.all_users: list[users.TestUser] = []  # including removed ones (leftover check)
        self.extra_cgroups: list[tuple[str, int, bool]] = []
        self.hugetlb: hugetlb.HugetlbToggle | None = None
        self.sweep_report: _cgroots.SweepReport | None = None
        self.notes: list[str] = []
        self.cleaning = False
        self.cleaned = False

    # ---------------------------------------------------------------- cgroups
    @property
    def roots_name(self) -> str | None:
        return self._roots.name if self._roots else None

    def roots(self) -> _cgroots.CgRoots:
        """The run's cgroup roots, created on first use (root only)."""
        if self._roots is None:
            if self._roots_error:
                raise RuntimeError(self._roots_error)
            if os.geteuid() != 0:
                self._roots_error = "cgroup roots need root"
                raise RuntimeError(self._roots_error)
            self._roots = _cgroots.create_run_roots(self.mark)
        return self._roots

    def roots_if_created(self) -> _cgroots.CgRoots | None:
        return self._roots

    def track_cgroup(self, path: str, version: int, writable: bool = True) -> None:
        """A cgroup created outside the run root (e.g. a fabricated root in a harness test):
        destroyed at cleanup and checked for leftovers."""
        self.extra_cgroups.append((path, version, writable))

    def thaw_if_ours(self, pid: int) -> None:
        """For a process that ignores SIGKILL: thaw its v1 freezer cgroup if in our run root."""
        r = self._roots
        if r is None or "freezer" not in r.available():
            return
        procs.thaw_if_ours(pid, r.mount("freezer"), r.rel("freezer"))

    # ---------------------------------------------------------------- processes
    def track_process(self, h: ProcessHandle) -> None:
        """Remember a process for the SIGTERM/atexit cleanup and the leftover check."""
        if len(self.processes) > 256:  # forget the ones already gone
            self.processes = [p for p in self.processes if p.pidfd >= 0 and p.alive()]
        self.processes.append(h)

    # ---------------------------------------------------------------- users
    def new_user(self) -> users.TestUser:
        """useradd a fresh test user, removed at cleanup."""
        u = users.create_user(self.mark)
        self.users.append(u)
        self.all_users.append(u)
        return u

    # ---------------------------------------------------------------- hugetlb
    def hugetlb_acquire(self) -> str:
        """Hold `+hugetlb` in the v2 root's subtree_control; returns the v2 mount."""
        v2 = self.roots().mount("unified")
        if self.hugetlb is None:
            self.hugetlb = hugetlb.HugetlbToggle(v2, self.mark)
        if not self.hugetlb.available():
            raise RuntimeError(f"hugetlb is not in {v2}/cgroup.controllers")
        self.hugetlb.acquire()
        return v2

    # ---------------------------------------------------------------- start/end
    def sweep(self) -> None:
        """Remove what dead runs left: cgtest roots, cgtu users, a pinned hugetlb toggle."""
        if os.geteuid() != 0:
            return
        hs = mounts.hierarchies()
        rep = _cgroots.sweep(hs=hs)
        removed_users, user_problems = users.sweep_users()
        rep.removed += removed_users
        rep.problems += user_problems
        v2 = next((h.mount for h in hs if h.version == 2), None)
        if v2:
            rep.problems += hugetlb.prune(v2)
        self.sweep_report = rep

    def cleanup(self) -> list[str]:
        """Remove everything this run created, in order; returns problems. Idempotent."""
        if os.getpid() != self.pid or self.cleaning:
            return []
        self.cleaning = True
        problems: list[str] = []
        try:
            for h in self.processes:
                if h.pidfd >= 0 and h.alive():
                    h.kill(0.5)
                    if h.alive():
                        self.thaw_if_ours(h.pid)
                        if h.kill(3.0) is None and h.alive():
                            problems.append(f"process {h.pid} would not die: {h!r}")
            self.processes = [h for h in self.processes if h.pidfd >= 0 and h.alive()]
            if self._roots is not None:
                problems += _cgroots.destroy_roots(self._roots)
            for path, version, writable in self.extra_cgroups:
                problems += cgtree.destroy_tree(path, version, writable=writable)
            if self.hugetlb is not None:
                problems += self.hugetlb.release()
            while self.users:
                problems += users.remove_user(self.users.pop())
            children = leftovers.live_children()
            if children:  # a leak by some test or fixture: kill it, but fail the run
                problems += [
                    f"untracked child process {pid} ({cmd}) was still running "
                    "at the end of the session (killed)"
                    for pid, cmd in children
                ]
                leftovers.kill_children(children)
        finally:
            self.cleaning = False
            self.cleaned = True
        return problems


_RUN: Run | None = None


def current() -> Run | None:
    """The run of this process (None in a forked child, or before configure)."""
    if _RUN is not None and _RUN.pid == os.getpid():
        return _RUN
    return None


def start() -> Run:
    """Create the run singleton (pytest_configure); install SIGTERM + atexit handling."""
    global _RUN
    if current() is None:
        _RUN = Run()
        _install_sigterm()
        atexit.register(_atexit)
    assert _RUN is not None
    return _RUN


# -------------------------------------------------------------------- SIGTERM
class _SigState:
    terminating = False  # a SIGTERM arrived
    pending = False  # ... and is waiting for a teardown to finish
    defer_depth = 0
    ignore = False  # session teardown/cleanup in progress: never interrupt it


_SIG = _SigState()


def _on_sigterm(signum: int, frame: Any) -> None:
    r = current()
    if r is None:  # a forked child that kept our handler: behave like SIG_DFL
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        return
    if _SIG.terminating or _SIG.ignore or r.cleaning:
        r.notes.append(f"SIGTERM ignored at {time.strftime('%H:%M:%S')} (teardown in progress)")
        return
    _SIG.terminating = True
    r.notes.append("SIGTERM received: stopping the run and tearing down")
    if _SIG.defer_depth:
        _SIG.pending = True
        return
    raise KeyboardInterrupt("SIGTERM")


def _install_sigterm() -> None:
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _on_sigterm)


@contextlib.contextmanager
def defer_sigterm() -> Iterator[None]:
    """Hold back a SIGTERM's KeyboardInterrupt until the block (a teardown) is done."""
    _SIG.defer_depth += 1
    try:
        yield
    finally:
        _SIG.defer_depth -= 1
    if _SIG.pending and not _SIG.defer_depth:
        _SIG.pending = False
        raise KeyboardInterrupt("SIGTERM")


def ignore_sigterm() -> None:
    """From now on a SIGTERM only leaves a note (the session's teardown has started)."""
    _SIG.ignore = True


def sigterm_received() -> bool:
    return _SIG.terminating


def _atexit() -> None:
    r = current()
    if r is None or r.cleaned:
        return
    _SIG.ignore = True
    problems = r.cleanup()
    left = leftovers.find(r)
    if problems or left:
        print("cgtest (atexit): could not clean up: " + "; ".join(problems + left), file=sys.stderr)
