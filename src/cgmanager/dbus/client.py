"""Blocking D-Bus client for peer-to-peer sockets (for the ``cgm`` CLI and simple tools).

Start-up cost matters more than anything here — the CLI runs once per shell command — so this
module imports only ``_socket``, ``struct``, ``time`` and this package's import-free helpers (no
asyncio, no :mod:`socket`, no typing/enum/dataclasses/re/logging at run time).

Connecting takes one round trip: the handshake is pipelined as
``\\0AUTH EXTERNAL\\r\\nDATA\\r\\nNEGOTIATE_UNIX_FD\\r\\nBEGIN\\r\\n``.  EXTERNAL is sent *without*
a uid, so the server takes the identity from the socket; a claimed uid would be wrong inside a user
namespace and strict servers would reject it.  If the server rejects EXTERNAL the client
reconnects with ANONYMOUS.  No ``Hello`` is sent (there is no bus).

Errors — D-Bus error replies and transport failures alike — are raised as
:class:`~cgmanager.dbus.errors.DBusError` (``.name``, ``.message``).

File descriptors: ``h`` arguments are ints (or objects with ``fileno()``); they stay owned by the
caller (the kernel duplicates them in flight).  Fds received in a reply are new fds owned by the
caller.
"""

from __future__ import annotations

import _socket
import time

from . import errors
from ._unix import ANCBUF_SIZE, MSG_CMSG_CLOEXEC, MSG_CTRUNC, close_fds, fds_from_ancdata, rights
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
    SIGNAL,
    Message,
    message_size,
    parse_message,
    serialise_message,
)
from .unmarshal import ProtocolError

TYPE_CHECKING = False  # (typing is not imported at run time: start-up cost)
if TYPE_CHECKING:
    from collections.abc import Iterable
    from types import EllipsisType
    from typing import Any

__all__ = ["Connection", "DBusError", "connect", "parse_address"]

#: signals kept while waiting for replies (see Connection.receive)
MAX_KEPT_SIGNALS = 1024


