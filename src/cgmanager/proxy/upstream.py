"""The proxy's side towards the host cgmanager: an asyncio ``*Scm`` client and a connection
that comes back by itself.

:func:`scm_call` is the asyncio twin of :func:`cgmanager.scm_client.call` (protocol in
:mod:`cgmanager.scm`): the D-Bus call carries one end of a ``SOCK_DGRAM`` socketpair, then the
two ends exchange kick bytes and ``SCM_CREDENTIALS`` messages, which the kernel checks against
what *this* process may state (root of a container: any pid of its pid namespace, any id mapped
into its user namespace) and translates into the daemon's namespaces.  Every wait is bounded.

:class:`Upstream` owns the one D-Bus connection to the daemon: several calls travel on it at
once (each its own task), and when it drops — the daemon restarted — the next call opens a new
one to the same socket path (the socket *directory* is bind-mounted into the container, so a
restarted daemon's new socket appears there).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import sys
from typing import Any

from .. import scm
from ..contract import INTERFACE, OBJECT_PATH
from ..dbus import errors as dbus_errors
from ..dbus.aio_client import AsyncConnection
from ..dbus.errors import DBusError

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 5.0
#: Scm requests the proxy keeps open at the daemon at once; the daemon allows 32 per
#: connection (its MAX_PENDING_PER_CONNECTION) and frees a slot only after its result is sent
MAX_IN_FLIGHT = 24
Cred = tuple[int, int, int]

_ANC = socket.CMSG_SPACE(scm.UCRED.size)
_TRANSPORT_ERRORS = (dbus_errors.DISCONNECTED, dbus_errors.NO_REPLY, dbus_errors.TIMEOUT)


class UpstreamError(Exception):
    """Base: a forwarded request did not produce a result."""


class Unavailable(UpstreamError):
    """The daemon cannot be reached (not running, restarting, not answering in time)."""


class Refused(UpstreamError):
    """The daemon answered "failed": the Scm protocol carries no reason."""


class CredentialRefused(UpstreamError):
    """The kernel would not let the proxy state a credential (``errno``: ESRCH — no such
    process in the proxy's pid namespace; EINVAL — id not mapped in its user namespace;
    EPERM — not privileged to state it)."""

    def __init__(self, which: str, err: int) -> None:
        super().__init__(f"{which}: {os.strerror(err)}")
        self.which = which
        self.errno = err


class ProtocolFailure(UpstreamError):
    """The byte protocol broke: timeout, short or unexpected datagram, closed socket."""


# -- the byte protocol ------------------------------------------------------------------------


async def _readable(sock: socket.socket, deadline: float) -> None:
    loop = asyncio.get_running_loop()
    fut = loop.create_future()

    def ready() -> None:
        if not fut.done():
            fut.set_result(None)

    loop.add_reader(sock.fileno(), ready)
    try:
        async with asyncio.timeout_at(deadline):
            await fut
    except TimeoutError:
        raise ProtocolFailure("timed out waiting for cgmanager") from None
    finally:
        loop.remove_reader(sock.fileno())


async def _recvmsg(
    sock: socket.socket, size: int, deadline: float
) -> tuple[bytes, list[tuple[int, int, bytes]]]:
    while True:
        try:
            data, anc, _flags, _ = sock.recvmsg(size, _ANC, socket.MSG_CMSG_CLOEXEC)
            return data, anc
        except BlockingIOError:
            await _readable(sock, deadline)


async def _recv(sock: socket.socket, deadline: float, size: int = 65536) -> bytes:
    return (await _recvmsg(sock, size, deadline))[0]


def _send_cred(sock: socket.socket, cred: Cred, which: str, pidfd: int | None = None) -> None:
    """One byte with our statement of *cred*; the kernel vouches for it or refuses here.
    With *pidfd* (our pidfd of that process), the daemon checks that the credential names the
    very process we checked, not one that got its pid since.  (A fresh datagram socketpair
    has room for it: no wait needed.)"""
    anc = [(socket.SOL_SOCKET, socket.SCM_CREDENTIALS, scm.UCRED.pack(*cred))]
    if pidfd is not None:
        anc.append((socket.SOL_SOCKET, socket.SCM_RIGHTS, pidfd.to_bytes(4, sys.byteorder)))
    try:
        sock.sendmsg([scm.CRED_BYTE], anc)
    except (ProcessLookupError, PermissionError) as e:
        raise CredentialRefused(which, e.errno or errno.EPERM) from None
    except OSError as e:
        if e.errno == errno.EINVAL:
            raise CredentialRefused(which, errno.EINVAL) from None
        raise ProtocolFailure(f"cannot send the {which}: {e}") from None


async def _expect_kick(sock: socket.socket, deadline: float) -> None:
    got = await _recv(sock, deadline, 16)
    if got != scm.KICK:
        raise ProtocolFailure("cgmanager closed the request" if not got else "expected a kick")


async def _recv_pid(sock: socket.socket, deadline: float) -> int:
    data, anc = await _recvmsg(sock, 16, deadline)
    for level, kind, payload in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid: int = scm.UCRED.unpack(payload[: scm.UCRED.size])[0]
            return pid
    raise ProtocolFailure("a pid datagram without credentials" if data else "list cut short")


async def _result(sock: socket.socket, method: scm.ScmMethod, deadline: float) -> Any:
    kind = method.result
    if kind == scm.Result.STATUS:
        status = scm.decode_status(await _recv(sock, deadline, 16))
        if status == scm.FAILED:
            raise Refused(method.plain.name)
        if method.plain.name in ("Create", "Remove"):
            return 1 if status == scm.EXISTED else -1
        return None
    if kind == scm.Result.STRING:
        value = scm.decode_string(await _recv(sock, deadline))
        if value is None:
            raise Refused(method.plain.name)
        return value
    try:
        n = scm.decode_count(await _recv(sock, deadline, 16))
    except ValueError as e:
        raise ProtocolFailure(str(e)) from None
    if n < 0:
        raise Refused(method.plain.name)
    if kind == scm.Result.PIDS:
        pids = [await _recv_pid(sock, deadline) for _ in range(n)]
        # 0: a process this proxy's pid namespace cannot see; it names nothing here
        return [p for p in pids if p > 0]
    if n == 0:
        return []
    try:
        length = scm.decode_length(await _recv(sock, deadline, 16))
        blob = await _recv(sock, deadline, length + 1)
        if len(blob) != length:
            raise ValueError("short list")
        if kind == scm.Result.NAMES:
            return scm.decode_names(blob, n)
        return scm.decode_keys(blob, n)
    except ValueError as e:
        raise ProtocolFailure(str(e)) from None


async def scm_call(
    conn: AsyncConnection,
    member: str,
    args: tuple[Any, ...],
    requestor: Cred,
    second: Cred | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    requestor_pidfd: int | None = None,
) -> Any:
    """Call ``member`` (e.g. ``"CreateScm"``) on behalf of *requestor* (as this process sees
    it); *second* is the victim (pid methods) or the target ids (ChownScm).  Returns what the
    plain twin would (``existed`` 1/-1 for Create/Remove, a string, a list, or None).

    Raises :class:`Refused`, :class:`CredentialRefused`, :class:`ProtocolFailure`, or
    :class:`DBusError` when the daemon refuses the D-Bus call itself (transport failures:
    ``Disconnected``/``NoReply``)."""
    method = scm.BY_NAME[member]
    if (method.second == scm.Second.NONE) != (second is None):
        raise ValueError(f"{member} takes {'no' if second is None else 'a'} second credential")
    deadline = asyncio.get_running_loop().time() + timeout
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        for s in (mine, theirs):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        mine.setblocking(False)
        try:
            # the daemon answers at once; the kick may arrive before or after the reply
            await conn.call(
                OBJECT_PATH,
                INTERFACE,
                member,
                method.signature,
                (*args, theirs.fileno()),
                timeout=max(0.0, deadline - asyncio.get_running_loop().time()),
            )
        finally:
            theirs.close()  # the kernel (or the connection's queue) holds its own copy
        await _expect_kick(mine, deadline)
        _send_cred(mine, requestor, "requestor", requestor_pidfd)
        if second is not None:
            await _expect_kick(mine, deadline)
            _send_cred(mine, second, "victim" if method.second == scm.Second.PID else "ids")
        return await _result(mine, method, deadline)
    finally:
        mine.close()


# -- the connection ---------------------------------------------------------------------------


async def _accepts_pidfds(conn: AsyncConnection, timeout: float) -> bool:
    """The daemon's :data:`scm.PIDFD_PROPERTY`; any error (0.42: no such interface) is no."""
    iface, name = scm.PIDFD_PROPERTY
    try:
        return await conn.get_property(OBJECT_PATH, iface, name, timeout=timeout) is True
    except DBusError:
        return False


