"""Which cgroup hierarchies this host has, and which one a client's controller argument means.

Discovery reads ``/proc/self/mountinfo`` and ``/proc/cgroups`` (plus the v2 root's
``cgroup.controllers``) and nothing else; it writes nothing.  The parsing is pure so that pure
v2, pure v1, hybrid, comounted, named and disabled layouts are all testable from recorded
samples.

Naming, as clients see it (0.42 §3.1 plus what v2 needs):

* a v1 hierarchy is addressed by any of its controllers (``cpu`` or ``cpuacct`` for the
  comounted ``cpu,cpuacct``); a named v1 hierarchy by ``name=X`` or bare ``X``;
* the v2 hierarchy by ``unified`` or by any controller available at its root
  (``hugetlb`` on these hybrid machines; everything on a pure v2 host).  v1 names that v2
  provides differently resolve to it when no v1 hierarchy has them: ``freezer`` (the v2 core
  freezer), ``cpuacct`` (v2 ``cpu``), ``blkio`` (v2 ``io``), and ``name=systemd`` on a pure v2
  host (systemd's tree *is* the unified one there).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from . import escapes, kerneltext
from .errors import InvalidArgument, NotFound, NotPermitted, Unsupported
from .kerneltext import CgroupLine

V2_NAME = "unified"

#: v1 names a v2 hierarchy answers to, and which v2 controller must be present for that.
#: ``None``: provided by the v2 core itself.
_V2_ALIASES: dict[str, str | None] = {"freezer": None, "cpuacct": "cpu", "blkio": "io"}


@dataclass(frozen=True, slots=True)
class MountEntry:
    """The fields of one /proc/self/mountinfo line that discovery needs."""

    mount_id: int
    device: str  # major:minor; equal for bind mounts of the same superblock
    root: str  # the path inside the filesystem shown at the mount point
    mountpoint: str
    fstype: str
    super_options: tuple[str, ...]


def parse_mountinfo(text: str) -> list[MountEntry]:
    return [
        MountEntry(m.mount_id, m.device, m.root, m.mountpoint, m.fstype, m.super_options)
        for m in kerneltext.mountinfo(text)
    ]


def _cgroup_root(m: MountEntry) -> str:
    """The cgroup a mount shows, as a hierarchy path in the form clients see."""
    return escapes.escape_path(m.root)


@dataclass(frozen=True, slots=True)
class ControllerInfo:
    """One row of /proc/cgroups."""

    name: str
    hierarchy_id: int
    enabled: bool


def parse_proc_cgroups(text: str) -> dict[str, ControllerInfo]:
    return {
        name: ControllerInfo(name, hid, enabled)
        for name, hid, _count, enabled in kerneltext.proc_cgroups(text)
    }


@dataclass(frozen=True, slots=True)
class Hierarchy:
    """One cgroup hierarchy as mounted in the discovering namespace."""

    version: Literal[1, 2]
    #: kernel controllers: bound to this v1 hierarchy, or available at the v2 mount's root
    controllers: tuple[str, ...]
    #: the X of a named v1 hierarchy (``name=X``), else None
    name: str | None
    mountpoint: str
    #: the cgroup path shown at the mount point ("/" unless a subtree was bind-mounted)
    mount_root: str = "/"
    #: v1 hierarchy id from /proc/cgroups (0 for v2 and when unknown)
    hierarchy_id: int = 0
    #: extra names (v1 aliases) this v2 hierarchy answers to on this host
    aliases: tuple[str, ...] = ()
    #: the canonical client-facing name: ``cpu,cpuacct``, ``name=systemd``, ``unified``
    #: (computed once: it is asked for many times per request)
    key: str = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.version == 2:
            key = V2_NAME
        elif self.name is not None:
            key = f"name={self.name}"
        else:
            key = ",".join(self.controllers)
        object.__setattr__(self, "key", key)

    @property
    def names(self) -> tuple[str, ...]:
        """Every name a client may use to address this hierarchy."""
        if self.version == 2:
            return (V2_NAME, *self.controllers, *self.aliases)
        if self.name is not None:
            return (f"name={self.name}", self.name)
        return self.controllers

    @property
    def mount_names(self) -> tuple[str, ...]:
        """Directory names under the daemon's private mount dir (0.42 mounted each controller
        of a comount at its own name; clients such as test24 look there)."""
        if self.version == 2:
            return (V2_NAME, *self.controllers)
        if self.name is not None:
            return (self.name,)
        return self.controllers

    def matches_line(self, line: CgroupLine) -> bool:
        """Whether a /proc/<pid>/cgroup line describes this hierarchy."""
        if self.version == 2:
            return line.hierarchy_id == 0 and not line.controllers
        if line.hierarchy_id == 0:
            return False
        if self.hierarchy_id:
            return line.hierarchy_id == self.hierarchy_id
        tokens = set(line.controllers)
        if self.name is not None:
            return f"name={self.name}" in tokens
        return tokens == set(self.controllers)


Mode = Literal["unified", "hybrid", "legacy", "none"]


@dataclass(frozen=True)
class Layout:
    """The served hierarchies and what is known about the others."""

    hierarchies: tuple[Hierarchy, ...]
    #: controllers listed in /proc/cgroups with enabled=0 (``cgroup_disable=``)
    disabled: frozenset[str] = frozenset()
    #: enabled controllers neither bound to a mounted v1 hierarchy nor available on v2
    unbound: frozenset[str] = frozenset()
    #: hierarchies present but not served (``--skip``)
    skipped: tuple[str, ...] = ()
    #: names asked for with ``--mount`` that this host does not have mounted
    missing: tuple[str, ...] = ()
    #: reads this process's own /proc/self/cgroup: which hierarchies the kernel lists for
    #: every process (None: not checked, for layouts built from recorded samples)
    self_cgroup: Callable[[], str] | None = field(default=None, compare=False, repr=False)
    _by_name: dict[str, Hierarchy] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _memo: dict[str, tuple[Mapping[str, str], bool]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    #: the hierarchies the kernel lists for every process, as last read from self_cgroup
    _shape: list[frozenset[tuple[int, tuple[str, ...]]]] = field(
        default_factory=list, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        for h in self.hierarchies:
            for n in h.names:
                self._by_name.setdefault(n, h)

    @property
    def mode(self) -> Mode:
        v1 = any(h.version == 1 for h in self.hierarchies)
        v2 = self.v2 is not None
        return "hybrid" if v1 and v2 else "unified" if v2 else "legacy" if v1 else "none"

    @property
    def v2(self) -> Hierarchy | None:
        return next((h for h in self.hierarchies if h.version == 2), None)

    def all(self) -> list[Hierarchy]:
        """0.42's ``all_controllers``: one entry per served hierarchy."""
        return list(self.hierarchies)

    def lookup(self, name: str) -> Hierarchy:
        """The hierarchy one controller name designates."""
        h = self._by_name.get(name)
        if h is not None:
            return h
        if not name or name != name.strip() or "\0" in name or "," in name:
            raise InvalidArgument(f"invalid controller name {name!r}")
        bare = name.removeprefix("name=")
        if bare in self.disabled:
            raise Unsupported(f"controller {name}: disabled on this host")
        if name in self.skipped or bare in self.skipped:
            raise NotFound(f"controller {name}: not served by this cgmanager")
        raise NotFound(f"controller {name}: not mounted")

    def resolve(self, arg: str) -> list[Hierarchy]:
        """A multi-controller argument (``all``, ``a,b``, one name) to hierarchies, in the
        order given, comounted duplicates dropped; an empty list for ``all`` on a host with
        nothing served (0.42: a successful no-op)."""
        tokens = [t for t in arg.split(",") if t]
        if not tokens:
            raise InvalidArgument("invalid controller: empty")
        if len(arg) > 4096 or len(tokens) > 256:
            raise InvalidArgument("invalid controller: list too long")
        if "all" in tokens:
            for t in tokens:
                if t != "all":
                    self.lookup(t)  # "all,nope" is still an error
            return self.all()
        result: list[Hierarchy] = []
        for t in tokens:
            h = self.lookup(t)
            if h not in result:
                result.append(h)
        return result

    def resolve_one(self, arg: str) -> Hierarchy:
        """A single-hierarchy argument: one name, or a list naming exactly one hierarchy
        (``cpu,cpuacct`` when comounted); ``all`` is refused as in 0.42."""
        tokens = [t for t in arg.split(",") if t]
        if "all" in tokens:
            raise InvalidArgument("controller 'all' is not accepted by this method")
        hs = self.resolve(arg)
        if len(hs) != 1:
            raise InvalidArgument(
                f"controller {arg!r} names {len(hs)} hierarchies; this method takes one"
            )
        return hs[0]

    def cgroups_in(self, proc_cgroup: str) -> Mapping[str, str]:
        """{hierarchy key: path} from the text of a /proc/<pid>/cgroup, leaving out the lines
        outside the reader's cgroup namespace.  Memoised (a pure function of the text; most
        processes share a few texts); the result is read-only."""
        return self._parsed(proc_cgroup)[0]

    def shows_v1_root(self, proc_cgroup: str) -> bool:
        """Whether the text puts the process at ``/`` of a served v1 hierarchy — what the
        kernel also shows for any process that is exiting (see ``ProcDir.exiting``)."""
        return self._parsed(proc_cgroup)[1]

    def _parsed(self, proc_cgroup: str) -> tuple[Mapping[str, str], bool]:
        result = self._memo.get(proc_cgroup)
        if result is None:
            try:
                all_lines = kerneltext.proc_cgroup(proc_cgroup)
                self._check_shape(kerneltext.cgroup_shape(all_lines))
            except kerneltext.KernelTextError:
                # a cgroup name posing as a line, or text the kernel never writes: nobody
                # can be judged on it (fail closed; details stay out of the message, which
                # may reach a client asking about another process)
                raise NotPermitted(
                    "its /proc/<pid>/cgroup does not read unambiguously; refused"
                ) from None
            lines = [ln for ln in all_lines if not ln.outside_namespace]
            found = self.for_lines(lines)
            # paths as clients see them: names the API refuses in their escaped form
            cgroups = MappingProxyType({h.key: escapes.escape_path(p) for h, p in found.items()})
            v1_root = any(h.version == 1 and p == "/" for h, p in found.items())
            result = (cgroups, v1_root)
            if len(self._memo) >= 1024:
                self._memo.clear()
            self._memo[proc_cgroup] = result
        return result

    def _check_shape(self, shape: frozenset[tuple[int, tuple[str, ...]]]) -> None:
        """The kernel lists the same hierarchies for every process: a text listing others
        than this process's own holds a forged line.  Re-read once on a mismatch (a named
        hierarchy may have been mounted or destroyed meanwhile)."""
        if self.self_cgroup is None:
            return
        for fresh in (False, True):
            if fresh or not self._shape:
                self._shape[:] = [
                    kerneltext.cgroup_shape(kerneltext.proc_cgroup(self.self_cgroup()))
                ]
            if shape == self._shape[0]:
                return
        raise kerneltext.KernelTextError("/proc/<pid>/cgroup lists other hierarchies than ours")

    def for_lines(self, lines: Iterable[CgroupLine]) -> dict[Hierarchy, str]:
        """Map /proc/<pid>/cgroup lines to the served hierarchies they describe."""
        result: dict[Hierarchy, str] = {}
        lines = list(lines)
        for h in self.hierarchies:
            for line in lines:
                if h.matches_line(line):
                    result[h] = line.path
                    break
        return result


