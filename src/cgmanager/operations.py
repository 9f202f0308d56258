"""The operations of ``org.linuxcontainers.cgmanager0_0``, independent of any transport.

Each public method of :class:`Manager` is one D-Bus method (plain and Scm forms share it): the
transport supplies a :class:`Request` (who asks, through whom) and the arguments; every client
string goes through :mod:`cgmanager.names`, every decision through
:mod:`cgmanager.permission`, every kernel action through :class:`~cgmanager.cgroupfs.CgroupTree`.

Path families (0.42 §3.2):

* *lookup* methods (GetValue, SetValue, GetTasks, GetTasksRecursive, ListChildren, ListKeys):
  ``""`` is the requestor's cgroup, ``a/b`` is below it, ``/a/b`` is absolute in the
  hierarchy; the result must lie below the *proxy's* cgroup (the requestor's for plain calls);
* *relative* methods (Create, Chown, Chmod, MovePid, Remove, RemoveOnEmpty, Prune): always
  below the requestor's cgroup (the proxy's for MovePidAbs); a leading ``/`` means nothing.

Everything is also bounded by the daemon's own cgroup in each hierarchy: the daemon acts
within its subtree, never further.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from . import names, translate
from .cgroupfs import CgroupTree
from .errors import (
    Busy,
    CgmError,
    InvalidArgument,
    LimitExceeded,
    NotFound,
    NotPermitted,
    Unsupported,
)
from .hierarchy import Hierarchy, Layout
from .permission import (
    Access,
    FileOwner,
    Identity,
    may_chown,
    may_move,
    require_access,
    require_reach,
    require_settable_key,
    require_valid_id,
)
from .requestor import Party
from .victim import Victim

log = logging.getLogger(__name__)
T = TypeVar("T")

#: where the daemon moves a v2 cgroup's processes when a controller must be enabled for its
#: children (the no-internal-process rule); reserved, hidden, and transparent to clients
V2_LEAF = ".cgm_leaf"

#: largest value SetValue writes (cgroup files take far less; this bounds memory per request)
MAX_VALUE = 1 << 20
#: most values, and most pids, one Setup request may carry
SETUP_MAX_ITEMS = 256


@dataclass(frozen=True)
class Request:
    """Who asks (the requestor r) and through whom (the proxy p, == r for plain calls)."""

    requestor: Party
    proxy: Party

    @property
    def r(self) -> Identity:
        return self.requestor.identity


class Reaper(Protocol):
    """Removes cgroups once they are empty (RemoveOnEmpty, Prune)."""

    def watch(self, tree: CgroupTree, path: str, owner: int) -> None: ...


def _owner(st: os.stat_result) -> FileOwner:
    return FileOwner(st.st_uid, st.st_gid, st.st_mode)


def _show(h: Hierarchy, path: str, base: str) -> str:
    """How a path appears in messages: relative to the caller's cgroup when below it."""
    if names.is_under(path, base):
        rel = names.relative_to(path, base)
        return f"{h.key}:{rel or '.'}"
    return f"{h.key}:{path}"


