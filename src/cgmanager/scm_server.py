"""Server side of the ``*Scm`` protocol: one asyncio task per request.

The D-Bus method returns at once (0.42 clients do not wait for the reply); the task then runs
the byte protocol on the passed socket.  Credentials are taken only from ``SCM_CREDENTIALS``
(the kernel checked and translated them).  ``SO_PASSPIDFD`` is also set where the kernel has it
(6.5+): each credential then arrives with ``SCM_PIDFD``, a pidfd of exactly the process the
credential names, so a pid recycled after the sender stated it cannot be mistaken for it.

A sender that re-states someone else's credential (cgproxy, for its client) may put, in the
same datagram, its own pidfd of that process (``SCM_RIGHTS``, one fd): the credential is then
accepted only if that pidfd names the very process the kernel's ``SCM_PIDFD`` names (equal
pidfs inodes; without pidfs or without ``SCM_PIDFD``, the same pid number with the vouched
process still alive), and without ``SCM_PIDFD`` the vouched pidfd pins the credential.  So
the sender's own check of its client and the daemon's are about one process, whatever
happens to the pid number between them.  The daemon advertises this (:data:`scm.PIDFD_PROPERTY`);
0.42 senders never send an fd, and a daemon that does not advertise is never sent one.

Every wait is bounded (``timeout``); pending requests are capped per connection and in total,
so clients that never finish a handshake cannot pin the daemon's fds.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from . import kerneltext, scm
from .errors import CgmError, InvalidArgument, LimitExceeded, NotPermitted
from .permission import Credentials
from .procfs import overflow_id

log = logging.getLogger(__name__)

SO_PASSPIDFD = 76
SCM_PIDFD = 4
DEFAULT_TIMEOUT = 5.0
MAX_PENDING = 1024
MAX_PENDING_PER_CONNECTION = 32
#: room for the credential, SCM_PIDFD and the sender's pidfd — and one fd more, so that two
#: are seen (and refused) rather than cut short
_ANC = socket.CMSG_SPACE(scm.UCRED.size) + socket.CMSG_SPACE(4) + socket.CMSG_SPACE(8)


@dataclass
class Received:
    """One credential as the kernel delivered it, with a pidfd of that process if available."""

    cred: Credentials
    pidfd: int | None
    #: SCM_PIDFD carried a negative errno instead of a pidfd: the kernel could not make one,
    #: because the process was reaped before the daemon received its credential (kernels that
    #: cannot make pidfds of reaped processes); its pid may name another process by now
    gone: bool = False
    #: the sender vouched for another process than the one its credential names (its client
    #: exited, and the pid it stated was given to another process before it stated it)
    mismatch: bool = False

    def close(self) -> None:
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None


class ProtocolAbort(Exception):
    """The client broke the protocol or timed out: close silently, as 0.42 did."""


#: runs the operation: (method, requestor, second) -> the plain twin's reply, or raises CgmError;
#: may return an awaitable (the proxy forwards upstream)
Reply = tuple[Any, ...]
Operation = Callable[[scm.ScmMethod, Received, Received | None], "Reply | Awaitable[Reply]"]


class ScmServer:
    def __init__(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.timeout = timeout
        self._tasks: set[asyncio.Task[None]] = set()
        self._per_conn: dict[str, int] = {}
        self._pending = 0  # requests holding a slot (see start's release)
        self._overflow_uid = overflow_id("overflowuid")
        self._overflow_gid = overflow_id("overflowgid")

    def __len__(self) -> int:
        return len(self._tasks)

    def start(self, connection: str, fd: int, method: scm.ScmMethod, op: Operation) -> None:
        """Take ownership of *fd* and run the protocol in the background."""
        if (
            self._pending >= MAX_PENDING
            or self._per_conn.get(connection, 0) >= MAX_PENDING_PER_CONNECTION
        ):
            os.close(fd)
            raise LimitExceeded("too many Scm requests in progress; finish or close them first")
        try:
            sock = socket.socket(fileno=fd)
        except OSError:
            os.close(fd)
            raise InvalidArgument("sockfd must be a unix datagram socket") from None
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, SO_PASSPIDFD, 1)
            if sock.type != socket.SOCK_DGRAM or sock.family != socket.AF_UNIX:
                raise InvalidArgument("sockfd must be a unix datagram socket")
        except (OSError, CgmError) as e:
            sock.close()
            if isinstance(e, CgmError):
                raise
            raise InvalidArgument(f"cannot use the passed socket: {e}") from None
        self._per_conn[connection] = self._per_conn.get(connection, 0) + 1
        self._pending += 1
        released = False

        def release() -> None:
            """Free the request's slot — as soon as its result is sent, not when the task's
            done-callbacks run a loop iteration later: a client (cgproxy) that got the result
            may already have sent its next request, which must find the slot free."""
            nonlocal released
            if released:
                return
            released = True
            self._pending -= 1
            left = self._per_conn.get(connection, 1) - 1
            if left:
                self._per_conn[connection] = left
            else:
                self._per_conn.pop(connection, None)

        task = asyncio.get_running_loop().create_task(self._run(sock, method, op, release))
        self._tasks.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._tasks.discard(t)
            release()  # (a task cancelled before it ran never reached its own release)

        task.add_done_callback(done)

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- one request --------------------------------------------------------------------------

    async def _run(
        self, sock: socket.socket, method: scm.ScmMethod, op: Operation, release: Callable[[], None]
    ) -> None:
        got: list[Received] = []
        try:
            sock.send(scm.KICK)
            r = await self._recv_cred(sock)
            got.append(r)
            second = None
            if method.second != scm.Second.NONE:
                sock.send(scm.KICK)
                second = await self._recv_cred(sock)
                got.append(second)
            try:
                self._check_known(r, second, method)
                reply = op(method, r, second)
                if inspect.isawaitable(reply):
                    reply = await reply
            except CgmError as e:
                log.info("%s for %s refused: %s", method.name, r.cred, e)
                reply = None
            await self._send_result(sock, method, reply)
        except ProtocolAbort as e:
            log.debug("%s: %s", method.name, e)
        except OSError as e:
            log.debug("%s: socket error %s", method.name, e)
        finally:
            for g in got:
                g.close()
            sock.close()
            release()

    def _check_known(self, r: Received, second: Received | None, method: scm.ScmMethod) -> None:
        """pid 0 (not visible to the daemon) and the overflow ids (unmapped) are "unknown"."""
        if r.gone or (second is not None and second.gone):
            raise NotPermitted("the process named in a credential has exited")
        if r.mismatch or (second is not None and second.mismatch):
            raise NotPermitted(
                "the process the sender vouched for is not the one its credential names"
                " (it exited, and its pid was given to another process)"
            )
        if r.cred.pid <= 0 or r.cred.uid == self._overflow_uid or r.cred.gid == self._overflow_gid:
            raise NotPermitted(
                "the requestor is unknown to the daemon (invisible pid or unmapped id)"
            )
        if second is None:
            return
        if method.second == scm.Second.PID and second.cred.pid <= 0:
            raise NotPermitted("the victim is not visible to the daemon")
        if method.second == scm.Second.IDS and (
            second.cred.uid == self._overflow_uid or second.cred.gid == self._overflow_gid
        ):
            raise NotPermitted("the target uid/gid is not mapped on the host")

    async def _wait(self, sock: socket.socket, write: bool = False) -> None:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        add, remove = (
            (loop.add_writer, loop.remove_writer)
            if write
            else (loop.add_reader, loop.remove_reader)
        )

        def ready() -> None:
            if not fut.done():
                fut.set_result(None)

        add(sock.fileno(), ready)
        try:
            await asyncio.wait_for(fut, self.timeout)
        except TimeoutError:
            raise ProtocolAbort("timed out") from None
        finally:
            remove(sock.fileno())

    async def _recv_cred(self, sock: socket.socket) -> Received:
        while True:
            try:
                data, anc, flags, _ = sock.recvmsg(16, _ANC, socket.MSG_CMSG_CLOEXEC)
                break
            except BlockingIOError:
                await self._wait(sock)
        cred, pidfd, extra = None, None, 0
        rights: list[int] = []
        for level, kind, payload in anc:
            if (
                level == socket.SOL_SOCKET
                and kind == socket.SCM_CREDENTIALS
                and len(payload) == scm.UCRED.size
                and cred is None
            ):
                cred = Credentials(*scm.UCRED.unpack(payload))
            elif (
                level == socket.SOL_SOCKET
                and kind == SCM_PIDFD
                and len(payload) == 4
                and pidfd is None
            ):
                pidfd = int.from_bytes(payload, sys.byteorder, signed=True)
            else:
                extra += 1
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    rights += [
                        int.from_bytes(payload[i : i + 4], sys.byteorder)
                        for i in range(0, len(payload) - len(payload) % 4, 4)
                    ]
        vouched = rights[0] if len(rights) == 1 and extra == 1 else None
        try:
            if cred is None or (extra and vouched is None) or not data or flags & socket.MSG_CTRUNC:
                raise ProtocolAbort("expected one datagram with exactly one credential")
            if pidfd is not None and pidfd < 0:
                return Received(cred, None, gone=True)
            if vouched is not None:
                if not is_pidfd(vouched):
                    raise ProtocolAbort("an fd with the credential that is not a pidfd")
                if not same_process(vouched, pidfd, cred.pid):
                    if pidfd is not None:
                        os.close(pidfd)
                    return Received(cred, None, mismatch=True)
                if pidfd is None:  # no SCM_PIDFD here: the sender's pidfd pins it
                    pidfd, vouched = vouched, None
            return Received(cred, pidfd)
        except ProtocolAbort:
            if pidfd is not None and pidfd >= 0:
                os.close(pidfd)
            raise
        finally:
            for fd in rights:
                if fd != pidfd:
                    os.close(fd)

    async def _send(
        self, sock: socket.socket, data: bytes, anc: list[tuple[int, int, bytes]] | None = None
    ) -> None:
        while True:
            try:
                sock.sendmsg([data], anc or [])
                return
            except BlockingIOError:
                await self._wait(sock, write=True)

    async def _send_result(
        self, sock: socket.socket, method: scm.ScmMethod, reply: Reply | None
    ) -> None:
        kind = method.result
        if kind == scm.Result.STATUS:
            await self._send(sock, scm.encode_status(method, reply))
        elif kind == scm.Result.STRING:
            await self._send(sock, scm.encode_string(None if reply is None else reply[0]))
        elif kind == scm.Result.NAMES:
            for d in scm.encode_names(None if reply is None else reply[0]):
                await self._send(sock, d)
        elif kind == scm.Result.KEYS:
            for d in scm.encode_keys(None if reply is None else reply[0]):
                await self._send(sock, d)
        else:
            await self._send_pids(sock, None if reply is None else reply[0])

    async def _send_pids(self, sock: socket.socket, pids: list[int] | None) -> None:
        """The count, then one datagram per pid carrying it as a credential, so the kernel
        translates it into the receiver's pid namespace (0 when not visible there).  A pid that
        exited meanwhile is replaced by the first one sent (0.42's rule, keeping the count)."""
        if pids is None:
            await self._send(sock, scm.encode_count(-1))
            return
        await self._send(sock, scm.encode_count(len(pids)))
        first: int | None = None
        for pid in pids:
            for candidate in (pid, first):
                if candidate is None:
                    raise ProtocolAbort("every listed process exited")
                try:
                    cmsg = [
                        (socket.SOL_SOCKET, socket.SCM_CREDENTIALS, scm.UCRED.pack(candidate, 0, 0))
                    ]
                    await self._send(sock, scm.CRED_BYTE, cmsg)
                    first = candidate if first is None else first
                    break
                except ProcessLookupError:
                    continue


# -- a pidfd vouched for by the sender ---------------------------------------------------------

_pidfs: bool | None = None


def _has_pidfs() -> bool:
    """Whether pidfds have one inode per process (pidfs, Linux 6.9+): then two pidfds name the
    same process exactly when their inodes are equal.  Before, all share one anonymous inode."""
    global _pidfs
    if _pidfs is None:
        fds = []
        try:
            fds = [os.pidfd_open(os.getpid()), os.pidfd_open(1)]
            a, b = (os.fstat(fd) for fd in fds)
            _pidfs = (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino) or os.getpid() == 1
        except OSError:
            _pidfs = False
        finally:
            for fd in fds:
                os.close(fd)
    return _pidfs


def _fdinfo_pid(fd: int) -> int:
    """The pid (in our pid namespace) a pidfd names; -1 once it has been reaped."""
    with open(f"/proc/self/fdinfo/{fd}", "rb") as f:
        return kerneltext.signed(kerneltext.status(kerneltext.decode(f.read()))["Pid"], "Pid")


def is_pidfd(fd: int) -> bool:
    """Whether *fd* is a pidfd (of a live process or not)."""
    try:
        signal.pidfd_send_signal(fd, 0)
        return True
    except ProcessLookupError:
        return True
    except OSError:  # EBADF: another kind of fd
        return False


def same_process(vouched: int, pidfd: int | None, pid: int) -> bool:
    """Whether *vouched* (an fd a sender passed) is a pidfd of the process the kernel's
    *pidfd* (SCM_PIDFD, or None) names — the process credential pid *pid* named when sent.

    With pidfs: equal inodes.  Otherwise: the same pid number, and the vouched process still
    alive after it was read — two live processes never share a pid, and the sender held its
    pidfd before it sent the credential, so a process that had that pid at the send and is
    alive now is the same one."""
    try:
        signal.pidfd_send_signal(vouched, 0)  # a pidfd (EBADF otherwise), of a live process
        if pidfd is not None and _has_pidfs():
            a, b = os.fstat(vouched), os.fstat(pidfd)
            return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
        if _fdinfo_pid(vouched) != pid or pid <= 0:
            return False
        if pidfd is not None and _fdinfo_pid(pidfd) != pid:
            return False
        signal.pidfd_send_signal(vouched, 0)
        return True
    except (OSError, KeyError, ValueError):
        return False
