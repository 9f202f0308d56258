"""What /proc says about a process: its cgroups, ids, id maps, namespaces and start time.

Parsers are pure (they take file text) so they can be tested on recorded samples; the readers
go through :class:`ProcDir`, which pins ``/proc/<pid>`` to one process: when opened together
with a pidfd, every later read either concerns that very process or fails, so pid reuse cannot
redirect a check to another process.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from typing import Self

from . import kerneltext
from .errors import NotFound, from_oserror
from .kerneltext import CgroupLine

_U32 = 1 << 32


def parse_cgroup(text: str) -> list[CgroupLine]:
    """Parse /proc/<pid>/cgroup, strictly (see :func:`cgmanager.kerneltext.proc_cgroup`)."""
    return kerneltext.proc_cgroup(text)


@dataclass(frozen=True, slots=True)
class IdMapRange:
    inside: int
    outside: int
    count: int


@dataclass(frozen=True, slots=True)
class IdMap:
    """A user namespace's uid_map or gid_map as read from the initial user namespace.

    Columns are ``first-id-inside first-id-outside count``; the identity map of the initial
    namespace is ``0 0 4294967295``.
    """

    ranges: tuple[IdMapRange, ...]

    @classmethod
    def identity(cls) -> IdMap:
        return cls((IdMapRange(0, 0, _U32 - 1),))

    @classmethod
    def parse(cls, text: str) -> IdMap:
        """Parse unsigned 32-bit ranges; a range that overflows 32 bits is refused (0.42's
        aaa00b7/146652a lesson: signed parsing and wrap-around made ids map wrongly)."""
        ranges = []
        for inside, outside, count in kerneltext.id_map(text):
            if inside + count > _U32 or outside + count > _U32 or count == 0:
                raise ValueError(f"id map range out of bounds: {inside} {outside} {count}")
            ranges.append(IdMapRange(inside, outside, count))
        return cls(tuple(ranges))

    def to_inside(self, outside_id: int) -> int | None:
        """The id inside the namespace for a host id, or None when unmapped."""
        for r in self.ranges:
            if r.outside <= outside_id < r.outside + r.count:
                return r.inside + (outside_id - r.outside)
        return None

    def to_outside(self, inside_id: int) -> int | None:
        """The host id for an id inside the namespace, or None when unmapped."""
        for r in self.ranges:
            if r.inside <= inside_id < r.inside + r.count:
                return r.outside + (inside_id - r.inside)
        return None

    def is_identity(self) -> bool:
        return self == IdMap.identity()


@dataclass(frozen=True, slots=True)
class Status:
    """The parts of /proc/<pid>/status the daemon needs."""

    tgid: int
    uids: tuple[int, int, int, int]  # real, effective, saved, filesystem
    gids: tuple[int, int, int, int]
    nspids: tuple[int, ...]  # the pid in each pid namespace, outermost first


def parse_status(text: str) -> Status:
    fields = kerneltext.status(text)
    try:
        uids = kerneltext.status_ids(fields["Uid"], "Uid")
        gids = kerneltext.status_ids(fields["Gid"], "Gid")
        tgid = kerneltext.decimal(fields["Tgid"], "Tgid")
        nspids = kerneltext.status_ids(fields.get("NSpid", str(tgid)), "NSpid")
    except KeyError as exc:
        raise ValueError(f"malformed /proc/<pid>/status: no {exc} line") from None
    if len(uids) != 4 or len(gids) != 4:
        raise ValueError("malformed /proc/<pid>/status: Uid/Gid need four fields")
    return Status(tgid, uids, gids, nspids)


def parse_real_uid(text: str) -> int:
    """The real uid from /proc/<pid>/status, without parsing the other ~55 lines (a victim
    check needs nothing else, and the full parse costs more than the check).  ``\nUid:`` can
    only be the real line: the one line before it that holds process-chosen text, ``Name:``,
    has its newlines escaped by the kernel."""
    start = text.find("\nUid:")
    end = text.find("\n", start + 5)
    if start < 0 or end < 0:
        raise ValueError("malformed /proc/<pid>/status: no Uid line")
    fields = kerneltext.columns(text[start + 5 : end])
    if len(fields) != 4:
        raise ValueError("malformed /proc/<pid>/status: Uid needs four fields")
    return kerneltext.decimal(fields[0], "Uid")


#: task flag set at the start of do_exit(); from then on v1 shows the task at "/"
PF_EXITING = 0x4


def parse_stat_flags(stat_text: str) -> int:
    """Field 9 of /proc/<pid>/stat, the task's flags (counted after the last ``)`` of comm)."""
    return kerneltext.decimal(kerneltext.stat_fields(stat_text)[6], "flags")  # [0] is field 3


