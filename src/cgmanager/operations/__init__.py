"""The operations of both interfaces, independent of any transport.

Each D-Bus method of :mod:`cgmanager.contract` has one entry in :data:`OPERATIONS`: a plain
function ``fn(m, req, *args)`` taking the method's arguments in the contract's order (its plain
and Scm forms share it).  Every client string goes through :mod:`cgmanager.names`, every
decision through :mod:`cgmanager.permission`, every kernel action through
:class:`~cgmanager.cgroupfs.CgroupTree` (a request's view of it).

Modules, by concern:

* :mod:`.context` — the daemon-wide state (:class:`Manager`), a :class:`Request` and its scope;
* :mod:`.targets` — from a client's path to the cgroups acted on (path families, bounds);
* :mod:`.leaf` — cgroup v2's no-internal-process rule, made transparent;
* :mod:`.cgroups` — Create, Chown, Chmod, Remove;
* :mod:`.processes` — GetPidCgroup(Abs), MovePid(Abs), GetTasks(Recursive);
* :mod:`.values` — GetValue, SetValue, ListKeys, ListChildren;
* :mod:`.reaping` — RemoveOnEmpty, Prune;
* :mod:`.lifecycle` — Freeze, Thaw, Kill, GetEvents, GetStat (cgmanager1);
* :mod:`.transaction` — Setup, a transaction with its rollback (cgmanager1);
* :mod:`.snapshots` — Snapshot, chosen keys of a whole subtree in one request (cgmanager1).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..requestor import Party
from .cgroups import chmod, chown, create, remove
from .context import V2_LEAF, Escalate, Manager, Reaper, Request, Scope, open_trees
from .lifecycle import Settling, events, freeze, kill, stat
from .processes import get_pid_cgroup, get_tasks, get_tasks_recursive, move_pid
from .reaping import prune, remove_on_empty
from .snapshots import snapshot
from .transaction import SETUP_MAX_ITEMS, setup
from .values import MAX_VALUE, get_value, list_children, list_keys, set_value

__all__ = [
    "MAX_VALUE",
    "OPERATIONS",
    "SETUP_MAX_ITEMS",
    "V2_LEAF",
    "Escalate",
    "Manager",
    "Operation",
    "Reaper",
    "Request",
    "Scope",
    "Settling",
    "list_controllers",
    "list_hierarchies",
    "open_trees",
    "run",
]


def list_controllers(m: Manager) -> list[str]:
    """Each served v1 hierarchy as ``/proc/<pid>/cgroup`` names it (comounted controllers
    joined by commas, ``name=X``): 0.42's clients look every entry up there (test23,
    lxcfs).  The v2 tree has no name in that file, so it is listed only when served alone
    (a pure v2 host): one entry of every name it answers to, ``unified`` first, for
    clients that build ``all`` from the list or check a name against it.  Elsewhere it
    is addressed as ``unified`` (README, "ListControllers")."""
    v1 = [h.key for h in m.layout.hierarchies if h.version == 1]
    if v1:
        return v1
    return [
        ",".join(n for n in h.names if f"name={n}" not in h.names)  # name=X, not also X
        for h in m.layout.hierarchies
    ]


def list_hierarchies(m: Manager) -> list[tuple[str, int, list[str]]]:
    """Every served hierarchy — the v2 tree included, which ListControllers leaves out where
    v1 hierarchies are served — as (the name that addresses it, cgroup version, every name it
    answers to)."""
    return [(h.key, h.version, list(h.names)) for h in m.layout.hierarchies]


@dataclass(frozen=True)
class Operation:
    """How a contract method is carried out.

    ``fn(m, req, *args, **kwargs)``; ``identified``: it needs to know who asks (a
    :class:`Request`) — ListControllers and Ping do not, and are answered without reading
    /proc; ``pidfd``: it takes the pidfd the kernel passed with a victim's credential
    (``pidfd=`` keyword) so an Scm twin acts on exactly that process; ``subtree``: it acts on
    every cgroup below its target (the scheduler serialises it with anything there)."""

    fn: Callable[..., Any]
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    identified: bool = True
    pidfd: bool = False
    subtree: bool = False


def run(
    m: Manager, requestor: Party, name: str, *args: Any, proxy: Party | None = None, **kw: Any
) -> Any:
    """A contract method carried out in-process for *requestor* — the daemon's own work
    (configuration, placement rules, subscriptions) — through the very operation a client's
    call uses, in a request scope of its own, on the calling thread (never escalated)."""
    op = OPERATIONS[name]
    with Scope(may_escalate=False) as scope:
        return op.fn(m, Request(requestor, proxy or requestor, scope), *args, **op.kwargs, **kw)


def _ping(m: Manager, junk: int) -> tuple[()]:
    return ()


OPERATIONS: dict[str, Operation] = {
    "Ping": Operation(_ping, identified=False),
    "ListControllers": Operation(list_controllers, identified=False),
    "ListHierarchies": Operation(list_hierarchies, identified=False),
    "GetPidCgroup": Operation(get_pid_cgroup, {"absolute": False}, pidfd=True),
    "GetPidCgroupAbs": Operation(get_pid_cgroup, {"absolute": True}, pidfd=True),
    "Create": Operation(create),
    "Chown": Operation(chown, subtree=True),
    "Chmod": Operation(chmod),
    "MovePid": Operation(move_pid, {"absolute": False}, pidfd=True),
    "MovePidAbs": Operation(move_pid, {"absolute": True}, pidfd=True),
    "GetValue": Operation(get_value),
    "SetValue": Operation(set_value),
    "Remove": Operation(remove, subtree=True),
    "GetTasks": Operation(get_tasks),
    "GetTasksRecursive": Operation(get_tasks_recursive, subtree=True),
    "ListChildren": Operation(list_children),
    "RemoveOnEmpty": Operation(remove_on_empty, subtree=True),
    "Prune": Operation(prune, subtree=True),
    "ListKeys": Operation(list_keys),
    "Freeze": Operation(freeze, {"frozen": True}, subtree=True),
    "Thaw": Operation(freeze, {"frozen": False}, subtree=True),
    "Kill": Operation(kill, subtree=True),
    "GetEvents": Operation(events, subtree=True),
    "GetStat": Operation(stat, subtree=True),
    "Setup": Operation(setup),
    "Snapshot": Operation(snapshot, subtree=True),
}
