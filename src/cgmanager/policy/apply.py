"""Applying a configuration: through the daemon's own checked operations, one group at a time,
all or nothing per group.

The daemon acts as itself (host root, bounded by its own cgroup): every step is the operation
a client's Create, Chown, Chmod or SetValue would run, with the same validation, allowlist,
delegation rules and v1 → v2 key translation.  A group whose step fails is put back as it was
(cgroups it created removed, owners, modes and values restored) and the error names the step;
the other groups are applied regardless.  Nothing is ever removed or changed that the
configuration does not describe.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from .. import names
from ..errors import CgmError, NotFound
from ..operations import Manager, Request, run
from ..requestor import Party
from .plan import Change, Desired, Echoes, plan_group

log = logging.getLogger("cgmanager.policy")

#: most files read from a configuration directory


class ManagerState:
    """The :class:`~.plan.State` of the served cgroups, read as the daemon."""

    def __init__(self, manager: Manager, me: Party) -> None:
        self.m = manager
        self.me = me
        self.req = Request(me, me)

    def _abs(self, hierarchy: str, path: str) -> tuple[object, str]:
        h = self.m.layout.lookup(hierarchy)
        return h, names.join(self.me.cgroup(h), *names.split(path))

    def exists(self, hierarchy: str, path: str) -> bool:
        h, p = self._abs(hierarchy, path)
        return self.m.trees[hierarchy].exists(p)

    def owner(self, hierarchy: str, path: str) -> tuple[int, int]:
        _, p = self._abs(hierarchy, path)
        st = self.m.trees[hierarchy].stat(p)
        return st.st_uid, st.st_gid

    def mode(self, hierarchy: str, path: str, file: str) -> int | None:
        _, p = self._abs(hierarchy, path)
        try:
            return self.m.trees[hierarchy].stat(p, file or None).st_mode & 0o777
        except NotFound:
            return None

    def value(self, hierarchy: str, path: str, key: str) -> str | None:
        try:
            value: str = run(self.m, self.req.requestor, "GetValue", hierarchy, path, key)
            return value
        except CgmError:
            return None


@dataclass
class Outcome:
    group: Desired
    done: list[Change] = field(default_factory=list)
    error: str | None = None

    def lines(self) -> list[str]:
        head = f"group {self.group.group} ({self.group.where})"
        if self.error is not None:
            return [f"{head}: failed: {self.error}"]
        if not self.done:
            return []
        return [f"{head}: {c}" for c in self.done]


def apply_group(
    manager: Manager,
    me: Party,
    d: Desired,
    echoes: dict[tuple[str, str, str, str], str],
    delegate_files: tuple[str, ...] = (),
) -> Outcome:
    """Bring one group to its described state, or leave it as it was."""
    state = ManagerState(manager, me)
    req = state.req
    out = Outcome(d)
    undo: list[tuple[str, Callable[[], object]]] = []
    step = "plan"
    try:
        for t in d.targets:
            if state.exists(t.hierarchy, t.path):
                continue
            parts = names.split(t.path)
            top = next(
                "/".join(parts[: i + 1])
                for i in range(len(parts))
                if not state.exists(t.hierarchy, "/".join(parts[: i + 1]))
            )
            step = f"create {t.hierarchy}:{t.path}"
            run(manager, req.requestor, "Create", t.hierarchy, t.path)
            undo.append((f"remove {t.hierarchy}:{top}", _remover(manager, req, t.hierarchy, top)))
            out.done.append(Change("create", t.hierarchy, t.path))
        for c in plan_group(d, state, echoes, delegate_files):
            step = str(c)
            _apply_change(manager, state, c, echoes, undo)
            out.done.append(c)
    except CgmError as e:
        left = []
        for what, fn in reversed(undo):
            try:
                fn()
            except CgmError as ue:
                log.error("config: undoing %s failed: %s", what, ue)
                left.append(what)
        tail = f"; not undone: {'; '.join(left)}" if left else "; nothing was changed"
        out.error = f"at {step}: {e.message}{tail}"
        out.done.clear()
    return out


def _remover(m: Manager, req: Request, h: str, path: str) -> Callable[[], object]:
    return lambda: run(m, req.requestor, "Remove", h, path, 1)


def _apply_change(
    m: Manager,
    state: ManagerState,
    c: Change,
    echoes: dict[tuple[str, str, str, str], str],
    undo: list[tuple[str, Callable[[], object]]],
) -> None:
    req, h, path = state.req, c.hierarchy, c.path
    if c.kind == "chown":
        ou, og = state.owner(h, path)
        uid, gid = (int(x) for x in c.new.split(":"))
        run(m, req.requestor, "Chown", h, path, uid, gid)
        undo.append(
            (f"chown {h}:{path} back", lambda: run(m, req.requestor, "Chown", h, path, ou, og))
        )
    elif c.kind == "chmod":
        old = state.mode(h, path, c.file)
        run(m, req.requestor, "Chmod", h, path, c.file, int(c.new, 8))
        if old is not None:
            undo.append(
                (
                    f"chmod {h}:{path} {c.file} back",
                    lambda: run(m, req.requestor, "Chmod", h, path, c.file, old),
                )
            )
    elif c.kind == "set":
        old_value = state.value(h, path, c.file)
        run(m, req.requestor, "SetValue", h, path, c.file, c.new)
        shown = state.value(h, path, c.file)
        if shown is not None:
            if len(echoes) >= 65536:
                echoes.clear()
            echoes[(h, path, c.file, c.new)] = shown
        if old_value is not None:
            undo.append(
                (
                    f"restore {h}:{path} {c.file}",
                    lambda: run(m, req.requestor, "SetValue", h, path, c.file, old_value),
                )
            )


__all__ = ["Echoes", "ManagerState", "Outcome", "apply_group"]