class Manager:
    """The daemon's operations over the served hierarchies."""

    def __init__(
        self,
        layout: Layout,
        trees: Mapping[str, CgroupTree],
        daemon: Party,
        *,
        max_depth: int = 16,
        reaper: Reaper | None = None,
        leaves: Mapping[str, str] | None = None,
        quota: Mapping[str, int] | None = None,
    ) -> None:
        self.layout = layout
        self.trees = dict(trees)
        #: trees holding resolved cgroups for the request in progress (see :meth:`holding`)
        self._holding: list[CgroupTree] | None = None
        self.daemon = daemon
        self.max_depth = max_depth
        self.reaper = reaper
        #: hierarchy key -> the leaf the daemon itself lives in (when started delegated)
        self.leaves = dict(leaves or {})
        #: v2 limits set on every cgroup delegated (chowned) to a non-root uid, e.g.
        #: {"cgroup.max.descendants": 1000}: the kernel-native per-delegation quota
        self.quota = dict(quota or {})
        self._reserved = frozenset(c for h in layout.hierarchies for c in h.controllers)

    # -- helpers ----------------------------------------------------------------------------

    def tree(self, h: Hierarchy) -> CgroupTree:
        t = self.trees[h.key]
        if self._holding is not None and t._held is None:
            t.hold()
            self._holding.append(t)
        return t

    def holding(self) -> _Holding:
        """``with manager.holding():`` around one synchronous request: each cgroup it names is
        resolved once (see :meth:`CgroupTree.hold`), released at the end."""
        return _Holding(self)

    def base(self, h: Hierarchy) -> str:
        """The daemon's own cgroup: the bound of everything it does in *h*."""
        return self.daemon.cgroup(h)

    @staticmethod
    def _logical(h: Hierarchy, path: str) -> str:
        """A process in X/.cgm_leaf counts as being in X: the daemon put it there."""
        if h.version == 2 and path.endswith("/" + V2_LEAF):
            return names.parent(path)
        return path

    def own(self, party: Party, h: Hierarchy) -> str:
        """*party*'s cgroup in *h*, which must lie within the daemon's subtree."""
        path = self._logical(h, party.cgroup(h))
        if not names.is_under(path, self.base(h)):
            raise NotFound(f"process {party.cred.pid} is outside this cgmanager's {h.key} subtree")
        return path

    def _stat(self, h: Hierarchy, path: str, key: str | None, shown: str) -> FileOwner:
        try:
            return _owner(self.tree(h).stat(path, key))
        except CgmError as e:
            raise type(e)(
                f"{shown}{' ' + key if key else ''}: {e.reason}", reason=e.reason
            ) from None

    def _kernel(self, what: str, fn: Callable[[], T]) -> T:
        """Run a kernel action, re-wording its error in terms the caller used."""
        try:
            return fn()
        except CgmError as e:
            raise type(e)(f"{what}: {e.reason}", reason=e.reason) from None

    @staticmethod
    def _each(
        hs: list[Hierarchy], fn: Callable[[Hierarchy], T], *, skip_denied: bool = True
    ) -> list[T]:
        """0.42's multi-controller rule: a permission refusal in one hierarchy is skipped,
        any other failure aborts.  Unlike 0.42, a request refused everywhere fails."""
        results: list[T] = []
        denied: CgmError | None = None
        for h in hs:
            try:
                results.append(fn(h))
            except NotPermitted as e:
                if not skip_denied or len(hs) == 1:
                    raise
                log.debug("skipping %s: %s", h.key, e)
                denied = e
        if denied is not None and not results:
            raise denied
        return results

    def _relative(self, cgroup: str) -> tuple[str, ...]:
        """Components of a client's cgroup path.  Names reserved for kernel files are refused
        in every method, not only in Create: they can never be cgroups made through us, and
        "did not exist" would hide a mistake."""
        parts = names.split(cgroup)
        for part in parts:
            names.check_new_name(part, self._reserved)
        return parts

    def _guard(self, h: Hierarchy, path: str, shown: str) -> None:
        """The daemon's own leaf is out of every client's reach."""
        leaf = self.leaves.get(h.key)
        if leaf is not None and names.is_under(path, leaf):
            raise NotFound(f"cgroup {shown}: not found")

    def _not_base(self, h: Hierarchy, path: str, shown: str) -> None:
        """The cgroup the daemon was started in bounds everything it does, but its own
        attributes belong to whoever delegated it (systemd: the unit's cgroup): never written
        through the API."""
        if path == self.base(h):
            raise NotPermitted(
                f"not permitted: {shown} is the cgroup this cgmanager was started in;"
                " its attributes are not changed through cgmanager"
            )

    def _below(self, party: Party, h: Hierarchy, parts: tuple[str, ...]) -> tuple[str, str, str]:
        """A relative-family target: (the party's cgroup, the target below it, how to show it)."""
        base = self.own(party, h)
        target = names.join(base, *parts)
        shown = _show(h, target, base)
        self._guard(h, target, shown)
        return base, target, shown

    def _lookup_target(self, req: Request, h: Hierarchy, cgroup: str) -> tuple[str, str]:
        """Resolve a lookup-family path and check it lies below the proxy's cgroup.
        Returns (path, how to show it)."""
        parts = self._relative(cgroup)
        if cgroup.startswith("/"):
            path = names.join("/", *parts)
            shown = f"{h.key}:{path}"
        else:
            base = self.own(req.requestor, h)
            path = names.join(base, *parts)
            shown = _show(h, path, base)
        bound = self.own(req.proxy, h)
        require_reach(path, bound, shown)
        self._guard(h, path, shown)
        return path, shown

    # -- methods ----------------------------------------------------------------------------

    def list_controllers(self) -> list[str]:
        """One entry per served hierarchy; comounted names joined by commas, the v2 hierarchy
        as ``unified`` followed by the controllers available on it."""
        out = []
        for h in self.layout.hierarchies:
            out.append(",".join(("unified", *h.controllers)) if h.version == 2 else h.key)
        return out

    def get_pid_cgroup(
        self, req: Request, controller: str, pid: int, *, absolute: bool, pidfd: int | None = None
    ) -> str:
        """The cgroup of *pid*, relative to the requestor's cgroup (``xxx/b``, or ``/`` when the
        same) or, *absolute*, to the proxy's (``/xxx/b``)."""
        h = self.layout.resolve_one(controller)
        base = self.own(req.proxy if absolute else req.requestor, h)
        with Victim.open(pid, self.layout, pidfd) as v:
            where = v.cgroups.get(h.key)
        where = where and self._logical(h, where)
        if where is None or not names.is_under(where, base):
            raise NotFound(f"process {pid}: not found in a {h.key} cgroup below the caller's")
        rel = names.relative_to(where, base)
        if absolute:
            return "/" + rel
        return rel or "/"

    def create(self, req: Request, controller: str, cgroup: str) -> int:
        """Create *cgroup* below the requestor's cgroup in each hierarchy; existed = 1 when it
        already existed in any of them, else -1 (never 0: old clients mishandle it)."""
        parts = self._relative(cgroup)
        if not parts:
            return -1
        hs = self.layout.resolve(controller)
        names_asked = [c for c in controller.split(",") if c]
        existed = self._each(
            hs,
            lambda h: self._create_one(
                req, h, parts, [c for c in names_asked if h.version == 2 and c in h.controllers]
            ),
        )
        return 1 if any(existed) else -1

    def _create_one(
        self,
        req: Request,
        h: Hierarchy,
        parts: tuple[str, ...],
        wanted: Sequence[str] = (),
        made: list[str] | None = None,
    ) -> bool:
        """Create the components below the requestor's cgroup; on v2, *wanted* controllers
        (the v2 controllers the client named, e.g. ``memory``) are enabled top-down from the
        requestor's own cgroup so the new cgroup has them — never above it.  The cgroups it
        makes are appended to *made* as soon as they exist."""
        t, r = self.tree(h), req.r
        base, target, _ = self._below(req.requestor, h, parts)
        depth = names.depth(target) - names.depth(self.base(h))
        if depth > self.max_depth:
            raise LimitExceeded(
                f"{_show(h, target, base)}: deeper than this cgmanager allows ({self.max_depth})"
            )
        cur, existed = base, True
        for part in parts:
            if wanted:
                self._enable(req, h, cur, _show(h, cur, base), list(wanted))
            nxt = names.join(cur, part)
            shown = _show(h, nxt, base)
            if t.exists(nxt):
                require_access(r, self._stat(h, nxt, None, shown), Access.READ, shown)
                existed = True
            else:
                parent_shown = _show(h, cur, base)
                require_access(
                    r, self._stat(h, cur, None, parent_shown), Access.READ_WRITE, parent_shown
                )
                if self._kernel(f"create {shown}", lambda p=nxt: t.mkdir(p)):
                    if made is not None:
                        made.append(nxt)
                    self._inherit_cpuset(t, cur, nxt)
                    if r.uid != 0 or r.gid != 0:
                        try:
                            t.chown_all(nxt, r.uid, r.gid)
                        except CgmError:
                            t.rmdir(nxt)
                            raise
                    existed = False
                else:
                    existed = True  # created concurrently by someone else
            cur = nxt
        return existed

    @staticmethod
    def _inherit_cpuset(t: CgroupTree, parent: str, child: str) -> None:
        """A new v1 cpuset cgroup has no cpus and mems, so nothing can be moved into it (ENOSPC).
        0.42 set the host-global ``cgroup.clone_children``; we copy the parent's values into
        each cgroup we create instead."""
        if t.v2 or "cpuset" not in t.hierarchy.controllers:
            return
        for key in ("cpuset.cpus", "cpuset.mems"):
            try:
                t.write(child, key, t.read(parent, key).strip() or "\n")
            except CgmError as e:
                t.rmdir(child)
                raise type(e)(f"cpuset of {child}: {e.reason}", reason=e.reason) from None

    def chown(self, req: Request, controller: str, cgroup: str, uid: int, gid: int) -> None:
        """Hand a cgroup to uid:gid (the directory and the kernel's delegation files)."""
        if not may_chown(req.r):
            raise NotPermitted(
                "not permitted: only root (of the host or of a user namespace) may chown"
            )
        require_valid_id(uid, "uid")
        require_valid_id(gid, "gid")
        parts = self._relative(cgroup)

        def one(h: Hierarchy) -> None:
            t = self.tree(h)
            _, target, shown = self._below(req.requestor, h, parts)
            self._not_base(h, target, shown)
            require_access(req.r, self._stat(h, target, None, shown), Access.READ_WRITE, shown)
            if uid != 0:
                self._no_foreign_processes(h, target, shown, uid, req.r.pid)
                if t.v2:
                    for key, limit in self.quota.items():  # before the hand-over
                        self._kernel(
                            f"quota of {shown}", lambda k=key, v=limit: t.write(target, k, str(v))
                        )
            self._kernel(f"chown {shown}", lambda: t.chown(target, uid, gid))

        self._each(self.layout.resolve(controller), one)

    def chmod(self, req: Request, controller: str, cgroup: str, file: str, mode: int) -> None:
        """chmod the cgroup directory (*file* ``""``) or one of its files."""
        if "/" in file or "\\" in file:
            raise InvalidArgument("invalid file: must be a file name, without '/' or '\\'")
        key = file or None
        if key is not None:
            names.check_key(key)
        if not 0 <= mode <= 0o777:
            raise InvalidArgument(f"invalid mode {mode:o}: permission bits (0 to 777) only")
        parts = self._relative(cgroup)

        def one(h: Hierarchy) -> None:
            _, target, shown = self._below(req.requestor, h, parts)
            self._not_base(h, target, shown)
            require_access(req.r, self._stat(h, target, key, shown), Access.READ_WRITE, shown)
            self._kernel(f"chmod {shown}", lambda: self.tree(h).chmod(target, key, mode))

        self._each(self.layout.resolve(controller), one)

    def move_pid(
        self,
        req: Request,
        controller: str,
        cgroup: str,
        pid: int,
        *,
        absolute: bool,
        pidfd: int | None = None,
    ) -> None:
        """Move process *pid* into *cgroup*, below the requestor's cgroup (MovePid) or the
        proxy's (MovePidAbs: the only way up, and never above the proxy)."""
        if not absolute and cgroup.startswith("/"):
            raise InvalidArgument("invalid cgroup: MovePid takes a relative path (use MovePidAbs)")
        parts = self._relative(cgroup)
        hs = self.layout.resolve(controller)
        with Victim.open(pid, self.layout, pidfd) as v:
            _require_movable(req, v)
            failures: list[CgmError] = []
            for h in hs:
                try:
                    self._move_one(req, h, parts, v, absolute)
                except CgmError as e:
                    failures.append(e)
            if not v.alive():
                # it was alive right before each write, but the kernel takes a pid: had it
                # died and its pid been recycled in between, the write may have hit another
                # process, so this is never reported as success
                log.warning("process %d exited during a move", pid)
                failures.insert(0, NotFound(f"process {pid}: exited during the move"))
        if failures:
            raise failures[0]

    def setup(
        self,
        req: Request,
        controllers: str,
        cgroup: str,
        uid: int,
        gid: int,
        values: Mapping[str, str],
        pids: Sequence[int],
    ) -> list[str]:
        """A container's set-up in one request: create *cgroup* (new, below the requestor's
        cgroup) in every hierarchy of *controllers*, chown it to uid:gid (-1, -1: keep the
        requestor's), write *values* in order (``file`` → the hierarchy of its prefix, or
        ``controller:file``), move *pids* into it.  Each step is checked exactly like its
        single-method twin.  All or nothing: if a step fails, the processes moved go back and
        every cgroup created is removed before the error is returned.  Returns the cgroups
        made, as ``hierarchy:path`` relative to the caller's cgroup."""
        parts = self._relative(cgroup)
        if not parts:
            raise InvalidArgument("invalid cgroup: Setup needs a name below your own cgroup")
        hs = self.layout.resolve(controllers)
        if (uid == -1) != (gid == -1):
            raise InvalidArgument("invalid owner: give both uid and gid, or -1 for both")
        if len(values) > SETUP_MAX_ITEMS or len(pids) > SETUP_MAX_ITEMS:
            raise InvalidArgument(f"invalid Setup: at most {SETUP_MAX_ITEMS} values and pids")
        writes = [(self._setup_hierarchy(spec, hs), spec, v) for spec, v in values.items()]
        for pid in pids:
            if pid <= 0:
                raise InvalidArgument(f"invalid pid {pid}")
        targets = {h.key: self._below(req.requestor, h, parts) for h in hs}
        for h in hs:
            _, target, shown = targets[h.key]
            if self.tree(h).exists(target):
                raise Busy(f"{shown}: already exists (Setup makes new cgroups only)")
        undo = _Rollback()
        step = "create"
        try:
            for h in hs:
                made: list[str] = []
                undo.remove(self.tree(h), made)
                wanted = [
                    c for c in controllers.split(",") if h.version == 2 and c in h.controllers
                ]
                self._create_one(req, h, parts, wanted, made)
            if uid != -1:
                step = "chown"
                self.chown(req, ",".join(h.key for h in hs), cgroup, uid, gid)
            for h, spec, value in writes:
                step = f"write {spec}"
                key = spec.partition(":")[2] or spec
                self.set_value(req, h.key, cgroup, key, value)
            for pid in pids:
                step = f"move {pid}"
                with Victim.open(pid, self.layout) as v:
                    _require_movable(req, v)
                    for h in hs:
                        was = v.cgroups.get(h.key)
                        self._move_one(req, h, parts, v, False)
                        if was is not None:  # (it was below the caller's cgroup: shown so)
                            undo.move_back(
                                self.tree(h),
                                was,
                                v,
                                _show(h, self._logical(h, was), targets[h.key][0]),
                            )
                    if not v.alive():
                        raise NotFound(f"process {pid}: exited during the move")
        except CgmError as e:
            left = undo.run()
            tail = f"; not undone: {'; '.join(left)}" if left else "; nothing was changed"
            raise type(e)(f"Setup failed at {step}: {e.message}{tail}", reason=e.reason) from None
        undo.discard()
        return [targets[h.key][2] for h in hs]

    def _setup_hierarchy(self, spec: str, hs: Sequence[Hierarchy]) -> Hierarchy:
        """The hierarchy a Setup value is for: ``controller:file``, or the file's prefix."""
        controller, sep, key = spec.partition(":")
        if not sep:
            key = spec
            controller = spec.partition(".")[0]
        names.check_key(key)
        try:
            h = self.layout.resolve_one(controller)
        except CgmError:
            raise InvalidArgument(
                f"invalid value name {spec!r}: no hierarchy {controller!r} here"
                " (name one as controller:file)"
            ) from None
        if h not in hs:
            raise InvalidArgument(
                f"invalid value name {spec!r}: {h.key} is not among the controllers set up"
            )
        return h

    def _no_foreign_processes(
        self, h: Hierarchy, path: str, shown: str, uid: int, requestor: int
    ) -> None:
        """A delegatee never gets another user's processes: it could freeze, kill or starve
        them (the kernel lets the owner of cgroup.kill and cgroup.procs do so).  The requestor
        itself is exempt: it hands over its own cgroup knowingly (0.42's nstest; a login
        manager about to drop privileges)."""
        for pid in self.tree(h).procs_recursive(path):
            if pid == requestor:
                continue
            try:
                with Victim.open(pid, self.layout) as v:
                    if v.uid != uid:
                        raise NotPermitted(
                            f"not permitted: {shown} holds process {pid} of another user than"
                            f" uid {uid}; it cannot be delegated to uid {uid}"
                        )
            except NotFound:
                continue

    def _delegatee_accepts(self, req: Request, owner: int, v: Victim) -> bool:
        """Whether a process may be placed in a cgroup delegated to uid *owner*: it is the
        delegatee's own, or the delegatee itself (or root of a namespace mapping both) asks."""
        r = req.r
        return (
            owner == 0
            or v.pid == r.pid  # moving itself: consenting (pam_cgm does, before setuid)
            or v.uid == owner
            or r.uid == owner
            or (r.root_in_userns and not r.is_host_root and r.maps_uid(owner) and r.maps_uid(v.uid))
        )

    def _move_one(
        self, req: Request, h: Hierarchy, parts: tuple[str, ...], v: Victim, absolute: bool
    ) -> None:
        t = self.tree(h)
        base, target, shown = self._below(req.proxy if absolute else req.requestor, h, parts)
        where = v.cgroups.get(h.key)
        where = where and self._logical(h, where)
        if where is None or not names.is_under(where, base):
            raise NotPermitted(
                f"not permitted to move process {v.pid}: it is not in a {h.key} cgroup below the caller's"
            )
        directory = self._stat(h, target, None, shown)
        require_access(req.r, directory, Access.READ, shown)
        procs = self._stat(h, target, t.procs_file, shown)
        require_access(req.r, procs, Access.WRITE, f"{shown} {t.procs_file}")
        if not self._delegatee_accepts(req, directory.uid, v):
            raise NotPermitted(
                f"not permitted to move process {v.pid} into {shown}: it is delegated to uid"
                f" {req.r.uid_as_seen(directory.uid)}, and the process belongs to another user"
            )
        v.require_alive()
        try:
            self._kernel(f"move {v.pid} to {shown}", lambda: t.move(target, v.pid))
        except Busy:
            if not t.v2:
                raise
            # target passes controllers to its children: processes live in its leaf
            leaf = self._leaf(h, target)
            self._kernel(f"move {v.pid} to {shown}", lambda: t.move(leaf, v.pid))

    def _leaf(self, h: Hierarchy, path: str) -> str:
        """path/.cgm_leaf, created if needed and owned like *path* (so its owner keeps the
        same control over the processes moved there)."""
        t = self.tree(h)
        leaf = names.join(path, V2_LEAF)
        if self._kernel(f"create {leaf}", lambda: t.mkdir(leaf)):
            st = t.stat(path)
            if st.st_uid != 0 or st.st_gid != 0:
                t.chown(leaf, st.st_uid, st.st_gid)
        return leaf

    def _make_room(self, req: Request, h: Hierarchy, path: str, shown: str) -> bool:
        """Move the processes of *path* into its leaf so controllers can be enabled for its
        children.  Only if the requestor may move every one of them; False if none.

        Each is pinned by a pidfd from its check to its move, must still be in *path* when
        pinned, and must still be alive right before the write: a pid recycled meanwhile
        names a stranger, who is never carried into the leaf."""
        t = self.tree(h)
        pids = t.procs(path)
        if not pids:
            return False
        victims: list[Victim] = []
        try:
            for pid in pids:
                try:
                    v = Victim.open(pid, self.layout)
                except NotFound:
                    continue
                victims.append(v)
                if v.cgroups.get(h.key) != path:
                    continue  # left, or its pid was recycled: not ours to move
                if not may_move(req.r, v.pid, lambda v=v: v.uid):
                    raise Busy(
                        f"{shown} holds processes of other users; controllers cannot be"
                        " enabled for its children (cgroup v2 allows no processes there)"
                    )
            leaf = self._leaf(h, path)
            for v in victims:
                if v.cgroups.get(h.key) != path or not v.alive():
                    continue  # exited meanwhile: its pid may name another process now
                try:
                    t.move(leaf, v.pid)
                except NotFound:
                    continue
        finally:
            for v in victims:
                v.close()
        log.info("moved %d process(es) of %s:%s into %s", len(pids), h.key, path, V2_LEAF)
        return True

    def _enable(self, req: Request, h: Hierarchy, path: str, shown: str, wanted: list[str]) -> None:
        """Make *wanted* v2 controllers available to the children of *path*."""
        t = self.tree(h)
        have = set(t.read(path, "cgroup.subtree_control").split())
        missing = [c for c in wanted if c not in have]
        if not missing:
            return
        available = set(t.read(path, "cgroup.controllers").split())
        for c in missing:
            if c not in available:
                raise Unsupported(
                    f"controller {c} is not available in {shown}: it must be enabled above it"
                )
        key = "cgroup.subtree_control"
        require_access(req.r, self._stat(h, path, key, shown), Access.WRITE, f"{shown} {key}")
        self._write_subtree_control(req, h, path, shown, " ".join("+" + c for c in missing))

    def _write_subtree_control(
        self, req: Request, h: Hierarchy, path: str, shown: str, value: str
    ) -> None:
        t = self.tree(h)
        what = f"write {shown} cgroup.subtree_control"
        try:
            try:
                self._kernel(what, lambda: t.write(path, "cgroup.subtree_control", value))
            except Busy:
                if not self._make_room(req, h, path, shown):
                    raise
                self._kernel(what, lambda: t.write(path, "cgroup.subtree_control", value))
        except NotFound:  # the kernel's ENOENT: a controller its parent does not pass on
            raise Unsupported(
                f"{what}: a controller in {value.strip()!r} is not available in {shown};"
                " it must be enabled above it first"
            ) from None

    def _read_key(self, req: Request, h: Hierarchy, path: str, shown: str, key: str) -> str:
        names.check_key(key)
        require_access(req.r, self._stat(h, path, key, shown), Access.READ, f"{shown} {key}")
        return self._kernel(f"read {shown} {key}", lambda: self.tree(h).read(path, key))

    def _translates(self, h: Hierarchy, path: str, key: str) -> bool:
        """A v1 key on a v2 hierarchy, with no real file of that name to shadow."""
        if h.version != 2 or not translate.applies(key):
            return False
        try:
            self.tree(h).stat(path, key)
            return False
        except NotFound:
            return True

    def get_value(self, req: Request, controller: str, cgroup: str, key: str) -> str:
        """Read a key; all trailing newlines stripped, as 0.42 did.  On v2, v1 keys are
        translated (see :mod:`cgmanager.translate`)."""
        names.check_key(key)
        h = self.layout.resolve_one(controller)
        path, shown = self._lookup_target(req, h, cgroup)
        require_access(req.r, self._stat(h, path, None, shown), Access.READ, shown)
        if self._translates(h, path, key):
            read = lambda k: self._read_key(req, h, path, shown, k)  # noqa: E731
            return self._kernel(f"{shown} {key}", lambda: translate.get(key, read)).rstrip("\n")
        return self._read_key(req, h, path, shown, key).rstrip("\n")

    def set_value(self, req: Request, controller: str, cgroup: str, key: str, value: str) -> None:
        """Write a key from the hierarchy's allowlist (a newline is appended as 0.42 did).  On
        v2, a v1 key becomes the writes to its v2 file(s), each checked like a direct write."""
        names.check_key(key)
        if len(value) > MAX_VALUE:
            raise InvalidArgument(f"invalid value: longer than {MAX_VALUE} bytes")
        if "\0" in value:
            raise InvalidArgument("invalid value: contains a NUL byte")
        h = self.layout.resolve_one(controller)
        path, shown = self._lookup_target(req, h, cgroup)
        self._not_base(h, path, shown)
        require_access(req.r, self._stat(h, path, None, shown), Access.READ, shown)
        if self._translates(h, path, key):
            read = lambda k: self._read_key(req, h, path, shown, k)  # noqa: E731
            writes = self._kernel(f"{shown} {key}", lambda: translate.set_(key, value, read))
        else:
            writes = [(key, value)]
        for k, _ in writes:
            require_settable_key(k, h.controllers)
            require_access(req.r, self._stat(h, path, k, shown), Access.WRITE, f"{shown} {k}")
        for k, v in writes:
            data = v if not v or v.endswith("\n") else v + "\n"
            if h.version == 2 and k == "cgroup.subtree_control":
                self._write_subtree_control(req, h, path, shown, data)
                continue
            self._kernel(
                f"write {shown} {k}", lambda k=k, data=data: self.tree(h).write(path, k, data)
            )

    def remove(self, req: Request, controller: str, cgroup: str, recursive: bool) -> int:
        """Remove a cgroup (recursively by default in cgm); existed 1 / -1."""
        parts = self._relative(cgroup)
        existed = self._each(
            self.layout.resolve(controller), lambda h: self._remove_one(req, h, parts, recursive)
        )
        return 1 if any(existed) else -1

    def _remove_one(
        self, req: Request, h: Hierarchy, parts: tuple[str, ...], recursive: bool
    ) -> bool:
        t = self.tree(h)
        base, working, shown = self._below(req.requestor, h, parts)
        if not t.exists(working):
            return False
        if working == self.base(h):
            raise NotPermitted(f"not permitted: {shown} is this cgmanager's own cgroup")
        # like rmdir(2) for the caller: write access to the parent of everything removed
        doomed = t.walk(working) if recursive else [working]
        for d in doomed:
            parent = names.parent(d)
            pshown = _show(h, parent, base)
            require_access(req.r, self._stat(h, parent, None, pshown), Access.WRITE, pshown)
        if not recursive and t.v2 and t.children(working) == [V2_LEAF]:
            recursive = True  # only the daemon's leaf below: it goes with its cgroup
        self._kernel(f"remove {shown}", lambda: t.remove(working, recursive))
        return True

    def _tasks(self, h: Hierarchy, path: str) -> list[int]:
        t = self.tree(h)
        if not t.v2:
            return t.threads(path)  # v1: the threads of `tasks`, as 0.42 listed
        pids = t.procs(path)
        leaf = names.join(path, V2_LEAF)
        if t.exists(leaf):
            pids += t.procs(leaf)
        return pids

    def get_tasks(self, req: Request, controller: str, cgroup: str) -> list[int]:
        h = self.layout.resolve_one(controller)
        path, shown = self._lookup_target(req, h, cgroup)
        require_access(req.r, self._stat(h, path, None, shown), Access.READ, shown)
        return sorted(set(self._kernel(f"list tasks of {shown}", lambda: self._tasks(h, path))))

    def get_tasks_recursive(self, req: Request, controller: str, cgroup: str) -> list[int]:
        """Union over hierarchies; a hierarchy where the cgroup is missing or unreadable is
        skipped, one outside the caller's reach fails the call."""
        result: set[int] = set()
        for h in self.layout.resolve(controller):
            path, shown = self._lookup_target(req, h, cgroup)
            try:
                require_access(req.r, self._stat(h, path, None, shown), Access.READ, shown)
                t = self.tree(h)
                for p in t.walk(path):
                    try:
                        result.update(self._tasks(h, p))
                    except NotFound:
                        continue
            except (NotFound, NotPermitted) as e:
                log.debug("GetTasksRecursive: skipping %s: %s", h.key, e)
        return sorted(result)

    def list_children(self, req: Request, controller: str, cgroup: str) -> list[str]:
        h = self.layout.resolve_one(controller)
        path, shown = self._lookup_target(req, h, cgroup)
        require_access(req.r, self._stat(h, path, None, shown), Access.READ, shown)
        kids = self._kernel(f"list {shown}", lambda: self.tree(h).children(path))
        return [k for k in kids if not (h.version == 2 and k == V2_LEAF)]

    def list_keys(
        self, req: Request, controller: str, cgroup: str
    ) -> list[tuple[str, int, int, int]]:
        """(name, uid, gid, mode) of each file, ids as the requestor's namespace shows them."""
        h = self.layout.resolve_one(controller)
        path, shown = self._lookup_target(req, h, cgroup)
        require_access(req.r, self._stat(h, path, None, shown), Access.READ, shown)
        r = req.r
        return [
            (k.name, r.uid_as_seen(k.uid), r.gid_as_seen(k.gid), k.mode)
            for k in self._kernel(f"list keys of {shown}", lambda: self.tree(h).keys(path))
        ]

    def remove_on_empty(self, req: Request, controller: str, cgroup: str) -> None:
        """Remove the cgroup (recursively) once no process is left in it."""
        reaper = self._need_reaper()
        parts = self._relative(cgroup)

        def one(h: Hierarchy) -> None:
            base, working, shown = self._below(req.requestor, h, parts)
            require_access(req.r, self._stat(h, working, None, shown), Access.WRITE, shown)
            if working == self.base(h):
                raise NotPermitted(f"not permitted: {shown} is this cgmanager's own cgroup")
            reaper.watch(self.tree(h), working, req.r.uid)

        self._each(self.layout.resolve(controller), one)

    def prune(self, req: Request, controller: str, cgroup: str) -> None:
        """Remove every empty cgroup at and below *cgroup* now, and the others as they empty.
        Cgroups the caller could not rmdir itself (parent not writable) are left alone."""
        reaper = self._need_reaper()
        parts = self._relative(cgroup)
        hs = self.layout.resolve(controller)

        def one(h: Hierarchy) -> None:
            t = self.tree(h)
            base, working, shown = self._below(req.requestor, h, parts)
            require_access(req.r, self._stat(h, working, None, shown), Access.WRITE, shown)
            for d in reversed(t.walk(working)):
                if d == self.base(h):
                    continue
                try:
                    parent = _owner(t.stat(names.parent(d)))
                    require_access(req.r, parent, Access.WRITE, d)
                except CgmError:
                    continue
                try:
                    if t.children(d):
                        reaper.watch(t, d, req.r.uid)
                    else:
                        t.rmdir(d)
                except CgmError:
                    reaper.watch(t, d, req.r.uid)

        if len(hs) == 1:
            one(hs[0])
            return
        for h in hs:  # multi: failures only logged, as in 0.42
            try:
                one(h)
            except CgmError as e:
                log.debug("Prune: %s: %s", h.key, e)

    # -- beyond 0.42 (interface org.linuxcontainers.cgmanager1) ------------------------------

    def _victims(self, req: Request, h: Hierarchy, path: str) -> list[Victim]:
        """Every process below *path*, pinned; each must be one the requestor may act on (the
        victim rule of MovePid), so freezing or killing a subtree never reaches another user's
        processes.  The caller closes the victims."""
        victims: list[Victim] = []
        try:
            for pid in self.tree(h).procs_recursive(path):
                try:
                    v = Victim.open(pid, self.layout)
                except NotFound:
                    continue  # exited meanwhile
                where = v.cgroups.get(h.key)
                if where is None or not names.is_under(where, path):
                    v.close()  # left, or its pid was recycled: a stranger, not a victim
                    continue
                victims.append(v)
                if not may_move(req.r, v.pid, lambda v=v: v.uid):
                    raise NotPermitted(
                        f"not permitted: process {pid} in {h.key}:{path} belongs to another user"
                    )
        except BaseException:
            for v in victims:
                v.close()
            raise
        return victims

    def _freezer_key(self, h: Hierarchy) -> str:
        if h.version == 2:
            return "cgroup.freeze"
        if "freezer" in h.controllers:
            return "freezer.state"
        raise Unsupported(f"the {h.key} hierarchy cannot freeze; use freezer or unified")

    def freeze(
        self, req: Request, controller: str, cgroup: str, frozen: bool
    ) -> Callable[[], bool]:
        """Start freezing (or thawing) a cgroup; returns a check that is true once the kernel
        reports the whole subtree in that state (``frozen 1`` / ``FROZEN``)."""
        h = self.layout.resolve_one(controller)
        path, shown = self._lookup_target(req, h, cgroup)
        self._not_base(h, path, shown)  # freezing it would freeze the daemon too
        require_access(req.r, self._stat(h, path, None, shown), Access.READ, shown)
        key = self._freezer_key(h)
        require_access(req.r, self._stat(h, path, key, shown), Access.WRITE, f"{shown} {key}")
        t = self.tree(h)
        for v in self._victims(req, h, path):
            v.close()
        if t.v2:
            self._kernel(f"freeze {shown}", lambda: t.write(path, key, "1" if frozen else "0"))
            return lambda: t.events(path).get("frozen", 0) == int(frozen)
        want = "FROZEN" if frozen else "THAWED"
        self._kernel(f"freeze {shown}", lambda: t.write(path, key, want))
        return lambda: t.read(path, key).strip() == want

    def kill(self, req: Request, controller: str, cgroup: str) -> int:
        """SIGKILL every process of the subtree; returns how many were found.  v2 uses
        ``cgroup.kill`` (safe against forks); v1 freezes first where it can, then kills each
        process through its pidfd, until the subtree is empty."""
        h = self.layout.resolve_one(controller)
        path, shown = self._lookup_target(req, h, cgroup)
        self._not_base(h, path, shown)  # killing it would kill the daemon too
        require_access(req.r, self._stat(h, path, None, shown), Access.READ, shown)
        t = self.tree(h)
        key = "cgroup.kill" if t.v2 else t.procs_file
        require_access(req.r, self._stat(h, path, key, shown), Access.WRITE, f"{shown} {key}")
        victims = self._victims(req, h, path)
        try:
            if t.v2:
                self._kernel(f"kill {shown}", lambda: t.write(path, "cgroup.kill", "1"))
                return len(victims)
            return self._kill_v1(req, h, path, shown, victims)
        finally:
            for v in victims:
                v.close()

    def _kill_v1(
        self, req: Request, h: Hierarchy, path: str, shown: str, victims: list[Victim]
    ) -> int:
        t = self.tree(h)
        freezer = "freezer" in h.controllers
        if freezer:
            self._kernel(f"freeze {shown}", lambda: t.write(path, "freezer.state", "FROZEN"))
        killed: set[int] = set()
        try:
            for _ in range(100):  # a fork bomb cannot outrun a frozen cgroup; others get 100 rounds
                for v in victims:
                    if v.pid not in killed:
                        try:
                            signal.pidfd_send_signal(v.pidfd, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                        killed.add(v.pid)
                for v in victims:
                    v.close()
                victims[:] = self._victims(req, h, path)
                if not [v for v in victims if v.pid not in killed]:
                    break
        finally:
            if freezer:
                self._kernel(f"thaw {shown}", lambda: t.write(path, "freezer.state", "THAWED"))
        return len(killed)

    def events(self, req: Request, controller: str, cgroup: str) -> dict[str, int]:
        """``cgroup.events`` (v2); on v1 the same facts computed: populated, and frozen where
        the hierarchy has the freezer."""
        h = self.layout.resolve_one(controller)
        path, shown = self._lookup_target(req, h, cgroup)
        require_access(req.r, self._stat(h, path, None, shown), Access.READ, shown)
        t = self.tree(h)
        if t.v2:
            return self._kernel(f"events of {shown}", lambda: t.events(path))
        result = {"populated": int(self._kernel(f"events of {shown}", lambda: t.populated(path)))}
        if "freezer" in h.controllers:
            result["frozen"] = int(
                self._read_key(req, h, path, shown, "freezer.state").strip() == "FROZEN"
            )
        return result

    def stat(self, req: Request, controller: str, cgroup: str) -> dict[str, int]:
        """``cgroup.stat`` (v2); on v1, ``nr_descendants`` counted."""
        h = self.layout.resolve_one(controller)
        path, shown = self._lookup_target(req, h, cgroup)
        require_access(req.r, self._stat(h, path, None, shown), Access.READ, shown)
        t = self.tree(h)
        if t.v2:
            return self._kernel(f"stat of {shown}", lambda: t.events(path, "cgroup.stat"))
        return {"nr_descendants": len(self._kernel(f"stat of {shown}", lambda: t.walk(path))) - 1}

    def _need_reaper(self) -> Reaper:
        if self.reaper is None:
            raise Unsupported("remove-on-empty is not available in this process")
        return self.reaper


def _require_movable(req: Request, v: Victim) -> None:
    if not may_move(req.r, v.pid, lambda: v.uid):
        raise NotPermitted(f"not permitted to move process {v.pid}: it belongs to another user")


class _Rollback:
    """What a failed Setup must undo, newest first.  Undoing is done as the daemon, without
    permission checks: it only returns processes and cgroupfs to how they were before the
    request."""

    def __init__(self) -> None:
        self._steps: list[tuple[str, Callable[[], None]]] = []
        self._victims: list[Victim] = []

    def remove(self, t: CgroupTree, made: list[str]) -> None:
        """The cgroups in *made* (filled in as they are made, parents first) and anything
        below them were made by this request."""

        def undo() -> None:
            if made:
                for p in reversed(t.walk(made[0])):
                    t.rmdir(p)

        self._steps.append((f"remove the new cgroups in {t.hierarchy.key}", undo))

    def move_back(self, t: CgroupTree, was: str, v: Victim, shown: str) -> None:
        pidfd = os.dup(v.pidfd)
        back = Victim(v.pid, None, v.cgroups, pidfd)  # only its pid and liveness are needed
        self._victims.append(back)

        def undo() -> None:
            back.require_alive()
            t.move(was, back.pid)

        self._steps.append((f"move {v.pid} back to {shown}", undo))

    def run(self) -> list[str]:
        """Undo everything; the steps that failed, described."""
        left = []
        for what, step in reversed(self._steps):
            try:
                step()
            except (CgmError, OSError) as e:
                log.error("Setup rollback: %s failed: %s", what, e)
                left.append(what)
        self.discard()
        return left

    def discard(self) -> None:
        self._steps.clear()
        for v in self._victims:
            v.close()
        self._victims.clear()


class _Holding:
    __slots__ = ("m",)

    def __init__(self, m: Manager) -> None:
        self.m = m

    def __enter__(self) -> None:
        if self.m._holding is not None:
            raise RuntimeError("internal: nested request scopes")
        self.m._holding = []

    def __exit__(self, *exc: object) -> None:
        trees, self.m._holding = self.m._holding, None
        for t in trees or ():
            t.release()


def open_trees(layout: Layout) -> dict[str, CgroupTree]:
    return {h.key: CgroupTree(h) for h in layout.hierarchies}
