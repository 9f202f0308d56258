"""From a parsed ``cgconfig.conf`` to what must change (pure: the host is behind protocols).

Two steps, both pure and table-tested:

* :func:`resolve` checks a :class:`~.cgconfig.Config` against the served hierarchies and the
  user database and turns each group into a :class:`Desired` state — every problem is a
  line-numbered :class:`~.lexer.ConfigError` (``cgm config check``);
* :func:`plan_group` compares one desired group with the current state and lists the
  :class:`Change` s that would bring it there (``cgm config diff``; the applier runs the same
  function again after creating a group, so what it does is exactly what was shown).

How libcgroup's ``perm`` maps onto cgmanager's permission model (README: "Configuration"):

* ``admin { uid; gid; }`` is a delegation — Chown: the directory and the kernel's delegation
  files (v1 ``tasks``/``cgroup.procs``; v2 ``/sys/kernel/cgroup/delegate``).  Resource files
  stay root's, as for any Chown: they govern the parent's resources (libcgroup gave them away).
* ``admin { dperm; }`` is the directory's mode; ``admin { fperm; }`` the mode of the delegation
  files other than the task files; ``task { fperm; }`` the mode of the task files.
* ``task { uid; gid; }`` must be the admin's owner (or root): cgmanager hands over a cgroup
  whole, so a separate owner for the task files is refused rather than silently widened.
"""

from __future__ import annotations

import grp
import pwd
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from .. import names
from ..errors import CgmError, InvalidArgument
from ..hierarchy import Hierarchy, Layout
from ..permission import require_settable_key
from . import values
from .cgconfig import Config, Group, Perm, Setting, parse_mode
from .lexer import ConfigError

#: keys that are actions, not state: applying them again and again is never "no change"
ACTION_KEYS = frozenset({"cgroup.kill", "memory.reclaim", "memory.force_empty"})
#: the files through which processes enter a cgroup
V1_TASK_FILES = ("tasks", "cgroup.procs")
V2_TASK_FILES = ("cgroup.procs", "cgroup.threads")


class Ids(Protocol):
    """User and group names to ids (the host's user database in the daemon)."""

    def uid(self, name: str) -> int: ...
    def gid(self, name: str) -> int: ...


class SystemIds:
    def uid(self, name: str) -> int:
        return pwd.getpwnam(name).pw_uid

    def gid(self, name: str) -> int:
        return grp.getgrnam(name).gr_gid


@dataclass(frozen=True)
class Target:
    """A group in one hierarchy."""

    hierarchy: str
    version: int
    path: str  # relative to cgmanager's own cgroup, e.g. "daemons/www"
    values: tuple[Setting, ...]


@dataclass(frozen=True)
class Desired:
    group: str
    source: str
    line: int
    targets: tuple[Target, ...]
    uid: int | None = None  # admin owner; None: as it is (root for new groups)
    gid: int | None = None
    dperm: int | None = None
    task_fperm: int | None = None
    admin_fperm: int | None = None

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"


@dataclass(frozen=True)
class Change:
    kind: str  # "create", "chown", "chmod" or "set"
    hierarchy: str
    path: str
    file: str = ""  # chmod: the file ("" for the directory); set: the key
    old: str = ""
    new: str = ""
    line: int = 0

    def __str__(self) -> str:
        where = f"{self.hierarchy}:{self.path}"
        if self.kind == "create":
            return f"create {where}"
        if self.kind == "chown":
            return f"chown  {where} {self.old} -> {self.new}"
        what = f"{where} {self.file}" if self.file else where
        return f"{self.kind:<6} {what}: {self.old or '(unset)'} -> {self.new}"


class State(Protocol):
    """The current state of the cgroups a plan looks at (paths relative to cgmanager's)."""

    def exists(self, hierarchy: str, path: str) -> bool: ...
    def owner(self, hierarchy: str, path: str) -> tuple[int, int]: ...
    def mode(self, hierarchy: str, path: str, file: str) -> int | None:
        """Permission bits of the directory (*file* ``""``) or a file; None when absent."""
        ...

    def value(self, hierarchy: str, path: str, key: str) -> str | None: ...


