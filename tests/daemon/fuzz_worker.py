"""The fuzzers' client: one D-Bus connection to the daemon, many calls (JSON lines on stdin,
one JSON answer per line on stdout).

It runs as a placed process (root or the test user) so the daemon judges each request by this
process's own credentials; the test process generates the examples and checks the kernel side.
A connection is made once and kept: a new process per example would cost far more than the
calls.  If the daemon drops the connection, the answer says so and the next call reconnects.

Requests (``op``):

* ``call``: ``iface``, ``member``, ``sig``, ``args``; an ``h`` argument is ``{"fd": kind}`` and
  the worker makes that fd.  With ``kind == "dgram"`` the worker keeps its end of the pair and
  then either runs the Scm protocol honestly and reads the whole result (``scm == "honest"``,
  with ``second`` the victim or target credential) or runs ``steps``, a hostile script, and
  keeps the socket for ``drain``.
* ``drain``: every datagram queued on the kept end (the daemon has finished), then close it.
* ``pid``: this process's pid.
"""

from __future__ import annotations

import json
import os
import select
import socket
import sys

from cgmanager import scm
from cgmanager.dbus.client import connect
from cgmanager.dbus.errors import DBusError

ADDRESS = sys.argv[1]
OBJ = "/org/linuxcontainers/cgmanager"
WAIT = 10.0  # the daemon's own Scm timeout is 5 s
_conn = None
_kept: socket.socket | None = None


def conn():
    global _conn
    if _conn is None:
        _conn = connect(ADDRESS, timeout=30)
    return _conn


def make_fd(kind: str, opened: list) -> tuple[int, socket.socket | None]:
    """An fd of the given kind for an ``h`` argument; returns (fd to pass, end we keep)."""
    if kind == "dgram":
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        mine.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        opened.append(theirs)
        return theirs.fileno(), mine
    if kind in ("stream", "seqpacket"):
        t = socket.SOCK_STREAM if kind == "stream" else socket.SOCK_SEQPACKET
        a, b = socket.socketpair(socket.AF_UNIX, t)
        opened += [a, b]
        return b.fileno(), None
    if kind == "unbound_dgram":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        opened.append(s)
        return s.fileno(), None
    if kind == "inet_dgram":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        opened.append(s)
        return s.fileno(), None
    if kind == "pipe":
        r, w = os.pipe()
        opened += [r, w]
        return r, None
    if kind == "devnull":
        fd = os.open("/dev/null", os.O_RDONLY)
        opened.append(fd)
        return fd, None
    if kind == "dir":
        fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
        opened.append(fd)
        return fd, None
    raise ValueError(kind)


def close_all(opened: list) -> None:
    for o in opened:
        try:
            o.close() if isinstance(o, socket.socket) else os.close(o)
        except OSError:
            pass


def recv(sock: socket.socket, size: int = 1 << 17, timeout: float = WAIT):
    if not select.select([sock], [], [], timeout)[0]:
        raise TimeoutError
    return sock.recvmsg(size, socket.CMSG_SPACE(scm.UCRED.size) * 4)


def wait_kick(sock: socket.socket, timeout: float = WAIT) -> bool:
    try:
        data = recv(sock, 16, timeout)[0]
    except TimeoutError:
        return False
    return data == scm.KICK


def cred(spec) -> tuple[int, int, int]:
    return (os.getpid(), os.getuid(), os.getgid()) if spec == "self" else tuple(spec)


