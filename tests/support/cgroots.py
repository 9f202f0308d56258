"""Per-run cgroup roots, per-test cgroups and the sweeper of dead runs' roots.

One run owns one `cgtest-<random>` directory per hierarchy it needs (the same name in
each, so a path relative to a hierarchy root is the same everywhere), marked with the
xattr `user.cgtest.owner = "<pid>:<starttime>"`. The v1 memory hierarchy belongs to the
machine's supervisor: no root is ever created there, and the sweeper only rmdirs there.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from dataclasses import dataclass, field

from . import cgtree, marks, mounts

PREFIX = "cgtest-"
# v1 hierarchies a run wants a root in (by controller, or name= for named hierarchies).
WANTED_V1 = ("pids", "freezer", "cpu", "cpuset", "devices", "blkio", "name=systemd")
# Never write in a hierarchy carrying one of these controllers.
READ_ONLY_CONTROLLERS = frozenset({"memory"})


def hierarchy_writable(h: mounts.Hierarchy) -> bool:
    """False for the supervisor's v1 memory hierarchy (and anything comounted with it)."""
    return not (h.controllers & READ_ONLY_CONTROLLERS)


def _wanted(h: mounts.Hierarchy) -> bool:
    if h.version == 2:
        return True
    if not hierarchy_writable(h):
        return False
    return any(mounts.normalize_key(w) in h.keys for w in WANTED_V1)


def cpuset_file(cgroup: str, name: str) -> str:
    """'cpus' -> the cpuset.cpus file (or 'cpus' on a noprefix mount)."""
    prefixed = os.path.join(cgroup, f"cpuset.{name}")
    return prefixed if os.path.exists(prefixed) else os.path.join(cgroup, name)


def init_cpuset(cgroup: str) -> None:
    """Copy cpus/mems from the parent: a v1 cpuset with empty cpus refuses tasks (ENOSPC)."""
    parent = os.path.dirname(cgroup)
    for name in ("cpus", "mems"):
        src = cpuset_file(parent, name)
        if not os.path.exists(src):
            return  # not a v1 cpuset cgroup
        with open(src) as f:
            value = f.read().strip()
        with open(cpuset_file(cgroup, name), "w") as f:
            f.write(value)


def needs_cpuset_init(h: mounts.Hierarchy) -> bool:
    return h.version == 1 and "cpuset" in h.controllers


class CgRoots:
    """The run's roots: one directory per available hierarchy (see module docstring)."""

    def __init__(self, name: str, roots: dict[mounts.Hierarchy, str], unavailable: dict[str, str]):
        self.name = name
        self._roots = dict(roots)
        self._by_key = mounts.by_key(list(roots))
        #: hierarchy label -> why the run has no root there
        self.unavailable = dict(unavailable)

    def _h(self, name: str) -> mounts.Hierarchy:
        key = mounts.normalize_key(name)
        try:
            return self._by_key[key]
        except KeyError:
            raise KeyError(
                f"no cgtest root for hierarchy {name!r} in this run "
                f"(available: {sorted(self.available())}; unavailable: {self.unavailable})"
            ) from None

    def path(self, name: str) -> str:
        """Absolute host path of the run root in hierarchy `name` ("unified", "pids", "systemd"...)."""
        return self._roots[self._h(name)]

    def rel(self, name: str) -> str:
        """The run root relative to its hierarchy root, e.g. "/cgtest-ab12cd34"."""
        self._h(name)  # same name in every hierarchy, but only where the run has a root
        return "/" + self.name

    def mount(self, name: str) -> str:
        """Mount point of hierarchy `name`."""
        return self._h(name).mount

    def version(self, name: str) -> int:
        """1 or 2."""
        return self._h(name).version

    def hierarchy(self, name: str) -> mounts.Hierarchy:
        return self._h(name)

    def available(self) -> set[str]:
        """Every name `path()` accepts (comounted controllers each count)."""
        return set(self._by_key)

    def hierarchies(self) -> list[mounts.Hierarchy]:
        return list(self._roots)

    def items(self) -> list[tuple[mounts.Hierarchy, str]]:
        return list(self._roots.items())

    def __repr__(self) -> str:
        return f"CgRoots({self.name!r}, {sorted(h.label for h in self._roots)})"


def create_run_roots(mark: str, hs: list[mounts.Hierarchy] | None = None) -> CgRoots:
    """mkdir + mark `cgtest-<random>` in every wanted hierarchy; skip (and say why) on failure."""
    if hs is None:
        hs = mounts.hierarchies()
    name = PREFIX + secrets.token_hex(4)
    roots: dict[mounts.Hierarchy, str] = {}
    unavailable: dict[str, str] = {}
    for h in hs:
        if not _wanted(h):
            continue
        path = os.path.join(h.mount, name)
        try:
            os.mkdir(path)
        except OSError as e:
            unavailable[h.label] = f"mkdir {path}: {e.strerror}"
            continue
        try:
            marks.write_owner(path, mark)
            if needs_cpuset_init(h):
                init_cpuset(path)
        except OSError as e:
            unavailable[h.label] = f"initialising {path}: {e.strerror}"
            try:
                os.rmdir(path)
            except OSError:
                pass
            continue
        roots[h] = path
    for w in WANTED_V1:
        key = mounts.normalize_key(w)
        if not any(key in h.keys for h in hs):
            unavailable.setdefault(w, "hierarchy not mounted")
    if not any(h.version == 2 for h in hs):
        unavailable.setdefault("unified", "no cgroup2 mount")
    return CgRoots(name, roots, unavailable)


