"""The peer-to-peer D-Bus server: a listening Unix socket, connection limits, shutdown.

No bus daemon: clients connect straight to the daemon's socket (cgmanager 0.42 listened on
``/sys/fs/cgroup/cgmanager/sock``).  Typical use::

    server = Server({"/org/linuxcontainers/cgmanager": [iface]}, limits=Limits())
    await server.start("/sys/fs/cgroup/cgmanager/sock")
    ...
    await server.close()

Identity: each connection's ``SO_PEERCRED`` (pid, uid, gid) and a pidfd (``SO_PEERPIDFD``) are
taken at accept time and handed to every handler; nothing a client says is used as identity.
``SO_PASSCRED`` is set on the listening socket before ``listen()`` so accepted sockets inherit it
(set late, messages already queued would carry (0, 65534, 65534) credentials).
"""

from __future__ import annotations

import _socket
import asyncio
import errno
import logging
import os
import socket
import stat
from collections.abc import Callable, Mapping, Sequence

from ._unix import SO_PASSCRED, SOL_SOCKET, peer_credentials, peer_pidfd
from .connection import Connection
from .dispatch import Dispatcher
from .limits import Limits
from .objects import Interface, PeerCredentials
from .standard import SERVER_UNIQUE_NAME

log = logging.getLogger("cgmanager.dbus")


class Server:
    """Serves the objects in ``objects`` (``{path: [Interface, …]}``) on a Unix socket."""

    def __init__(
        self,
        objects: Mapping[str, Sequence[Interface]],
        *,
        limits: Limits | None = None,
        socket_mode: int = 0o666,
        backlog: int = socket.SOMAXCONN,
    ) -> None:
        self.dispatcher = Dispatcher(objects)
        self.limits = limits or Limits()
        self.socket_mode = socket_mode
        self.guid = os.urandom(16).hex()
        self.path: str | None = None
        self._backlog = backlog
        self._listener: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inode: tuple[int, int] | None = None
        self._connections: set[Connection] = set()
        self._by_name: dict[str, Connection] = {}
        self._per_uid: dict[int, int] = {}
        self._next_id = 1
        self._paused: asyncio.TimerHandle | None = None
        self._closing = False
        #: Connections refused because a limit was hit (for tests and statistics).
        self.refused = 0
        #: called with each accepted connection, before its handshake: the client has just
        #: connected and waits for the server's answer, so it is alive (see daemon/peers.py)
        self.on_connect: Callable[[Connection], None] | None = None

    @property
    def connections(self) -> int:
        return len(self._connections)

    def connection(self, unique_name: str) -> Connection | None:
        """The open connection a handler's ``call.sender`` names (to send it signals later)."""
        return self._by_name.get(unique_name)

    @property
    def closing(self) -> bool:
        """Whether :meth:`close` has begun (connections dropped then are logged quietly)."""
        return self._closing

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ----------------------------------------------------------------------------------------

    async def start(self, path: str) -> None:
        """Listen on ``path`` (replacing a stale socket file; refusing to displace a live server
        or a non-socket file) with mode ``socket_mode``, and start accepting."""
        if self._listener is not None:
            raise RuntimeError("server already started")
        self._loop = asyncio.get_running_loop()
        sock = _listen(path, self.socket_mode, self._backlog)
        st = os.stat(path)
        self._inode = (st.st_dev, st.st_ino)
        self._listener = sock
        self.path = path
        self._loop.add_reader(sock.fileno(), self._on_accept)
        log.info("listening on %s", path)

    async def close(self) -> None:
        """Stop listening, unlink the socket (if it is still ours), close every connection."""
        self._closing = True
        if self._paused is not None:
            self._paused.cancel()
            self._paused = None
        if self._listener is not None:
            if self._loop is not None:
                self._loop.remove_reader(self._listener.fileno())
            self._listener.close()
            self._listener = None
            if self.path is not None and self._inode is not None:
                try:
                    st = os.stat(self.path)
                    if (st.st_dev, st.st_ino) == self._inode:
                        os.unlink(self.path)
                except OSError:
                    pass
        for conn in list(self._connections):
            conn.abort("server shutting down")

    # ----------------------------------------------------------------------------------------

    def _on_accept(self) -> None:
        listener = self._listener
        if listener is None:
            return
        for _ in range(64):  # bounded batch, then let other callbacks run
            try:
                # the C-level accept and socket object: socket.accept() would build a
                # socket.socket, converting family and type to enums, for every connection
                fd, _addr = listener._accept()  # type: ignore[attr-defined]  # accept4, CLOEXEC
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.warning("accept failed (%s); pausing accepts for 100 ms", exc)
                    self._pause_accepting(0.1)
                    return
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EPERM):
                    continue
                log.error("accept failed: %s", exc)
                return
            self._new_connection(_socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0, fd))

    def _pause_accepting(self, delay: float) -> None:
        loop = self._loop
        assert loop is not None and self._listener is not None
        loop.remove_reader(self._listener.fileno())

        def resume() -> None:
            self._paused = None
            if self._listener is not None and not self._closing:
                loop.add_reader(self._listener.fileno(), self._on_accept)

        self._paused = loop.call_later(delay, resume)

    def _new_connection(self, sock: _socket.socket) -> None:
        try:
            sock.setblocking(False)
            pid, uid, gid = peer_credentials(sock)
        except OSError as exc:
            log.warning("cannot read peer credentials: %s", exc)
            sock.close()
            return
        limits = self.limits
        if len(self._connections) >= limits.max_connections:
            self.refused += 1
            log.warning(
                "refusing connection from pid %d uid %d: %d connections open",
                pid,
                uid,
                len(self._connections),
            )
            sock.close()
            return
        if self._per_uid.get(uid, 0) >= limits.max_connections_per_uid:
            self.refused += 1
            log.warning(
                "refusing connection from pid %d uid %d: uid has %d connections",
                pid,
                uid,
                self._per_uid[uid],
            )
            sock.close()
            return
        pidfd = peer_pidfd(sock)
        name = f":1.{self._next_id}"
        self._next_id += 1
        conn = Connection(self, sock, PeerCredentials(pid, uid, gid), pidfd, name)
        self._connections.add(conn)
        self._by_name[name] = conn
        self._per_uid[uid] = self._per_uid.get(uid, 0) + 1
        if self.on_connect is not None:
            self.on_connect(conn)
        conn.start()
        log.debug("accepted %r", conn)

    def forget(self, conn: Connection) -> None:
        """A connection has ended: release its place in the connection limits."""
        if conn in self._connections:
            self._connections.discard(conn)
            self._by_name.pop(conn.unique_name, None)
            uid = conn.peer.uid
            left = self._per_uid.get(uid, 1) - 1
            if left:
                self._per_uid[uid] = left
            else:
                self._per_uid.pop(uid, None)