def parse_starttime(stat_text: str) -> int:
    """Field 22 of /proc/<pid>/stat (clock ticks after boot): with the pid, names a process
    uniquely for the machine's uptime.  The comm field may hold spaces and parentheses, so the
    fields are counted after its *last* ``)``."""
    return kerneltext.decimal(kerneltext.stat_fields(stat_text)[19], "starttime")


def overflow_id(name: str) -> int:
    """``/proc/sys/kernel/overflowuid`` or ``overflowgid``: what the kernel shows for an id that
    is not mapped into the reader's namespace (65534 unless changed).  Such an id in a
    credential means "unknown", never an identity."""
    try:
        with open(f"/proc/sys/kernel/{name}") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 65534


class ProcDir:
    """``/proc/<pid>`` opened as a directory fd and tied to one process.

    If *pidfd* is given, liveness is checked *after* opening: a pid cannot be reused while its
    process exists, so a successful check proves the fd is that process's directory, and reads
    through it fail (ESRCH) once it is gone rather than reading a newcomer's files.
    """

    __slots__ = ("fd", "pid")

    def __init__(self, pid: int, pidfd: int | None = None, proc: str = "/proc") -> None:
        if pid <= 0:
            raise NotFound(f"process {pid}: not found")
        self.pid = pid
        try:
            self.fd = os.open(f"{proc}/{pid}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotFound(f"process {pid}: not found") from None
        except OSError as exc:  # EMFILE: a clear error, not an internal one
            raise from_oserror(exc, f"process {pid}") from None
        if pidfd is not None:
            try:
                signal.pidfd_send_signal(pidfd, 0)
            except ProcessLookupError:
                os.close(self.fd)
                raise NotFound(f"process {pid}: exited") from None

    def read(self, name: str, whole: bool = False) -> str:
        """The text of ``/proc/<pid>/<name>``.  *whole*: the file is generated in one piece
        (``single_open`` in the kernel: ``cgroup``, ``status``), so a read that does not fill
        the buffer has returned all of it — one ``read`` instead of two."""
        try:
            fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=self.fd)
        except (FileNotFoundError, ProcessLookupError):
            raise NotFound(f"process {self.pid}: exited") from None
        except OSError as exc:
            raise from_oserror(exc, f"process {self.pid}") from None
        try:
            chunks = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
                if whole and len(chunk) < 65536:
                    break
        except ProcessLookupError:
            raise NotFound(f"process {self.pid}: exited") from None
        except OSError as exc:  # e.g. ENAMETOOLONG: a cgroup path deeper than PATH_MAX
            raise from_oserror(exc, f"process {self.pid}") from None
        finally:
            os.close(fd)
        return kerneltext.decode(b"".join(chunks))

    def exiting(self) -> bool:
        """Whether the process has begun to exit (``PF_EXITING``, set at the start of
        ``do_exit`` and never cleared).  From then on the kernel shows it at ``/`` in every
        v1 hierarchy (v2 keeps its real path), so a v1 root read from its cgroup file is
        believed only if this is still false *after* the read.  Costly (/proc/<pid>/stat):
        asked only when a v1 root was read."""
        return bool(parse_stat_flags(self.read("stat", whole=True)) & PF_EXITING)

    def cgroups(self) -> list[CgroupLine]:
        return parse_cgroup(self.read("cgroup", whole=True))

    def status(self) -> Status:
        return parse_status(self.read("status", whole=True))

    def real_uid(self) -> int:
        return parse_real_uid(self.read("status", whole=True))

    def uid_map(self) -> IdMap:
        return IdMap.parse(self.read("uid_map"))

    def gid_map(self) -> IdMap:
        return IdMap.parse(self.read("gid_map"))

    def starttime(self) -> int:
        return parse_starttime(self.read("stat"))

    def namespace(self, kind: str) -> tuple[int, int]:
        """(st_dev, st_ino) of ``ns/<kind>``: equal pairs mean the same namespace."""
        try:
            st = os.stat(f"ns/{kind}", dir_fd=self.fd)
        except (FileNotFoundError, ProcessLookupError):
            raise NotFound(f"process {self.pid}: exited") from None
        return (st.st_dev, st.st_ino)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
