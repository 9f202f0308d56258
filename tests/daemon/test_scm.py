"""The *Scm methods on the daemon: results match the plain twins, the kernel's credential
rules hold, and clients that abuse the protocol cost the daemon nothing lasting."""

import json
import os
import socket
import sys

import pytest
from kernel.helpers import snapshot, wait_for

from cgmanager import scm
from cgmanager.errors import NotPermitted
from cgmanager.permission import Credentials
from cgmanager.scm_server import Received, ScmServer

pytestmark = pytest.mark.t3

RUNNER = r"""
import json, os, sys
from cgmanager import scm_client
from cgmanager.dbus.client import connect
from cgmanager.dbus.errors import DBusError
addr, member, args, req, second = json.loads(sys.argv[1])
me = (os.getpid(), os.getuid(), os.getgid())
req = tuple(req) if req else me
second = (tuple(me) if second == "me" else tuple(second)) if second else None
c = connect(addr)
try:
    print(json.dumps({"ok": scm_client.call(c, member, tuple(args), req, second)}))
except (DBusError, scm_client.ScmError) as e:
    print(json.dumps({"error": str(e)}))
except OSError as e:
    print(json.dumps({"oserror": e.errno}))
"""


def scm_call(place, member, *args, requestor=None, second=None, user=None):
    cp = place.run(
        [
            sys.executable,
            "-c",
            RUNNER,
            json.dumps([place.daemon.address, member, list(args), requestor, second]),
        ],
        user=user,
    )
    assert cp.returncode == 0, cp.stderr
    return json.loads(cp.stdout)


def test_every_scm_method_matches_its_plain_twin(place):
    assert scm_call(place, "CreateScm", "pids", "s/a") == {"ok": -1}
    assert scm_call(place, "CreateScm", "pids", "s/a") == {"ok": 1}
    assert scm_call(place, "SetValueScm", "pids", "s/a", "pids.max", "7") == {"ok": None}
    assert scm_call(place, "GetValueScm", "pids", "s/a", "pids.max") == {"ok": "7"}
    assert scm_call(place, "ListChildrenScm", "pids", "s") == {"ok": ["a"]}
    assert scm_call(place, "ListChildrenScm", "pids", "s/a") == {"ok": []}
    keys = {k[0]: k for k in scm_call(place, "ListKeysScm", "pids", "s/a")["ok"]}
    assert keys["pids.max"][3] == os.stat(place.path("pids") + "/s/a/pids.max").st_mode
    assert scm_call(place, "ChmodScm", "pids", "s/a", "tasks", 0o640) == {"ok": None}
    assert os.stat(place.path("pids") + "/s/a/tasks").st_mode & 0o777 == 0o640
    sleeper = place.spawn(["sleep", "100"])
    victim = (sleeper.pid, 0, 0)
    assert scm_call(place, "MovePidScm", "pids", "s/a", second=victim) == {"ok": None}
    assert scm_call(place, "GetTasksScm", "pids", "s/a") == {"ok": [sleeper.pid]}
    assert scm_call(place, "GetTasksRecursiveScm", "pids", "s") == {"ok": [sleeper.pid]}
    assert scm_call(place, "GetPidCgroupScm", "pids", second=victim) == {"ok": "s/a"}
    # acting as its own proxy, a client's "absolute" is relative to its own cgroup (0.42 §4.9)
    assert scm_call(place, "GetPidCgroupAbsScm", "pids", second=victim) == {"ok": "/s/a"}
    assert scm_call(place, "MovePidAbsScm", "pids", "/", second=victim) == {"ok": None}
    assert scm_call(place, "GetPidCgroupScm", "pids", second=victim) == {"ok": "/"}
    assert scm_call(place, "MovePidScm", "pids", "s/a", second=victim) == {"ok": None}
    # s holds root's sleeper: it may not be delegated to another user; an empty cgroup may
    assert "error" in scm_call(place, "ChownScm", "pids", "s", second=(os.getpid(), 4242, 4343))
    assert os.stat(place.path("pids") + "/s").st_uid == 0
    scm_call(place, "CreateScm", "pids", "c")
    assert scm_call(place, "ChownScm", "pids", "c", second=(os.getpid(), 4242, 4343)) == {
        "ok": None
    }
    st = os.stat(place.path("pids") + "/c/cgroup.procs")
    assert (st.st_uid, st.st_gid) == (4242, 4343)
    assert scm_call(place, "RemoveOnEmptyScm", "pids", "s/a") == {"ok": None}
    assert os.path.isdir(place.path("pids") + "/s/a")
    sleeper.kill()
    assert wait_for(lambda: not os.path.exists(place.path("pids") + "/s/a"), timeout=15)
    assert scm_call(place, "PruneScm", "pids", "s") == {"ok": None}
    assert scm_call(place, "RemoveScm", "pids", "c", 1) == {"ok": 1}
    assert scm_call(place, "RemoveScm", "pids", "s", 1) == {"ok": -1}
    assert not os.path.exists(place.path("pids") + "/s")