def _listen(path: str, mode: int, backlog: int) -> socket.socket:
    """Bind a listening socket at ``path`` with ``mode``, atomically replacing a stale one."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None:
        if not stat.S_ISSOCK(st.st_mode):
            raise FileExistsError(errno.EEXIST, "exists and is not a socket", path)
        if _is_live(path):
            raise OSError(errno.EADDRINUSE, "a server is already listening", path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.setsockopt(SOL_SOCKET, SO_PASSCRED, 1)  # before listen: accepted sockets inherit
        sock.setblocking(False)
        directory, base = os.path.split(path)
        tmp = os.path.join(directory, f".{base}.{os.getpid()}.{os.urandom(3).hex()}")
        if len(os.fsencode(tmp)) < 108:
            # bind + chmod under a private name, then rename: the socket never appears at
            # ``path`` with the wrong mode, and a stale file is replaced atomically
            sock.bind(tmp)
            try:
                os.chmod(tmp, mode)
                sock.listen(backlog)
                os.rename(tmp, path)
            except BaseException:
                _unlink_quietly(tmp)
                raise
        else:
            if st is not None:
                _unlink_quietly(path)
            sock.bind(path)
            os.chmod(path, mode)
            sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def _is_live(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.setblocking(False)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except BlockingIOError:  # backlog full: alive but busy
        return True
    except OSError:
        return False
    finally:
        probe.close()
    return True


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


async def serve(
    path: str,
    objects: Mapping[str, Sequence[Interface]],
    *,
    limits: Limits | None = None,
    socket_mode: int = 0o666,
) -> Server:
    """Build a :class:`Server` and start it on ``path``; ``await server.close()`` when done."""
    server = Server(objects, limits=limits, socket_mode=socket_mode)
    await server.start(path)
    return server


__all__ = ["Limits", "Server", "serve", "SERVER_UNIQUE_NAME"]
