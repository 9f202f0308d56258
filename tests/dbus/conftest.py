"""Fixtures: a toy D-Bus server in a background thread with its own event loop."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from cgmanager.dbus.codec import Message, message_size, parse_message, serialise_message
from cgmanager.dbus.server import Limits, Server

from .toy import ToyState, make_objects


class ServerThread:
    """Runs a :class:`Server` on a private event loop in a daemon thread."""

    def __init__(self, path: str, limits: Limits | None = None, mode: int = 0o666) -> None:
        self.path = path
        self.address = f"unix:path={path}"
        self.state = ToyState()
        self.loop = asyncio.new_event_loop()
        self.server = Server(make_objects(self.state), limits=limits, socket_mode=mode)
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.run(self.server.start(path))

    def run(self, coro, timeout: float = 10.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def connections(self) -> int:
        async def count() -> int:
            return self.server.connections

        return self.run(count())

    def wait_connections(self, n: int, timeout: float = 10.0) -> None:
        """Wait (hang guard only) until the server has ``n`` open connections."""
        deadline = time.monotonic() + timeout
        while self.connections() != n:
            if time.monotonic() > deadline:
                raise AssertionError(f"server has {self.connections()} connections, not {n}")
            time.sleep(0.01)

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        try:
            self.run(self.server.close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()
            for fd in self.state.kept_fds:
                try:
                    os.close(fd)
                except OSError:
                    pass


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Iterator[ServerThread]:
    """A toy server with default limits, shared by a test module."""
    srv = ServerThread(str(tmp_path_factory.mktemp("dbus") / "sock"))
    yield srv
    srv.stop()


@pytest.fixture
def make_server(tmp_path) -> Iterator[Callable[..., ServerThread]]:
    """Factory for servers with custom limits (stopped at the end of the test)."""
    started: list[ServerThread] = []

    def make(name: str = "sock", **limits) -> ServerThread:
        mode = limits.pop("mode", 0o666)
        srv = ServerThread(str(tmp_path / name), Limits(**limits) if limits else None, mode)
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


# ------------------------------------------------------------------------------------------
# raw-socket helpers for protocol tests

HANDSHAKE = b"\0AUTH EXTERNAL 30\r\nNEGOTIATE_UNIX_FD\r\nBEGIN\r\n"


def raw_connect(path: str, timeout: float = 10.0) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    return s


def read_until(sock: socket.socket, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise EOFError(f"closed; got {data!r}")
        data += chunk
    return data


def raw_authenticated(path: str) -> socket.socket:
    s = raw_connect(path)
    s.sendall(HANDSHAKE)
    assert read_until(s, b"AGREE_UNIX_FD\r\n").startswith(b"OK ")
    return s


def call_msg(
    member: str,
    signature: str = "",
    body: tuple = (),
    *,
    path: str = "/org/linuxcontainers/cgmanager",
    interface: str | None = "org.example.Test",
    flags: int = 0,
) -> Message:
    return Message(
        1,
        flags=flags,
        path=path,
        interface=interface,
        member=member,
        signature=signature,
        body=body,
    )


def send_msg(sock: socket.socket, msg: Message, serial: int = 1) -> None:
    data, fds = serialise_message(msg, serial)
    if fds:
        sock.sendmsg(
            [data],
            [
                (
                    socket.SOL_SOCKET,
                    socket.SCM_RIGHTS,
                    b"".join(fd.to_bytes(4, "little", signed=True) for fd in fds),
                )
            ],
        )
    else:
        sock.sendall(data)


def recv_msg(sock: socket.socket, buf: bytearray | None = None) -> Message:
    """Read one message (no fds) from a blocking socket."""
    buf = bytearray() if buf is None else buf
    while len(buf) < 16 or len(buf) < message_size(buf):
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed")
        buf += chunk
    size = message_size(buf)
    raw = bytes(buf[:size])
    del buf[:size]
    return parse_message(raw, [])


def is_closed_by_peer(sock: socket.socket) -> bool:
    """True once the peer closed (EOF or reset), reading and discarding anything before it."""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def open_fds() -> set[int]:
    return {int(n) for n in os.listdir("/proc/self/fd")}
