"""What ``cgm top`` measures: one Snapshot per hierarchy per refresh, merged by path.

Which files give which figure (read where the hierarchy has them; every figure covers the
cgroup's whole subtree, as systemd-cgtop shows them):

=========  ==================================================  =================================
figure     cgroup v2                                           cgroup v1
=========  ==================================================  =================================
CPU        ``cpu.stat`` usage_usec                             ``cpuacct.usage`` (ns)
memory     ``memory.current``                                  ``memory.usage_in_bytes``
I/O        ``io.stat`` rbytes, wbytes (summed over devices)    ``blkio.throttle.io_service_bytes_recursive`` (or
                                                               ``blkio.io_service_bytes_recursive``) Read, Write
tasks      ``pids.current``                                    ``pids.current``
pressure   ``{cpu,memory,io}.pressure`` ``some`` avg10         —
=========  ==================================================  =================================

A path present in several hierarchies is one row; each figure comes from the first hierarchy
(in ListControllers' order) that has it for that path.  CPU and I/O are rates between two
samples; the others are the latest value.
"""

from __future__ import annotations

import time

from .output import CallFailed
from .readings import Reading, Request, absolute_starts, below, join, read_all

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .session import Session

_V2_KEYS = {
    "cpu": "cpu.stat/usage_usec",
    "memory": "memory.current",
    "io": "io.stat",
    "pids": "pids.current",
}
_PSI = ("cpu.pressure/some", "memory.pressure/some", "io.pressure/some")
_V1_KEYS = {
    "cpuacct": "cpuacct.usage",
    "memory": "memory.usage_in_bytes",
    "pids": "pids.current",
}
_BLKIO = ("blkio.throttle.io_service_bytes_recursive", "blkio.io_service_bytes_recursive")
_PROBE = ["cgroup.controllers", "cpu.pressure/some", *_BLKIO]


class Sample:
    """One path's figures at one moment (None: no hierarchy has that figure here)."""

    __slots__ = ("cpu_us", "memory", "io_read", "io_write", "tasks", "pressure")

    def __init__(self) -> None:
        self.cpu_us: int | None = None
        self.memory: int | None = None
        self.io_read: int | None = None
        self.io_write: int | None = None
        self.tasks: int | None = None
        #: some avg10 of cpu, memory, io (%)
        self.pressure: list[float | None] = [None, None, None]


class Row:
    """One line of ``cgm top``: a path and its figures over the last interval."""

    __slots__ = ("path", "tasks", "cpu", "memory", "read", "write", "pressure")

    def __init__(self, path: str, cur: Sample, prev: Sample | None, seconds: float) -> None:
        self.path = path
        self.tasks = cur.tasks
        self.memory = cur.memory
        self.pressure = cur.pressure
        self.cpu: float | None = None
        self.read: float | None = None
        self.write: float | None = None
        if prev is not None and seconds > 0:
            self.cpu = _rate(cur.cpu_us, prev.cpu_us, seconds * 1e4)  # % of one CPU
            self.read = _rate(cur.io_read, prev.io_read, seconds)
            self.write = _rate(cur.io_write, prev.io_write, seconds)

    def io(self) -> float | None:
        if self.read is None and self.write is None:
            return None
        return (self.read or 0.0) + (self.write or 0.0)

    def worst_pressure(self) -> float | None:
        known = [p for p in self.pressure if p is not None]
        return max(known) if known else None


def _rate(cur: int | None, prev: int | None, per: float) -> float | None:
    if cur is None or prev is None or cur < prev:
        return None  # unknown, or the cgroup was made anew meanwhile
    return (cur - prev) / per


