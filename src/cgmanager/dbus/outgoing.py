"""The sending half of a server connection: replies and signals serialised, sent as far as
the socket takes them at once, the rest queued — under a bound.

A client that does not read its replies is dropped once ``max_output_buffer`` bytes wait for it;
a signal it did not ask for is dropped instead (the client stays) when it has not read
``max_queued`` bytes.  A reply that cannot be marshalled, or carries fds the client cannot take,
becomes a ``Failed`` error.  Fds are closed once in flight (the kernel holds its own references).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

from . import errors
from ._unix import SCM_MAX_FD, close_fds, drain, rights
from .marshal import MarshalError
from .message import ERROR, METHOD_RETURN, Message, serialise_message
from .registry import close_returned_fds

if TYPE_CHECKING:
    import _socket

    from .limits import Limits

log = logging.getLogger("cgmanager.dbus")


class Outgoing:
    """What a connection sends; the base of :class:`.connection.Connection`, which receives."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, sock: _socket.socket, limits: Limits
    ) -> None:
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._limits = limits
        self.unix_fd = False
        self.closed = False
        self._serial = 0
        self._out: deque[list[Any]] = deque()  # [memoryview, fds]
        self._out_size = 0
        self._writer_registered = False

    def abort(self, reason: str) -> None:
        """End the connection now (the connection's business: see its own)."""
        raise NotImplementedError

    @property
    def queued(self) -> int:
        """Bytes accepted for this client but not yet taken by its socket."""
        return self._out_size

    def send_signal(self, msg: Message, max_queued: int) -> bool:
        """Send a message the client did not ask for (a signal) — unless the client has not
        yet read more than *max_queued* bytes, in which case it is dropped and False returned:
        a subscriber that does not keep up loses signals, it is neither disconnected (replies
        still have ``max_output_buffer``) nor able to make the daemon hold more memory."""
        if self.closed or self._out_size > max_queued:
            return False
        self._send(msg)
        return True

    def _send(self, msg: Message) -> None:
        self._serial += 1
        try:
            data, fds = serialise_message(msg, self._serial)
        except MarshalError as exc:
            log.error("cannot marshal reply to %s (signature %r): %s", self, msg.signature, exc)
            self._discard(msg)
            data, fds = self._failure(msg, "internal error")
        if fds and (not self.unix_fd or len(fds) > SCM_MAX_FD):
            log.error("reply to %r carries %d fds, which it cannot receive", self, len(fds))
            close_fds(fds)
            data, fds = self._failure(msg, "cannot pass file descriptors")
        self._write(data, fds)

    def _failure(self, msg: Message, text: str) -> tuple[bytes, list[int]]:
        """A ``Failed`` error in place of a reply that cannot be sent as it is."""
        failed = Message(
            ERROR,
            error_name=errors.FAILED,
            reply_serial=msg.reply_serial,
            signature="s",
            body=(text,),
        )
        return serialise_message(failed, self._serial)

    @staticmethod
    def _discard(msg: Message) -> None:
        if msg.type == METHOD_RETURN and "h" in msg.signature:
            close_returned_fds(msg.signature, msg.body)

    def _write(self, data: bytes, fds: list[int]) -> None:
        """Send now as far as the socket takes it; queue the rest (bounded)."""
        if self.closed:
            close_fds(fds)
            return
        if self._out:
            self._queue(memoryview(data), fds)
            return
        try:
            if fds:
                n = self._sock.sendmsg([data], rights(fds))
            else:
                n = self._sock.send(data)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError as exc:
            close_fds(fds)
            self.abort(f"send failed: {exc}")
            return
        if n and fds:
            close_fds(fds)  # in flight: the kernel holds its own references now
            fds = []
        if n < len(data):
            self._queue(memoryview(data)[n:], fds)

    def _queue(self, view: memoryview, fds: list[int]) -> None:
        self._out.append([view, fds])
        self._out_size += len(view)
        if self._out_size > self._limits.max_output_buffer:
            self.abort(f"client is not reading its replies ({self._out_size} bytes queued)")
            return
        if not self._writer_registered:
            self._loop.add_writer(self._fd, self._on_writable)
            self._writer_registered = True

    def _on_writable(self) -> None:
        try:
            sent, empty = drain(self._sock, self._out)
        except OSError as exc:
            self.abort(f"send failed: {exc}")
            return
        self._out_size -= sent
        if empty:
            self._loop.remove_writer(self._fd)
            self._writer_registered = False

    def _drop_output(self) -> None:
        """The connection ends: what was not sent is forgotten, its fds closed."""
        for _data, fds in self._out:
            close_fds(fds)
        self._out.clear()
        self._out_size = 0
