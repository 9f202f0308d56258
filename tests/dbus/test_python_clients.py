"""The blocking and the asyncio client against the toy server."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading

import pytest

from cgmanager.dbus import errors
from cgmanager.dbus.aio_client import AsyncConnection
from cgmanager.dbus.client import connect, parse_address
from cgmanager.dbus.errors import DBusError

from .toy import IFACE, OTHER_PATH, PATH


@pytest.fixture
def conn(toy):
    with connect(toy.address, timeout=10) as c:
        yield c


def test_types_round_trip(conn):
    assert conn.call(PATH, IFACE, "EchoI", "i", (-7,)) == (-7,)
    assert conn.call(PATH, IFACE, "EchoS", "s", ("ünïcode",)) == ("ünïcode",)
    assert conn.call(PATH, IFACE, "EchoAS", "as", (["a", "", "c"],)) == (["a", "", "c"],)
    assert conn.call(PATH, IFACE, "EchoAI", "ai", (list(range(-5, 5)),)) == (list(range(-5, 5)),)
    keys = [("tasks", 0, 0, 0o100644), ("x", 4294967295, 1, 2)]
    assert conn.call(PATH, IFACE, "EchoKeys", "a(suuu)", (keys,)) == (keys,)


def test_unix_fd_negotiated(conn):
    assert conn.unix_fd


def test_fd_argument(conn):
    r, w = os.pipe()
    os.write(w, b"through a pipe")
    os.close(w)
    try:
        assert conn.call(PATH, IFACE, "ReadFd", "h", (r,)) == ("through a pipe",)
    finally:
        os.close(r)  # the caller keeps ownership of fds it sends


def test_received_fd_is_cloexec_and_closed_after_handler(conn, tmp_path):
    f = tmp_path / "marker-file"
    f.write_text("x")
    with open(f) as fh:
        target, cloexec = conn.call(PATH, IFACE, "FdInfo", "h", (fh.fileno(),))
    assert target == str(f) and cloexec
    # the server closed its copy after the handler returned
    assert not any(
        os.path.realpath(f"/proc/self/fd/{n}") == str(f) for n in os.listdir("/proc/self/fd")
    )


def test_handler_may_take_an_fd(toy, conn):
    r, w = os.pipe()
    try:
        conn.call(PATH, IFACE, "KeepFd", "h", (r,))
        kept = toy.state.kept_fds[-1]
        os.write(w, b"still open")
        assert os.read(kept, 20) == b"still open"  # the server did not close the taken fd
    finally:
        os.close(r)
        os.close(w)


def test_fd_in_reply(conn):
    (fd,) = conn.call(PATH, IFACE, "ReturnFd")
    try:
        assert os.read(fd, 100) == b"from-server"
    finally:
        os.close(fd)


def test_errors(conn):
    with pytest.raises(DBusError) as e:
        conn.call(PATH, IFACE, "Fail")
    assert (e.value.name, e.value.message) == ("org.example.Error.Nope", "nope")
    with pytest.raises(DBusError) as e:
        conn.call(PATH, IFACE, "Crash")
    assert e.value.name == errors.FAILED
    with pytest.raises(DBusError) as e:
        conn.call(PATH, IFACE, "BadReturn")
    assert e.value.name == errors.FAILED
    with pytest.raises(DBusError) as e:
        conn.call(PATH, IFACE, "SlowFail")
    assert e.value.name == "org.example.Error.Later"
    assert conn.call(PATH, IFACE, "EchoI", "i", (1,)) == (1,)  # still fine


@pytest.mark.parametrize("sig, body", [("", ()), ("s", ("x",)), ("ii", (1, 2)), ("u", (1,))])
def test_wrong_signature(conn, sig, body):
    with pytest.raises(DBusError) as e:
        conn.call(PATH, IFACE, "EchoI", sig, body)
    assert e.value.name == errors.INVALID_ARGS
    assert e.value.message == "Invalid arguments to EchoI method"


def test_unknown_method_interface_object(conn):
    for path, iface, member, name in [
        (PATH, IFACE, "Nope", errors.UNKNOWN_METHOD),
        (PATH, "org.example.Nope", "EchoI", errors.UNKNOWN_INTERFACE),
        ("/no/such/object", IFACE, "EchoI", errors.UNKNOWN_OBJECT),
        (PATH, None, "Nope", errors.UNKNOWN_METHOD),
        ("/org", IFACE, "EchoI", errors.UNKNOWN_OBJECT),
    ]:
        with pytest.raises(DBusError) as e:
            conn.call(path, iface, member)
        assert e.value.name == name, (path, iface, member)


def test_no_interface_resolves_member(conn):
    assert conn.call(PATH, None, "EchoI", "i", (5,)) == (5,)
    assert conn.call(OTHER_PATH, None, "Hi") == ("hi",)
    assert conn.call(PATH, None, "Ping", "i", (0,)) == ()  # our Ping(i), not Peer.Ping()


def test_no_reply_flag_sends_no_success_reply_but_errors(conn):
    assert conn.call(PATH, IFACE, "EchoI", "i", (1,), no_reply=True) == ()
    # the error for a NO_REPLY call is still sent: it arrives before the next reply
    serial = conn.send(
        __import__("cgmanager.dbus.client", fromlist=["method_call"]).method_call(
            PATH, IFACE, "Fail", "", (), None, True
        )
    )
    with pytest.raises(DBusError) as e:
        conn.wait_reply(serial, 10)
    assert e.value.name == "org.example.Error.Nope"
    assert conn.call(PATH, IFACE, "EchoI", "i", (2,)) == (2,)


def test_properties(toy, conn):
    assert conn.get_property(PATH, IFACE, "api_version") == 10
    props = conn.call(PATH, "org.freedesktop.DBus.Properties", "GetAll", "s", (IFACE,))
    assert props == ({"api_version": ("i", 10), "Label": ("s", toy.state.label)},)
    assert conn.call(
        PATH, "org.freedesktop.DBus.Properties", "GetAll", "s", ("org.freedesktop.DBus.Peer",)
    ) == ({},)
    with pytest.raises(DBusError) as e:
        conn.call(
            PATH, "org.freedesktop.DBus.Properties", "Set", "ssv", (IFACE, "api_version", ("i", 3))
        )
    assert e.value.name == errors.PROPERTY_READ_ONLY
    with pytest.raises(DBusError) as e:
        conn.get_property(PATH, IFACE, "nope")
    assert e.value.name == errors.UNKNOWN_PROPERTY
    with pytest.raises(DBusError) as e:
        conn.get_property(PATH, "org.example.Nope", "x")
    assert e.value.name == errors.UNKNOWN_INTERFACE
    with pytest.raises(DBusError) as e:  # wrong variant type for a writable property
        conn.call(PATH, "org.freedesktop.DBus.Properties", "Set", "ssv", (IFACE, "Label", ("i", 3)))
    assert e.value.name == errors.INVALID_ARGS
    conn.call(PATH, "org.freedesktop.DBus.Properties", "Set", "ssv", (IFACE, "Label", ("s", "n")))
    assert conn.get_property(PATH, IFACE, "Label") == "n"
    conn.call(
        PATH, "org.freedesktop.DBus.Properties", "Set", "ssv", (IFACE, "Label", ("s", "initial"))
    )


def test_bus_driver_stubs(conn):
    bus = ("/org/freedesktop/DBus", "org.freedesktop.DBus")
    (name,) = conn.call(*bus, "Hello")
    assert name.startswith(":1.")
    assert conn.call(*bus, "AddMatch", "s", ("type='signal'",)) == ()
    assert conn.call(*bus, "RemoveMatch", "s", ("type='signal'",)) == ()
    assert conn.call(*bus, "GetNameOwner", "s", ("org.example.x",)) == (":1.0",)
    assert conn.call(*bus, "RequestName", "su", ("org.example.x", 0)) == (1,)
    assert conn.call(*bus, "ReleaseName", "s", ("org.example.x",)) == (1,)
    with pytest.raises(DBusError) as e:
        conn.call(*bus, "StartServiceByName", "su", ("x.y", 0))
    assert e.value.name == errors.UNKNOWN_METHOD


def test_peer_interface_anywhere(conn):
    assert conn.call("/", "org.freedesktop.DBus.Peer", "Ping") == ()
    assert conn.call("/does/not/exist", "org.freedesktop.DBus.Peer", "Ping") == ()
    (mid,) = conn.call(PATH, "org.freedesktop.DBus.Peer", "GetMachineId")
    with open("/etc/machine-id") as f:
        assert mid == f.read().strip()


def test_peer_credentials_and_pidfd(conn):
    pid, uid, gid, pidfd_cloexec, name = conn.call(PATH, IFACE, "Peer")
    assert (pid, uid, gid) == (os.getpid(), os.getuid(), os.getgid())
    assert pidfd_cloexec and name.startswith(":1.")


def test_unique_names_differ(toy):
    with connect(toy.address) as a, connect(toy.address) as b:
        assert a.call(PATH, IFACE, "Peer")[4] != b.call(PATH, IFACE, "Peer")[4]


def test_parse_address():
    assert parse_address("unix:path=/run/x/sock") == ["/run/x/sock"]
    assert parse_address("/run/x/sock") == ["/run/x/sock"]
    assert parse_address("tcp:host=x;unix:path=/a%20b,guid=00") == ["/a b"]
    assert parse_address("unix:abstract=foo") == ["\0foo"]
    with pytest.raises(ValueError):
        parse_address("tcp:host=localhost,port=1")


def test_connect_failure_is_dbus_error(tmp_path):
    with pytest.raises(DBusError) as e:
        connect(f"unix:path={tmp_path}/missing")
    assert e.value.name == errors.DISCONNECTED


def test_call_timeout(conn):
    with pytest.raises(DBusError) as e:
        conn.call(PATH, IFACE, "Slow", "i", (3000,), timeout=0.2)
    assert e.value.name == errors.NO_REPLY


def test_client_import_is_light():
    code = (
        "import sys, cgmanager.dbus.client; "
        "bad = {'asyncio', 'socket', 'typing', 'logging', 'dataclasses', 're', 'jeepney',"
        " 'enum', 'selectors'} & set(sys.modules); print(sorted(bad))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    ).stdout.strip()
    assert out == "[]"


def test_anonymous_fallback(toy, monkeypatch):
    # a server that rejects EXTERNAL: simulate by making the client's EXTERNAL request invalid
    from cgmanager.dbus import client_common as client_mod

    monkeypatch.setattr(client_mod, "_EXTERNAL", b"\0AUTH NOTAMECH\r\nDATA\r\n")
    with connect(toy.address) as c:
        assert c.call(PATH, IFACE, "EchoI", "i", (3,)) == (3,)


# ------------------------------------------------------------------------------------------
# asyncio client


def test_async_client_basics(toy):
    async def main():
        conn = await AsyncConnection.connect(toy.address, timeout=10)
        try:
            assert conn.unix_fd
            assert await conn.call(PATH, IFACE, "EchoS", "s", ("x",)) == ("x",)
            assert await conn.get_property(PATH, IFACE, "api_version") == 10
            r, w = os.pipe()
            os.write(w, b"async fd")
            os.close(w)
            try:
                assert await conn.call(PATH, IFACE, "ReadFd", "h", (r,)) == ("async fd",)
            finally:
                os.close(r)
            (fd,) = await conn.call(PATH, IFACE, "ReturnFd")
            assert os.read(fd, 50) == b"from-server"
            os.close(fd)
            with pytest.raises(DBusError) as e:
                await conn.call(PATH, IFACE, "Fail")
            assert e.value.name == "org.example.Error.Nope"
            # several calls in flight on one connection, answered in order
            results = await asyncio.gather(
                *(conn.call(PATH, IFACE, "EchoI", "i", (i,)) for i in range(50))
            )
            assert results == [(i,) for i in range(50)]
        finally:
            conn.close()

    asyncio.run(main())


def test_async_slow_call_does_not_block_other_connections(toy):
    async def main():
        a = await AsyncConnection.connect(toy.address)
        b = await AsyncConnection.connect(toy.address)
        try:
            slow = asyncio.ensure_future(a.call(PATH, IFACE, "Slow", "i", (1500,)))
            while toy.state.slow_started == toy.state.slow_finished:  # handler is running
                await asyncio.sleep(0.01)
            for i in range(20):
                assert await b.call(PATH, IFACE, "EchoI", "i", (i,)) == (i,)
            assert not slow.done()  # the other connection was served meanwhile
            await slow
        finally:
            a.close()
            b.close()

    asyncio.run(asyncio.wait_for(main(), 20))


def test_async_disconnect_fails_pending_calls(make_server):
    srv = make_server()

    async def main():
        conn = await AsyncConnection.connect(srv.address)
        pending = asyncio.ensure_future(conn.call(PATH, IFACE, "Slow", "i", (5000,)))
        while srv.state.slow_started == 0:
            await asyncio.sleep(0.01)
        await asyncio.get_running_loop().run_in_executor(None, srv.stop)
        with pytest.raises(DBusError) as e:
            await pending
        assert e.value.name == errors.DISCONNECTED
        assert conn.closed

    asyncio.run(asyncio.wait_for(main(), 20))


def test_blocking_clients_from_threads(toy):
    failures = []

    def worker(n: int) -> None:
        try:
            with connect(toy.address) as c:
                for i in range(30):
                    assert c.call(PATH, IFACE, "EchoI", "i", (n * 100 + i,)) == (n * 100 + i,)
        except Exception as exc:  # pragma: no cover - reported below
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not failures