class Connection:
    """A blocking connection.  Use :func:`connect` (or :meth:`Connection.connect`)."""

    def __init__(
        self, sock: _socket.socket | None, unix_fd: bool, timeout: float | None = DEFAULT_TIMEOUT
    ) -> None:
        self._sock = sock
        self._unix_fd = unix_fd
        self.timeout = timeout
        self._serial = 0
        self._buf = bytearray()
        self._fds: list[int] = []
        #: the server's handshake replies not read yet (see :meth:`connect`): (reader, path)
        self._handshake: tuple[HandshakeReader, str] | None = None
        #: what was sent before the handshake was confirmed, to resend after a fallback
        self._unconfirmed: list[bytes] = []
        #: signals read while waiting for a reply, for :meth:`receive`
        self._signals: list[Message] = []
        #: a send that failed before the handshake was confirmed: the server may have rejected
        #: the handshake and closed before the pipelined call arrived (its answer decides)
        self._send_failed: OSError | None = None

    @property
    def unix_fd(self) -> bool:
        """Whether the server agreed to fd passing (reads its handshake replies if needed)."""
        if self._handshake is not None:
            self._finish_handshake(self._deadline(self.timeout))
        return self._unix_fd

    @staticmethod
    def _deadline(timeout: float | None) -> float | None:
        return None if timeout is None else time.monotonic() + timeout

    @classmethod
    def connect(
        cls,
        address: str,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        unix_fd: bool = True,
        pipeline: bool = False,
    ) -> Connection:
        """Connect and authenticate (EXTERNAL without uid, then ANONYMOUS if rejected).

        With *pipeline*, the handshake's replies are read with the first reply: the first
        call goes out in the same round trip as the handshake, as the D-Bus specification
        allows after ``BEGIN`` (one round trip for a one-shot client instead of two).  A call
        carrying fds waits for the server's agreement to fd passing first; if the server
        rejects ``EXTERNAL``, the connection is made again with ``ANONYMOUS`` and what was sent
        is sent again (the server never read it as messages).  cgmanager and cgproxy accept
        this; not every server does (systemd's private socket waits forever), so it is off
        unless asked for."""
        last: Exception | None = None
        for path in parse_address(address):
            for mechanism in ("EXTERNAL", "ANONYMOUS"):
                try:
                    return cls._connect_one(
                        path,
                        mechanism,
                        timeout,
                        unix_fd,
                        defer=pipeline and mechanism == "EXTERNAL",
                    )
                except _Rejected as exc:
                    last = exc.error
                    continue
                except OSError as exc:
                    last = exc
                    break
        if isinstance(last, DBusError):
            raise last
        raise DBusError(errors.DISCONNECTED, f"cannot connect to {address}: {last}")

    @classmethod
    def _connect_one(
        cls, path: str, mechanism: str, timeout: float | None, unix_fd: bool, defer: bool = False
    ) -> Connection:
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(path)
            sock.sendall(handshake_request(mechanism, unix_fd))
            reader = HandshakeReader(mechanism, unix_fd)
            if defer:
                conn = cls(sock, unix_fd, timeout)
                conn._handshake = (reader, path)
                return conn
            while True:
                data = sock.recv(4096)
                if not data:
                    raise DBusError(errors.AUTH_FAILED, "server closed during handshake")
                try:
                    done = reader.feed(data)
                except DBusError as exc:
                    if reader.rejected:
                        raise _Rejected(exc) from None
                    raise
                if done is not None:
                    break
        except TimeoutError:
            sock.close()
            raise DBusError(errors.TIMEOUT, "handshake timed out") from None
        except BaseException:
            sock.close()
            raise
        conn = cls(sock, done[0], timeout)
        conn._buf += done[1]
        return conn

    # ----------------------------------------------------------------------------------------

    def call(
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
        """Call a method; return the reply body (``()`` with ``no_reply``).

        Raises :class:`DBusError` for an error reply, a timeout (``…Error.Timeout``) or a lost
        connection (``…Error.Disconnected``).
        """
        msg = method_call(path, interface, member, signature, body, destination, no_reply)
        serial = self.send(msg)
        if no_reply:
            return ()
        reply = self.wait_reply(serial, self.timeout if timeout is ... else timeout)
        return reply.body

    def get_property(self, path: str, interface: str, name: str, **kw: Any) -> Any:
        """``org.freedesktop.DBus.Properties.Get`` → the value (variant unwrapped)."""
        (variant,) = self.call(path, PROPERTIES, "Get", "ss", (interface, name), **kw)
        return variant[1]

    def send(self, msg: Message) -> int:
        """Send ``msg`` with the next serial; return the serial."""
        if self._sock is None:
            raise DBusError(errors.DISCONNECTED, "connection closed")
        self._serial += 1
        data, fds = serialise_message(msg, self._serial)
        if fds and not self.unix_fd:  # (waits for the server's answer to NEGOTIATE_UNIX_FD)
            raise DBusError(errors.FAILED, "the server did not agree to fd passing")
        if self._handshake is not None:
            self._unconfirmed.append(data)
            if self._send_failed is not None:
                return self._serial  # sent again after a fallback, or the failure raised
        try:
            if fds:
                sent = self._sock.sendmsg([data], rights(fds))
                if sent < len(data):
                    self._sock.sendall(memoryview(data)[sent:])
            else:
                self._sock.sendall(data)
        except TimeoutError:
            self.close()
            raise DBusError(errors.TIMEOUT, "send timed out") from None
        except OSError as exc:
            if self._handshake is not None:
                self._send_failed = exc  # see _finish_handshake
                return self._serial
            self.close()
            raise DBusError(errors.DISCONNECTED, f"send failed: {exc}") from None
        return self._serial

    def wait_reply(self, serial: int, timeout: float | None) -> Message:
        """Read messages until the reply to ``serial``; signals that arrive meanwhile are kept
        for :meth:`receive` (at most ``MAX_KEPT_SIGNALS``, the oldest dropped), anything else
        is dropped (fds closed)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            msg = self._next_message(deadline)
            if msg.reply_serial == serial and msg.type in (METHOD_RETURN, ERROR):
                if msg.type == ERROR:
                    raise error_from_reply(msg)
                return msg
            if msg.type == SIGNAL:
                kept = self._signals
                kept.append(msg)
                if len(kept) > MAX_KEPT_SIGNALS:
                    close_fds(kept.pop(0).fds)
                continue
            close_fds(msg.fds)

    def receive(self, timeout: float | None = None) -> Message | None:
        """The next signal (kept ones first), or None once *timeout* seconds pass."""
        if self._signals:
            return self._signals.pop(0)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                msg = self._next_message(deadline)
            except DBusError as exc:
                if exc.name == errors.NO_REPLY:
                    return None
                raise
            if msg.type == SIGNAL:
                return msg
            close_fds(msg.fds)

    def _finish_handshake(self, deadline: float | None) -> None:
        """Read the server's handshake replies (sent with the connection's first bytes)."""
        assert self._handshake is not None
        reader, path = self._handshake
        while True:
            try:
                done = reader.feed(self._take_buffered() or self._recv_raw(deadline))
            except DBusError:
                self._handshake = None
                if not reader.rejected:
                    self.close()
                    raise
                self._send_failed = None  # the server discarded it all: sent again below
                self._fall_back(path)
                return
            if done is not None:
                break
        self._handshake = None
        self._unix_fd = done[0]
        self._buf += done[1]
        self._unconfirmed.clear()
        failed, self._send_failed = self._send_failed, None
        if failed is not None:  # accepted, but a call sent with the handshake was lost
            self.close()
            raise DBusError(errors.DISCONNECTED, f"send failed: {failed}")

    def _take_buffered(self) -> bytes:
        data = bytes(self._buf)
        self._buf.clear()
        return data

    def _recv_raw(self, deadline: float | None) -> bytes:
        self._recv(deadline)
        return self._take_buffered()

    def _fall_back(self, path: str) -> None:
        """``EXTERNAL`` was rejected: connect again with ``ANONYMOUS`` and send again what
        the server discarded with the rejected handshake."""
        resend, self._unconfirmed = self._unconfirmed, []
        self.close()
        try:
            other = self._connect_one(path, "ANONYMOUS", self.timeout, True)
        except _Rejected as exc:
            raise exc.error from None
        except OSError as exc:
            raise DBusError(errors.DISCONNECTED, f"cannot connect to {path}: {exc}") from None
        sock = self._sock = other._sock
        other._sock = None
        self._unix_fd = other._unix_fd
        self._buf += other._buf
        try:
            for data in resend:
                if sock is not None:
                    sock.sendall(data)
        except OSError as exc:
            self.close()
            raise DBusError(errors.DISCONNECTED, f"send failed: {exc}") from None

    def _next_message(self, deadline: float | None) -> Message:
        if self._handshake is not None:
            self._finish_handshake(deadline)
        buf = self._buf
        while True:
            if len(buf) >= 16:
                try:
                    size = message_size(buf)
                    if len(buf) >= size:
                        raw = bytes(buf[:size])
                        del buf[:size]
                        msg = parse_message(raw, self._fds)
                        del self._fds[: len(msg.fds)]
                        return msg
                except ProtocolError as exc:
                    self.close()
                    raise DBusError(
                        errors.DISCONNECTED, f"bad message from server: {exc}"
                    ) from None
            self._recv(deadline)

    def _recv(self, deadline: float | None) -> None:
        sock = self._sock
        if sock is None:
            raise DBusError(errors.DISCONNECTED, "connection closed")
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DBusError(errors.NO_REPLY, "no reply within the timeout")
            sock.settimeout(left)
        else:
            sock.settimeout(None)
        try:
            data, anc, flags, _ = sock.recvmsg(65536, ANCBUF_SIZE, MSG_CMSG_CLOEXEC)
        except TimeoutError:
            raise DBusError(errors.NO_REPLY, "no reply within the timeout") from None
        except OSError as exc:
            self.close()
            raise DBusError(errors.DISCONNECTED, f"receive failed: {exc}") from None
        if anc:
            self._fds.extend(fds_from_ancdata(anc))
        if not data:
            self.close()
            raise DBusError(errors.DISCONNECTED, "connection closed by the server")
        if flags & MSG_CTRUNC:
            self.close()
            raise DBusError(errors.DISCONNECTED, "ancillary data truncated")
        self._buf += data

    def fileno(self) -> int:
        return -1 if self._sock is None else self._sock.fileno()

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
        close_fds(self._fds)
        self._fds.clear()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


class _Rejected(Exception):
    def __init__(self, error: DBusError) -> None:
        super().__init__(error)
        self.error = error


def connect(
    address: str,
    *,
    timeout: float | None = DEFAULT_TIMEOUT,
    unix_fd: bool = True,
    pipeline: bool = False,
) -> Connection:
    """Connect to ``address`` (``unix:path=…`` or a socket path); see :meth:`Connection.connect`
    (*pipeline*: send the first call with the handshake — for cgmanager and cgproxy)."""
    return Connection.connect(address, timeout=timeout, unix_fd=unix_fd, pipeline=pipeline)
