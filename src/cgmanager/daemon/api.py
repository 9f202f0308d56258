"""The D-Bus facade: ``org.linuxcontainers.cgmanager0_0`` at ``/org/linuxcontainers/cgmanager``.

Thin by design: unpack arguments, establish who asks (SO_PEERCRED of the connection, pinned
by its pidfd), apply the namespace gates of plain calls, call the operation, map its error
kind to a D-Bus error name, and write an audit line for every request that changes something.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Any

from .. import contract, scm
from ..contract import API_VERSION, ERROR_PREFIX, INTERFACE, INTERFACE1, OBJECT_PATH
from ..dbus.objects import DBusError, Interface, Method, MethodCall, Property
from ..errors import Busy, CgmError
from ..hierarchy import Layout
from ..operations import Manager, Request
from ..permission import Credentials, require_same_pidns, require_same_userns
from ..requestor import Namespaces, Party, Peer, identify
from ..scm_server import Received, ScmServer

audit = logging.getLogger("cgmanager.audit")
log = logging.getLogger(__name__)

#: how long Freeze/Thaw wait for the kernel to report the new state
FREEZE_TIMEOUT = 10.0


Spec = contract.Method
PLAIN_METHODS = contract.methods_of(INTERFACE)
EXTRA_METHODS = contract.methods_of(INTERFACE1)


#: methods that touch no cgroup
NO_CGROUP_METHODS = frozenset({"Ping", "ListControllers"})


def to_dbus_error(e: CgmError) -> DBusError:
    return DBusError(ERROR_PREFIX + e.kind, e.message)


class Service:
    """Binds the operations to D-Bus calls."""

    def __init__(
        self,
        manager: Manager,
        layout: Layout,
        ns: Namespaces,
        daemon: Party,
        scm_server: ScmServer | None = None,
    ) -> None:
        self.m = manager
        self.layout = layout
        self.ns = ns
        self.daemon = daemon
        # (an idle ScmServer is falsy: it has a length)
        self.scm = scm_server if scm_server is not None else ScmServer()

    # -- who asks ----------------------------------------------------------------------------

    def requestor(self, call: MethodCall) -> Party:
        """The connection's peer as of now (see :class:`~cgmanager.requestor.Peer` for what is
        kept between its requests and why that cannot widen access)."""
        peer = call.state.get("peer")
        if peer is None:
            p = call.peer
            peer = Peer(Credentials(p.pid, p.uid, p.gid), self.layout, self.ns, call.pidfd)
            call.state["peer"] = peer
        return peer.party()

    def plain(self, call: MethodCall) -> Request:
        r = self.requestor(call)
        return Request(r, r)

    def plain_abs(self, call: MethodCall) -> Request:
        """Plain *Abs calls are bounded by the daemon's own cgroup (the daemon is p)."""
        return Request(self.requestor(call), self.daemon)

    # -- handlers ---------------------------------------------------------------------------

    def Ping(self, call: MethodCall, junk: int) -> tuple:
        return ()

    def GetPidCgroup(self, call: MethodCall, controller: str, pid: int) -> tuple:
        req = self.plain(call)
        require_same_pidns(req.r, "GetPidCgroup")
        return (self.m.get_pid_cgroup(req, controller, pid, absolute=False),)

    def GetPidCgroupAbs(self, call: MethodCall, controller: str, pid: int) -> tuple:
        req = self.plain_abs(call)
        require_same_pidns(req.r, "GetPidCgroupAbs")
        return (self.m.get_pid_cgroup(req, controller, pid, absolute=True),)

    def Create(self, call: MethodCall, controller: str, cgroup: str) -> tuple:
        return (self.m.create(self.plain(call), controller, cgroup),)

    def Chown(self, call: MethodCall, controller: str, cgroup: str, uid: int, gid: int) -> tuple:
        req = self.plain(call)
        # plain uid/gid arguments mean something only in the daemon's user namespace
        require_same_userns(req.r, "Chown")
        self.m.chown(req, controller, cgroup, uid, gid)
        return ()

    def Chmod(self, call: MethodCall, controller: str, cgroup: str, file: str, mode: int) -> tuple:
        self.m.chmod(self.plain(call), controller, cgroup, file, mode)
        return ()

    def MovePid(self, call: MethodCall, controller: str, cgroup: str, pid: int) -> tuple:
        req = self.plain(call)
        require_same_pidns(req.r, "MovePid")
        self.m.move_pid(req, controller, cgroup, pid, absolute=False)
        return ()

    def MovePidAbs(self, call: MethodCall, controller: str, cgroup: str, pid: int) -> tuple:
        req = self.plain_abs(call)
        require_same_pidns(req.r, "MovePidAbs")
        self.m.move_pid(req, controller, cgroup, pid, absolute=True)
        return ()

    def GetValue(self, call: MethodCall, controller: str, cgroup: str, key: str) -> tuple:
        return (self.m.get_value(self.plain(call), controller, cgroup, key),)

    def SetValue(
        self, call: MethodCall, controller: str, cgroup: str, key: str, value: str
    ) -> tuple:
        self.m.set_value(self.plain(call), controller, cgroup, key, value)
        return ()

    def Remove(self, call: MethodCall, controller: str, cgroup: str, recursive: int) -> tuple:
        return (self.m.remove(self.plain(call), controller, cgroup, recursive != 0),)

    def GetTasks(self, call: MethodCall, controller: str, cgroup: str) -> tuple:
        return (self.m.get_tasks(self.plain(call), controller, cgroup),)

    def GetTasksRecursive(self, call: MethodCall, controller: str, cgroup: str) -> tuple:
        return (self.m.get_tasks_recursive(self.plain(call), controller, cgroup),)

    def ListChildren(self, call: MethodCall, controller: str, cgroup: str) -> tuple:
        return (self.m.list_children(self.plain(call), controller, cgroup),)

    def RemoveOnEmpty(self, call: MethodCall, controller: str, cgroup: str) -> tuple:
        self.m.remove_on_empty(self.plain(call), controller, cgroup)
        return ()

    def Prune(self, call: MethodCall, controller: str, cgroup: str) -> tuple:
        self.m.prune(self.plain(call), controller, cgroup)
        return ()

    def ListControllers(self, call: MethodCall) -> tuple:
        return (self.m.list_controllers(),)

    def ListKeys(self, call: MethodCall, controller: str, cgroup: str) -> tuple:
        return (self.m.list_keys(self.plain(call), controller, cgroup),)

    # -- org.linuxcontainers.cgmanager1 ------------------------------------------------------

    async def _until(self, done: Callable[[], bool], what: str) -> None:
        """Poll the kernel's report (every 5 ms; the wait blocks only this caller)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FREEZE_TIMEOUT
        while not done():
            if loop.time() > deadline:
                raise Busy(f"{what} did not complete within {FREEZE_TIMEOUT:g} s")
            await asyncio.sleep(0.005)

    async def Freeze(self, call: MethodCall, controller: str, cgroup: str) -> tuple:
        await self._until(self.m.freeze(self.plain(call), controller, cgroup, True), "freezing")
        return ()

    async def Thaw(self, call: MethodCall, controller: str, cgroup: str) -> tuple:
        await self._until(self.m.freeze(self.plain(call), controller, cgroup, False), "thawing")
        return ()

    def Kill(self, call: MethodCall, controller: str, cgroup: str) -> tuple:
        return (self.m.kill(self.plain(call), controller, cgroup),)

    def GetEvents(self, call: MethodCall, controller: str, cgroup: str) -> tuple:
        return (self.m.events(self.plain(call), controller, cgroup),)

    def GetStat(self, call: MethodCall, controller: str, cgroup: str) -> tuple:
        return (self.m.stat(self.plain(call), controller, cgroup),)

    def Setup(
        self,
        call: MethodCall,
        controllers: str,
        cgroup: str,
        uid: int,
        gid: int,
        values: dict[str, str],
        pids: list[int],
    ) -> tuple:
        req = self.plain(call)
        if uid != -1 or gid != -1:
            require_same_userns(req.r, "Setup with an owner")  # as Chown
        if pids:
            require_same_pidns(req.r, "Setup with pids")  # as MovePid
        return (self.m.setup(req, controllers, cgroup, uid, gid, values, pids),)

    # -- Scm methods: credentials from the kernel, over the passed socket --------------------

    def _scm_handler(self, method: scm.ScmMethod) -> Callable[[MethodCall], tuple]:
        mutating = method.plain.mutating

        def handler(call: MethodCall) -> tuple:
            *args, fd = call.body
            call.take_fd(fd)
            try:
                proxy = self.requestor(call)  # p: the peer of the D-Bus connection
            except CgmError as e:
                os.close(fd)
                raise to_dbus_error(e) from None

            def op(m: scm.ScmMethod, r: Received, second: Received | None) -> tuple:
                try:
                    requestor = identify(r.cred, self.layout, self.ns, r.pidfd)
                    with self.m.holding():
                        reply = self._scm_op(m, Request(requestor, proxy), tuple(args), second)
                except CgmError as e:
                    if mutating:
                        _audit_scm(call, m.name, r, args, f"refused ({e.kind}: {e.message})")
                    raise
                if mutating:
                    _audit_scm(call, m.name, r, args, f"ok {_brief(reply)}".rstrip())
                return reply

            try:
                self.scm.start(call.sender, fd, method, op)
            except CgmError as e:
                raise to_dbus_error(e) from None
            return ()

        return handler

    def _scm_op(
        self, method: scm.ScmMethod, req: Request, args: tuple, second: Received | None
    ) -> tuple:
        """The plain twin's operation with the victim or target ids the kernel vouched for."""
        m, name = self.m, method.plain.name
        if name in ("GetPidCgroup", "GetPidCgroupAbs"):
            assert second is not None
            return (
                m.get_pid_cgroup(
                    req, args[0], second.cred.pid, absolute=name.endswith("Abs"), pidfd=second.pidfd
                ),
            )
        if name in ("MovePid", "MovePidAbs"):
            assert second is not None
            m.move_pid(
                req,
                args[0],
                args[1],
                second.cred.pid,
                absolute=name.endswith("Abs"),
                pidfd=second.pidfd,
            )
            return ()
        if name == "Chown":
            assert second is not None
            m.chown(req, args[0], args[1], second.cred.uid, second.cred.gid)
            return ()
        if name == "Remove":
            return (m.remove(req, args[0], args[1], args[2] != 0),)
        fn = {
            "Create": m.create,
            "Chmod": m.chmod,
            "GetValue": m.get_value,
            "SetValue": m.set_value,
            "GetTasks": m.get_tasks,
            "GetTasksRecursive": m.get_tasks_recursive,
            "ListChildren": m.list_children,
            "RemoveOnEmpty": m.remove_on_empty,
            "Prune": m.prune,
            "ListKeys": m.list_keys,
        }[name]
        result = fn(req, *args)
        return () if result is None else (result,)

    # -- wiring -----------------------------------------------------------------------------

    def _wrap(self, spec: Spec) -> Callable[[MethodCall], Any]:
        """Map errors to D-Bus errors and audit changes, for plain and coroutine handlers."""
        fn: Callable[..., Any] = getattr(self, spec.name)
        name = spec.name

        audited = spec.mutating
        enabled = audit.isEnabledFor  # the lines are built only when they will be written

        def finish(call: MethodCall, result: tuple) -> tuple:
            if audited and enabled(logging.INFO):
                _audit(call, name, f"ok {_brief(result)}".rstrip())
            return result

        def refuse(call: MethodCall, e: CgmError) -> DBusError:
            if audited and enabled(logging.INFO):
                _audit(call, name, f"refused ({e.kind}: {e.message})")
            return to_dbus_error(e)

        if asyncio.iscoroutinefunction(fn):

            async def async_handler(call: MethodCall) -> tuple:
                try:
                    return finish(call, await fn(call, *call.body))
                except CgmError as e:
                    raise refuse(call, e) from None

            return async_handler

        if name in NO_CGROUP_METHODS:  # no request scope to set up

            def light_handler(call: MethodCall) -> tuple:
                try:
                    return finish(call, fn(call, *call.body))
                except CgmError as e:
                    raise refuse(call, e) from None

            return light_handler

        holding = self.m.holding

        def handler(call: MethodCall) -> tuple:
            try:
                with holding():
                    return finish(call, fn(call, *call.body))
            except CgmError as e:
                raise refuse(call, e) from None

        return handler

    def interface(self) -> Interface:
        methods = [Method(s.name, self._wrap(s), s.in_args, s.out_args) for s in PLAIN_METHODS]
        methods += [Method(m.name, self._scm_handler(m), m.in_args, ()) for m in scm.SCM_METHODS]
        props = [Property("api_version", "i", lambda call: API_VERSION)]
        return Interface(INTERFACE, methods, props)

    def interface1(self) -> Interface:
        methods = [Method(s.name, self._wrap(s), s.in_args, s.out_args) for s in EXTRA_METHODS]
        # the Scm server takes a proxy's pidfd of its client with the credential (scm_server)
        pins = Property(scm.PIDFD_PROPERTY[1], "b", lambda call: True)
        return Interface(INTERFACE1, methods, [pins])

    def objects(self) -> dict[str, list[Interface]]:
        return {OBJECT_PATH: [self.interface(), self.interface1()]}


def _audit(call: MethodCall, method: str, outcome: str) -> None:
    p = call.peer
    audit.info(
        "audit: pid=%d uid=%d gid=%d %s(%s): %s",
        p.pid,
        p.uid,
        p.gid,
        method,
        ", ".join(_arg(a) for a in call.body),
        outcome,
    )


def _audit_scm(call: MethodCall, method: str, r: Received, args: Any, outcome: str) -> None:
    p = call.peer
    audit.info(
        "audit: proxy pid=%d uid=%d gid=%d for pid=%d uid=%d gid=%d %s(%s): %s",
        p.pid,
        p.uid,
        p.gid,
        r.cred.pid,
        r.cred.uid,
        r.cred.gid,
        method,
        ", ".join(_arg(a) for a in args),
        outcome,
    )


def _arg(a: Any) -> str:
    return repr(a)[:200]


def _brief(result: tuple) -> str:
    return f"-> {result[0]}" if result else ""


def daemon_party(layout: Layout, ns: Namespaces) -> Party:
    """The daemon as a party: it bounds plain *Abs calls and everything else."""
    return identify(Credentials(os.getpid(), os.getuid(), os.getgid()), layout, ns)
