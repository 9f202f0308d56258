"""Hostile and broken clients: each one loses its own connection, nobody else notices."""

from __future__ import annotations

import fcntl
import os
import socket
import stat
import struct
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.fuzz import examples

from cgmanager.dbus.client import connect
from cgmanager.dbus.codec import Message, serialise_message

from .conftest import (
    HANDSHAKE,
    call_msg,
    is_closed_by_peer,
    open_fds,
    raw_authenticated,
    raw_connect,
    read_until,
    recv_msg,
    send_msg,
)
from .toy import IFACE, PATH


def served(srv) -> None:
    """Another client gets a prompt, correct answer."""
    with connect(srv.address, timeout=10) as c:
        assert c.call(PATH, IFACE, "EchoI", "i", (99,)) == (99,)


def hello() -> Message:
    return call_msg("Hello", path="/org/freedesktop/DBus", interface="org.freedesktop.DBus")


# ------------------------------------------------------------------------------------------
# handshake over a real socket


def test_pipelined_handshake_and_hello_first(toy):
    s = raw_connect(toy.path)
    with s:
        data1, _ = serialise_message(hello(), 1)
        data2, _ = serialise_message(call_msg("EchoI", "i", (5,)), 2)
        s.sendall(HANDSHAKE + data1 + data2)  # one write, like sd-bus
        buf = bytearray(read_until(s, b"AGREE_UNIX_FD\r\n"))
        head, _, rest = bytes(buf).partition(b"AGREE_UNIX_FD\r\n")
        assert head.startswith(b"OK ")
        buf = bytearray(rest)
        first = recv_msg(s, buf)
        assert first.reply_serial == 1 and first.body[0].startswith(":1.")  # Hello reply first
        assert recv_msg(s, buf).body == (5,)


def test_data_flow_without_nul_byte(toy):
    s = raw_connect(toy.path)
    with s:
        s.sendall(b"AUTH EXTERNAL\r\n")
        assert read_until(s, b"\r\n") == b"DATA\r\n"
        s.sendall(b"DATA\r\nBEGIN\r\n")
        assert read_until(s, b"\r\n").startswith(b"OK ")
        send_msg(s, call_msg("EchoS", "s", ("ok",)))
        assert recv_msg(s).body == ("ok",)


def test_anonymous_over_socket(toy):
    s = raw_connect(toy.path)
    with s:
        s.sendall(b"\0AUTH\r\n")
        assert read_until(s, b"\r\n") == b"REJECTED EXTERNAL ANONYMOUS\r\n"
        s.sendall(b"GARBAGE\r\n")
        assert read_until(s, b"\r\n").startswith(b"ERROR")
        s.sendall(b"AUTH ANONYMOUS 7472616365\r\nBEGIN\r\n")
        assert read_until(s, b"\r\n").startswith(b"OK ")
        send_msg(s, call_msg("EchoI", "i", (1,)))
        assert recv_msg(s).body == (1,)