class Upstream:
    """The daemon at *address*, reconnected on demand.  Calls in flight are capped at
    *max_in_flight*; a call waits for a slot at most until its own deadline."""

    def __init__(
        self,
        address: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        self.address = address
        self.timeout = timeout
        self._conn: AsyncConnection | None = None
        self._lock = asyncio.Lock()
        self._slots = asyncio.Semaphore(max_in_flight)
        #: connections opened so far (1 + reconnections), for logs and tests
        self.connects = 0
        #: the connection whose daemon accepts our pidfd with a credential (scm_server)
        self._pinning: AsyncConnection | None = None

    async def connection(self) -> AsyncConnection:
        """The live connection, opening a new one if there is none (or it dropped)."""
        async with self._lock:
            conn = self._conn
            if conn is not None and not conn.closed:
                return conn
            try:
                conn = await AsyncConnection.connect(
                    self.address, timeout=self.timeout, unix_fd=True
                )
            except (DBusError, OSError, ValueError) as e:
                raise Unavailable(f"cannot reach cgmanager at {self.address}: {e}") from None
            if not conn.unix_fd:
                conn.close()
                raise Unavailable("cgmanager did not agree to fd passing")
            self._conn = conn
            self.connects += 1
            if self.connects > 1:
                log.info("reconnected to cgmanager at %s", self.address)
            # as 0.42: one no-reply Ping after connecting
            try:
                await conn.call(OBJECT_PATH, INTERFACE, "Ping", "i", (0,), no_reply=True)
            except DBusError as e:
                raise Unavailable(f"cgmanager: {e.message or e.name}") from None
            self._pinning = conn if await _accepts_pidfds(conn, self.timeout) else None
            return conn

    def pins(self, conn: AsyncConnection) -> bool:
        """Whether the daemon behind *conn* takes our pidfd of a requestor with its
        credential (a 0.42 daemon does not: it is never sent one)."""
        return conn is self._pinning

    async def _slot(self, deadline: float) -> None:
        try:
            async with asyncio.timeout_at(deadline):
                await self._slots.acquire()
        except TimeoutError:
            raise Unavailable("too many requests waiting for cgmanager") from None

    async def call(
        self,
        member: str,
        args: tuple[Any, ...],
        requestor: Cred,
        second: Cred | None = None,
        requestor_pidfd: int | None = None,
    ) -> Any:
        """One ``*Scm`` call (see :func:`scm_call`); transport failures become
        :class:`Unavailable`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        await self._slot(deadline)
        try:
            try:
                async with asyncio.timeout_at(deadline):
                    conn = await self.connection()
            except TimeoutError:
                raise Unavailable("cgmanager did not answer in time") from None
            left = max(0.05, deadline - loop.time())
            pidfd = requestor_pidfd if self.pins(conn) else None
            try:
                return await scm_call(
                    conn, member, args, requestor, second, timeout=left, requestor_pidfd=pidfd
                )
            except DBusError as e:
                if e.name in _TRANSPORT_ERRORS:
                    raise Unavailable(f"cgmanager: {e.message or e.name}") from None
                raise
        finally:
            self._slots.release()

    async def plain(
        self, member: str, signature: str = "", args: tuple[Any, ...] = ()
    ) -> tuple[Any, ...]:
        """A plain call (ListControllers), bounded by the timeout."""
        try:
            async with asyncio.timeout(self.timeout):
                conn = await self.connection()
                return await conn.call(OBJECT_PATH, INTERFACE, member, signature, args)
        except TimeoutError:
            raise Unavailable("cgmanager did not answer in time") from None
        except DBusError as e:
            if e.name in _TRANSPORT_ERRORS:
                raise Unavailable(f"cgmanager: {e.message or e.name}") from None
            raise

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
