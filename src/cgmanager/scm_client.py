"""Client side of the ``*Scm`` protocol, blocking (see :mod:`cgmanager.scm` for the protocol).

Used by tests and command-line tools; the proxy has an asyncio twin.  Imports stay light: the
CLI may use this.
"""

from __future__ import annotations

import socket
import sys

from . import scm
from .contract import INTERFACE, OBJECT_PATH
from .dbus.client import Connection
from .dbus.errors import DBusError

DEFAULT_TIMEOUT = 5.0
Cred = tuple[int, int, int]


class ScmError(Exception):
    """The byte protocol failed (timeout, short read, server gave up)."""


def _pair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    for s in (a, b):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    return a, b


def _recv(sock: socket.socket, size: int = 65536) -> bytes:
    try:
        return sock.recv(size)
    except TimeoutError:
        raise ScmError("timed out waiting for cgmanager") from None


def send_cred(sock: socket.socket, cred: Cred, pidfd: int | None = None) -> None:
    """One byte with an SCM_CREDENTIALS message: the kernel checks we may state *cred*.
    *pidfd*: our pidfd of the process *cred* names, vouching for it (only to a daemon that
    advertises :data:`scm.PIDFD_PROPERTY`)."""
    anc = [(socket.SOL_SOCKET, socket.SCM_CREDENTIALS, scm.UCRED.pack(*cred))]
    if pidfd is not None:
        anc.append((socket.SOL_SOCKET, socket.SCM_RIGHTS, pidfd.to_bytes(4, sys.byteorder)))
    sock.sendmsg([scm.CRED_BYTE], anc)


def _expect_kick(sock: socket.socket) -> None:
    if _recv(sock, 16) != scm.KICK:
        raise ScmError("protocol error: expected the ready byte")


def _recv_pid(sock: socket.socket) -> int:
    try:
        _, anc, _, _ = sock.recvmsg(16, socket.CMSG_SPACE(scm.UCRED.size))
    except TimeoutError:
        raise ScmError("timed out waiting for a pid") from None
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid: int = scm.UCRED.unpack(data[: scm.UCRED.size])[0]
            return pid
    raise ScmError("protocol error: a pid datagram without credentials")


def call(
    conn: Connection,
    member: str,
    args: tuple[object, ...],
    requestor: Cred,
    second: Cred | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    requestor_pidfd: int | None = None,
) -> object:
    """Call ``member`` (e.g. ``"CreateScm"``) with *args* (without the fd) on behalf of
    *requestor*; *second* is the victim (pid methods) or the target ids (ChownScm).

    Returns what the plain twin would: ``existed`` for Create/Remove (1/-1), a string, a list
    of pids, names or key tuples, or None; raises DBusError or ScmError on failure.
    *requestor_pidfd*: a pidfd of the process *requestor* names, sent with it (only to a
    daemon that advertises :data:`scm.PIDFD_PROPERTY`; see :mod:`cgmanager.scm_server`)."""
    method = scm.BY_NAME[member]
    if (method.second == scm.Second.NONE) != (second is None):
        raise ValueError(f"{member} takes {'no' if second is None else 'a'} second credential")
    mine, theirs = _pair()
    try:
        mine.settimeout(timeout)
        try:
            conn.call(OBJECT_PATH, INTERFACE, member, method.signature, (*args, theirs.fileno()))
        finally:
            theirs.close()
        _expect_kick(mine)
        send_cred(mine, requestor, requestor_pidfd)
        if second is not None:
            _expect_kick(mine)
            send_cred(mine, second)
        return _result(mine, method)
    finally:
        mine.close()


def _result(sock: socket.socket, method: scm.ScmMethod) -> object:
    kind = method.result
    if kind == scm.Result.STATUS:
        status = scm.decode_status(_recv(sock, 16))
        if status == scm.FAILED:
            raise DBusError("org.linuxcontainers.cgmanager.Error.Failed", f"{method.name} failed")
        if method.plain.name in ("Create", "Remove"):
            return 1 if status == scm.EXISTED else -1
        return None
    if kind == scm.Result.STRING:
        value = scm.decode_string(_recv(sock))
        if value is None:
            raise DBusError("org.linuxcontainers.cgmanager.Error.Failed", f"{method.name} failed")
        return value
    n = scm.decode_count(_recv(sock, 16))
    if n < 0:
        raise DBusError("org.linuxcontainers.cgmanager.Error.Failed", f"{method.name} failed")
    if kind == scm.Result.PIDS:
        return [_recv_pid(sock) for _ in range(n)]
    if n == 0:
        return []
    length = scm.decode_length(_recv(sock, 16))
    blob = _recv(sock, length + 1)
    if len(blob) != length:
        raise ScmError("protocol error: short list")
    return scm.decode_names(blob, n) if kind == scm.Result.NAMES else scm.decode_keys(blob, n)
