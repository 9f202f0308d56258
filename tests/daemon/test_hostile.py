"""Hostile cases from the threat model that need a live daemon (the start of issue 7's suite)."""

import os
import signal
import socket
import subprocess
import sys

import pytest
from kernel.helpers import snapshot, wait_for

pytestmark = pytest.mark.t3
O_CLOEXEC = 0o2000000


def fd_flags(pid: int) -> dict[int, int]:
    flags = {}
    for fd in os.listdir(f"/proc/{pid}/fdinfo"):
        try:
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                for line in f:
                    if line.startswith("flags:"):
                        flags[int(fd)] = int(line.split()[1], 8)
        except FileNotFoundError:
            continue
    return flags


def test_every_daemon_fd_is_cloexec(start_daemon, place):
    """CVE-2024-21626 class: no fd of the daemon may survive an exec (connections, pidfds,
    cgroup directory fds, the Scm sockets, epoll, the reaper's watches)."""
    d = start_daemon()
    from dataclasses import replace

    p = replace(place, daemon=d)
    from cgmanager.dbus.client import connect

    conns = [connect(d.address) for _ in range(3)]
    for c in conns:
        c.call("/org/linuxcontainers/cgmanager", "org.linuxcontainers.cgmanager0_0", "Ping", "i", (0,))
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)  # a pending Scm request
    conns[0].call("/org/linuxcontainers/cgmanager", "org.linuxcontainers.cgmanager0_0", "CreateScm",
                  "ssh", ("pids", "x", b.fileno()))
    b.close()
    assert p.py("Create", "ss", "unified", "w").returncode == 0
    sleeper = p.spawn(["sleep", "100"])
    assert p.py("MovePid", "ssi", "unified", "w", sleeper.pid).returncode == 0
    assert p.py("RemoveOnEmpty", "ss", "unified", "w").returncode == 0  # a cgroup.events watch
    flags = fd_flags(d.popen.pid)
    leaking = {fd: oct(f) for fd, f in flags.items() if fd > 2 and not f & O_CLOEXEC}
    assert leaking == {}
    assert len(flags) > 10  # the connections, pidfds and watches above are really there
    a.close()
    for c in conns:
        c.close()
    d.stop()


def test_a_client_that_exits_before_the_check_is_refused(start_daemon, place):
    """CVE-2021-3560 class: the requestor is gone when its request is examined.  Its identity
    came with the connection (SO_PEERCRED, pinned by a pidfd): the request fails closed and
    changes nothing, rather than being judged as whoever has that pid now."""
    d = start_daemon()
    before = snapshot(place.path("pids"))
    code = (
        "import os, sys\n"
        "from cgmanager.dbus.client import connect, method_call\n"
        f"c = connect({d.address!r})\n"
        "c.call('/org/linuxcontainers/cgmanager','org.linuxcontainers.cgmanager0_0','Ping','i',(0,))\n"
        "sys.stdout.write('ready\\n'); sys.stdout.flush(); sys.stdin.readline()\n"
        "c.send(method_call('/org/linuxcontainers/cgmanager','org.linuxcontainers.cgmanager0_0',"
        "'Create','ss',('pids','ghost'),None,False))\n"
        "os._exit(0)\n"
    )
    client = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, preexec_fn=place.preexec())
    assert client.stdout.readline() == "ready\n"
    pidfd = os.pidfd_open(d.popen.pid)
    signal.pidfd_send_signal(pidfd, signal.SIGSTOP)  # the daemon cannot look yet
    try:
        client.stdin.write("go\n")
        client.stdin.flush()
        assert client.wait(timeout=10) == 0  # sent, and gone
    finally:
        signal.pidfd_send_signal(pidfd, signal.SIGCONT)
        os.close(pidfd)
    assert wait_for(lambda: "Create('pids', 'ghost'): refused" in d.log(), timeout=10), d.log()
    assert "process" in d.log().split("Create('pids', 'ghost'): refused")[1].splitlines()[0]
    assert snapshot(place.path("pids")) == before
    assert place.py("Ping", "i", 0).returncode == 0  # and everyone else is still served
    d.stop()
