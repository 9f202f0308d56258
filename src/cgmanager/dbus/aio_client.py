"""Asyncio D-Bus client for peer-to-peer sockets (for cgproxy's upstream connection).

Same handshake and error conventions as the blocking :mod:`cgmanager.dbus.client` (EXTERNAL
without a uid, ANONYMOUS fallback, errors as :class:`DBusError`), plus what a proxy needs:
several calls in flight on one connection (matched by serial), fd passing both ways (neither
jeepney's nor the standard asyncio streams can carry fds), and every pending call failing with
``org.freedesktop.DBus.Error.Disconnected`` when the connection drops, so the proxy can
reconnect.

Fds given as ``h`` arguments stay owned by the caller; fds received in replies are owned by the
caller.
"""

from __future__ import annotations

import asyncio
import fcntl
import socket
from collections import deque
from collections.abc import Iterable
from types import EllipsisType
from typing import Any

from . import errors
from ._unix import (
    ANCBUF_SIZE,
    MSG_CMSG_CLOEXEC,
    MSG_CTRUNC,
    close_fds,
    drain,
    fds_from_ancdata,
    rights,
)
from .client_common import (
    DEFAULT_TIMEOUT,
    PROPERTIES,
    HandshakeReader,
    error_from_reply,
    handshake_request,
    method_call,
    parse_address,
)
from .errors import DBusError
from .message import (
    ERROR,
    METHOD_RETURN,
    Message,
    message_size,
    parse_message,
    serialise_message,
)
from .unmarshal import ProtocolError

__all__ = ["AsyncConnection", "DBusError", "connect"]


