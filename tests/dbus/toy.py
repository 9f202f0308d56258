"""A toy interface exercising every feature of the transport (used by the socket tests and by
``perf_ping.py``); nothing here touches cgroups."""

from __future__ import annotations

import asyncio
import fcntl
import os

from cgmanager.dbus.errors import DBusError
from cgmanager.dbus.objects import Interface, Method, MethodCall, Property

IFACE = "org.example.Test"
PATH = "/org/linuxcontainers/cgmanager"
OTHER_PATH = "/org/example/other"


class ToyState:
    """Mutable state of one toy server (the writable property, fds a handler kept)."""

    def __init__(self) -> None:
        self.label = "initial"
        self.kept_fds: list[int] = []
        self.slow_started = 0
        self.slow_finished = 0
        self.count = 0


def _cloexec(fd: int) -> bool:
    return bool(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC)


def make_objects(state: ToyState) -> dict:
    def read_fd(call: MethodCall) -> tuple:
        (fd,) = call.body
        return (os.read(fd, 100).decode(),)

    def fd_info(call: MethodCall) -> tuple:
        (fd,) = call.body
        return (os.readlink(f"/proc/self/fd/{fd}"), _cloexec(fd))

    def keep_fd(call: MethodCall) -> tuple:
        (fd,) = call.body
        state.kept_fds.append(call.take_fd(fd))
        return ()

    def return_fd(call: MethodCall) -> tuple:
        r, w = os.pipe2(os.O_CLOEXEC)
        os.write(w, b"from-server")
        os.close(w)
        return (r,)

    def fail(call: MethodCall) -> tuple:
        raise DBusError("org.example.Error.Nope", "nope")

    def crash(call: MethodCall) -> tuple:
        raise RuntimeError("handler bug")

    async def slow(call: MethodCall) -> tuple:
        state.slow_started += 1
        await asyncio.sleep(call.body[0] / 1000)
        state.slow_finished += 1
        return ()

    async def slow_fail(call: MethodCall) -> tuple:
        await asyncio.sleep(0)
        raise DBusError("org.example.Error.Later", "later")

    def peer(call: MethodCall) -> tuple:
        pidfd = call.pidfd
        return (
            call.peer.pid,
            call.peer.uid,
            call.peer.gid,
            pidfd is not None and _cloexec(pidfd),
            call.sender,
        )

    def count(call: MethodCall) -> tuple:
        state.count += 1
        return ()

    def set_label(call: MethodCall, value: str) -> None:
        if not value:
            raise DBusError("org.freedesktop.DBus.Error.InvalidArgs", "empty label")
        state.label = value

    test = Interface(
        IFACE,
        methods=[
            Method("EchoI", lambda c: (c.body[0],), [("x", "i")], [("x", "i")]),
            Method("EchoS", lambda c: (c.body[0],), [("x", "s")], [("x", "s")]),
            Method("EchoAS", lambda c: (c.body[0],), [("x", "as")], [("x", "as")]),
            Method("EchoAI", lambda c: (c.body[0],), [("x", "ai")], [("x", "ai")]),
            Method("EchoKeys", lambda c: (c.body[0],), [("x", "a(suuu)")], [("x", "a(suuu)")]),
            Method("Ping", lambda c: (), [("junk", "i")]),
            Method("ReadFd", read_fd, [("fd", "h")], [("data", "s")]),
            Method("FdInfo", fd_info, [("fd", "h")], [("target", "s"), ("cloexec", "b")]),
            Method("KeepFd", keep_fd, [("fd", "h")]),
            Method("ReturnFd", return_fd, [], [("fd", "h")]),
            Method("Fail", fail),
            Method("Crash", crash),
            Method("Slow", slow, [("ms", "i")]),
            Method("SlowFail", slow_fail),
            Method("Big", lambda c: ("x" * c.body[0],), [("n", "i")], [("data", "s")]),
            Method(
                "Peer",
                peer,
                [],
                [("pid", "i"), ("uid", "u"), ("gid", "u"), ("pidfd_cloexec", "b"), ("name", "s")],
            ),
            Method("Count", count),
            Method("GetCount", lambda c: (state.count,), [], [("n", "i")]),
            Method("BadReturn", lambda c: ("not an int",), [], [("x", "i")]),
        ],
        properties=[
            Property("api_version", "i", lambda c: 10),
            Property("Label", "s", lambda c: state.label, set_label),
        ],
    )
    other = Interface(
        "org.example.Other",
        methods=[
            Method("Hi", lambda c: ("hi",), [], [("greeting", "s")]),
        ],
    )
    return {PATH: [test], OTHER_PATH: [other]}