def _mount_preference(m: MountEntry) -> tuple[int, int]:
    """Prefer a mount showing the hierarchy root, then the oldest mount."""
    return (0 if m.root == "/" else 1, m.mount_id)


def discover(
    mountinfo: str,
    proc_cgroups: str,
    read_v2_controllers: Callable[[str], str] | None = None,
    *,
    skip: Iterable[str] = (),
    extra: Iterable[str] = (),
    self_cgroup: Callable[[], str] | None = None,
) -> Layout:
    """Build the layout from the texts of /proc/self/mountinfo and /proc/cgroups.

    *read_v2_controllers* is given the v2 mount point and returns its ``cgroup.controllers``
    text (None: assume none).  *skip* names hierarchies not to serve (any of their names);
    *extra* names hierarchies the operator expects (0.42's ``-m``): served if mounted, else
    reported in ``Layout.missing`` — this daemon never creates new v1 hierarchies.
    """
    rows = parse_proc_cgroups(proc_cgroups)
    mounts = sorted(parse_mountinfo(mountinfo), key=_mount_preference)
    skip_set = {s.strip() for s in skip if s.strip()}

    v1: dict[frozenset[str], Hierarchy] = {}
    v2: Hierarchy | None = None
    for m in mounts:
        if m.fstype == "cgroup2" and v2 is None:
            text = read_v2_controllers(m.mountpoint) if read_v2_controllers else ""
            ctrls = tuple(sorted(kerneltext.words(text, "cgroup.controllers")))
            v2 = Hierarchy(2, ctrls, None, m.mountpoint, _cgroup_root(m))
        elif m.fstype == "cgroup":
            named = next((o[5:] for o in m.super_options if o.startswith("name=")), None)
            ctrls = tuple(sorted(o for o in m.super_options if o in rows))
            ident = frozenset(ctrls) | ({f"name={named}"} if named else set())
            if not ident or ident in v1:
                continue
            hid = rows[ctrls[0]].hierarchy_id if ctrls else 0
            v1[ident] = Hierarchy(1, ctrls, named, m.mountpoint, _cgroup_root(m), hid)

    bound = {c for h in v1.values() for c in h.controllers}
    if v2 is not None:
        provided = set(v2.controllers)
        aliases = tuple(
            alias
            for alias, needs in _V2_ALIASES.items()
            if alias not in bound and (needs is None or needs in provided)
        )
        if not v1:  # pure v2: systemd's tree is the unified one
            aliases += ("name=systemd", "systemd")
        v2 = Hierarchy(2, v2.controllers, None, v2.mountpoint, v2.mount_root, 0, aliases)

    candidates = [*v1.values(), *([v2] if v2 else [])]
    served = [h for h in candidates if not (set(h.names) & skip_set)]
    skipped = tuple(h.key for h in candidates if set(h.names) & skip_set)
    served.sort(key=lambda h: h.key)

    known = {n for h in candidates for n in h.names}
    missing = tuple(e for e in extra if e.strip() and e.strip() not in known)
    disabled = frozenset(n for n, r in rows.items() if not r.enabled)
    v2_ctrls = set(v2.controllers) if v2 else set()
    v2_names = set(v2.names) if v2 else set()  # incl. the v1 names v2 answers to
    unbound = frozenset(
        n
        for n, r in rows.items()
        if r.enabled and n not in bound and n not in v2_ctrls and n not in v2_names
    )
    return Layout(tuple(served), disabled, unbound, skipped, missing, self_cgroup)


def read_text(path: str) -> str:
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        return f.read()


def discover_host(
    *, skip: Iterable[str] = (), extra: Iterable[str] = (), proc: str = "/proc"
) -> Layout:
    """Discover the layout of the namespace this process lives in."""

    def v2_controllers(mountpoint: str) -> str:
        try:
            return read_text(os.path.join(mountpoint, "cgroup.controllers"))
        except OSError:
            return ""

    return discover(
        read_text(f"{proc}/self/mountinfo"),
        read_text(f"{proc}/cgroups"),
        v2_controllers,
        skip=skip,
        extra=extra,
        self_cgroup=lambda: read_text(f"{proc}/self/cgroup"),
    )