def test_failures_are_reported_over_the_socket_and_change_nothing(place):
    before = snapshot(place.path("pids"))
    assert "error" in scm_call(place, "GetValueScm", "pids", "", "../release_agent")
    assert "error" in scm_call(place, "CreateScm", "pids", "../escape")
    assert "error" in scm_call(place, "SetValueScm", "pids", "", "tasks", "1")
    assert "error" in scm_call(place, "ListKeysScm", "pids", "/")
    assert snapshot(place.path("pids")) == before


def test_an_unprivileged_client_cannot_forge_credentials(place, test_user):
    before = snapshot(place.path("pids"))
    # the kernel refuses to send a credential naming another pid or uid (EPERM)
    assert scm_call(place, "CreateScm", "pids", "f", requestor=[1, 0, 0], user=test_user) == {
        "oserror": 1
    }
    assert scm_call(
        place,
        "CreateScm",
        "pids",
        "f",
        requestor=[os.getpid(), test_user.uid, test_user.gid],
        user=test_user,
    ) == {"oserror": 1}
    sleeper = place.spawn(["sleep", "100"])
    r = scm_call(
        place,
        "MovePidScm",
        "pids",
        "",
        second=[sleeper.pid, test_user.uid, test_user.gid],
        user=test_user,
    )
    assert r == {"oserror": 1}
    assert snapshot(place.path("pids")) == before


def test_an_unprivileged_client_acting_for_itself(place, test_user):
    """Honest credentials work and carry the user's rights, no more."""
    r = scm_call(place, "CreateScm", "pids", "mine", user=test_user)
    assert "error" in r  # the place is root's: the user may not create in it
    scm_call(place, "ChownScm", "pids", "", second=(os.getpid(), test_user.uid, test_user.gid))
    assert scm_call(place, "CreateScm", "pids", "mine", user=test_user) == {"ok": -1}
    assert os.stat(place.path("pids") + "/mine").st_uid == test_user.uid


def test_host_root_speaks_for_another_process(place, test_user):
    """Root may state any pid: the daemon then judges the request as that process's (this is
    what a proxy does).  The user's process gets the user's rights, not root's."""
    usleep = place.spawn(["sleep", "100"], user=test_user)
    r = scm_call(
        place, "CreateScm", "pids", "x", requestor=[usleep.pid, test_user.uid, test_user.gid]
    )
    assert "error" in r and not os.path.exists(place.path("pids") + "/x")


def test_unknown_identities_are_refused():
    srv = ScmServer()
    create = scm.BY_NAME["CreateScm"]
    move = scm.BY_NAME["MovePidScm"]
    chown = scm.BY_NAME["ChownScm"]
    for cred in [Credentials(0, 0, 0), Credentials(5, 65534, 0), Credentials(5, 0, 65534)]:
        with pytest.raises(NotPermitted):
            srv._check_known(Received(cred, None), None, create)
    ok = Received(Credentials(5, 0, 0), None)
    srv._check_known(ok, None, create)
    with pytest.raises(NotPermitted):
        srv._check_known(ok, Received(Credentials(0, 0, 0), None), move)
    with pytest.raises(NotPermitted):
        srv._check_known(ok, Received(Credentials(5, 65534, 0), None), chown)


def _daemon_fds(d) -> int:
    return len(os.listdir(f"/proc/{d.popen.pid}/fd"))


