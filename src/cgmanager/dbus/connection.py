"""One accepted client connection: SASL, then messages, with fds, under hard limits.

Why raw ``recvmsg``/``sendmsg`` with ``loop.add_reader`` and not asyncio streams: streams cannot
carry SCM_RIGHTS fds.  Why one task per connection processing its messages strictly in order: a
coroutine handler delays only its own client, replies keep request order (so the reply to
``Hello`` is the first message a client gets — sd-bus insists), and while a handler runs the
kernel socket buffer applies back-pressure to that client alone.

Every way a client can misbehave ends that client's connection and nothing else:

* handshake not finished within ``sasl_timeout`` (idle mid-SASL), over-long SASL lines;
* a message announcing more than ``max_message_size`` bytes (checked from its first 16 bytes,
  before buffering), invalid bytes (:class:`~cgmanager.dbus.codec.ProtocolError`), fds without
  ``NEGOTIATE_UNIX_FD``, more than ``max_fds_per_message`` fds, truncated ancillary data;
* a message started but not completed within ``message_timeout`` (half-sent and stalled);
* replies piling up past ``max_output_buffer`` because the client does not read them.

Every received fd is closed unless a handler takes it; every fd the server creates is CLOEXEC
(``MSG_CMSG_CLOEXEC``; pidfds and accepted sockets are CLOEXEC by construction).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

from . import errors
from ._unix import (
    ANCBUF_SIZE,
    MSG_CMSG_CLOEXEC,
    MSG_CTRUNC,
    SCM_MAX_FD,
    close_fds,
    drain,
    fds_from_ancdata,
    rights,
)
from .codec import (
    ERROR,
    METHOD_CALL,
    METHOD_RETURN,
    MarshalError,
    Message,
    ProtocolError,
    message_size,
    parse_message,
    serialise_message,
)
from .dispatch import _close_returned_fds
from .sasl import ServerSasl

if TYPE_CHECKING:
    import socket

    from .objects import PeerCredentials
    from .server import Server

log = logging.getLogger("cgmanager.dbus")

_RECV_SIZE = 65536
#: Messages handled back to back before yielding to other connections: a client that keeps its
#: socket readable (pipelining without pause) never makes ``recvmsg`` wait, and would otherwise
#: monopolise the event loop.
_FAIRNESS_BATCH = 32


class _Drop(Exception):
    """End this connection (reason in the message)."""


class Connection:
    """Server side of one client connection.  Created by :class:`~cgmanager.dbus.server.Server`."""

    def __init__(
        self,
        server: Server,
        sock: socket.socket,
        peer: PeerCredentials,
        pidfd: int | None,
        unique_name: str,
    ) -> None:
        self._server = server
        self._limits = server.limits
        self._dispatcher = server.dispatcher
        self._loop = asyncio.get_running_loop()
        self._sock = sock
        self._fd = sock.fileno()
        self.peer = peer
        self.pidfd = pidfd
        self.unique_name = unique_name
        self.unix_fd = False
        self.closed = False
        self.close_reason: str | None = None
        self.task: asyncio.Task | None = None
        self._serial = 0
        self._out: deque[list] = deque()  # [memoryview, fds]
        self._out_size = 0
        self._writer_registered = False
        self._pending_fds: list[int] = []
        self._unyielded = 0
        #: what handlers learnt about this connection's peer (MethodCall.state)
        self.state: dict[str, Any] = {}

    def __repr__(self) -> str:
        p = self.peer
        return f"<Connection {self.unique_name} pid={p.pid} uid={p.uid}>"

    # ----------------------------------------------------------------------------------------
    # lifecycle

    async def run(self) -> None:
        """Serve the connection until the client leaves, misbehaves or the server closes."""
        try:
            leftover = await self._handshake()
            await self._messages(leftover)
        except _Drop as exc:
            self.close_reason = str(exc)
            log.info("dropping %r: %s", self, exc)
        except ProtocolError as exc:
            self.close_reason = f"protocol error: {exc}"
            log.info("dropping %r: protocol error: %s", self, exc)
        except (ConnectionError, EOFError):
            self.close_reason = self.close_reason or "disconnected"
        except OSError as exc:
            if not self.closed:
                self.close_reason = f"socket error: {exc}"
                log.info("%r: socket error: %s", self, exc)
        except asyncio.CancelledError:
            pass  # server shutdown or abort(); teardown below
        except Exception:  # a bug here must not take the daemon down
            log.exception("unexpected failure serving %r", self)
        finally:
            self._teardown()

    def abort(self, reason: str) -> None:
        """Close the connection now (from any context); the run task ends soon after."""
        if self.closed:
            return
        self.close_reason = reason
        log.log(
            logging.DEBUG if self._server._closing else logging.INFO,
            "dropping %r: %s",
            self,
            reason,
        )
        self._teardown()
        task = self.task
        if task is not None and task is not asyncio.current_task() and not task.done():
            task.cancel()

    def _teardown(self) -> None:
        if self.closed:
            return
        self.closed = True
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
        for _data, fds in self._out:
            close_fds(fds)
        self._out.clear()
        self._out_size = 0
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
        self._server._forget(self)

    # ----------------------------------------------------------------------------------------
    # reading

    async def _readable(self, timeout: float | None) -> None:
        self._unyielded = 0
        fut = self._loop.create_future()
        self._loop.add_reader(self._fd, _wake, fut)
        try:
            if timeout is None:
                await fut
            else:
                try:
                    async with asyncio.timeout(timeout):
                        await fut
                except TimeoutError:
                    raise _Drop("message not completed in time") from None
        finally:
            if not self.closed:
                self._loop.remove_reader(self._fd)

    async def _recv(self, timeout: float | None = None) -> bytes:
        """Receive some bytes; fds that come with them are appended to ``_pending_fds``."""
        while True:
            if self.closed:
                raise EOFError
            try:
                data, anc, flags, _addr = self._sock.recvmsg(
                    _RECV_SIZE, ANCBUF_SIZE, MSG_CMSG_CLOEXEC
                )
            except (BlockingIOError, InterruptedError):
                await self._readable(timeout)
                continue
            if anc:
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

    async def _handshake(self) -> bytes:
        sasl = ServerSasl(self._server.guid, unix_fd=True, max_line=self._limits.max_sasl_line)
        try:
            async with asyncio.timeout(self._limits.sasl_timeout):
                while True:
                    step = sasl.feed(await self._recv())
                    if step.reply:
                        self._write(step.reply, [])
                    if step.close:
                        raise _Drop(f"handshake: {sasl.close_reason}")
                    if step.done:
                        break
        except TimeoutError:
            raise _Drop("handshake not completed in time") from None
        self.unix_fd = sasl.unix_fd_negotiated
        log.debug(
            "%r authenticated (%s, claimed %r, unix fds %s)",
            self,
            sasl.mechanism,
            sasl.claimed_identity,
            self.unix_fd,
        )
        return step.leftover

    async def _messages(self, leftover: bytes) -> None:
        buf = bytearray(leftover)
        pending = self._pending_fds
        max_size = self._limits.max_message_size
        timeout = self._limits.message_timeout
        dispatch = self._dispatcher.handle
        peer = self.peer
        name = self.unique_name
        state = self.state
        while True:
            if pending and not self.unix_fd:
                raise _Drop("fds sent without NEGOTIATE_UNIX_FD")
            need = 16
            while len(buf) >= 16:
                size = message_size(buf, max_size)
                blen = len(buf)
                if blen < size:
                    need = size
                    break
                self._unyielded += 1
                if self._unyielded >= _FAIRNESS_BATCH:  # before any fd leaves ``pending``
                    self._unyielded = 0
                    await asyncio.sleep(0)
                    if self.closed:
                        return
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
                reply = dispatch(msg, peer, self.pidfd, name, state)
                if reply is not None and type(reply) is not Message:
                    reply = await reply
                if self.closed:
                    if reply is not None:
                        self._discard(reply)
                    return
                if reply is not None:
                    self._send(reply)
                    if self.closed:
                        return
            while len(buf) < need:
                buf += await self._recv(timeout if buf else None)

    # ----------------------------------------------------------------------------------------
    # writing

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
            _close_returned_fds(msg.signature, msg.body)

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


def _wake(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)
