"""T3: a connection's peer is identified once, and nothing kept between requests goes stale.

``requestor.Peer`` keeps the peer's /proc directory, its id maps and the parse of its cgroups
between requests; these tests change each of those facts under it on the real kernel (move
the process, unshare a user namespace, write its id maps, end it) and check the next request
sees the change.
"""

import os
import subprocess
import sys

import pytest

from cgmanager.errors import NotFound
from cgmanager.hierarchy import discover_host
from cgmanager.permission import Credentials
from cgmanager.requestor import Namespaces, Peer

from .helpers import hpath, tree

pytestmark = pytest.mark.t3

#: waits for a line on stdin, unshares a user namespace, says so, then sleeps
UNSHARER = (
    "import sys, time\n"
    "from cgmanager import _linux\n"
    "sys.stdin.readline()\n"
    "_linux.unshare(_linux.CLONE_NEWUSER)\n"
    "print('unshared', flush=True)\n"
    "time.sleep(60)\n"
)


def peer_of(pid: int) -> Peer:
    pidfd = os.pidfd_open(pid)
    try:
        return Peer(Credentials(pid, 0, 0), discover_host(), Namespaces.of_self(), pidfd)
    finally:
        os.close(pidfd)


def test_a_moved_peer_is_seen_in_its_new_cgroup(cgdir, procs):
    a, b = cgdir("unified"), cgdir("unified")
    t = tree("unified")
    p = procs.spawn(["sleep", "60"], cgroup=a)
    peer = peer_of(p.pid)
    try:
        first = peer.party()
        assert first.cgroups["unified"] == hpath(t, a)
        assert peer.party() is first  # nothing changed: the facts are reused
        with open(os.path.join(b, "cgroup.procs"), "w") as f:
            f.write(str(p.pid))
        assert peer.party().cgroups["unified"] == hpath(t, b)
    finally:
        peer.close()


def test_a_peer_that_exits_is_refused_not_reused(procs):
    p = procs.spawn(["sleep", "60"])
    peer = peer_of(p.pid)
    try:
        assert peer.party().cred.pid == p.pid
        p.kill()
        with pytest.raises(NotFound):
            peer.party()
    finally:
        peer.close()


def test_user_namespace_changes_and_late_id_maps_are_seen(procs):
    p = procs.spawn(
        [sys.executable, "-c", UNSHARER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    peer = peer_of(p.pid)
    try:
        before = peer.party()
        assert before.identity.same_userns and before.identity.uid_map.is_identity()
        p.popen.stdin.write("go\n")
        p.popen.stdin.flush()
        assert p.popen.stdout.readline().strip() == "unshared"
        inside = peer.party()
        assert not inside.identity.same_userns
        assert inside.identity.uid_map.ranges == ()  # not written yet
        # written once, later: the next request must see it (an empty map is never kept)
        with open(f"/proc/{p.pid}/uid_map", "w") as f:
            f.write("0 100000 1")
        with open(f"/proc/{p.pid}/setgroups", "w") as f:
            f.write("deny")
        with open(f"/proc/{p.pid}/gid_map", "w") as f:
            f.write("0 100000 1")
        mapped = peer.party()
        assert mapped.identity.uid_map.to_outside(0) == 100000
        assert mapped.identity.gid_map.to_outside(0) == 100000
        assert peer.party() is mapped  # written maps of a pinned namespace are kept
    finally:
        peer.close()


def test_a_pid_that_is_not_visible_is_refused():
    with pytest.raises(NotFound):
        Peer(Credentials(0, 0, 0), discover_host(), Namespaces.of_self(), None)


def test_one_read_returns_all_of_proc_cgroup_even_past_a_page(cgdir, procs):
    """The premise of ``ProcDir.read(whole=True)``: /proc/<pid>/cgroup is generated in one
    piece, so one read returns all of it — checked with a line longer than a page (the
    cgroup's path is longer than PATH_MAX, so it is reached through directory fds)."""
    from cgmanager.procfs import ProcDir

    top = cgdir("unified")
    names = [f"{i:02d}" + "x" * 240 for i in range(20)]
    fds = [os.open(top, os.O_RDONLY | os.O_DIRECTORY)]
    p = procs.spawn(["sleep", "60"])
    try:
        for name in names:
            os.mkdir(name, dir_fd=fds[-1])
            fds.append(os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fds[-1]))
        procs_fd = os.open("cgroup.procs", os.O_WRONLY, dir_fd=fds[-1])
        os.write(procs_fd, str(p.pid).encode())
        os.close(procs_fd)
        with open(f"/proc/{p.pid}/cgroup") as f:
            full = f.read()
        assert len(full) > 4096  # more than a page
        with ProcDir(p.pid) as d:
            assert d.read("cgroup", whole=True) == full
    finally:
        p.kill()
        for fd, name in zip(reversed(fds[:-1]), reversed(names[: len(fds) - 1]), strict=True):
            os.rmdir(name, dir_fd=fd)
        for fd in fds:
            os.close(fd)