def test_abandoned_handshakes_time_out_and_release_their_fds(start_daemon, place):
    d = start_daemon("--scm-timeout", "0.5")
    from cgmanager.dbus.client import connect

    conn = connect(d.address)
    # a first identifying call: the daemon keeps the peer's /proc directory open for the
    # connection's life, and that fd belongs in the baseline
    conn.call(
        "/org/linuxcontainers/cgmanager",
        "org.linuxcontainers.cgmanager0_0",
        "GetPidCgroup",
        "si",
        ("pids", os.getpid()),
    )
    baseline = _daemon_fds(d)
    kept = []
    for _ in range(10):
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        conn.call(
            "/org/linuxcontainers/cgmanager",
            "org.linuxcontainers.cgmanager0_0",
            "CreateScm",
            "ssh",
            ("pids", "never", b.fileno()),
        )
        b.close()
        kept.append(a)
    assert wait_for(lambda: _daemon_fds(d) == baseline, timeout=10)
    for a in kept:
        a.settimeout(5)
        assert a.recv(16) == scm.KICK  # the kick came, then nothing: the daemon gave up
        a.close()
    assert not os.path.exists(place.path("pids") + "/never")
    conn.close()
    d.stop()


def test_pending_handshakes_are_capped_per_connection(start_daemon):
    d = start_daemon("--scm-timeout", "30")
    from cgmanager.dbus.client import connect
    from cgmanager.dbus.errors import DBusError

    conn = connect(d.address)
    kept, refused = [], 0
    for _ in range(40):
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            conn.call(
                "/org/linuxcontainers/cgmanager",
                "org.linuxcontainers.cgmanager0_0",
                "GetValueScm",
                "sssh",
                ("pids", "", "pids.max", b.fileno()),
            )
        except DBusError as e:
            assert e.name.endswith("LimitExceeded")
            refused += 1
        b.close()
        kept.append(a)
    assert refused == 40 - 32
    # another connection is not affected
    other = connect(d.address)
    other.call(
        "/org/linuxcontainers/cgmanager", "org.linuxcontainers.cgmanager0_0", "Ping", "i", (0,)
    )
    for a in kept:
        a.close()
    other.close()
    conn.close()
    d.stop()


def test_wrong_kinds_of_fd_are_refused(daemon):
    from cgmanager.dbus.client import connect
    from cgmanager.dbus.errors import DBusError

    conn = connect(daemon.address)
    r, w = os.pipe()
    with pytest.raises(DBusError) as e:
        conn.call(
            "/org/linuxcontainers/cgmanager",
            "org.linuxcontainers.cgmanager0_0",
            "CreateScm",
            "ssh",
            ("pids", "x", r),
        )
    assert "datagram" in e.value.message or "socket" in e.value.message
    s1, s2 = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with pytest.raises(DBusError):
        conn.call(
            "/org/linuxcontainers/cgmanager",
            "org.linuxcontainers.cgmanager0_0",
            "CreateScm",
            "ssh",
            ("pids", "x", s2.fileno()),
        )
    for fd in (r, w):
        os.close(fd)
    s1.close(), s2.close()
    conn.call(
        "/org/linuxcontainers/cgmanager", "org.linuxcontainers.cgmanager0_0", "Ping", "i", (0,)
    )
    conn.close()


def test_fds_smuggled_with_a_credential_are_closed(start_daemon, place):
    d = start_daemon()
    from cgmanager.dbus.client import connect

    conn = connect(d.address)
    # a first identifying call: the daemon keeps the peer's /proc directory open for the
    # connection's life, and that fd belongs in the baseline
    conn.call(
        "/org/linuxcontainers/cgmanager",
        "org.linuxcontainers.cgmanager0_0",
        "GetPidCgroup",
        "si",
        ("pids", os.getpid()),
    )
    baseline = _daemon_fds(d)
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    a.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    conn.call(
        "/org/linuxcontainers/cgmanager",
        "org.linuxcontainers.cgmanager0_0",
        "CreateScm",
        "ssh",
        ("pids", "smuggled", b.fileno()),
    )
    b.close()
    a.settimeout(5)
    assert a.recv(16) == scm.KICK
    extra = os.open("/dev/null", os.O_RDONLY)
    a.sendmsg(
        [b"p"],
        [
            (socket.SOL_SOCKET, socket.SCM_RIGHTS, extra.to_bytes(4, sys.byteorder)),
            (socket.SOL_SOCKET, socket.SCM_CREDENTIALS, scm.UCRED.pack(os.getpid(), 0, 0)),
        ],
    )
    os.close(extra)
    a.settimeout(1)
    with pytest.raises(TimeoutError):
        a.recv(16)  # no answer: the daemon closed its end (a datagram peer sees no EOF)
    a.close()
    assert wait_for(lambda: _daemon_fds(d) == baseline, timeout=10)
    assert not os.path.exists(place.path("pids") + "/smuggled")
    conn.close()
    d.stop()
