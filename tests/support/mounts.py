"""Discover cgroup hierarchies from /proc/self/mountinfo.

The harness must not depend on the code under test, so it has its own small parser.
Hierarchies are keyed by controller name ("pids", "cpu", ...), by the name of a named
hierarchy ("systemd" for name=systemd) and "unified" for cgroup2.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_FALLBACK_CONTROLLERS = frozenset(
    [
        "cpuset",
        "cpu",
        "cpuacct",
        "blkio",
        "memory",
        "devices",
        "freezer",
        "net_cls",
        "perf_event",
        "net_prio",
        "hugetlb",
        "pids",
        "rdma",
        "misc",
        "debug",
    ]
)


@dataclass(frozen=True)
class MountEntry:
    """One line of mountinfo (only the fields the harness uses)."""

    mount_id: int
    parent_id: int
    dev: str
    root: str
    mountpoint: str
    fstype: str
    source: str
    super_opts: tuple[str, ...]

    def describe(self) -> str:
        return (
            f"{self.mountpoint} ({self.fstype} {self.source}, root {self.root}, id {self.mount_id})"
        )


@dataclass(frozen=True)
class Hierarchy:
    """A mounted cgroup hierarchy (its first mount whose root is the hierarchy root)."""

    version: int  # 1 or 2
    mount: str
    dev: str
    controllers: frozenset[str] = frozenset()
    name: str | None = None  # for v1 named hierarchies ("systemd")

    @property
    def keys(self) -> frozenset[str]:
        """Names this hierarchy can be looked up by."""
        if self.version == 2:
            return frozenset({"unified"})
        return self.controllers | ({self.name} if self.name else frozenset())

    @property
    def label(self) -> str:
        if self.version == 2:
            return "unified"
        parts = sorted(self.controllers) + ([f"name={self.name}"] if self.name else [])
        return ",".join(parts)


_OCTAL = re.compile(r"\\([0-7]{3})")


def _unescape(s: str) -> str:
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), s)


def parse_mountinfo(text: str) -> list[MountEntry]:
    """Parse mountinfo text (proc(5)); malformed lines are skipped."""
    entries = []
    for line in text.splitlines():
        fields = line.split()
        try:
            sep = fields.index("-", 6)
        except ValueError:
            continue
        if len(fields) < sep + 3:
            continue
        entries.append(
            MountEntry(
                mount_id=int(fields[0]),
                parent_id=int(fields[1]),
                dev=fields[2],
                root=_unescape(fields[3]),
                mountpoint=_unescape(fields[4]),
                fstype=fields[sep + 1],
                source=_unescape(fields[sep + 2]),
                super_opts=tuple(fields[sep + 3].split(",")) if len(fields) > sep + 3 else (),
            )
        )
    return entries


def read_mountinfo(pid: str | int = "self") -> list[MountEntry]:
    with open(f"/proc/{pid}/mountinfo") as f:
        return parse_mountinfo(f.read())


def known_controllers() -> frozenset[str]:
    """Controller names the kernel knows (/proc/cgroups), for parsing v1 mount options."""
    try:
        with open("/proc/cgroups") as f:
            names = {ln.split()[0] for ln in f if ln.strip() and not ln.startswith("#")}
        return frozenset(names) | _FALLBACK_CONTROLLERS
    except OSError:
        return _FALLBACK_CONTROLLERS


def hierarchies(entries: list[MountEntry] | None = None) -> list[Hierarchy]:
    """All mounted cgroup hierarchies, one per superblock, in mountinfo order.

    Only mounts whose root is "/" count: a bind mount of a sub-cgroup (or a mount made
    inside a cgroup namespace) would not show the hierarchy root.
    """
    if entries is None:
        entries = read_mountinfo()
    known = known_controllers()
    seen: set[str] = set()
    result: list[Hierarchy] = []
    for e in entries:
        if e.fstype not in ("cgroup", "cgroup2") or e.root != "/" or e.dev in seen:
            continue
        seen.add(e.dev)
        if e.fstype == "cgroup2":
            result.append(Hierarchy(version=2, mount=e.mountpoint, dev=e.dev))
            continue
        ctrls = frozenset(o for o in e.super_opts if o in known)
        name = next((o[5:] for o in e.super_opts if o.startswith("name=")), None)
        result.append(
            Hierarchy(version=1, mount=e.mountpoint, dev=e.dev, controllers=ctrls, name=name)
        )
    return result


def normalize_key(name: str) -> str:
    """'name=systemd' -> 'systemd'; 'v2'/'cgroup2' -> 'unified'."""
    if name.startswith("name="):
        return name[5:]
    if name in ("v2", "cgroup2"):
        return "unified"
    return name


def by_key(hs: list[Hierarchy]) -> dict[str, Hierarchy]:
    """Map every lookup key to its hierarchy (comounted controllers share one)."""
    out: dict[str, Hierarchy] = {}
    for h in hs:
        for k in h.keys:
            out.setdefault(k, h)
    return out
