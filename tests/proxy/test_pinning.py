"""cgproxy forwards identities pinned by pidfd, end to end (issue 12).

cgproxy checks its client by the connection (SO_PEERCRED, SO_PEERPIDFD) and then *states* the
client's credential to the daemon by pid number: had the client exited and its pid been
given to another process in between, the daemon (pinning the credential with SCM_PIDFD at the
send) would judge the newcomer.  Now the proxy puts its pidfd of the client in the same
datagram, and the daemon accepts the credential only if that pidfd names the very process
SCM_PIDFD names.  Only to a daemon that advertises it (``scm_pidfd`` on
``org.linuxcontainers.cgmanager1``): a 0.42 daemon is never sent an fd.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import sys
import tempfile

import pytest

from cgmanager import scm
from cgmanager.dbus.objects import Interface, Method, MethodCall
from cgmanager.dbus.server import Server
from cgmanager.proxy import upstream as up
from proxy import container as ct
from proxy.helpers import in_box, ok

pytestmark = pytest.mark.t3


# -- a client recycled between the proxy's check and its statement --------------------------


def _start_client() -> int:
    """inside: a client (container root) connected to the proxy, waiting for a line before it
    sends Create('pids', 'ghost') and exits without waiting for the reply → its pid."""
    import subprocess

    code = (
        "import os, sys\n"
        "from cgmanager.dbus.client import connect, method_call\n"
        f"c = connect({ct.PROXY_ADDRESS!r}, timeout=10)\n"
        f"c.call({ct.OBJ!r}, {ct.IFACE!r}, 'Ping', 'i', (0,))\n"
        "sys.stdout.write('ready\\n'); sys.stdout.flush(); sys.stdin.readline()\n"
        f"c.send(method_call({ct.OBJ!r}, {ct.IFACE!r}, 'Create', 'ss', ('pids', 'ghost'),"
        " None, False))\n"
        "os._exit(0)\n"
    )
    p = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert p.stdout.readline() == "ready\n"
    ct.STATE["client"] = p
    return p.pid


def _release_client() -> int:
    p = ct.STATE.pop("client")
    p.stdin.write("go\n")
    p.stdin.flush()
    return p.wait(10)  # sent, gone and reaped: its pid is free


def _recycle(pid: int) -> int:
    """inside: the next process of this pid namespace gets *pid* (we own the namespace)."""
    import subprocess

    with open("/proc/sys/kernel/ns_last_pid", "w") as f:
        f.write(str(pid - 1))
    p = subprocess.Popen(["sleep", "1000"])
    ct.STATE["sleepers"][p.pid] = p
    return p.pid


def _proxy_pid() -> int:
    return ct.STATE["proxy"].pid


def test_a_recycled_client_pid_is_not_judged_as_the_client(box):
    """The client sends Create and exits while the proxy is stopped; its pid goes to a
    newcomer in another cgroup of the container.  Stated by pid alone, the request would be
    judged (and the cgroup made) where the newcomer sits.  Pinned, it is refused."""
    proxy = in_box(box, box(_proxy_pid))
    other = os.path.join(box.dirs["pids"], "other")
    os.mkdir(other)
    os.chown(other, 100000, 100000)
    client = box(_start_client)
    os.kill(proxy, signal.SIGSTOP)
    try:
        assert box(_release_client) == 0
        newcomer = box(_recycle, client)
        assert newcomer == client  # the precondition: the pid really was recycled
        with open(os.path.join(other, "cgroup.procs"), "w") as f:
            f.write(str(in_box(box, newcomer)))
    finally:
        os.kill(proxy, signal.SIGCONT)
    assert box(ct.py_call, "Ping", "i", (0,))[0] == "ok"  # the proxy caught up
    assert ok(box(ct.py_call, "Create", "ss", ("pids", "alive"))) == (-1,)
    assert not os.path.exists(os.path.join(other, "ghost"))
    assert not os.path.exists(os.path.join(box.dirs["pids"], "ghost"))
    log = box(ct.proxy_log)
    assert "Create('pids', 'ghost'): refused (Failed: Create failed: refused" in log, log
    os.rmdir(os.path.join(box.dirs["pids"], "alive"))


# -- the daemon's check of a vouched pidfd ----------------------------------------------------


def _datagram(anc) -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    b.setsockopt(socket.SOL_SOCKET, 76, 1)  # SO_PASSPIDFD
    a.sendmsg([b"p"], anc)
    b.setblocking(False)
    return a, b


def _cred(pid: int) -> tuple[int, int, bytes]:
    return (socket.SOL_SOCKET, socket.SCM_CREDENTIALS, scm.UCRED.pack(pid, 0, 0))


def _rights(*fds: int) -> tuple[int, int, bytes]:
    return (
        socket.SOL_SOCKET,
        socket.SCM_RIGHTS,
        b"".join(f.to_bytes(4, sys.byteorder) for f in fds),
    )


def test_the_daemon_takes_a_vouched_pidfd_only_of_the_very_process(procs):
    import subprocess

    from cgmanager.errors import NotPermitted
    from cgmanager.scm_server import ProtocolAbort, ScmServer, same_process

    srv = ScmServer()
    me = os.pidfd_open(os.getpid())
    other = procs.spawn(["sleep", "1000"])
    child = subprocess.Popen(["sleep", "1000"])
    dead_fd = os.pidfd_open(child.pid)  # a pidfd of a process that then exits
    child.kill(), child.wait()
    null = os.open("/dev/null", os.O_RDONLY)
    base = len(os.listdir("/proc/self/fd"))

    def recv(anc):
        a, b = _datagram(anc)
        try:
            return asyncio.run(srv._recv_cred(b))
        finally:
            a.close(), b.close()

    good = recv([_cred(os.getpid()), _rights(me)])
    assert good.cred.pid == os.getpid() and good.pidfd is not None
    assert same_process(good.pidfd, None, os.getpid())
    good.close()
    for wrong in (other.pidfd, dead_fd):  # a pidfd of another process, or of one gone
        got = recv([_cred(os.getpid()), _rights(wrong)])
        assert got.mismatch and got.pidfd is None
        with pytest.raises(NotPermitted):
            srv._check_known(got, None, scm.BY_NAME["CreateScm"])
    for bad in ([_rights(null)], [_rights(me, me)]):  # not a pidfd; two fds
        with pytest.raises(ProtocolAbort):
            recv([_cred(os.getpid()), *bad])
    assert len(os.listdir("/proc/self/fd")) == base  # every received fd closed
    plain = recv([_cred(os.getpid())])  # a 0.42 sender: unchanged
    assert plain.pidfd is not None
    plain.close()
    for fd in (me, dead_fd, null):
        os.close(fd)


# -- wire compatibility: a daemon that does not advertise is never sent an fd -------------


def test_our_proxy_sends_no_fd_to_a_daemon_that_does_not_advertise():
    """A stand-in for 0.42: the 0_0 interface only (no cgmanager1, no scm_pidfd).  The proxy's
    CreateScm carries exactly one credential and no fd; against our daemon's interface (the
    property present), the pidfd goes along."""

    async def run(advertise: bool) -> list[list[tuple[int, int]]]:
        seen: list[list[tuple[int, int]]] = []

        tasks: list[asyncio.Future[None]] = []

        def handler(call: MethodCall) -> tuple:
            """As a daemon does: answer the call at once, then run the fd protocol."""
            *_, fd = call.body
            sock = socket.socket(fileno=call.take_fd(fd))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            sock.send(scm.KICK)

            def read() -> None:
                sock.settimeout(10)
                _, anc, _, _ = sock.recvmsg(16, 256, socket.MSG_CMSG_CLOEXEC)
                seen.append([(lvl, kind) for lvl, kind, _ in anc])
                for _lvl, kind, data in anc:
                    if kind == socket.SCM_RIGHTS:
                        for i in range(0, len(data), 4):
                            os.close(int.from_bytes(data[i : i + 4], sys.byteorder))
                sock.send(scm.OK)
                sock.close()

            tasks.append(asyncio.ensure_future(asyncio.to_thread(read)))
            return ()

        spec = scm.BY_NAME["CreateScm"]
        ifaces = [Interface(ct.IFACE, [Method("CreateScm", handler, spec.in_args, ())])]
        if advertise:
            from cgmanager.dbus.objects import Property

            iface, name = scm.PIDFD_PROPERTY
            ifaces.append(Interface(iface, (), [Property(name, "b", lambda call: True)]))
        d = tempfile.mkdtemp()
        server = Server({ct.OBJ: ifaces})
        await server.start(f"{d}/sock")
        u = up.Upstream(f"unix:path={d}/sock")
        pidfd = os.pidfd_open(os.getpid())
        try:
            res = await u.call(
                "CreateScm", ("pids", "x"), (os.getpid(), os.getuid(), os.getgid()), None, pidfd
            )
            assert res == -1
            await asyncio.gather(*tasks)
        finally:
            os.close(pidfd)
            u.close()
            await server.close()
            shutil.rmtree(d, ignore_errors=True)
        return seen

    creds = (socket.SOL_SOCKET, socket.SCM_CREDENTIALS)
    rights = (socket.SOL_SOCKET, socket.SCM_RIGHTS)
    assert asyncio.run(run(False)) == [[creds]]
    assert asyncio.run(run(True)) == [[creds, rights]]
