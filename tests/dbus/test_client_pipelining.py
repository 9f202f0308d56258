"""The blocking client sends its first call in the handshake's round trip, and still copes
with a server that rejects EXTERNAL or must agree to fds first (a scripted fake server)."""

from __future__ import annotations

import os
import socket
import threading

from cgmanager.dbus import errors
from cgmanager.dbus.client import DBusError, connect
from cgmanager.dbus.codec import (
    METHOD_RETURN,
    Message,
    message_size,
    parse_message,
    serialise_message,
)

OK = b"OK 0123456789abcdef0123456789abcdef\r\n"


class Fake:
    """Accepts connections on a socket and runs *script(conn, n)* for the n-th one."""

    def __init__(self, tmp_path, script) -> None:
        self.path = str(tmp_path / "sock")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(4)
        self.log: list[str] = []
        self.thread = threading.Thread(target=self._serve, args=(script,), daemon=True)
        self.thread.start()

    def _serve(self, script) -> None:
        n = 0
        while True:
            try:
                c, _ = self.listener.accept()
            except OSError:
                return
            with c:
                c.settimeout(10)
                try:
                    script(self, c, n)
                except OSError as e:
                    self.log.append(f"error {e}")
            n += 1

    def close(self) -> None:
        self.listener.close()


def read_until(c: socket.socket, buf: bytearray, token: bytes) -> None:
    while token not in buf:
        data = c.recv(4096)
        if not data:
            raise ConnectionError("client closed")
        buf += data


def sent_within(c: socket.socket, seconds: float) -> bytes:
    """What the client sends within *seconds* while the server has not answered."""
    c.settimeout(seconds)
    try:
        return c.recv(4096)
    except TimeoutError:
        return b""
    finally:
        c.settimeout(10)


def take_message(c: socket.socket, buf: bytearray) -> Message:
    while len(buf) < 16 or len(buf) < message_size(buf):
        buf += c.recv(4096)
    size = message_size(buf)
    msg = parse_message(bytes(buf[:size]), [])
    del buf[:size]
    return msg


def reply_to(msg: Message, body: tuple) -> bytes:
    return serialise_message(
        Message(METHOD_RETURN, reply_serial=msg.serial, signature="i", body=body), 1
    )[0]


def test_the_first_call_travels_with_the_handshake(tmp_path):
    def script(fake, c, n):
        buf = bytearray()
        read_until(c, buf, b"BEGIN\r\n")
        buf = bytearray(buf.split(b"BEGIN\r\n", 1)[1])
        # not a byte written yet: the call must already be on its way
        msg = take_message(c, buf)
        fake.log.append(f"call before any reply: {msg.member}")
        c.sendall(b"DATA\r\n" + OK + b"AGREE_UNIX_FD\r\n" + reply_to(msg, (42,)))

    fake = Fake(tmp_path, script)
    try:
        with connect(fake.path, timeout=10, pipeline=True) as conn:
            assert conn.call("/o", "x.y", "Ping", "i", (0,)) == (42,)
            assert conn.unix_fd
        assert fake.log == ["call before any reply: Ping"]
    finally:
        fake.close()


def test_a_rejected_external_falls_back_to_anonymous_and_resends(tmp_path):
    def script(fake, c, n):
        buf = bytearray()
        if n == 0:
            read_until(c, buf, b"AUTH EXTERNAL")
            c.sendall(b"REJECTED ANONYMOUS\r\n")
            fake.log.append("rejected EXTERNAL")
            return
        read_until(c, buf, b"BEGIN\r\n")
        assert b"AUTH ANONYMOUS" in buf
        buf = bytearray(buf.split(b"BEGIN\r\n", 1)[1])
        c.sendall(OK + b"AGREE_UNIX_FD\r\n")
        msg = take_message(c, buf)
        fake.log.append(f"anonymous call: {msg.member}")
        c.sendall(reply_to(msg, (7,)))

    fake = Fake(tmp_path, script)
    try:
        with connect(fake.path, timeout=10, pipeline=True) as conn:
            assert conn.call("/o", "x.y", "Ping", "i", (0,)) == (7,)
        assert fake.log == ["rejected EXTERNAL", "anonymous call: Ping"]
    finally:
        fake.close()