#: (hierarchy, path, key, value written) -> what the kernel showed afterwards
Echoes = Mapping[tuple[str, str, str, str], str]


# -- resolve ---------------------------------------------------------------------------------


def _id(s: Setting | None, lookup: str, ids: Ids, source: str) -> int | None:
    if s is None:
        return None
    if s.value.isascii() and s.value.isdigit():
        value = int(s.value)
        if value >= 0xFFFFFFFF:
            raise ConfigError(source, s.line, f"{s.key} {s.value} is out of range")
        return value
    try:
        return ids.uid(s.value) if lookup == "uid" else ids.gid(s.value)
    except (KeyError, OSError):
        what = "user" if lookup == "uid" else "group"
        raise ConfigError(source, s.line, f"no {what} named {s.value!r} on this host") from None


def _perm(perm: Perm | None, ids: Ids) -> dict[str, int | None]:
    if perm is None:
        return {}
    src = perm.source
    a, t = perm.admin, perm.task
    out: dict[str, int | None] = {
        "uid": _id(a.get("uid"), "uid", ids, src),
        "gid": _id(a.get("gid"), "gid", ids, src),
        "dperm": parse_mode(a["dperm"].value) if "dperm" in a else None,
        "admin_fperm": parse_mode(a["fperm"].value) if "fperm" in a else None,
        "task_fperm": parse_mode(t["fperm"].value) if "fperm" in t else None,
    }
    for key in ("uid", "gid"):
        task = _id(t.get(key), key, ids, src)
        if task is None or task == (out[key] if out[key] is not None else 0):
            continue
        s = t[key]
        raise ConfigError(
            src,
            s.line,
            f"task {key} {s.value} differs from the admin {key}: cgmanager delegates a cgroup"
            f" whole (its directory with its task files), so give the task files' owner as"
            f" admin {{ {key} = {s.value}; }} — or let the rules engine place the processes",
        )
    return out


def _hierarchy(layout: Layout, name: str, source: str, line: int) -> Hierarchy:
    if name in ("cgroup", "unified") and layout.v2 is not None:
        return layout.v2
    try:
        return layout.lookup(name)
    except CgmError as e:
        raise ConfigError(source, line, e.message) from None


def _check_key(h: Hierarchy, key: str, s: Setting, layout: Layout, source: str) -> None:
    if key in ACTION_KEYS:
        raise ConfigError(source, s.line, f"{key} is an action, not a state to configure")
    prefix = key.partition(".")[0]
    if not (prefix == "cgroup" and h.version == 2):
        try:
            owner = layout.lookup(prefix)
        except CgmError:
            owner = None
        if owner is not h:
            raise ConfigError(source, s.line, f"{key} is not a file of the {h.key} hierarchy")
    try:
        require_settable_key(key, h.controllers)
    except CgmError as e:
        raise ConfigError(source, s.line, e.message) from None


def resolve_group(
    g: Group, cfg: Config, layout: Layout, ids: Ids, name: str | None = None
) -> Desired:
    """One group (or a template instantiated as *name*) as a desired state."""
    name = name or g.name
    parts = names.split(name)
    if not g.blocks:
        raise ConfigError(g.source, g.line, f"group {name} names no controller")
    by_h: dict[str, tuple[Hierarchy, dict[str, Setting]]] = {}
    for block in g.blocks:
        h = _hierarchy(layout, block.controller, g.source, block.line)
        _, settings = by_h.setdefault(h.key, (h, {}))
        for s in block.settings:
            _check_key(h, s.key, s, layout, g.source)
            if s.key in settings:
                raise ConfigError(g.source, s.line, f"{s.key} is given twice for {h.key}")
            try:
                settings[s.key] = Setting(s.key, values.convert(s.key, s.value), s.line)
            except CgmError as e:
                raise ConfigError(g.source, s.line, e.message) from None
    targets = []
    for key, (h, settings) in by_h.items():
        prefix: tuple[str, ...] = ()
        for ctrl, ns in cfg.namespaces.items():
            if _hierarchy(layout, ctrl, g.source, ns.line) is h:
                prefix = names.split(ns.value)
        path = "/".join(prefix + parts)
        targets.append(Target(key, h.version, path, tuple(settings.values())))
    p = _perm(g.perm if g.perm is not None else cfg.default, ids)
    return Desired(name, g.source, g.line, tuple(targets), **p)