class Sampler:
    """Reads the figures of every cgroup below *cgroup* (to *depth* levels) in *hierarchies*."""

    def __init__(self, s: Session, hierarchies: list[str], cgroup: str, depth: int) -> None:
        self.s = s
        self.cgroup = cgroup
        self.depth = depth
        self.bases = absolute_starts(s, hierarchies, cgroup)
        #: hierarchy -> the keys read there
        self.keys: dict[str, list[str]] = {}
        #: the hierarchies with pressure files (cgroup v2 with PSI)
        self.pressure: list[str] = []
        #: absolute path -> (hierarchy, cgroup as asked) where pressure can be read
        self._where: dict[str, tuple[str, str]] = {}
        self.errors: list[tuple[str, CallFailed]] = []
        self.complete = True
        #: cgroups in the last sample, and whether it read pressure for all of them
        self.size = 0
        self.pressure_read = True
        self._probe([h for h in hierarchies if h in self.bases])

    def _probe(self, hierarchies: list[str]) -> None:
        """Which files each hierarchy has: v2 by its cgroup.controllers, v1 by its name."""
        readings = read_all(self.s, [Request(h, self.cgroup, _PROBE, 0) for h in hierarchies])
        for h, r in zip(hierarchies, readings):
            if r.error is not None:
                self.errors.append((h, r.error))
                continue
            found = r.rows[0][2] if r.rows else {}
            keys: list[str] = []
            controllers = found.get("cgroup.controllers")
            if controllers is not None:  # cgroup v2
                keys.append(_V2_KEYS["cpu"])
                keys += [_V2_KEYS[c] for c in ("memory", "io", "pids") if c in controllers.split()]
                if "cpu.pressure/some" in found:
                    self.pressure.append(h)
            else:
                names = set(h.split(","))
                keys += [k for c, k in _V1_KEYS.items() if c in names]
                blkio = [f for f in _BLKIO if f in found]
                if "blkio" in names and blkio:
                    keys.append(blkio[0])
            if keys:
                self.keys[h] = keys

    def sample(self, pressure: bool = True) -> tuple[float, dict[str, Sample]]:
        """(monotonic time, {absolute path: figures}).  Pressure is read for every cgroup, or
        with *pressure* false for none (:meth:`add_pressure` reads it for the few shown)."""
        hs = list(self.keys)
        reqs = [
            Request(
                h,
                self.cgroup,
                self.keys[h] + (list(_PSI) if pressure and h in self.pressure else []),
                self.depth,
            )
            for h in hs
        ]
        readings = read_all(self.s, reqs)
        now = time.monotonic()
        merged: dict[str, Sample] = {}
        self.complete = True
        self._where = {}
        for h, r in zip(hs, readings):
            self._merge(h, r, merged)
        self.size = len(merged)
        self.pressure_read = pressure
        return now, merged

    def add_pressure(self, samples: dict[str, Sample], paths: list[str]) -> None:
        """Pressure of *paths* only (the rows on screen): three GetValue each, sent together,
        rather than three more files for every cgroup of the host."""
        wanted = [(p, self._where[p]) for p in paths if p in self._where]
        calls = []
        for _path, (h, cg) in wanted:
            calls.append([self.s.send("GetValue", h, cg, f.partition("/")[0]) for f in _PSI])
        for (path, _), serials in zip(wanted, calls):
            smp = samples.get(path)
            for i, serial in enumerate(serials):
                try:
                    text = str(self.s.reply(serial, "GetValue")[0])
                except CallFailed:
                    continue
                if smp is not None:
                    smp.pressure[i] = _avg10(text.split("\n", 1)[0].partition(" ")[2])

    def _merge(self, h: str, r: Reading, merged: dict[str, Sample]) -> None:
        if r.error is not None:
            self.complete = False
            return
        self.complete = self.complete and r.complete
        base = self.bases[h]
        v2 = h in self.pressure
        for rel, readable, values in r.rows:
            path = below(base, rel)
            if v2 and readable:
                self._where[path] = (h, join(self.cgroup, rel))
            smp = merged.get(path)
            if smp is None:
                smp = merged[path] = Sample()
            if readable:
                _fill(smp, values)


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    t = text.strip()
    return int(t) if t.isdigit() else None


def _fill(smp: Sample, v: dict[str, str]) -> None:
    if smp.cpu_us is None:
        usec = _int(v.get("cpu.stat/usage_usec"))
        ns = _int(v.get("cpuacct.usage"))
        smp.cpu_us = usec if usec is not None else None if ns is None else ns // 1000
    if smp.memory is None:
        smp.memory = _int(v.get("memory.current") or v.get("memory.usage_in_bytes"))
    if smp.tasks is None:
        smp.tasks = _int(v.get("pids.current"))
    if smp.io_read is None:
        if "io.stat" in v:
            smp.io_read, smp.io_write = _io_v2(v["io.stat"])
        else:
            text = next((v[f] for f in _BLKIO if f in v), None)
            if text is not None:
                smp.io_read, smp.io_write = _io_v1(text)
    for i, key in enumerate(_PSI):
        if smp.pressure[i] is None and key in v:
            smp.pressure[i] = _avg10(v[key])


def _io_v2(text: str) -> tuple[int, int]:
    """Sum of rbytes and wbytes over the devices of io.stat (``8:0 rbytes=1 wbytes=2 …``)."""
    r = w = 0
    for line in text.split("\n"):
        for field in line.split(" ")[1:]:
            name, _, value = field.partition("=")
            if name == "rbytes" and value.isdigit():
                r += int(value)
            elif name == "wbytes" and value.isdigit():
                w += int(value)
    return r, w


def _io_v1(text: str) -> tuple[int, int]:
    """Read and Write of every device of blkio's ``8:0 Read 123`` lines (not ``Total``)."""
    r = w = 0
    for line in text.split("\n"):
        parts = line.split(" ")
        if len(parts) == 3 and parts[2].isdigit():
            if parts[1] == "Read":
                r += int(parts[2])
            elif parts[1] == "Write":
                w += int(parts[2])
    return r, w


def _avg10(text: str) -> float | None:
    """``avg10=0.12 avg60=… total=…`` → 0.12."""
    for field in text.split(" "):
        name, _, value = field.partition("=")
        if name == "avg10":
            try:
                return float(value)
            except ValueError:
                return None
    return None


def rows(
    prev: tuple[float, dict[str, Sample]] | None, cur: tuple[float, dict[str, Sample]]
) -> list[Row]:
    """The rows of one frame: *cur* against *prev* (rates unknown without it)."""
    t1, now = cur
    t0, before = prev if prev is not None else (t1, {})
    return [Row(path, smp, before.get(path), t1 - t0) for path, smp in now.items()]


ORDERS = ("cpu", "memory", "io", "tasks", "pressure", "path")


def sort_rows(rs: list[Row], order: str) -> list[Row]:
    """Largest first (unknown last), ties and ``path`` by path."""
    if order == "path":
        return sorted(rs, key=lambda r: r.path)

    def figure(r: Row) -> float | None:
        if order == "cpu":
            return r.cpu
        if order == "memory":
            return None if r.memory is None else float(r.memory)
        if order == "io":
            return r.io()
        if order == "tasks":
            return None if r.tasks is None else float(r.tasks)
        return r.worst_pressure()

    def key(r: Row) -> tuple[int, float, str]:
        f = figure(r)
        return (1, 0.0, r.path) if f is None else (0, -f, r.path)

    return sorted(rs, key=key)
