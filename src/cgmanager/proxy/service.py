"""The proxy's D-Bus interface: ``org.linuxcontainers.cgmanager0_0`` served inside a
container and forwarded to the host cgmanager as ``*Scm`` calls.

For a plain call the requestor r is the client's ``SO_PEERCRED`` as the proxy sees it, and the
second credential is built from the integer arguments: ``{pid, euid, egid}`` of the proxy for
pid methods (only the pid counts), ``{proxy pid, uid, gid}`` for Chown.  The proxy then
*states* those credentials to the kernel, which refuses what the proxy may not name (a pid
outside its pid namespace, an id unmapped in its user namespace) and translates the rest for
the daemon: the daemon sees host pids and host uids, and bounds everything by the proxy's
cgroup.

Ping and ``api_version`` are answered here; ListControllers is forwarded as a plain call.
The plain-call namespace gates apply at the proxy, as at the daemon: GetPidCgroup(Abs) and
MovePid(Abs) need the client in the proxy's pid namespace (its pid arguments mean nothing
elsewhere), Chown in its user namespace (likewise its uid/gid).

Each handler is a coroutine: a connection waits for its own call only, other clients are
served meanwhile, and every wait on the daemon is bounded (:mod:`.upstream`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Coroutine
from typing import Any

from .. import contract, errors, names, scm
from ..contract import API_VERSION, ERROR_PREFIX, INTERFACE, OBJECT_PATH
from ..dbus.errors import DBusError
from ..dbus.objects import Interface, Method, MethodCall, Property
from ..errors import CgmError, InvalidArgument, NotFound, NotPermitted
from ..permission import UNMAPPED_ID
from ..procfs import ProcDir, overflow_id
from ..requestor import Namespaces
from ..scm_server import Received, ScmServer
from .upstream import (
    CredentialRefused,
    ProtocolFailure,
    Refused,
    Unavailable,
    Upstream,
)

log = logging.getLogger(__name__)
audit = logging.getLogger("cgproxy.audit")

#: plain methods whose arguments name a pid (or a uid/gid): meaningful only in the proxy's own
#: pid (user) namespace, as at the daemon
PID_GATED = frozenset(m.name for m in contract.METHODS if contract.PID in dict(m.ids).values())
USERNS_GATED = frozenset(m.name for m in contract.METHODS if contract.UID in dict(m.ids).values())
Cred = tuple[int, int, int]


def upstream_error(
    method: str, e: Refused | CredentialRefused | Unavailable | ProtocolFailure
) -> CgmError:
    """What the client is told.  The Scm protocol carries no reason for a refusal."""
    if isinstance(e, Refused):
        return CgmError(f"{method} failed: refused or failed at the host cgmanager")
    if isinstance(e, CredentialRefused):
        if e.which == "requestor":
            return NotFound(f"{method} failed: the calling process is gone")
        if e.which == "victim":
            return NotFound(f"{method} failed: no such process in this container")
        return InvalidArgument(f"{method} failed: uid or gid not mapped in this container")
    if isinstance(e, Unavailable):
        return errors.Unavailable(f"{method} failed: host cgmanager unavailable ({e})")
    return CgmError(f"{method} failed: {e}")  # ProtocolFailure: timeout, short read


class ProxyService:
    """Binds the forwarding to D-Bus calls."""

    def __init__(self, upstream: Upstream, ns: Namespaces, relay: ScmServer | None = None) -> None:
        self.upstream = upstream
        self.ns = ns
        # (an idle ScmServer is falsy: it has a length)
        self.relay = relay if relay is not None else ScmServer(timeout=upstream.timeout)
        self.euid, self.egid = os.geteuid(), os.getegid()
        self._overflow_uid = overflow_id("overflowuid")
        self._overflow_gid = overflow_id("overflowgid")

    # -- who asks ----------------------------------------------------------------------------

    def client(self, call: MethodCall) -> Cred:
        """r: the client's SO_PEERCRED in the proxy's namespaces; pid 0 (a process outside the
        proxy's pid namespace) and overflow ids (unmapped) are "unknown", never identities."""
        p = call.peer
        if p.pid <= 0 or p.uid == self._overflow_uid or p.gid == self._overflow_gid:
            raise NotPermitted(
                "not permitted: the caller is outside this proxy's pid or user namespace"
            )
        return (p.pid, p.uid, p.gid)

    def _gate(self, call: MethodCall, method: str) -> None:
        if method not in PID_GATED and method not in USERNS_GATED:
            return
        try:
            with ProcDir(call.peer.pid, call.pidfd) as d:
                pidns = d.namespace("pid") if method in PID_GATED else self.ns.pid
                userns = d.namespace("user") if method in USERNS_GATED else self.ns.user
        except PermissionError:  # fail closed: e.g. a non-dumpable caller of another owner
            raise NotPermitted(
                f"{method}: cannot inspect the caller's namespaces (not permitted)"
            ) from None
        if pidns != self.ns.pid:
            raise NotPermitted(
                f"{method} called from a different pid namespace: use that namespace's proxy"
            )
        if userns != self.ns.user:
            raise NotPermitted(
                f"{method} called from a different user namespace: use that namespace's proxy"
            )

    # -- plain calls -------------------------------------------------------------------------

    @staticmethod
    def _check_args(name: str, kw: dict[str, Any]) -> None:
        """Refuse early what the daemon would refuse anyway, with a reason (the Scm protocol
        carries none)."""
        if "cgroup" in kw:
            names.split(kw["cgroup"])
            if name == "MovePid" and kw["cgroup"].startswith("/"):
                raise InvalidArgument(
                    "invalid cgroup: MovePid takes a relative path (use MovePidAbs)"
                )
        if "pid" in kw and kw["pid"] <= 0:
            raise InvalidArgument(f"invalid pid {kw['pid']}")
        for what in ("uid", "gid"):
            if what in kw and not 0 <= kw[what] < UNMAPPED_ID:
                raise InvalidArgument(f"invalid {what} {kw[what]}")

    def _second(self, method: scm.ScmMethod, kw: dict[str, Any]) -> Cred | None:
        if method.second == scm.Second.PID:
            return (kw["pid"], self.euid, self.egid)
        if method.second == scm.Second.IDS:
            return (os.getpid(), kw["uid"], kw["gid"])
        return None

    async def forward(
        self,
        method: scm.ScmMethod,
        args: tuple[Any, ...],
        requestor: Cred,
        second: Cred | None,
        requestor_pidfd: int | None = None,
    ) -> tuple[Any, ...]:
        """The Scm call upstream; the plain twin's reply tuple, or CgmError.  *requestor_pidfd*
        (a pidfd of the process *requestor* names) goes with the credential where the daemon
        takes it: then the process the proxy checked is the one the daemon judges."""
        try:
            result = await self.upstream.call(method.name, args, requestor, second, requestor_pidfd)
        except (Refused, CredentialRefused, Unavailable, ProtocolFailure) as e:
            raise upstream_error(method.plain.name, e) from None
        except DBusError as e:  # the daemon refused the D-Bus call itself: pass it on
            raise _Passthrough(e) from None
        if method.result == scm.Result.STATUS and method.plain.name not in ("Create", "Remove"):
            return ()
        return (result,)

    def _plain_handler(
        self, spec: contract.Method
    ) -> Callable[[MethodCall], Coroutine[Any, Any, tuple[Any, ...]]]:
        method = scm.BY_PLAIN[spec.name]
        arg_names = [n for n, _ in spec.in_args]

        async def handler(call: MethodCall) -> tuple[Any, ...]:
            kw = dict(zip(arg_names, call.body, strict=True))
            # the client pinned from its connection (SO_PEERPIDFD), for the daemon to check
            # against the credential: duplicated, as the connection may close meanwhile
            pidfd = os.dup(call.pidfd) if call.pidfd is not None else None
            try:
                r = self.client(call)
                self._gate(call, spec.name)
                self._check_args(spec.name, kw)
                args = tuple(kw[n] for n, _ in method.in_args[:-1])
                reply = await self.forward(method, args, r, self._second(method, kw), pidfd)
            except CgmError as e:
                if spec.mutating:
                    _audit(call, spec.name, f"refused ({e.kind}: {e.message})")
                raise DBusError(ERROR_PREFIX + e.kind, e.message) from None
            except _Passthrough as e:
                raise e.error from None
            finally:
                if pidfd is not None:
                    os.close(pidfd)
            if spec.mutating:
                _audit(call, spec.name, "ok")
            return reply

        return handler

    async def ping(self, call: MethodCall) -> tuple[()]:
        return ()

    async def list_controllers(self, call: MethodCall) -> tuple[Any, ...]:
        try:
            return await self.upstream.plain("ListControllers")
        except Unavailable as e:
            err = upstream_error("ListControllers", e)
            raise DBusError(ERROR_PREFIX + err.kind, err.message) from None

    # -- Scm calls made to the proxy ----------------------------------------------------------

    def _scm_handler(self, method: scm.ScmMethod) -> Callable[[MethodCall], tuple[()]]:
        def handler(call: MethodCall) -> tuple[()]:
            *args, fd = call.body
            call.take_fd(fd)
            peer = call.peer
            client = (peer.pid, peer.uid, peer.gid)

            async def op(m: scm.ScmMethod, r: Received, second: Received | None) -> tuple[Any, ...]:
                stated = (r.cred.pid, r.cred.uid, r.cred.gid)
                if stated != client:
                    raise NotPermitted(
                        f"{m.name}: the requestor must be the caller itself"
                        " (chained proxying is not supported)"
                    )
                s: Cred | None = None
                if second is not None:
                    if m.second == scm.Second.PID:
                        s = (second.cred.pid, self.euid, self.egid)
                    else:
                        s = (os.getpid(), second.cred.uid, second.cred.gid)
                try:  # r.pidfd: the kernel's pin of what the caller stated, passed on
                    return await self.forward(m, tuple(args), stated, s, r.pidfd)
                except _Passthrough as e:
                    raise CgmError(f"{m.name} failed: {e.error.message}") from None

            try:
                self.relay.start(call.sender, fd, method, op)
            except CgmError as e:
                raise DBusError(ERROR_PREFIX + e.kind, e.message) from None
            return ()

        return handler

    # -- wiring -----------------------------------------------------------------------------

    def interface(self) -> Interface:
        methods = []
        for s in contract.methods_of(INTERFACE):
            if s.name == "Ping":
                handler: Any = self.ping
            elif s.name == "ListControllers":
                handler = self.list_controllers
            else:
                handler = self._plain_handler(s)
            methods.append(Method(s.name, handler, s.in_args, s.out_args))
        methods += [Method(m.name, self._scm_handler(m), m.in_args, ()) for m in scm.SCM_METHODS]
        props = [Property("api_version", "i", lambda call: API_VERSION)]
        return Interface(INTERFACE, methods, props)

    def objects(self) -> dict[str, list[Interface]]:
        # the relay takes a nested proxy's pidfd with its credential, as the daemon does
        iface, name = scm.PIDFD_PROPERTY
        pins = Interface(iface, (), [Property(name, "b", lambda call: True)])
        return {OBJECT_PATH: [self.interface(), pins]}

    async def close(self) -> None:
        await self.relay.close()


class _Passthrough(Exception):
    """A D-Bus error from the daemon's own reply, passed on unchanged."""

    def __init__(self, error: DBusError) -> None:
        super().__init__(error)
        self.error = error


def _audit(call: MethodCall, method: str, outcome: str) -> None:
    p = call.peer
    audit.info(
        "pid=%d uid=%d gid=%d %s(%s): %s",
        p.pid,
        p.uid,
        p.gid,
        method,
        ", ".join(repr(a)[:200] for a in call.body),
        outcome,
    )
