"""The one global write some v2 tests need: `+hugetlb` in the v2 root's subtree_control.

Several test runs may share the machine, so the toggle is reference-counted under an
exclusive flock: every run that needs it leaves a holder file named by its owner mark
("<pid>:<starttime>") in HOLDERS. The toggle is added only if absent, and then the
`.added` flag records that the cgtest scheme (not the host) turned it on; the last live
holder to leave turns it off again, and only then. Holder files of dead runs are
pruned whenever the lock is taken, so a killed run cannot pin the toggle forever.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator

from . import marks

LOCK = "/run/cgtest-hugetlb.lock"
HOLDERS = "/run/cgtest-hugetlb.holders"
ADDED = ".added"


@contextlib.contextmanager
def _locked(lock: str) -> Iterator[None]:
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _subtree_control(v2_root: str) -> set[str]:
    """Enabled controllers. (The kernel file never holds "+x"/"-x"; a plain file standing in
    for it in the harness's own tests does, so those are read as enabled/disabled.)"""
    with open(os.path.join(v2_root, "cgroup.subtree_control")) as f:
        return {t.lstrip("+") for t in f.read().split() if not t.startswith("-")}


def _write_control(v2_root: str, text: str) -> None:
    with open(os.path.join(v2_root, "cgroup.subtree_control"), "w") as f:
        f.write(text)


def _live_holders(holders: str) -> list[str]:
    """Holder marks still alive; removes the files of dead ones."""
    live = []
    for name in os.listdir(holders):
        if name == ADDED:
            continue
        if marks.mark_alive(name):
            live.append(name)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(holders, name))
    return live


class HugetlbToggle:
    """acquire()/release() of `+hugetlb` at the v2 root for one holder mark."""

    def __init__(self, v2_root: str, mark: str, lock: str = LOCK, holders: str = HOLDERS):
        self.v2_root = v2_root
        self.mark = mark
        self.lock = lock
        self.holders = holders
        self.held = False

    def available(self) -> bool:
        """Whether the kernel offers hugetlb on the v2 tree at all."""
        try:
            with open(os.path.join(self.v2_root, "cgroup.controllers")) as f:
                return "hugetlb" in f.read().split()
        except OSError:
            return False

    def acquire(self) -> None:
        """Ensure `hugetlb` is in the v2 root's subtree_control while we hold it."""
        if self.held:
            return
        with _locked(self.lock):
            os.makedirs(self.holders, exist_ok=True)
            _live_holders(self.holders)
            with open(os.path.join(self.holders, self.mark), "w"):
                pass
            self.held = True
            if "hugetlb" not in _subtree_control(self.v2_root):
                try:
                    _write_control(self.v2_root, "+hugetlb")
                except OSError:
                    os.unlink(os.path.join(self.holders, self.mark))
                    self.held = False
                    raise
                with open(os.path.join(self.holders, ADDED), "w"):
                    pass

    def release(self) -> list[str]:
        """Drop our hold; the last live holder removes the toggle if the scheme added it."""
        if not self.held:
            return []
        with _locked(self.lock):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.holders, self.mark))
            self.held = False
            return _maybe_disable(self.v2_root, self.holders)


def _maybe_disable(v2_root: str, holders: str) -> list[str]:
    """Under the lock: turn the toggle off if nobody live holds it and the scheme added it."""
    if not os.path.isdir(holders) or _live_holders(holders):
        return []
    added = os.path.join(holders, ADDED)
    if not os.path.exists(added):
        return []
    if "hugetlb" in _subtree_control(v2_root):
        try:
            _write_control(v2_root, "-hugetlb")
        except OSError as e:
            # e.g. EBUSY: a child still enables it; keep the flag so a later run retries
            return [f"could not remove +hugetlb from {v2_root}: {e.strerror}"]
    os.unlink(added)
    return []


def prune(v2_root: str, lock: str = LOCK, holders: str = HOLDERS) -> list[str]:
    """Sweeper: undo a toggle left by dead runs (no live holder, `.added` present)."""
    if not os.path.isdir(holders):
        return []
    with _locked(lock):
        return _maybe_disable(v2_root, holders)


def holder_exists(mark: str, holders: str = HOLDERS) -> bool:
    return os.path.exists(os.path.join(holders, mark))