def resolve(cfg: Config, layout: Layout, ids: Ids | None = None) -> list[Desired]:
    """Every group of *cfg*, parents before children; templates are checked too (with their
    ``%`` parameters as they are) so a broken template fails ``check``, not a later login."""
    ids = ids or SystemIds()
    out = [resolve_group(g, cfg, layout, ids) for g in cfg.groups]
    for tmpl in cfg.templates:
        resolve_group(tmpl, cfg, layout, ids)
    seen: dict[tuple[str, str], Desired] = {}
    for d in out:
        for t in d.targets:
            other = seen.get((t.hierarchy, t.path))
            if other is not None:
                raise ConfigError(
                    d.source,
                    d.line,
                    f"{t.hierarchy}:{t.path} is also group {other.group} ({other.where})",
                )
            seen[(t.hierarchy, t.path)] = d
    return sorted(out, key=lambda d: min(names.depth("/" + t.path) for t in d.targets))


# -- plan ------------------------------------------------------------------------------------


def normalise(value: str) -> str:
    return " ".join(value.split())


def _same(current: str | None, wanted: str, echo: str | None) -> bool:
    if current is None:
        return False
    cur = normalise(current)
    return cur == normalise(wanted) or (echo is not None and cur == normalise(echo))


def task_files(version: int) -> tuple[str, ...]:
    return V1_TASK_FILES if version == 1 else V2_TASK_FILES


def plan_group(
    d: Desired,
    state: State,
    echoes: Echoes | None = None,
    delegate_files: tuple[str, ...] = (),
) -> list[Change]:
    """What applying *d* would change, in the order it would be done: create, chown, chmod,
    values.  For a group that does not exist yet, everything it describes is listed."""
    echoes = echoes or {}
    out: list[Change] = []
    for t in d.targets:
        h, path = t.hierarchy, t.path
        exists = state.exists(h, path)
        if not exists:
            out.append(Change("create", h, path, line=d.line))
        owner = state.owner(h, path) if exists else (0, 0)
        want = (owner[0] if d.uid is None else d.uid, owner[1] if d.gid is None else d.gid)
        if want != owner:
            out.append(
                Change("chown", h, path, old=f"{owner[0]}:{owner[1]}", new=f"{want[0]}:{want[1]}")
            )
        modes: list[tuple[str, int | None]] = [("", d.dperm)]
        modes += [(f, d.task_fperm) for f in task_files(t.version)]
        if t.version == 2:
            tasks = set(V2_TASK_FILES)
            modes += [(f, d.admin_fperm) for f in delegate_files if f not in tasks]
        for f, mode in modes:
            if mode is None:
                continue
            cur = state.mode(h, path, f) if exists else None
            if exists and cur is None:
                continue  # the file does not exist here (e.g. memory.oom.group without memory)
            if cur != mode:
                old = "" if cur is None else f"{cur:o}"
                out.append(Change("chmod", h, path, f, old, f"{mode:o}"))
        for s in t.values:
            cur_value = state.value(h, path, s.key) if exists else None
            if not _same(cur_value, s.value, echoes.get((h, path, s.key, s.value))):
                out.append(Change("set", h, path, s.key, cur_value or "", s.value, s.line))
    return out


def check_text(text: str, source: str, layout: Layout, ids: Ids | None = None) -> list[Desired]:
    """Parse and resolve one file (``cgm config check``)."""
    from .cgconfig import parse

    try:
        return resolve(parse(text, source), layout, ids)
    except InvalidArgument as e:  # pragma: no cover - every path converts to ConfigError
        raise ConfigError(source, 1, e.message) from None
