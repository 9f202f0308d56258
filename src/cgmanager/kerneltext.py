"""Kernel text read the way the kernel writes it: the one parser of every ``/proc`` and cgroupfs
file the daemon, cgproxy and cgm read.

Why one module: cgroup names are chosen by clients — through the API, and by delegatees
directly on cgroupfs — and the kernel shows them back *unescaped* in ``/proc/<pid>/cgroup``.
A parser that splits where the kernel does not lets such a name forge a line: ``str.splitlines``
also splits at ``\\r \\v \\f \\x1c-\\x1e``, U+0085, U+2028 and U+2029, and ``str.split()`` at every
Unicode space (U+00A0, U+2000…).  Here a line ends at ``\\n`` and nowhere else, fields are split
at the exact separator the kernel prints, numbers are ASCII digits only (``int("٣")`` is 3), and
anything the kernel never writes — a missing final newline, an empty line, a malformed field, a
hierarchy listed twice — is refused with :class:`KernelTextError`, so callers fail closed.

Pure (no I/O, imports nothing of the package): the CLI may use it too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


class KernelTextError(ValueError):
    """Text that the kernel does not write: refuse it rather than guess."""


_DECIMAL = re.compile(r"[0-9]+", re.ASCII)
_SIGNED = re.compile(r"-?[0-9]+", re.ASCII)
_COLUMNS = re.compile(r"[ \t]+")
_OCTAL = re.compile(r"\\([0-7]{3})")


def decode(data: bytes) -> str:
    """Kernel bytes as text: UTF-8, any other byte kept as a lone surrogate (reversible)."""
    return data.decode("utf-8", "surrogateescape")


def lines(text: str, what: str = "kernel file", *, blank: bool = False) -> list[str]:
    """The lines of a file the kernel writes line by line: each ends with ``\\n`` and only
    ``\\n``.  An empty text has none; a text not ending in ``\\n`` is cut short and refused; an
    empty line is refused unless *blank* (one-line files that may be empty: ``"\\n"``)."""
    if not text:
        return []
    if not text.endswith("\n"):
        raise KernelTextError(f"malformed {what}: not terminated by a newline")
    out = text[:-1].split("\n")
    if not blank and "" in out:
        raise KernelTextError(f"malformed {what}: an empty line")
    return out


def decimal(s: str, what: str = "number") -> int:
    """A non-negative decimal of ASCII digits (no sign, no space, no other script's digits)."""
    if _DECIMAL.fullmatch(s) is None:
        raise KernelTextError(f"malformed {what}: {s!r}")
    return int(s)


def signed(s: str, what: str = "number") -> int:
    if _SIGNED.fullmatch(s) is None:
        raise KernelTextError(f"malformed {what}: {s!r}")
    return int(s)


def columns(line: str) -> list[str]:
    """Fields the kernel pads with spaces or tabs (``%10u`` in id maps, tabs in /proc/cgroups
    and status): split at runs of ASCII space and tab only."""
    return [f for f in _COLUMNS.split(line) if f]


def words(text: str, what: str = "kernel file") -> list[str]:
    """A one-line file of space-separated words (``cgroup.controllers``,
    ``cgroup.subtree_control``, ``cpuset.cpus.partition``); may be empty (``"\\n"``)."""
    ls = lines(text, what, blank=True)
    if len(ls) > 1:
        raise KernelTextError(f"malformed {what}: more than one line")
    return [w for w in ls[0].split(" ") if w] if ls else []


def ids(text: str, what: str = "cgroup.procs") -> list[int]:
    """``cgroup.procs``, ``cgroup.threads``, ``tasks``: one decimal id per line."""
    return [decimal(line, what) for line in lines(text, what)]


def keyed(text: str, what: str = "keyed file") -> list[tuple[str, str]]:
    """``key value`` lines (``cgroup.events``, ``cgroup.stat``, ``pids.events``, ``cpu.stat``,
    ``io.weight``): exactly one space between key and value, both non-empty."""
    out = []
    for line in lines(text, what):
        key, sep, value = line.partition(" ")
        if not sep or not key or not value or " " in value:
            raise KernelTextError(f"malformed {what} line: {line!r}")
        out.append((key, value))
    return out


def flat_keyed(text: str, what: str = "keyed file") -> dict[str, int]:
    """The integer entries of a flat-keyed file (a value such as ``max`` is left out)."""
    return {k: int(v) for k, v in keyed(text, what) if _SIGNED.fullmatch(v)}


# -- /proc/<pid>/cgroup ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CgroupLine:
    """One line of /proc/<pid>/cgroup."""

    hierarchy_id: int
    controllers: tuple[str, ...]  # ("cpu", "cpuacct"), ("name=systemd",), () for v2
    path: str  # as shown to the reader; "/.." prefixes appear outside its cgroup namespace

    @property
    def outside_namespace(self) -> bool:
        """True when the cgroup lies outside the reader's cgroup namespace (``/../x``): such a
        path names nothing the reader can reach and must never be resolved."""
        return self.path == "/.." or self.path.startswith("/../")


def proc_cgroup(text: str) -> list[CgroupLine]:
    """``hierarchy-id:controller,…:path`` lines; the path (the rest of the line) may hold ``:``
    and any byte but ``\\n`` and NUL — the kernel prints cgroup names as they are.

    Refused (fail closed, never "first match wins"): any line that does not parse, a path not
    starting with ``/``, a hierarchy id, a controller or a v2 line listed twice.  The kernel
    writes each hierarchy once, so a second one can only come from a name posing as a line."""
    out = []
    seen_ids: set[int] = set()
    seen_ctrls: set[str] = set()
    for line in lines(text, "/proc/<pid>/cgroup"):
        hid_s, sep1, rest = line.partition(":")
        ctrls_s, sep2, path = rest.partition(":")
        if not sep1 or not sep2 or not path.startswith("/") or "\0" in path:
            raise KernelTextError(f"malformed /proc/<pid>/cgroup line: {line!r}")
        hid = decimal(hid_s, "hierarchy id")
        ctrls = tuple(ctrls_s.split(",")) if ctrls_s else ()
        if any(not c or _COLUMNS.search(c) for c in ctrls) or (hid == 0) != (not ctrls):
            raise KernelTextError(f"malformed /proc/<pid>/cgroup line: {line!r}")
        if hid in seen_ids or seen_ctrls.intersection(ctrls):
            raise KernelTextError(f"/proc/<pid>/cgroup lists a hierarchy twice: {line!r}")
        seen_ids.add(hid)
        seen_ctrls.update(ctrls)
        out.append(CgroupLine(hid, ctrls, path))
    return out


def cgroup_shape(cgroup_lines: list[CgroupLine]) -> frozenset[tuple[int, tuple[str, ...]]]:
    """Which hierarchies a /proc/<pid>/cgroup lists: the same for every process of the host
    (the kernel prints every hierarchy for every task), so a text listing others is forged."""
    return frozenset((ln.hierarchy_id, ln.controllers) for ln in cgroup_lines)


# -- /proc/<pid>/status, stat, uid_map ----------------------------------------------------------


def status(text: str) -> dict[str, str]:
    """``Key:<tab>value`` lines → {key: value} (the value without its leading tabs/spaces).
    ``Name:`` holds the command name with ``\\n`` and ``\\\\`` escaped by the kernel."""
    out: dict[str, str] = {}
    for line in lines(text, "/proc/<pid>/status"):
        key, sep, value = line.partition(":")
        if not sep or not key or key in out:
            raise KernelTextError(f"malformed /proc/<pid>/status line: {line!r}")
        out[key] = value.lstrip(" \t")
    return out


def status_ids(value: str, what: str) -> tuple[int, ...]:
    """A status value of tab-separated decimals (``Uid``, ``Gid``, ``NSpid``)."""
    return tuple(decimal(f, what) for f in columns(value))


def stat_fields(text: str) -> list[str]:
    """/proc/<pid>/stat from field 3 (state) on.  Field 2, the command name in parentheses,
    may hold spaces, parentheses and newlines: the fields start after its *last* ``)``."""
    end = text.rfind(")")
    if end < 0 or text[end + 1 : end + 2] != " " or not text.endswith("\n"):
        raise KernelTextError("malformed /proc/<pid>/stat")
    fields = text[end + 2 : -1].split(" ")
    if "" in fields:
        raise KernelTextError("malformed /proc/<pid>/stat")
    return fields


def id_map(text: str) -> list[tuple[int, int, int]]:
    """``uid_map``/``gid_map``: ``inside outside count`` per line, padded with spaces."""
    out = []
    for line in lines(text, "id map"):
        fields = columns(line)
        if len(fields) != 3:
            raise KernelTextError(f"malformed id map line: {line!r}")
        inside, outside, count = (decimal(f, "id map") for f in fields)
        out.append((inside, outside, count))
    return out


# -- /proc/self/mountinfo, /proc/cgroups --------------------------------------------------------


def unescape_octal(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as ``\\ooo``; a backslash not
    followed by three octal digits is not something the kernel writes."""
    if "\\" not in field:
        return field
    if "\\" in _OCTAL.sub("", field):
        raise KernelTextError(f"malformed escape in {field!r}")
    return _OCTAL.sub(_octal_char, field)


def _octal_char(m: re.Match[str]) -> str:
    b = int(m.group(1), 8)
    if b > 0xFF:
        raise KernelTextError(f"malformed escape \\{m.group(1)}")
    return chr(b) if b < 0x80 else chr(0xDC00 + b)  # a byte, as decode() would keep it


@dataclass(frozen=True, slots=True)
class MountLine:
    """One line of /proc/<pid>/mountinfo (paths unescaped)."""

    mount_id: int
    parent_id: int
    device: str  # major:minor
    root: str
    mountpoint: str
    options: str
    fstype: str
    source: str
    super_options: tuple[str, ...]


def mountinfo(text: str) -> list[MountLine]:
    """``id parent maj:min root mountpoint options [optional…] - fstype source superoptions``,
    fields separated by exactly one space (the paths have theirs escaped)."""
    out = []
    for line in lines(text, "mountinfo"):
        fields = line.split(" ")
        try:
            dash = fields.index("-", 6)
        except ValueError:
            raise KernelTextError(f"malformed mountinfo line: {line!r}") from None
        right = fields[dash + 1 :]
        if len(right) != 3 or "" in fields[:6] or not right[0]:
            raise KernelTextError(f"malformed mountinfo line: {line!r}")
        out.append(
            MountLine(
                mount_id=decimal(fields[0], "mount id"),
                parent_id=decimal(fields[1], "mount id"),
                device=fields[2],
                root=unescape_octal(fields[3]),
                mountpoint=unescape_octal(fields[4]),
                options=fields[5],
                fstype=right[0],
                source=unescape_octal(right[1]),
                super_options=tuple(right[2].split(",")),
            )
        )
    return out


def proc_cgroups(text: str) -> list[tuple[str, int, int, bool]]:
    """/proc/cgroups: ``#subsys_name hierarchy num_cgroups enabled`` (a header, then one
    tab-separated row per controller) → (name, hierarchy id, cgroups, enabled)."""
    out = []
    for line in lines(text, "/proc/cgroups"):
        if line.startswith("#"):
            continue
        f = columns(line)
        if len(f) != 4:
            raise KernelTextError(f"malformed /proc/cgroups line: {line!r}")
        out.append((f[0], decimal(f[1]), decimal(f[2]), decimal(f[3]) == 1))
    return out