def destroy_roots(roots: CgRoots, timeout: float = 5.0) -> list[str]:
    """Remove the run's roots in every hierarchy (v2 first: its cgroup.kill is the fastest)."""
    problems: list[str] = []
    items = sorted(roots.items(), key=lambda hp: hp[0].version, reverse=True)
    for h, path in items:
        problems += cgtree.destroy_tree(
            path, h.version, writable=hierarchy_writable(h), timeout=timeout
        )
    return problems


_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def safe_name(text: str, limit: int = 40) -> str:
    """A cgroup-name-safe, short rendering of a test name (for readable paths)."""
    return (_SAFE.sub("_", text).strip("_.") or "t")[:limit]


@dataclass
class CgDirFactory:
    """`cgdir(name)` factory for one test: fresh subdirectories of the run roots."""

    roots: CgRoots
    label: str = "t"
    timeout: float = 5.0
    created: list[tuple[str, int, bool]] = field(default_factory=list)

    def __call__(self, name: str = "unified", *, parent: str | None = None) -> str:
        """Create `<run root in hierarchy name>/<test>-<random>` (cpuset: cpus/mems copied).

        `parent` (an absolute path inside the run root of that hierarchy) nests it instead.
        """
        h = self.roots.hierarchy(name)
        base = parent if parent is not None else self.roots.path(name)
        root = self.roots.path(name)
        if os.path.commonpath([root, base]) != root:
            raise ValueError(f"parent {base} is outside the run root {root}")
        path = os.path.join(base, f"{self.label}-{secrets.token_hex(3)}")
        os.mkdir(path)
        self.created.append((path, h.version, hierarchy_writable(h)))
        if needs_cpuset_init(h):
            init_cpuset(path)
        return path

    def cleanup(self) -> list[str]:
        """Destroy every created cgroup (children first). Returns problems."""
        problems: list[str] = []
        for path, version, writable in reversed(self.created):
            problems += cgtree.destroy_tree(path, version, writable=writable, timeout=self.timeout)
        self.created.clear()
        return problems


@dataclass
class SweepReport:
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def sweep(grace: float = 1.0, hs: list[mounts.Hierarchy] | None = None) -> SweepReport:
    """Remove `cgtest-*` roots whose owner process is gone, in every hierarchy.

    Never by name alone: a root is removed only if its owner mark names a dead process.
    An unmarked root may be one another run just created (mkdir, then setxattr): it is
    removed only if it is still unmarked after `grace` seconds. In the memory hierarchy
    only rmdir is tried (no kill, no write).
    """
    if hs is None:
        hs = mounts.hierarchies()
    report = SweepReport()
    unmarked: list[tuple[mounts.Hierarchy, str]] = []
    stale: list[tuple[mounts.Hierarchy, str, str]] = []
    for h in hs:
        try:
            names = [n for n in os.listdir(h.mount) if n.startswith(PREFIX)]
        except OSError:
            continue
        for n in names:
            path = os.path.join(h.mount, n)
            if not os.path.isdir(path):
                continue
            owner = marks.read_owner(path)
            if owner is None:
                unmarked.append((h, path))
                continue
            alive = marks.mark_alive(owner)
            if alive:
                report.kept.append(path)
            else:
                stale.append((h, path, owner))
    if unmarked:
        time.sleep(grace)
        for h, path in unmarked:
            if not os.path.isdir(path):
                continue
            owner = marks.read_owner(path)
            if owner is not None and marks.mark_alive(owner):
                report.kept.append(path)
            else:
                stale.append((h, path, owner or "unmarked"))
    for h, path, owner in stale:
        problems = cgtree.destroy_tree(path, h.version, writable=hierarchy_writable(h))
        if problems:
            report.problems += problems
        else:
            report.removed.append(f"{path} (owner {owner})")
    return report


def marked_roots(mark: str, hs: list[mounts.Hierarchy] | None = None) -> list[str]:
    """Every top-level `cgtest-*` directory carrying `mark` (for the leftover check)."""
    if hs is None:
        hs = mounts.hierarchies()
    found = []
    for h in hs:
        try:
            names = [n for n in os.listdir(h.mount) if n.startswith(PREFIX)]
        except OSError:
            continue
        for n in names:
            path = os.path.join(h.mount, n)
            if marks.read_owner(path) == mark:
                found.append(path)
    return found
