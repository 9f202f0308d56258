"""One accepted client connection: SASL, then messages, with fds, under hard limits.

Why raw ``recvmsg``/``sendmsg`` with ``loop.add_reader`` and not asyncio streams: streams cannot
carry SCM_RIGHTS fds.  Messages are processed strictly in order per connection: replies keep
request order (so the reply to ``Hello`` is the first message a client gets — sd-bus insists),
and while a coroutine handler runs, reading from that client pauses, so the kernel socket
buffer applies back-pressure to it alone.  Why callbacks, handshake included, rather than a
coroutine (a task) reading in a loop: the reader stays registered for the connection's life and
each readable event is handled in place — no task per connection, no epoll registration, future
or task switch per read, which cost more than a typical request's work (one-shot clients such
as dbus-send pay the handshake on every call; see docs/PERFORMANCE.md).  The loop itself is
uvloop's when installed (``dbus/loop.py``): its wake-up path is C.

Every way a client can misbehave ends that client's connection and nothing else:

* handshake not finished within ``sasl_timeout`` (idle mid-SASL), over-long SASL lines;
* a message announcing more than ``max_message_size`` bytes (checked from its first 16 bytes,
  before buffering), invalid bytes (:class:`~cgmanager.dbus.unmarshal.ProtocolError`), fds without
  ``NEGOTIATE_UNIX_FD``, more than ``max_fds_per_message`` fds, truncated ancillary data;
* a message started but not completed within ``message_timeout`` (half-sent and stalled);
* replies piling up past ``max_output_buffer`` because the client does not read them.

Every received fd is closed unless a handler takes it; every fd the server creates is CLOEXEC
(``MSG_CMSG_CLOEXEC``; pidfds and accepted sockets are CLOEXEC by construction).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Protocol

from ._unix import (
    ANCBUF_SIZE,
    MSG_CMSG_CLOEXEC,
    MSG_CTRUNC,
    SCM_CREDENTIALS,
    close_fds,
    fds_from_ancdata,
)
from .message import METHOD_CALL, Message, message_size, parse_message
from .outgoing import Outgoing
from .sasl import ServerSasl
from .unmarshal import ProtocolError

if TYPE_CHECKING:
    import _socket

    from .dispatch import Dispatcher
    from .limits import Limits
    from .objects import PeerCredentials

log = logging.getLogger("cgmanager.dbus")

_RECV_SIZE = 65536
#: Messages handled back to back before yielding to other connections: a client that keeps its
#: socket readable (pipelining without pause) never makes ``recvmsg`` wait, and would otherwise
#: monopolise the event loop.
_FAIRNESS_BATCH = 32


class Owner(Protocol):
    """What a connection needs from whoever accepted it (the server): its limits, dispatcher
    and SASL guid, whether it is shutting down, and to be told when the connection ends.
    Named here so that this module needs no import of the server's."""

    limits: Limits
    dispatcher: Dispatcher
    guid: str

    @property
    def closing(self) -> bool: ...

    def forget(self, conn: Connection) -> None: ...


class _Drop(Exception):
    """End this connection (reason in the message)."""