def test_fd_pipelined_with_begin(toy):
    # fds attached to the same write as the handshake belong to the message after BEGIN
    r, w = os.pipe()
    os.write(w, b"early fd")
    os.close(w)
    s = raw_connect(toy.path)
    with s:
        data, fds = serialise_message(call_msg("ReadFd", "h", (r,)), 1)
        s.sendmsg([HANDSHAKE + data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", r))])
        os.close(r)
        rest = read_until(s, b"AGREE_UNIX_FD\r\n").partition(b"AGREE_UNIX_FD\r\n")[2]
        assert recv_msg(s, bytearray(rest)).body == ("early fd",)


@pytest.mark.parametrize(
    "payload",
    [
        b"\0BEGIN\r\n",  # BEGIN before authentication
        b"\0AUTH EXTERNAL " + b"3" * 20000,  # over-long line, no terminator
        b"\0" + b"NOPE\r\n" * 100,  # too many bad commands
    ],
)
def test_bad_handshakes_close_only_that_client(toy, payload):
    s = raw_connect(toy.path)
    with s:
        s.sendall(payload)
        assert is_closed_by_peer(s)
    served(toy)


def test_idle_mid_handshake_does_not_block_others(toy):
    s = raw_connect(toy.path)
    with s:
        s.sendall(b"\0AUTH EXTER")  # and nothing more
        for _ in range(5):
            served(toy)
        s.settimeout(0.05)
        assert not is_closed_by_peer(s)  # still waiting (the deadline is 10 s by default)


def test_handshake_deadline(make_server):
    srv = make_server(sasl_timeout=0.3)
    s = raw_connect(srv.path)
    with s:
        s.sendall(b"\0AUTH EXTERNAL\r\n")
        assert read_until(s, b"\r\n") == b"DATA\r\n"
        assert is_closed_by_peer(s)  # hang guard: the socket timeout is 10 s
    srv.wait_connections(0)


# ------------------------------------------------------------------------------------------
# broken or hostile message streams


def test_half_message_stall_does_not_block_others(toy):
    s = raw_authenticated(toy.path)
    with s:
        data, _ = serialise_message(call_msg("EchoS", "s", ("x" * 100,)), 1)
        s.sendall(data[:40])
        for _ in range(5):
            served(toy)
        s.sendall(data[40:])  # completing it later works
        assert recv_msg(s).body == ("x" * 100,)


def test_half_message_times_out(make_server):
    srv = make_server(message_timeout=0.3)
    s = raw_authenticated(srv.path)
    with s:
        data, _ = serialise_message(call_msg("EchoS", "s", ("abc",)), 1)
        s.sendall(data[:20])
        assert is_closed_by_peer(s)
    served(srv)


def test_idle_authenticated_connection_is_kept(make_server):
    srv = make_server(message_timeout=0.2)
    s = raw_authenticated(srv.path)
    with s:
        s.settimeout(0.5)
        assert not is_closed_by_peer(s)  # no idle timeout between messages (cgproxy)
        s.settimeout(10)
        send_msg(s, call_msg("EchoI", "i", (4,)))
        assert recv_msg(s).body == (4,)


def test_oversized_message_rejected_from_its_header(toy):
    s = raw_authenticated(toy.path)
    with s:
        # announce a 2 MiB body (limit 1 MiB) but send only the 16-byte fixed header
        s.sendall(struct.pack("<cBBBIII", b"l", 1, 0, 1, 2 << 20, 1, 0))
        assert is_closed_by_peer(s)
    served(toy)


def test_large_message_within_limit(toy):
    with connect(toy.address) as c:
        big = "y" * 900_000
        assert c.call(PATH, IFACE, "EchoS", "s", (big,)) == (big,)


def test_too_many_fds(make_server):
    srv = make_server("fds", max_fds_per_message=4)
    before = open_fds()
    r, w = os.pipe()
    s = raw_authenticated(srv.path)
    with s:
        msg = Message(1, path=PATH, interface=IFACE, member="ReadFd", signature="h", body=(r,))
        data, _ = serialise_message(msg, 1)
        s.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("8i", *[r] * 8))])
        assert is_closed_by_peer(s)
    os.close(r)
    os.close(w)
    srv.wait_connections(0)
    assert open_fds() == before  # the server closed all 8 received fds
    served(srv)


def test_fds_without_negotiation(toy):
    r, w = os.pipe()
    s = raw_connect(toy.path)
    with s:
        s.sendall(b"\0AUTH EXTERNAL 30\r\nBEGIN\r\n")
        read_until(s, b"\r\n")
        data, _ = serialise_message(call_msg("ReadFd", "h", (r,)), 1)
        s.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", r))])
        assert is_closed_by_peer(s)
    os.close(r)
    os.close(w)
    served(toy)


@pytest.mark.parametrize(
    "garbage",
    [
        b"\0" * 64,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"l\x01\x00\x01" + b"\xff" * 60,
        bytes(range(256)),
    ],
)
def test_garbage_after_begin(toy, garbage):
    s = raw_authenticated(toy.path)
    with s:
        s.sendall(garbage)
        assert is_closed_by_peer(s)
    served(toy)


def test_client_disconnects_mid_call(toy):
    base = toy.connections()
    for member, sig, body in [("Slow", "i", (200,)), ("Big", "i", (3_000_000,))]:
        s = raw_authenticated(toy.path)
        send_msg(s, call_msg(member, sig, body))
        s.close()
    served(toy)
    toy.wait_connections(base)


def test_client_that_never_reads_replies_is_dropped(make_server):
    srv = make_server(max_output_buffer=256 * 1024)
    s = raw_authenticated(srv.path)
    s.settimeout(10)
    with s:
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            for serial in range(1, 10_000):  # each reply is 100 kB; nothing is read
                send_msg(s, call_msg("Big", "i", (100_000,)), serial)
        served(srv)
    srv.wait_connections(0)


