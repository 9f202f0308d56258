"""The D-Bus facade: both interfaces at ``/org/linuxcontainers/cgmanager``, from the contract.

Thin by design, and the same for every method (:mod:`cgmanager.contract` says what each one
is; :data:`cgmanager.operations.OPERATIONS` how it is carried out): establish who asks
(SO_PEERCRED of the connection, pinned by its pidfd — or, for an ``*Scm`` twin, the
``SCM_CREDENTIALS`` the kernel vouched for), apply the namespace gates of plain calls, hand the
operation to the scheduler (inline or on a worker, see :mod:`.scheduler`), map its error kind to
a D-Bus error name, and write an audit line for every request that changes something.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

from .. import contract, scm
from ..contract import API_VERSION, ERROR_PREFIX, OBJECT_PATH
from ..dbus.connection import Connection
from ..dbus.marshal import Marshalled
from ..dbus.objects import DBusError, Interface, Method, MethodCall, Property
from ..errors import Busy, CgmError
from ..hierarchy import Layout
from ..operations import OPERATIONS, Manager, Operation, Request, Scope, Settling
from ..operations.targets import claims
from ..permission import Credentials, require_same_pidns, require_same_userns
from ..requestor import Namespaces, Party, identify
from ..scm_server import Received, ScmServer
from . import audit_trail
from .events import Events
from .notify import PriorityWatch, close_quietly, poll_until
from .own_methods import own_methods
from .peers import ConnectionPeer
from .policy import Policy
from .scheduler import Job, Scheduler

log = logging.getLogger(__name__)

#: how long Freeze/Thaw wait for the kernel to report the new state
FREEZE_TIMEOUT = 10.0


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
        scheduler: Scheduler,
        scm_server: ScmServer | None = None,
        watch: PriorityWatch | None = None,
        *,
        policy: Policy | None = None,
        events: Events | None = None,
    ) -> None:
        self.m = manager
        self.layout = layout
        self.ns = ns
        self.daemon = daemon
        self.scheduler = scheduler
        # (an idle ScmServer is falsy: it has a length)
        self.scm = scm_server if scm_server is not None else ScmServer()
        self.watch = watch
        self.policy = policy if policy is not None else Policy(manager, daemon, None)
        self.events = events

    # -- who asks ----------------------------------------------------------------------------

    def peer(self, call: MethodCall) -> ConnectionPeer:
        peer = call.state.get("peer")
        if peer is None:
            p = call.peer
            peer = ConnectionPeer(
                Credentials(p.pid, p.uid, p.gid), self.layout, self.ns, call.pidfd
            )
            call.state["peer"] = peer
        assert isinstance(peer, ConnectionPeer)
        return peer

    def on_connect(self, conn: Connection) -> None:
        """A client has just connected and waits for the handshake's answer, so it is alive:
        learn who it is now (a client that sends its request and exits at once — dbus-send
        without --print-reply — is then judged by these facts)."""
        p = conn.peer
        try:
            peer = ConnectionPeer(
                Credentials(p.pid, p.uid, p.gid), self.layout, self.ns, conn.pidfd
            )
        except (CgmError, OSError):
            return  # (pid 0: not visible; or gone already) — its requests will say so
        conn.state["peer"] = peer
        peer.remember()

    # -- one request, plain or Scm -----------------------------------------------------------

    def submit(
        self,
        method: contract.Method,
        op: Operation,
        requestor: Party,
        proxy: Party,
        args: Sequence[Any],
        extra: dict[str, Any] | None = None,
        ahead: bool = False,
    ) -> Any:
        """Run *op* for one request (inline, or a future when it went to a worker).  With
        *ahead*, a worker also marshals the reply (a listing's 10,000 names cost the loop
        milliseconds to marshal; the loop then only frames the bytes)."""
        m = self.m
        kwargs = {**op.kwargs, **extra} if extra else op.kwargs

        def run(inline: bool) -> Any:
            with Scope(may_escalate=inline) as scope:
                value = op.fn(m, Request(requestor, proxy, scope), *args, **kwargs)
            if ahead and not inline:
                return Marshalled(method.out_signature, _reply(method, value))
            return value

        def claimed() -> list[tuple[str, str, bool]]:
            if method.family is None:
                return []
            controller = args[0]  # "controller" or Setup's "controllers": always first
            cgroup = args[method.arg_index("cgroup")]
            req = Request(requestor, proxy)
            family, absolute = method.family, method.absolute
            return claims(m, req, family, absolute, controller, cgroup, op.subtree)

        return self.scheduler.submit(Job(run, claimed, method.mutating, requestor.cred.uid))

    async def settle(self, s: Settling) -> None:
        """Wait until the kernel reports a Freeze/Thaw done (v2: notified; v1: polled)."""
        what = "freezing" if s.frozen else "thawing"
        if s.notifies and self.watch is not None:
            fd = s.tree.open_key_fd(s.path, s.events_key)
            try:
                done = await self.watch.until(fd, s.reached, FREEZE_TIMEOUT)
            finally:
                close_quietly(fd)
        else:
            done = await poll_until(s.reached, FREEZE_TIMEOUT)
        if not done:
            raise Busy(f"{what} did not complete within {FREEZE_TIMEOUT:g} s")

    async def _reply_later(
        self, method: contract.Method, outcome: Any, done: Callable[[], None] | None = None
    ) -> tuple[Any, ...]:
        value = await outcome if isinstance(outcome, asyncio.Future) else outcome
        if isinstance(value, Settling):
            await self.settle(value)
            value = None
        if done is not None:
            done()
        return _reply(method, value)

    # -- plain calls -------------------------------------------------------------------------

    def plain_handler(self, method: contract.Method) -> Callable[[MethodCall], Any]:
        if method.name not in OPERATIONS:
            return self.service_handler(method, own_methods(self.policy, self.events)[method.name])
        op = OPERATIONS[method.name]
        name = method.name
        audited = method.mutating
        enabled = audit_trail.enabled
        gates = [(method.arg_index(arg), kind) for arg, kind in method.ids]
        moves = any(kind == contract.PID for _, kind in method.ids)
        # listings: a worker marshals their (possibly big) reply; nothing to do after it
        ahead = not audited and not moves and "a" in method.out_signature

        if not op.identified:  # Ping, ListControllers: nobody to identify, nothing to audit

            def light(call: MethodCall) -> tuple[Any, ...]:
                return _reply(method, op.fn(self.m, *call.body))

            return light

        def refuse(call: MethodCall, e: CgmError) -> DBusError:
            if audited and enabled(logging.INFO):
                audit_trail.request(call, name, f"refused ({e.kind}: {e.message})")
            return to_dbus_error(e)

        def finished(call: MethodCall, peer: ConnectionPeer, result: tuple[Any, ...]) -> None:
            if moves:
                peer.remember()  # it may have moved itself; it awaits this reply: alive
            if audited and enabled(logging.INFO):
                audit_trail.request(call, name, f"ok {audit_trail.brief(result)}".rstrip())

        def handler(call: MethodCall) -> Any:
            args = call.body
            try:
                peer = self.peer(call)
                r = peer.party()
                _pass_gates(gates, r, name, args)
                p = self.daemon if method.absolute else r  # plain *Abs: bounded by the daemon
                outcome = self.submit(method, op, r, p, args, ahead=ahead)
                if not isinstance(outcome, _LATER):
                    result = _reply(method, outcome)
                    finished(call, peer, result)
                    return result
            except CgmError as e:
                raise refuse(call, e) from None
            if ahead:
                return self._listing_later(call, method, outcome, refuse)
            return self._plain_later(call, method, outcome, peer, finished, refuse)

        return handler

    async def _plain_later(
        self,
        call: MethodCall,
        method: contract.Method,
        outcome: Any,
        peer: ConnectionPeer,
        finished: Callable[[MethodCall, ConnectionPeer, tuple[Any, ...]], None],
        refuse: Callable[[MethodCall, CgmError], DBusError],
    ) -> tuple[Any, ...]:
        try:
            result = await self._reply_later(method, outcome)
        except CgmError as e:
            raise refuse(call, e) from None
        finished(call, peer, result)
        return result

    async def _listing_later(
        self,
        call: MethodCall,
        method: contract.Method,
        outcome: Any,
        refuse: Callable[[MethodCall, CgmError], DBusError],
    ) -> tuple[Any, ...] | Marshalled:
        """A listing that went to a worker: its reply comes back marshalled."""
        try:
            value = await outcome if isinstance(outcome, asyncio.Future) else outcome
        except CgmError as e:
            raise refuse(call, e) from None
        return value if type(value) is Marshalled else _reply(method, value)

    # -- the daemon's own methods: policy and event signals --------------------------------

    def service_handler(
        self, method: contract.Method, fn: Callable[..., Any]
    ) -> Callable[[MethodCall], Any]:
        """Who asks, the namespace gates, errors and audit — as for an operation."""
        name, audited = method.name, method.mutating
        gates = [(method.arg_index(arg), kind) for arg, kind in method.ids]

        def handler(call: MethodCall) -> tuple[Any, ...]:
            args = call.body
            try:
                r = self.peer(call).party()
                _pass_gates(gates, r, name, args)
                result = _reply(method, fn(call, r, *args))
            except CgmError as e:
                if audited:
                    audit_trail.request(call, name, f"refused ({e.kind}: {e.message})")
                raise to_dbus_error(e) from None
            if audited:
                audit_trail.request(call, name, f"ok {audit_trail.brief(result)}".rstrip())
            return result

        return handler

    # -- Scm twins: credentials from the kernel, over the passed socket ----------------------

    def scm_handler(self, twin: contract.ScmTwin) -> Callable[[MethodCall], tuple[()]]:
        method = twin.plain
        op = OPERATIONS[method.name]
        kinds = dict(method.ids)

        def plain_args(args: Sequence[Any], second: Received | None) -> list[Any]:
            """The plain twin's arguments: the kept ones, and the ids the kernel vouched for."""
            given = iter(args)
            out: list[Any] = []
            for arg, _ in method.in_args:
                kind = kinds.get(arg)
                if kind is None:
                    out.append(next(given))
                else:
                    assert second is not None
                    cred = second.cred
                    if kind == contract.PID:
                        out.append(cred.pid)
                    else:
                        out.append(cred.uid if kind == contract.UID else cred.gid)
            return out

        def handler(call: MethodCall) -> tuple[()]:
            *args, fd = call.body
            call.take_fd(fd)
            try:
                proxy = self.peer(call).party()  # p: the peer of the D-Bus connection
            except CgmError as e:
                os.close(fd)
                raise to_dbus_error(e) from None

            def run_op(t: contract.ScmTwin, r: Received, second: Received | None) -> Any:
                try:
                    requestor = identify(r.cred, self.layout, self.ns, r.pidfd)
                    extra = {"pidfd": second.pidfd} if op.pidfd and second is not None else {}
                    outcome = self.submit(
                        method, op, requestor, proxy, plain_args(args, second), extra
                    )
                except CgmError as e:
                    if method.mutating:
                        audit_trail.scm_request(
                            call, t.name, r, args, f"refused ({e.kind}: {e.message})"
                        )
                    raise
                if isinstance(outcome, _LATER):
                    return self._scm_later(call, t, r, args, outcome)
                result = _reply(method, outcome)
                if method.mutating:
                    audit_trail.scm_request(
                        call, t.name, r, args, f"ok {audit_trail.brief(result)}".rstrip()
                    )
                return result

            try:
                self.scm.start(call.sender, fd, twin, run_op)
            except CgmError as e:
                raise to_dbus_error(e) from None
            return ()

        return handler

    async def _scm_later(
        self, call: MethodCall, t: contract.ScmTwin, r: Received, args: Any, outcome: Any
    ) -> tuple[Any, ...]:
        try:
            result = await self._reply_later(t.plain, outcome)
        except CgmError as e:
            if t.plain.mutating:
                audit_trail.scm_request(call, t.name, r, args, f"refused ({e.kind}: {e.message})")
            raise
        if t.plain.mutating:
            audit_trail.scm_request(
                call, t.name, r, args, f"ok {audit_trail.brief(result)}".rstrip()
            )
        return result

    # -- wiring -----------------------------------------------------------------------------

    def interface(self, name: str) -> Interface:
        methods = [
            Method(m.name, self.plain_handler(m), m.in_args, m.out_args)
            for m in contract.methods_of(name)
        ]
        methods += [
            Method(t.name, self.scm_handler(t), t.in_args, ())
            for t in contract.SCM_TWINS
            if t.plain.interface == name
        ]
        props = []
        if name == contract.INTERFACE:
            props.append(Property("api_version", "i", lambda call: API_VERSION))
        if name == scm.PIDFD_PROPERTY[0]:
            # the Scm server takes a proxy's pidfd of its client with the credential
            props.append(Property(scm.PIDFD_PROPERTY[1], "b", lambda call: True))
        signals = contract.SIGNALS if name == contract.INTERFACE1 else ()
        return Interface(name, methods, props, signals)

    def objects(self) -> dict[str, list[Interface]]:
        return {
            OBJECT_PATH: [self.interface(contract.INTERFACE), self.interface(contract.INTERFACE1)]
        }


#: what a request may give instead of its result: a worker's future, or a freeze to wait for
_LATER = (asyncio.Future, Settling)


def _pass_gates(gates: list[tuple[int, str]], r: Party, name: str, args: Sequence[Any]) -> None:
    """Pids and ids in plain calls need the daemon's namespaces (Scm twins translate them)."""
    for i, kind in gates:
        if contract.given(args[i]):
            if kind == contract.PID:
                require_same_pidns(r.identity, name)
            else:
                require_same_userns(r.identity, name)


def _reply(method: contract.Method, value: Any) -> tuple[Any, ...]:
    """The reply's arguments: an operation returns its one value, or a tuple of several."""
    n = len(method.out_args)
    if n == 0:
        return ()
    return (value,) if n == 1 else tuple(value)


def daemon_party(layout: Layout, ns: Namespaces) -> Party:
    """The daemon as a party: it bounds plain *Abs calls and everything else."""
    return identify(Credentials(os.getpid(), os.getuid(), os.getgid()), layout, ns)