def honest(sock: socket.socket, member: str, second) -> dict:
    """The client side of the protocol as cgproxy runs it; the result as the daemon sent it."""
    method = scm.BY_NAME[member]
    creds = [cred("self")] + ([cred(second)] if method.second != scm.Second.NONE else [])
    for c in creds:
        if not wait_kick(sock):
            return {"timeout": "kick"}
        sock.sendmsg(
            [scm.CRED_BYTE], [(socket.SOL_SOCKET, socket.SCM_CREDENTIALS, scm.UCRED.pack(*c))]
        )
    try:
        first = recv(sock)[0]
        kind = method.result
        if kind == scm.Result.STATUS:
            return {"success": scm.decode_status(first) != scm.FAILED, "value": first.hex()}
        if kind == scm.Result.STRING:
            value = scm.decode_string(first)
            return {"success": value is not None, "value": value}
        n = scm.decode_count(first)
        if n < 0:
            return {"success": False}
        if kind == scm.Result.PIDS:
            for _ in range(n):
                recv(sock, 16)
            return {"success": True, "value": n}
        if n:
            length = scm.decode_length(recv(sock, 16)[0])
            blob = recv(sock)[0]
            if len(blob) != length:
                return {"malformed": "short list"}
        return {"success": True, "value": n}
    except TimeoutError:
        return {"timeout": "result"}
    except ValueError as e:
        return {"malformed": str(e)}


def run_steps(sock: socket.socket, steps: list) -> list:
    """A hostile client side: each step may skip the wait for the kick, send odd payloads,
    several or forged credentials, smuggled fds — or stall, or close.  Returns what happened.
    (A kick that does not come soon means the daemon gave up: the script ends.)"""
    log = []
    for step in steps:
        if step.get("close"):
            sock.close()
            log.append("closed")
            return log
        if step.get("stall"):
            log.append("stalled")
            return log
        if step.get("wait") and not wait_kick(sock, 0.25):
            log.append("no kick")
            return log
        anc, smuggled = [], []
        for c in step.get("creds", []):
            anc.append((socket.SOL_SOCKET, socket.SCM_CREDENTIALS, scm.UCRED.pack(*cred(c))))
        if step.get("rights"):
            smuggled = [os.open("/dev/null", os.O_RDONLY) for _ in range(step["rights"])]
            anc.append(
                (
                    socket.SOL_SOCKET,
                    socket.SCM_RIGHTS,
                    b"".join(fd.to_bytes(4, sys.byteorder) for fd in smuggled),
                )
            )
        payload = bytes.fromhex(step.get("hex", "")) * step.get("repeat", 1)
        try:
            sock.sendmsg([payload], anc)
            log.append(f"sent {len(payload)}")
        except OSError as e:
            log.append(f"errno {e.errno}")
            return log
        finally:
            for fd in smuggled:
                os.close(fd)
    return log


def drain() -> dict:
    global _kept
    got = []
    if _kept is not None and _kept.fileno() >= 0:
        _kept.setblocking(False)
        while True:
            try:
                data, anc, _, _ = _kept.recvmsg(1 << 17, socket.CMSG_SPACE(scm.UCRED.size) * 4)
            except (BlockingIOError, OSError):
                break
            got.append(data.hex())
        _kept.close()
    _kept = None
    return {"datagrams": got}


def call(req: dict) -> dict:
    global _kept, _conn
    opened: list = []
    mine = None
    args = []
    for a in req["args"]:
        if isinstance(a, dict) and "fd" in a:
            fd, keep = make_fd(a["fd"], opened)
            mine = keep or mine
            args.append(fd)
        else:
            args.append(a)
    try:
        try:
            body = conn().call(OBJ, req["iface"], req["member"], req["sig"], tuple(args))
        except DBusError as e:
            if e.name.endswith((".Disconnected", ".NoReply", ".Timeout")):
                if _conn is not None:
                    _conn.close()
                _conn = None
            return {"error": e.name, "message": e.message}
        finally:
            close_all(opened)  # the daemon has its duplicate of each passed fd
        out: dict = {"ok": body}
        if mine is not None:
            if req.get("scm") == "honest":
                mine.settimeout(WAIT)
                out["scm"] = honest(mine, req["member"], req.get("second", "self"))
            elif req.get("steps") is not None:
                out["steps"] = run_steps(mine, req["steps"])
                _kept, mine = mine, None
        return out
    finally:
        if mine is not None:
            mine.close()


def main() -> None:
    for line in sys.stdin:
        req = json.loads(line)
        op = req["op"]
        if op == "call":
            out = call(req)
        elif op == "drain":
            out = drain()
        elif op == "pid":
            out = {"pid": os.getpid()}
        else:
            out = {"bad": op}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