def test_flooding_client_does_not_starve_others(make_server):
    srv = make_server()
    n = 50_000
    flood = b"".join(serialise_message(call_msg("Count"), i)[0] for i in range(1, n + 1))
    s = raw_authenticated(srv.path)
    sender = threading.Thread(target=s.sendall, args=(flood,), daemon=True)
    sender.start()
    deadline = time.monotonic() + 10
    while srv.state.count == 0 and time.monotonic() < deadline:  # hang guard only
        time.sleep(0.001)
    with connect(srv.address) as c:
        (seen,) = c.call(PATH, IFACE, "GetCount")
    assert 0 < seen < n  # served in the middle of the flood, not after it
    sender.join(30)
    s.close()


def test_non_call_messages_are_ignored(toy):
    s = raw_authenticated(toy.path)
    with s:
        for i, msg in enumerate(
            [
                Message(4, path="/a", interface="a.b", member="Sig"),
                Message(2, reply_serial=5, signature="s", body=("x",)),
                Message(3, error_name="a.b.C", reply_serial=5),
            ],
            start=1,
        ):
            send_msg(s, msg, i)
        send_msg(s, call_msg("EchoI", "i", (8,)), 10)
        reply = recv_msg(s)
        assert reply.reply_serial == 10 and reply.body == (8,)


def test_no_reply_flag_over_socket(toy):
    s = raw_authenticated(toy.path)
    with s:
        send_msg(s, call_msg("EchoI", "i", (1,), flags=1), 1)  # no success reply
        send_msg(s, call_msg("Fail", flags=1), 2)  # but errors are sent
        send_msg(s, call_msg("EchoI", "i", (3,)), 3)
        buf = bytearray()
        err = recv_msg(s, buf)
        assert (err.type, err.reply_serial) == (3, 2)
        assert recv_msg(s, buf).reply_serial == 3


# ------------------------------------------------------------------------------------------
# connection limits


def test_per_uid_limit(make_server):
    srv = make_server(max_connections_per_uid=3)
    conns = [connect(srv.address) for _ in range(3)]
    try:
        s = raw_connect(srv.path)
        with s:
            try:
                s.sendall(HANDSHAKE)
            except (BrokenPipeError, ConnectionResetError):
                pass  # closed even before we wrote: refused all the same
            assert is_closed_by_peer(s)
        assert srv.server.refused == 1
        conns.pop().close()
        srv.wait_connections(2)
        served(srv)
    finally:
        for c in conns:
            c.close()


def test_total_limit(make_server):
    srv = make_server(max_connections=2)
    a = raw_connect(srv.path)
    b = raw_connect(srv.path)
    srv.wait_connections(2)
    c = raw_connect(srv.path)
    with a, b, c:
        assert is_closed_by_peer(c)
        a.close()
        srv.wait_connections(1)
        served(srv)


# ------------------------------------------------------------------------------------------
# fds: no leaks, everything CLOEXEC


def test_no_fd_leaks_and_all_cloexec(make_server, tmp_path):
    srv = make_server("leak")
    srv.wait_connections(0)
    before = open_fds()
    keep = []
    for i in range(40):  # connections held open at once
        c = connect(srv.address)
        c.call(PATH, IFACE, "EchoI", "i", (i,))
        keep.append(c)
    srv.wait_connections(40)
    for fd in open_fds() - before:
        try:
            flags = fcntl.fcntl(fd, fcntl.F_GETFD)
        except OSError:
            continue  # the listdir fd itself
        assert flags & fcntl.FD_CLOEXEC, os.readlink(f"/proc/self/fd/{fd}")
    for c in keep:
        c.close()
    f = tmp_path / "f"
    f.write_text("data")
    for i in range(150):  # and many short-lived ones of every kind
        kind = i % 6
        if kind == 0:
            with connect(srv.address) as c, open(f) as fh:
                c.call(PATH, IFACE, "ReadFd", "h", (fh.fileno(),))
                (rfd,) = c.call(PATH, IFACE, "ReturnFd")
                os.close(rfd)
        elif kind == 1:
            s = raw_connect(srv.path)
            s.sendall(b"\0AUTH")
            s.close()
        elif kind == 2:
            s = raw_authenticated(srv.path)
            s.sendall(b"\xff" * 32)
            s.close()
        elif kind == 3:
            with connect(srv.address) as c:
                try:
                    c.call(PATH, IFACE, "Crash")
                except Exception:
                    pass
        elif kind == 4:
            with open(f) as fh:
                s = raw_authenticated(srv.path)
                data, _ = serialise_message(call_msg("Slow", "i", (1,)), 1)
                s.sendmsg(
                    [data],
                    [
                        (
                            socket.SOL_SOCKET,
                            socket.SCM_RIGHTS,
                            struct.pack("2i", fh.fileno(), fh.fileno()),
                        )
                    ],
                )
                s.close()
        else:
            with connect(srv.address) as c:
                c.call(PATH, IFACE, "EchoI", "i", (1,), no_reply=True)
    srv.wait_connections(0)
    assert open_fds() == before


