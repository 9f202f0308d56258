"""Unix-socket helpers shared by the server and the clients: fds in ancillary data.

Uses ``_socket`` (the C module) rather than :mod:`socket`, whose import pulls in ``selectors`` and
``enum`` (~10 ms here) — the blocking client is on the CLI's start-up path.
"""

from __future__ import annotations

import _socket

# posix, not os: os costs ~1 ms to import and cgm starts once per shell command
import posix

TYPE_CHECKING = False  # not typing's: importing typing costs the CLI's start-up (mypy knows it)
if TYPE_CHECKING:
    import struct
    from _socket import socket
    from collections import deque
    from collections.abc import Iterable
    from typing import Any
else:  # the same objects: struct.py only re-exports _struct, and loading it costs cgm's start
    import _struct as struct

SOL_SOCKET: int = _socket.SOL_SOCKET
SCM_RIGHTS: int = _socket.SCM_RIGHTS
SCM_CREDENTIALS: int = _socket.SCM_CREDENTIALS
MSG_CMSG_CLOEXEC: int = _socket.MSG_CMSG_CLOEXEC
MSG_CTRUNC: int = _socket.MSG_CTRUNC
SO_PEERCRED: int = _socket.SO_PEERCRED
SO_PASSCRED: int = _socket.SO_PASSCRED
#: ``SO_PEERPIDFD`` (Linux 6.5); Python has no constant for it.
SO_PEERPIDFD = 77
#: The kernel's SCM_MAX_FD: at most this many fds travel with one sendmsg().
SCM_MAX_FD = 253
#: Room for one full SCM_RIGHTS message plus the SCM_CREDENTIALS that SO_PASSCRED adds.
ANCBUF_SIZE: int = _socket.CMSG_SPACE(SCM_MAX_FD * 4) + _socket.CMSG_SPACE(12)

_PEERCRED = struct.Struct("iII")


def fds_from_ancdata(ancdata: list[tuple[int, int, bytes]]) -> list[int]:
    """The fds carried in ``recvmsg`` ancillary data (SCM_CREDENTIALS and others are ignored)."""
    fds: list[int] = []
    for level, ctype, data in ancdata:
        if level == SOL_SOCKET and ctype == SCM_RIGHTS:
            n = len(data) // 4
            fds.extend(struct.unpack(f"{n}i", data[: n * 4]))
    return fds


def rights(fds: list[int]) -> list[tuple[int, int, bytes]]:
    """Ancillary data sending ``fds`` with ``sendmsg``."""
    return [(SOL_SOCKET, SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))]


def close_fds(fds: Iterable[int]) -> None:
    """Close every fd in ``fds``, ignoring errors."""
    for fd in fds:
        try:
            posix.close(fd)
        except OSError:
            pass


def drain(sock: socket, out: deque[list[Any]]) -> tuple[int, bool]:
    """Send queued ``[memoryview, fds]`` items from the deque *out* until the socket would
    block.  Fds go with the first bytes of their item and are closed once sent.  Returns
    (bytes sent, whether the queue is now empty); a send failure raises OSError."""
    sent = 0
    while out:
        item = out[0]
        view, fds = item
        try:
            n = sock.sendmsg([view], rights(fds)) if fds else sock.send(view)
        except (BlockingIOError, InterruptedError):
            return sent, False
        if n and fds:
            close_fds(fds)
            item[1] = []
        sent += n
        if n < len(view):
            item[0] = view[n:]
            return sent, False
        out.popleft()
    return sent, True


def peer_credentials(sock: socket) -> tuple[int, int, int]:
    """``SO_PEERCRED`` of a connected Unix socket: (pid, uid, gid)."""
    return _PEERCRED.unpack(sock.getsockopt(SOL_SOCKET, SO_PEERCRED, _PEERCRED.size))


def peer_pidfd(sock: socket) -> int | None:
    """A pidfd for the peer via ``SO_PEERPIDFD`` (CLOEXEC), or None if the kernel cannot."""
    try:
        fd = sock.getsockopt(SOL_SOCKET, SO_PEERPIDFD)
    except OSError:
        return None
    return fd if fd >= 0 else None
