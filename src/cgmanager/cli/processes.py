"""What ``cgm tree`` shows of a process: its command line, kernel thread or not, threads.

Read from ``/proc`` of the machine cgm runs on: the daemon reports ids in its own pid
namespace, which is cgm's for plain calls.  Everything a process put in its argv is shown on
one line, control characters escaped.
"""

from __future__ import annotations

#: PF_KTHREAD in the flags field of /proc/<pid>/stat
PF_KTHREAD = 0x00200000
_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\\": "\\\\"}


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def printable(text: str) -> str:
    """One line whatever a process put in its argv: control characters escaped C-style."""
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(
        _ESCAPES.get(c)
        or (c if c.isprintable() else f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")
        for c in text
    )


class Process:
    """A process as /proc shows it now (``cmd`` ``?`` if it exited meanwhile)."""

    __slots__ = ("pid", "cmd", "threads", "kernel")

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.kernel = False
        self.threads = 0
        stat = _read(f"/proc/{pid}/stat")
        if stat:
            fields = stat[stat.rfind(b")") + 2 :].split(b" ")
            try:
                self.kernel = bool(int(fields[6]) & PF_KTHREAD)  # field 9: flags
                self.threads = max(int(fields[17]) - 1, 0)  # field 20: num_threads
            except (IndexError, ValueError):
                pass
        self.cmd = _command(pid)


def _command(pid: int) -> str:
    raw = _read(f"/proc/{pid}/cmdline")
    if raw:
        return printable(raw.rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "replace"))
    comm = _read(f"/proc/{pid}/comm")
    if comm is not None:  # a kernel thread, or a zombie
        return "[" + printable(comm.rstrip(b"\n").decode("utf-8", "replace")) + "]"
    return "?"  # exited meanwhile


def pids_of(text: str | None) -> list[int]:
    """The ids of a cgroup.procs text (one per line)."""
    if not text:
        return []
    return [int(w) for w in text.split("\n") if w.isdigit()]