# ------------------------------------------------------------------------------------------
# the socket file


def test_socket_mode_default_and_custom(make_server):
    srv = make_server("a")
    assert stat.S_IMODE(os.stat(srv.path).st_mode) == 0o666
    assert stat.S_ISSOCK(os.stat(srv.path).st_mode)
    srv2 = make_server("b", mode=0o600)
    assert stat.S_IMODE(os.stat(srv2.path).st_mode) == 0o600


def test_stale_socket_replaced_live_one_refused(make_server, tmp_path):
    path = tmp_path / "stale"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.close()  # leaves a socket file nobody listens on
    srv = make_server("stale")
    served(srv)
    with pytest.raises(OSError):
        make_server("stale")  # a live server is not displaced
    served(srv)


def test_non_socket_file_refused(make_server, tmp_path):
    (tmp_path / "file").write_text("not a socket")
    with pytest.raises(FileExistsError):
        make_server("file")
    assert (tmp_path / "file").read_text() == "not a socket"


def test_close_unlinks_and_disconnects(make_server):
    srv = make_server("closing")
    s = raw_authenticated(srv.path)
    with s:
        srv.stop()
        assert not os.path.exists(srv.path)
        assert is_closed_by_peer(s)


def test_close_leaves_a_replacement_socket_alone(make_server, tmp_path):
    srv = make_server("replaced")
    os.unlink(srv.path)
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    other.bind(srv.path)
    with other:
        srv.stop()
        assert os.path.exists(srv.path)


# ------------------------------------------------------------------------------------------
# random bytes after a successful handshake, over the socket


@settings(
    max_examples=examples(40),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.binary(min_size=1, max_size=400))
def test_fuzz_bytes_after_begin(toy, data):
    s = raw_authenticated(toy.path)
    with s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        assert is_closed_by_peer(s)  # the server answers or not, then sees EOF and closes
    served(toy)


def test_accepted_sockets_inherit_passcred(toy):
    with connect(toy.address) as c:
        c.call(PATH, IFACE, "EchoI", "i", (1,))

        async def flags() -> list[int]:
            return [
                conn._sock.getsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED)
                for conn in toy.server._connections
            ]

        assert toy.run(flags()) and all(toy.run(flags()))


# ------------------------------------------------------------------------------------------
# the server's own fds run out


_FD_STARVED_SERVER = r"""
import asyncio, logging, resource, sys
from cgmanager.dbus.objects import Interface, Method
from cgmanager.dbus.server import Server

logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
resource.setrlimit(resource.RLIMIT_NOFILE, (48, 48))
objects = {sys.argv[2]: [Interface(sys.argv[3], methods=[
    Method("EchoI", lambda call: (call.body[0],), [("x", "i")], [("y", "i")])])]}

async def main():
    server = Server(objects)
    await server.start(sys.argv[1])
    print("ready", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def test_accepts_pause_when_the_server_runs_out_of_fds_and_resume(tmp_path):
    """EMFILE on accept pauses accepting (no busy loop on a listener that stays readable);
    once fds are free again, accepting resumes and a new client is served."""
    import subprocess
    import sys

    path = str(tmp_path / "sock")
    proc = subprocess.Popen(
        [sys.executable, "-c", _FD_STARVED_SERVER, path, PATH, IFACE],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline().strip() == "ready"
        clients = [raw_connect(path) for _ in range(60)]  # more than 48 fds can hold
        log = ""
        while "pausing accepts" not in log:  # (a hang here is caught by pytest-timeout)
            line = proc.stderr.readline()
            assert line, "the server ended"
            log += line
        assert "Too many open files" in log
        for s in clients:
            s.close()
        with connect(f"unix:path={path}", timeout=10) as c:
            assert c.call(PATH, IFACE, "EchoI", "i", (7,)) == (7,)
    finally:
        proc.kill()
        proc.wait()