class AsyncConnection:
    """An asyncio connection.  Create with ``await AsyncConnection.connect(address)``."""

    def __init__(
        self, sock: socket.socket, unix_fd: bool, leftover: bytes, timeout: float | None
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._sock: socket.socket | None = sock
        self._fd = sock.fileno()
        self.unix_fd = unix_fd
        self.timeout = timeout
        self._serial = 0
        self._pending: dict[int, asyncio.Future[Message]] = {}
        self._buf = bytearray(leftover)
        self._fds: list[int] = []
        #: unsent ``[memoryview, fds]`` items, in order (see :func:`._unix.drain`)
        self._out: deque[list[Any]] = deque()
        self._writer = False
        self.closed = False
        self._loop.add_reader(self._fd, self._on_readable)

    @classmethod
    async def connect(
        cls, address: str, *, timeout: float | None = DEFAULT_TIMEOUT, unix_fd: bool = True
    ) -> AsyncConnection:
        """Connect and authenticate (EXTERNAL without uid, then ANONYMOUS if rejected)."""
        last: BaseException | None = None
        for path in parse_address(address):
            for mechanism in ("EXTERNAL", "ANONYMOUS"):
                try:
                    async with asyncio.timeout(timeout):
                        return await cls._connect_one(path, mechanism, unix_fd, timeout)
                except TimeoutError:
                    raise DBusError(errors.TIMEOUT, "handshake timed out") from None
                except _Rejected as exc:
                    last = exc.error
                except OSError as exc:
                    last = exc
                    break
        if isinstance(last, DBusError):
            raise last
        raise DBusError(errors.DISCONNECTED, f"cannot connect to {address}: {last}")

    @classmethod
    async def _connect_one(
        cls, path: str, mechanism: str, unix_fd: bool, timeout: float | None
    ) -> AsyncConnection:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, path)
            await loop.sock_sendall(sock, handshake_request(mechanism, unix_fd))
            reader = HandshakeReader(mechanism, unix_fd)
            while True:
                data = await loop.sock_recv(sock, 4096)
                if not data:
                    raise DBusError(errors.AUTH_FAILED, "server closed during handshake")
                try:
                    done = reader.feed(data)
                except DBusError as exc:
                    if reader.rejected:
                        raise _Rejected(exc) from None
                    raise
                if done is not None:
                    return cls(sock, done[0], done[1], timeout)
        except BaseException:
            sock.close()
            raise

    # ----------------------------------------------------------------------------------------

    async def call(
        self,
        path: str,
        interface: str | None,
        member: str,
        signature: str = "",
        body: Iterable[Any] = (),
        *,
        destination: str | None = None,
        no_reply: bool = False,
        timeout: float | None | EllipsisType = ...,
    ) -> tuple[Any, ...]:
        """Call a method; return the reply body (``()`` with ``no_reply``).  Raises
        :class:`DBusError` for error replies, timeouts (``NoReply``) and disconnection."""
        msg = method_call(path, interface, member, signature, body, destination, no_reply)
        if no_reply:
            self.send(msg)
            return ()
        fut = self._loop.create_future()
        serial = self.send(msg, fut)
        limit = self.timeout if timeout is ... else timeout
        try:
            async with asyncio.timeout(limit):
                reply: Message = await fut
        except TimeoutError:
            raise DBusError(errors.NO_REPLY, "no reply within the timeout") from None
        finally:
            self._pending.pop(serial, None)
        return reply.body

    async def get_property(self, path: str, interface: str, name: str, **kw: Any) -> Any:
        """``org.freedesktop.DBus.Properties.Get`` → the value (variant unwrapped)."""
        (variant,) = await self.call(path, PROPERTIES, "Get", "ss", (interface, name), **kw)
        return variant[1]

    def send(self, msg: Message, fut: asyncio.Future[Message] | None = None) -> int:
        """Queue ``msg`` with the next serial (registering ``fut`` for its reply); return it."""
        sock = self._sock
        if sock is None:  # (closed)
            raise DBusError(errors.DISCONNECTED, "connection closed")
        self._serial += 1
        serial = self._serial
        data, fds = serialise_message(msg, serial)
        if fds and not self.unix_fd:
            raise DBusError(errors.FAILED, "the server did not agree to fd passing")
        if fut is not None:
            self._pending[serial] = fut
        # fds are sent as borrowed references: the kernel duplicates them during sendmsg, but a
        # queued send must not outlive the caller's fds, so queued fds are duplicated here.
        if self._out:
            self._queue(memoryview(data), _dup_all(fds))
            return serial
        try:
            n = sock.sendmsg([data], rights(fds)) if fds else sock.send(data)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError as exc:
            self._fail(f"send failed: {exc}")
            raise DBusError(errors.DISCONNECTED, f"send failed: {exc}") from None
        if n < len(data):
            self._queue(memoryview(data)[n:], _dup_all(fds) if n == 0 else [])
        return serial

    def _queue(self, view: memoryview, fds: list[int]) -> None:
        self._out.append([view, fds])
        if not self._writer:
            self._loop.add_writer(self._fd, self._on_writable)
            self._writer = True

    def _on_writable(self) -> None:
        sock = self._sock
        if sock is None:  # (closed: the writer is gone too)
            return
        try:
            _, empty = drain(sock, self._out)
        except OSError as exc:
            self._fail(f"send failed: {exc}")
            return
        if empty:
            self._loop.remove_writer(self._fd)
            self._writer = False

    def _on_readable(self) -> None:
        sock = self._sock
        if sock is None:  # (closed: the reader is gone too)
            return
        try:
            data, anc, flags, _ = sock.recvmsg(65536, ANCBUF_SIZE, MSG_CMSG_CLOEXEC)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fail(f"receive failed: {exc}")
            return
        if anc:
            self._fds.extend(fds_from_ancdata(anc))
        if not data:
            self._fail("connection closed by the server")
            return
        if flags & MSG_CTRUNC:
            self._fail("ancillary data truncated")
            return
        buf = self._buf
        buf += data
        try:
            while len(buf) >= 16:
                size = message_size(buf)
                if len(buf) < size:
                    break
                raw = bytes(buf[:size])
                del buf[:size]
                msg = parse_message(raw, self._fds)
                del self._fds[: len(msg.fds)]
                self._deliver(msg)
        except ProtocolError as exc:
            self._fail(f"bad message from server: {exc}")

    def _deliver(self, msg: Message) -> None:
        fut = None
        if msg.type in (METHOD_RETURN, ERROR) and msg.reply_serial is not None:
            fut = self._pending.pop(msg.reply_serial, None)
        if fut is None or fut.done():
            close_fds(msg.fds)  # signals, calls, late replies: nothing waits for them
            return
        if msg.type == ERROR:
            fut.set_exception(error_from_reply(msg))
        else:
            fut.set_result(msg)

    def _fail(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self._loop.remove_reader(self._fd)
        if self._writer:
            self._loop.remove_writer(self._fd)
            self._writer = False
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
        for _view, fds in self._out:
            close_fds(fds)
        self._out.clear()
        close_fds(self._fds)
        self._fds.clear()
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(DBusError(errors.DISCONNECTED, reason))

    def close(self) -> None:
        """Close the connection; pending calls fail with ``Disconnected``."""
        self._fail("connection closed")

    async def __aenter__(self) -> AsyncConnection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


def _dup_all(fds: list[int]) -> list[int]:
    return [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 0) for fd in fds]


class _Rejected(Exception):
    def __init__(self, error: DBusError) -> None:
        super().__init__(error)
        self.error = error


async def connect(
    address: str, *, timeout: float | None = DEFAULT_TIMEOUT, unix_fd: bool = True
) -> AsyncConnection:
    """``await connect("unix:path=…")`` → :class:`AsyncConnection`."""
    return await AsyncConnection.connect(address, timeout=timeout, unix_fd=unix_fd)