class Connection(Outgoing):
    """Server side of one client connection, created by its :class:`Owner` (the server); what
    it sends is :class:`~.outgoing.Outgoing`'s part."""

    def __init__(
        self,
        server: Owner,
        sock: _socket.socket,
        peer: PeerCredentials,
        pidfd: int | None,
        unique_name: str,
    ) -> None:
        super().__init__(asyncio.get_running_loop(), sock, server.limits)
        self._server = server
        self._dispatcher = server.dispatcher
        self.peer = peer
        self.pidfd = pidfd
        self.unique_name = unique_name
        self.close_reason: str | None = None
        self._pending_fds: list[int] = []
        # message phase (after the handshake)
        self._buf = bytearray()
        self._reading = False  # the message-phase reader is registered
        self._busy: asyncio.Future[Message | None] | None = (
            None  # a coroutine handler's reply is awaited
        )
        self._partial: asyncio.TimerHandle | None = None  # deadline of a started message
        self._sasl: ServerSasl | None = None  # the handshake, until BEGIN
        self._sasl_deadline: asyncio.TimerHandle | None = None
        #: what handlers learnt about this connection's peer (MethodCall.state)
        self.state: dict[str, Any] = {}

    def __repr__(self) -> str:
        p = self.peer
        return f"<Connection {self.unique_name} pid={p.pid} uid={p.uid}>"

    # ----------------------------------------------------------------------------------------
    # lifecycle

    def start(self) -> None:
        """Begin serving: the handshake, then messages.  The reader stays registered from here
        to the end (no task, no future, no epoll change per read); the connection ends on its
        own when the client leaves or misbehaves, or by :meth:`abort`."""
        limits = self._limits
        self._sasl = ServerSasl(self._server.guid, unix_fd=True, max_line=limits.max_sasl_line)
        self._sasl_deadline = self._loop.call_later(limits.sasl_timeout, self._sasl_late)
        self._loop.add_reader(self._fd, self._on_readable)
        self._reading = True

    def _sasl_late(self) -> None:
        self._sasl_deadline = None
        if not self.closed and self._sasl is not None:
            self._fail(_Drop("handshake not completed in time"))

    def _fail(self, exc: BaseException) -> None:
        """End the connection because of *exc*, with a reason saying why."""
        if isinstance(exc, _Drop):
            self.close_reason = str(exc)
            log.info("dropping %r: %s", self, exc)
        elif isinstance(exc, ProtocolError):
            self.close_reason = f"protocol error: {exc}"
            log.info("dropping %r: protocol error: %s", self, exc)
        elif isinstance(exc, (ConnectionError, EOFError)):
            self.close_reason = self.close_reason or "disconnected"
        elif isinstance(exc, OSError):
            if not self.closed:
                self.close_reason = f"socket error: {exc}"
                log.info("%r: socket error: %s", self, exc)
        elif isinstance(exc, Exception):  # a bug here must not take the daemon down
            log.error("unexpected failure serving %r", self, exc_info=exc)
        else:
            raise exc
        self._teardown()

    def abort(self, reason: str) -> None:
        """Close the connection now (from any context)."""
        if self.closed:
            return
        self.close_reason = reason
        log.log(
            logging.DEBUG if self._server.closing else logging.INFO,
            "dropping %r: %s",
            self,
            reason,
        )
        self._teardown()

    def _teardown(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._partial is not None:
            self._partial.cancel()
            self._partial = None
        if self._busy is not None and not self._busy.done():
            self._busy.cancel()
        if self._sasl_deadline is not None:
            self._sasl_deadline.cancel()
            self._sasl_deadline = None
        self._sasl = None
        try:
            self._loop.remove_reader(self._fd)
            if self._writer_registered:
                self._loop.remove_writer(self._fd)
                self._writer_registered = False
        except (ValueError, RuntimeError):  # loop already closed
            pass
        try:
            self._sock.close()
        except OSError:
            pass
        self._drop_output()
        close_fds(self._pending_fds)
        self._pending_fds.clear()
        if self.pidfd is not None:
            close_fds([self.pidfd])
            self.pidfd = None
        for value in self.state.values():
            close = getattr(value, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:  # a handler's leftovers must not stop the teardown
                    log.exception("closing connection state of %r", self)
        self.state.clear()
        self._server.forget(self)

    # ----------------------------------------------------------------------------------------
    # reading

    def _recv_now(self) -> bytes:
        """One ``recvmsg``: the bytes, with their fds kept in ``_pending_fds`` (bounded)."""
        data, anc, flags, _addr = self._sock.recvmsg(_RECV_SIZE, ANCBUF_SIZE, MSG_CMSG_CLOEXEC)
        # SO_PASSCRED (server.py) makes the kernel add the sender's credentials to every read:
        # only something else can carry fds
        if anc and (len(anc) != 1 or anc[0][1] != SCM_CREDENTIALS):
            fds = fds_from_ancdata(anc)
            if fds:
                self._pending_fds.extend(fds)
                limit = self._limits.max_fds_per_message
                if len(self._pending_fds) > limit:
                    raise _Drop(f"more than {limit} fds pending")
        if flags & MSG_CTRUNC:
            raise _Drop("ancillary data truncated")
        if not data:
            raise EOFError
        return data

    def _handshake(self, sasl: ServerSasl, data: bytes) -> None:
        """Feed the handshake; after ``BEGIN``, what followed it is the first message data."""
        step = sasl.feed(data)
        if step.reply:
            self._write(step.reply, [])
        if step.close:
            raise _Drop(f"handshake: {sasl.close_reason}")
        if not step.done:
            return
        self._sasl = None
        if self._sasl_deadline is not None:
            self._sasl_deadline.cancel()
            self._sasl_deadline = None
        self.unix_fd = sasl.unix_fd_negotiated
        log.debug(
            "%r authenticated (%s, claimed %r, unix fds %s)",
            self,
            sasl.mechanism,
            sasl.claimed_identity,
            self.unix_fd,
        )
        self._buf += step.leftover
        self._resume()

    def _on_readable(self) -> None:
        """One read, then handle every complete message it brought.  No second read to look
        for a pipelined request: for a client that pauses between calls (every real one) it
        fails with EAGAIN — an exception built, raised and caught per request, ~5 % of a Ping's
        instructions — while the level-triggered reader brings us back at once when more has
        arrived (docs/PERFORMANCE.md, "Cheaper wake-ups")."""
        try:
            data = self._recv_now()
            sasl = self._sasl
            if sasl is not None:
                self._handshake(sasl, data)
                return
        except (BlockingIOError, InterruptedError):
            return
        except BaseException as exc:
            self._fail(exc)
            return
        self._buf += data
        self._process()

    def _resume(self) -> None:
        """Handle what is buffered, then (unless paused again) wait for more."""
        if self.closed:
            return
        self._process()
        if (
            not self.closed
            and self._busy is None
            and not self._reading
            and not self._complete_message_buffered()
        ):
            self._loop.add_reader(self._fd, self._on_readable)
            self._reading = True

    def _pause(self) -> None:
        if self._reading:
            self._loop.remove_reader(self._fd)
            self._reading = False

    def _complete_message_buffered(self) -> bool:
        buf = self._buf
        return len(buf) >= 16 and len(buf) >= message_size(buf, self._limits.max_message_size)

    def _process(self, budget: int = _FAIRNESS_BATCH) -> int:
        """Handle up to *budget* buffered messages; returns how many were handled."""
        try:
            return self._process_messages(budget)
        except BaseException as exc:
            self._fail(exc)
            return budget

    def _process_messages(self, budget: int) -> int:
        """Dispatch every complete buffered message, in order: a coroutine handler pauses the
        connection until its reply is sent; after ``_FAIRNESS_BATCH`` messages the rest waits
        for the next loop iteration so that no client monopolises the daemon."""
        buf = self._buf
        pending = self._pending_fds
        max_size = self._limits.max_message_size
        handled = 0
        while not self.closed:
            if pending and not self.unix_fd:
                raise _Drop("fds sent without NEGOTIATE_UNIX_FD")
            if len(buf) < 16:
                break
            size = message_size(buf, max_size)
            blen = len(buf)
            if blen < size:
                break
            if handled >= budget:  # before any fd leaves ``pending``
                self._pause()
                self._loop.call_soon(self._resume)
                break
            handled += 1
            if blen == size:
                raw = bytes(buf)
                buf.clear()
            else:
                raw = bytes(buf[:size])
                del buf[:size]
            msg = parse_message(raw, pending)
            if msg.fds:
                del pending[: len(msg.fds)]
            if msg.type != METHOD_CALL:
                close_fds(msg.fds)  # replies, errors, signals: nothing to do here
                continue
            reply = self._dispatcher.handle(
                msg, self.peer, self.pidfd, self.unique_name, self.state
            )
            if reply is not None and not isinstance(reply, Message):
                self._pause()
                self._busy = asyncio.ensure_future(reply)
                self._busy.add_done_callback(self._replied)
                break
            if self.closed:  # (the handler may have closed it)
                if reply is not None:  # type: ignore[unreachable]
                    self._discard(reply)
                return handled
            if reply is not None:
                self._send(reply)
        if self.closed:
            return handled
        if handled and self._partial is not None:  # progress: the deadline starts again
            self._partial.cancel()
            self._partial = None
        timeout = self._limits.message_timeout
        if buf and self._partial is None and timeout is not None and self._busy is None:
            self._partial = self._loop.call_later(timeout, self._stalled)
        return handled

    def _replied(self, fut: asyncio.Future[Message | None]) -> None:
        """A coroutine handler finished: send its reply, then carry on with the connection."""
        self._busy = None
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is not None:
            self._fail(exc)
            return
        reply = fut.result()
        if self.closed:
            if reply is not None:
                self._discard(reply)
            return
        if reply is not None:
            self._send(reply)
        self._resume()

    def _stalled(self) -> None:
        self._partial = None
        if not self.closed and self._buf and self._busy is None:
            self._fail(_Drop("message not completed in time"))