def test_a_rejection_and_close_before_the_first_call_is_sent(tmp_path):
    """The race of the test above, made certain: the server rejects EXTERNAL and closes the
    connection before the client's pipelined call goes out (the send then fails with EPIPE).
    The server's answer, still readable, decides: fall back to ANONYMOUS and send again."""
    closed = threading.Event()

    def script(fake, c, n):
        buf = bytearray()
        if n == 0:
            read_until(c, buf, b"BEGIN\r\n")
            c.sendall(b"REJECTED ANONYMOUS\r\n")
            c.close()
            fake.log.append("rejected EXTERNAL and closed")
            closed.set()
            return
        read_until(c, buf, b"BEGIN\r\n")
        buf = bytearray(buf.split(b"BEGIN\r\n", 1)[1])
        c.sendall(OK + b"AGREE_UNIX_FD\r\n")
        msg = take_message(c, buf)
        fake.log.append(f"anonymous call: {msg.member}")
        c.sendall(reply_to(msg, (7,)))

    fake = Fake(tmp_path, script)
    try:
        with connect(fake.path, timeout=10, pipeline=True) as conn:
            assert closed.wait(10)  # only then the first call
            assert conn.call("/o", "x.y", "Ping", "i", (0,)) == (7,)
        assert fake.log == ["rejected EXTERNAL and closed", "anonymous call: Ping"]
    finally:
        fake.close()


def test_an_accepted_handshake_with_a_lost_pipelined_call_fails(tmp_path):
    """The server accepts, then closes before the pipelined call arrives: the call fails with
    Disconnected (it is not sent again: it may have been read)."""
    closed = threading.Event()

    def script(fake, c, n):
        buf = bytearray()
        read_until(c, buf, b"BEGIN\r\n")
        c.sendall(b"DATA\r\n" + OK + b"AGREE_UNIX_FD\r\n")
        c.close()
        closed.set()

    fake = Fake(tmp_path, script)
    try:
        with connect(fake.path, timeout=10, pipeline=True) as conn:
            assert closed.wait(10)
            try:
                conn.call("/o", "x.y", "Ping", "i", (0,))
                raise AssertionError("a lost call succeeded")
            except DBusError as e:
                assert e.name == errors.DISCONNECTED and "send failed" in e.message, e
    finally:
        fake.close()


def test_a_call_with_fds_waits_for_the_servers_agreement(tmp_path):
    def script(fake, c, n):
        buf = bytearray()
        read_until(c, buf, b"BEGIN\r\n")
        early = sent_within(c, 0.3)
        fake.log.append(f"sent before agreement: {len(early)} bytes")
        c.sendall(b"DATA\r\n" + OK + b"ERROR no fds here\r\n")

    fake = Fake(tmp_path, script)
    r, w = os.pipe()
    try:
        with connect(fake.path, timeout=10, pipeline=True) as conn:
            try:
                conn.call("/o", "x.y", "TakeFd", "h", (r,))
                raise AssertionError("a call with an fd went through without fd passing")
            except Exception as e:  # noqa: BLE001
                assert "fd passing" in str(e)
        assert fake.log == ["sent before agreement: 0 bytes"]
    finally:
        os.close(r)
        os.close(w)
        fake.close()


def test_without_pipelining_the_handshake_completes_first(tmp_path):
    """The default, for servers that do not read messages sent with the handshake."""

    def script(fake, c, n):
        buf = bytearray()
        read_until(c, buf, b"BEGIN\r\n")
        early = sent_within(c, 0.3)
        fake.log.append(f"sent before the replies: {len(early)} bytes")
        c.sendall(b"DATA\r\n" + OK + b"AGREE_UNIX_FD\r\n")
        msg = take_message(c, bytearray(early))
        c.sendall(reply_to(msg, (5,)))

    fake = Fake(tmp_path, script)
    try:
        with connect(fake.path, timeout=10) as conn:
            assert conn.call("/o", "x.y", "Ping", "i", (0,)) == (5,)
        assert fake.log == ["sent before the replies: 0 bytes"]
    finally:
        fake.close()
