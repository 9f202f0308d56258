"""Owner marks "<pid>:<starttime>": identify a process robustly against pid reuse.

pid_max is 32768 on these machines, so a bare pid is not an identity; the pair with
the start time (field 22 of /proc/<pid>/stat, in clock ticks since boot) is.
"""

from __future__ import annotations

import os

OWNER_XATTR = "user.cgtest.owner"


def proc_starttime(pid: int) -> int | None:
    """Start time of `pid` (field 22 of /proc/<pid>/stat), or None if it does not exist."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm (field 2) may contain spaces and parentheses: split after the last ')'.
    rest = data[data.rindex(b")") + 2 :].split()
    return int(rest[22 - 3])


def mark_of(pid: int) -> str | None:
    """The owner mark of a live process, or None if it is gone."""
    start = proc_starttime(pid)
    return None if start is None else f"{pid}:{start}"


def my_mark() -> str:
    """The owner mark of the calling process (recomputed per pid: fork-safe)."""
    mark = mark_of(os.getpid())
    assert mark is not None
    return mark


def parse_mark(mark: str) -> tuple[int, int] | None:
    """(pid, starttime) from a mark, or None if malformed."""
    pid_s, sep, start_s = mark.strip().partition(":")
    if not sep or not pid_s.isdigit() or not start_s.isdigit():
        return None
    return int(pid_s), int(start_s)


def mark_alive(mark: str) -> bool | None:
    """True if the marked process still runs, False if gone, None if the mark is malformed."""
    parsed = parse_mark(mark)
    if parsed is None:
        return None
    pid, start = parsed
    return proc_starttime(pid) == start


def read_owner(path: str) -> str | None:
    """The owner mark stored on a cgroup directory, or None if unmarked/unreadable."""
    try:
        return os.getxattr(path, OWNER_XATTR).decode(errors="replace")
    except OSError:
        return None


def write_owner(path: str, mark: str) -> None:
    """Mark a cgroup directory as owned by `mark`."""
    os.setxattr(path, OWNER_XATTR, mark.encode())
