"""Hostile cases from the threat model that need a live daemon (the start of issue 7's suite)."""

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time

import pytest
from kernel.helpers import snapshot, wait_for
from support.ns import run_in_ns

from .hostile_helpers import FORBIDDEN_KEYS, O_CLOEXEC, cgroups_of, fd_flags, kernel_state
from .replies import ok

pytestmark = pytest.mark.t3


def test_every_daemon_fd_is_cloexec(start_daemon, place):
    """CVE-2024-21626 class: no fd of the daemon may survive an exec (connections, pidfds,
    cgroup directory fds, the Scm sockets, epoll, the reaper's watches)."""
    d = start_daemon()
    from dataclasses import replace

    p = replace(place, daemon=d)
    from cgmanager.dbus.client import connect

    conns = [connect(d.address) for _ in range(3)]
    for c in conns:
        c.call(
            "/org/linuxcontainers/cgmanager", "org.linuxcontainers.cgmanager0_0", "Ping", "i", (0,)
        )
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)  # a pending Scm request
    conns[0].call(
        "/org/linuxcontainers/cgmanager",
        "org.linuxcontainers.cgmanager0_0",
        "CreateScm",
        "ssh",
        ("pids", "x", b.fileno()),
    )
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


@pytest.mark.parametrize("looks_after", [0.0, 1.5])
def test_a_client_that_exits_before_the_check_is_judged_as_itself_or_refused(
    start_daemon, place, looks_after
):
    """CVE-2021-3560 class: the requestor is gone when its request is examined.  Its identity
    came with the connection (SO_PEERCRED, pinned by a pidfd), never from whoever has that pid
    now: the request is judged by the facts the daemon read about that very process while it
    lived, if they are at most REMEMBERED_FOR (1 s) old — a fire-and-forget client is served,
    as itself — and otherwise fails closed and changes nothing."""
    from cgmanager.daemon.peers import REMEMBERED_FOR

    assert looks_after == 0.0 or looks_after > REMEMBERED_FOR
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
    client = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=place.preexec(),
    )
    assert client.stdout.readline() == "ready\n"
    pidfd = os.pidfd_open(d.popen.pid)
    signal.pidfd_send_signal(pidfd, signal.SIGSTOP)  # the daemon cannot look yet
    try:
        client.stdin.write("go\n")
        client.stdin.flush()
        assert client.wait(timeout=10) == 0  # sent, and gone
        time.sleep(looks_after)  # (the daemon is stopped: its facts grow old)
    finally:
        signal.pidfd_send_signal(pidfd, signal.SIGCONT)
        os.close(pidfd)
    if looks_after:
        assert wait_for(lambda: "Create('pids', 'ghost'): refused" in d.log(), timeout=10)
        assert "process" in d.log().split("Create('pids', 'ghost'): refused")[1].splitlines()[0]
        assert snapshot(place.path("pids")) == before
    else:
        assert wait_for(lambda: "Create('pids', 'ghost'): ok" in d.log(), timeout=10), d.log()
        assert os.path.isdir(os.path.join(place.path("pids"), "ghost"))  # in its own cgroup
        os.rmdir(os.path.join(place.path("pids"), "ghost"))
        assert snapshot(place.path("pids")) == before
    assert place.py("Ping", "i", 0).returncode == 0  # and everyone else is still served
    d.stop()


# -- the kernel side, and a client that tries many things ---------------------------------------

ATTEMPTS = r"""
import json, os, sys
from cgmanager.dbus.client import connect
from cgmanager.dbus.errors import DBusError
O, I = '/org/linuxcontainers/cgmanager', 'org.linuxcontainers.cgmanager0_0'
addr, enter, attempts = json.loads(sys.argv[1])
c = connect(addr)
if enter:  # first move ourselves into a cgroup below where we were placed
    c.call(O, I, 'MovePid', 'ssi', (enter[0], enter[1], os.getpid()))
out = []
for method, sig, args in attempts:
    args = [os.getpid() if a == 'SELF' else a for a in args]
    try:
        out.append(['ok', repr(c.call(O, I, method, sig, tuple(args)))])
    except DBusError as e:
        out.append([e.name, e.message])
print(json.dumps(out))
"""


def attempt(place, attempts, user=None, enter=None) -> list[list[str]]:
    """Run each (method, signature, args) in one client placed like the others → one
    [outcome, message] per attempt ("ok" or the D-Bus error name)."""
    cp = place.run(
        [sys.executable, "-c", ATTEMPTS, json.dumps([place.daemon.address, enter, attempts])],
        user=user,
    )
    assert cp.returncode == 0, cp.stderr
    return json.loads(cp.stdout)


def all_refused(attempts, results, kind=None) -> None:
    bad = [
        (a, r)
        for a, r in zip(attempts, results, strict=True)
        if not r[0].startswith(ERR) or (kind and r[0] != ERR + kind)
    ]
    assert bad == [], bad


ERR = "org.linuxcontainers.cgmanager.Error."


# -- as an unprivileged host user ----------------------------------------------------------------


@pytest.fixture
def delegated(place, test_user):
    """The place's pids cgroup X holds d (handed to the user, as a delegation would) and d2
    (also the user's: a sibling whose name extends d's, reachable by no spelling from d)."""
    for name in ("d", "d2"):
        ok(place.py("Create", "ss", "pids", name))
        ok(place.py("Chown", "ssii", "pids", name, test_user.uid, test_user.gid))
    return place


def test_user_path_spellings_that_escape_change_nothing(delegated, test_user):
    """CVE-2014-1425, CVE-2015-1342, 0.42's 9c41660: from X/d the user reaches nothing of X/d2,
    whatever the spelling, though it owns d2 (only the subtree bound stands in the way)."""
    place = delegated
    x = place.hp("pids")
    before = kernel_state(place.path("pids"))
    attempts = []
    for spelling in (
        f"{x}/d2",
        f"/{x}/d2",
        f"{x}//d2",
        f"{x}/d2/",
        f"{x}/d/../d2",
        f"{x}/d2/.",
        x,
        "/",
        "//",
    ):
        attempts += [
            ["GetValue", "sss", ["pids", spelling, "pids.max"]],
            ["SetValue", "ssss", ["pids", spelling, "pids.max", "1"]],
            ["ListChildren", "ss", ["pids", spelling]],
            ["ListKeys", "ss", ["pids", spelling]],
            ["GetTasks", "ss", ["pids", spelling]],
        ]
    for spelling in ("..", "../d2", "..//d2", "/../d2", "x/../../d2", ".", "./x", "d2\n", "\x01"):
        attempts += [
            ["Create", "ss", ["pids", spelling]],
            ["Remove", "ssi", ["pids", spelling, 1]],
            ["Chmod", "sssi", ["pids", spelling, "", 0o777]],
            ["MovePid", "ssi", ["pids", spelling, "SELF"]],
            ["RemoveOnEmpty", "ss", ["pids", spelling]],
            ["Prune", "ss", ["pids", spelling]],
        ]
    # names of kernel files are never cgroup names, in any method
    for name in (
        "tasks",
        "cgroup.procs",
        "notify_on_release",
        "release_agent",
        "cgroup.clone_children",
        "pids.max",
        "cgroup.kill",
    ):
        attempts += [["Create", "ss", ["pids", name]], ["Remove", "ssi", ["pids", name, 0]]]
    attempts += [
        ["Chown", "ssii", ["pids", "", test_user.uid, test_user.gid]],
        ["Chown", "ssii", ["pids", "", 0, 0]],
    ]
    results = attempt(place, attempts, user=test_user, enter=["pids", "d"])
    all_refused(attempts, results)
    by_kind = {r[0].removeprefix(ERR) for r in results}
    assert by_kind <= {"NotFound", "InvalidArgument", "NotPermitted"}, by_kind
    assert kernel_state(place.path("pids")) == before  # the client itself has exited
    # ... and the same requests from X/d2 itself reach d2 (the refusals above were the bound)
    assert (
        attempt(
            place,
            [["GetValue", "sss", ["pids", f"{x}/d2", "pids.max"]]],
            user=test_user,
            enter=["pids", "d2"],
        )[0][0]
        == "ok"
    )


def test_user_keys_outside_the_allowlist_change_nothing(delegated, test_user):
    """§15.4.1 and CVE-2022-0492: the user owns every file of d/own — notify_on_release and
    cgroup.clone_children included — yet SetValue writes none of them, nor tasks/cgroup.procs
    (which would move root's process past MovePid's checks), nor anything outside by traversal."""
    place = delegated
    ok(place.py("Create", "ss", "pids", "d/own", user=test_user))
    own = place.path("pids") + "/d/own"
    assert os.stat(f"{own}/notify_on_release").st_uid == test_user.uid  # the file would allow it
    root_proc = place.spawn(["sleep", "100"])
    where = cgroups_of(root_proc.pid)
    before = kernel_state(place.path("pids"))
    attempts = []
    for key in FORBIDDEN_KEYS:
        for value in ("1", str(root_proc.pid), "/tmp/pwn"):
            attempts.append(["SetValue", "ssss", ["pids", "d/own", key, value]])
        attempts.append(
            ["Chmod", "sssi", ["pids", "d/own", key, 0o777]]
            if "/" in key or key in (".", "..")
            else ["GetValue", "sss", ["pids", "d/own", "../" + key]]
        )
    results = attempt(place, attempts, user=test_user)
    all_refused(attempts, results)
    assert kernel_state(place.path("pids")) == before
    assert cgroups_of(root_proc.pid) == where
    # a key of the allowlist on the same cgroup works: the refusals above were the allowlist
    assert (
        attempt(place, [["SetValue", "ssss", ["pids", "d/own", "pids.max", "5"]]], user=test_user)[
            0
        ][0]
        == "ok"
    )


@pytest.fixture
def no_cpus(place, test_user):
    """X/nocpus in the cpuset hierarchy, the user's, with no cpus: the kernel refuses every move
    into it (ENOSPC).  A safety net: should the daemon ever wrongly agree to move pid 1 or the
    daemon, the kernel still refuses, and nothing of this machine moves."""
    path = place.path("cpuset") + "/nocpus"
    os.mkdir(path)
    with open(f"{path}/cpuset.cpus") as f:
        assert f.read().strip() == ""
    for f in ("", "tasks", "cgroup.procs"):
        os.chown(os.path.join(path, f), test_user.uid, test_user.gid)
    yield path
    os.rmdir(path)


def test_user_cannot_move_pid_1_the_daemon_or_another_users_process(
    place, test_user, make_test_user, no_cpus
):
    """CVE-2015-1344 class.  Refused by the daemon (NotPermitted, not the kernel's ENOSPC),
    with every victim's cgroups unchanged."""
    other = make_test_user()
    others = place.spawn(["sleep", "100"], user=other)
    mine = place.spawn(["sleep", "100"], user=test_user)
    victims = [1, place.daemon.popen.pid, others.pid]
    before = {pid: cgroups_of(pid) for pid in victims}
    state = kernel_state(place.path("cpuset"), place.path("pids"))
    x = place.hp("cpuset")
    attempts = []
    for pid in victims:
        attempts += [
            ["MovePid", "ssi", ["cpuset", "nocpus", pid]],
            ["MovePidAbs", "ssi", ["cpuset", f"{x}/nocpus", pid]],
            ["MovePid", "ssi", ["pids", "", pid]],
        ]
    results = attempt(place, attempts, user=test_user)
    all_refused(attempts, results, "NotPermitted")
    assert {pid: cgroups_of(pid) for pid in victims} == before
    assert kernel_state(place.path("cpuset"), place.path("pids")) == state
    # the user's own process is judged, and refused only by the kernel (no cpus)
    res = attempt(place, [["MovePid", "ssi", ["cpuset", "nocpus", mine.pid]]], user=test_user)
    assert res[0][0] == ERR + "KernelRejected" and "No space left" in res[0][1], res


def test_pids_from_another_pid_namespace_name_nothing(place, test_user, no_cpus):
    """A plain pid means something only in the daemon's pid namespace: from a namespace of its
    own, the user's "1" is its own init, and the daemon must not read it as the host's pid 1."""
    code = ATTEMPTS
    attempts = [
        ["MovePid", "ssi", ["cpuset", "nocpus", 1]],
        ["MovePidAbs", "ssi", ["cpuset", place.hp("cpuset") + "/nocpus", 1]],
        ["GetPidCgroup", "si", ["pids", 1]],
        ["MovePid", "ssi", ["cpuset", "nocpus", "SELF"]],
    ]
    before = cgroups_of(1)
    cp = place.run(
        [
            "unshare",
            "--user",
            "--map-root-user",
            "--pid",
            "--fork",
            "--mount-proc",
            sys.executable,
            "-c",
            code,
            json.dumps([place.daemon.address, None, attempts]),
        ],
        user=test_user,
    )
    assert cp.returncode == 0, cp.stderr
    results = json.loads(cp.stdout)
    all_refused(attempts, results, "NotPermitted")
    assert all("different pid namespace" in r[1] for r in results), results
    assert cgroups_of(1) == before


def test_a_uid_claimed_in_the_handshake_is_not_an_identity(place, test_user):
    """SASL EXTERNAL may carry any uid (dbus-daemon checks it; a peer-to-peer server need not):
    the daemon's identity is SO_PEERCRED's, so a user claiming uid 0 is still the user."""
    code = (
        "import socket, sys\n"
        "from cgmanager.dbus.client import Connection\n"
        "from cgmanager.dbus.errors import DBusError\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        f"s.connect({place.daemon.socket!r})\n"
        "s.sendall(b'\\0AUTH EXTERNAL 30\\r\\n')\n"  # hex of "0"
        "assert s.recv(4096).startswith(b'OK ')\n"
        "s.sendall(b'BEGIN\\r\\n')\n"
        "c = Connection(s, False, 10)\n"
        "try:\n"
        "    c.call('/org/linuxcontainers/cgmanager', 'org.linuxcontainers.cgmanager0_0',"
        " 'Create', 'ss', ('pids', 'claimed'))\n"
        "except DBusError as e:\n"
        "    print(e.name)\n"
    )
    before = kernel_state(place.path("pids"))
    cp = place.run([sys.executable, "-c", code], user=test_user)
    assert cp.stdout.strip() == ERR + "NotPermitted", cp.stdout + cp.stderr
    assert kernel_state(place.path("pids")) == before


@pytest.mark.parametrize("key", ["pids", "unified"])
def test_symlinks_cannot_be_planted_in_a_delegated_subtree(place, test_user, key):
    """LXC CVE-2015-1335 style swaps need a symlink inside the tree the daemon resolves: the
    owner of a delegated cgroup cannot make one (cgroupfs has no symlinks, v1 or v2); the
    resolver refuses them anyway (tests/kernel/test_resolution.py, on a tmpfs)."""
    ok(place.py("Create", "ss", key, "mine"))
    ok(place.py("Chown", "ssii", key, "mine", test_user.uid, test_user.gid))
    mine = place.path(key) + "/mine"
    before = snapshot(mine)
    for target, name in (("/etc", "evil"), ("..", "up"), ("cgroup.procs", "procs_link")):
        cp = test_user.run(["ln", "-s", target, f"{mine}/{name}"])
        assert cp.returncode != 0
        cp = place.run(["ln", "-s", target, f"{mine}/{name}"])  # not even as root
        assert cp.returncode != 0
    assert snapshot(mine) == before


# -- as host root (where refusing is the design: its own subtree bounds it too) -----------------


def test_host_root_is_bounded_by_its_own_cgroup_and_the_allowlist(place):
    """Root of the host, placed in X/d, reaches nothing of X/d2 or above through the lookup
    methods, and writes no key outside the allowlist — not even on its own cgroups."""
    for name in ("d", "d2", "d/k"):
        ok(place.py("Create", "ss", "pids", name))
    x = place.hp("pids")
    root_proc = place.spawn(["sleep", "100"])
    where = cgroups_of(root_proc.pid)
    before = kernel_state(place.path("pids"))
    attempts = []
    for spelling in (f"{x}/d2", f"/{x}/d2", f"{x}//d2", f"{x}/d/../d2", x, "/"):
        attempts += [
            ["SetValue", "ssss", ["pids", spelling, "pids.max", "1"]],
            ["ListKeys", "ss", ["pids", spelling]],
        ]
    for key in FORBIDDEN_KEYS:
        attempts.append(["SetValue", "ssss", ["pids", "k", key, str(root_proc.pid)]])
    results = attempt(place, attempts, enter=["pids", "d"])
    all_refused(attempts, results)
    assert kernel_state(place.path("pids")) == before
    assert cgroups_of(root_proc.pid) == where


# -- pid reuse between the check and the move ----------------------------------------------------
#
# The kernel takes a pid number, not a pidfd, in cgroup.procs: between the permission decision
# and the write, the checked process could exit and its pid go to a newcomer.  In a fresh pid
# namespace the test decides which pid the next fork gets (/proc/sys/kernel/ns_last_pid), so the
# recycling is deterministic: the victim is opened and judged, then (right after may_move said
# yes) it exits, is reaped, and a newcomer of another user, in a cgroup the requestor cannot
# reach, is forked with its pid.  The move must fail and the newcomer stay where it was.


def _fork_waiting(cgroup_dir: str, uid: int | None, cred_to: socket.socket | None = None):
    """Fork a process that joins *cgroup_dir*, becomes *uid*, optionally sends its own
    credential on *cred_to*, then waits for a byte on its pipe and exits.  → (pid, go_fd)."""
    go_r, go_w = os.pipe()
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            with open(os.path.join(cgroup_dir, "cgroup.procs"), "w") as f:
                f.write("0")
            if uid is not None:
                os.setgroups([])
                os.setresgid(uid, uid, uid)
                os.setresuid(uid, uid, uid)
            if cred_to is not None:
                me = (os.getpid(), os.getuid(), os.getgid())
                cred_to.sendmsg(
                    [b"p"], [(socket.SOL_SOCKET, socket.SCM_CREDENTIALS, struct.pack("iII", *me))]
                )
            os.write(ready_w, b"r")
            os.read(go_r, 1)
        finally:
            os._exit(0)
    os.close(go_r), os.close(ready_w)
    assert os.read(ready_r, 1) == b"r"
    os.close(ready_r)
    return pid, go_w


def _recycle(pid: int, go_w: int, cgroup_dir: str) -> tuple[int, int]:
    """Let *pid* exit, reap it, and fork a root process in *cgroup_dir* that gets the same pid
    (we are pid 1 of a fresh pid namespace: nothing else forks here)."""
    os.write(go_w, b"x")
    os.close(go_w)
    os.waitpid(pid, 0)
    with open("/proc/sys/kernel/ns_last_pid", "w") as f:
        f.write(str(pid - 1))
    newcomer, go = _fork_waiting(cgroup_dir, None)
    if newcomer != pid:
        raise RuntimeError(f"precondition: the newcomer got pid {newcomer}, not {pid}")
    return newcomer, go


def _manager_in_ns(key: str, dirs: dict[str, str], uid: int):
    """The daemon's operations as they run inside the fresh pid namespace: the daemon bounded
    by the hierarchy root, the requestor *uid* in ``dirs["base"]``.  → (manager, request,
    hierarchy paths by name, where(pid))."""
    from cgmanager import operations
    from cgmanager.cgroupfs import CgroupTree
    from cgmanager.hierarchy import discover_host
    from cgmanager.permission import Credentials, Identity
    from cgmanager.procfs import IdMap
    from cgmanager.requestor import Party

    layout = discover_host()
    h = layout.lookup(key)
    hp = {n: "/" + os.path.relpath(d, h.mountpoint) for n, d in dirs.items()}

    def party(u: int, cgroup: str) -> Party:
        ident = Identity(
            Credentials(os.getpid(), u, u), IdMap.identity(), IdMap.identity(), True, True
        )
        return Party(ident, {h.key: cgroup})

    m = operations.Manager(layout, {h.key: CgroupTree(h)}, party(0, "/"))
    requestor = party(uid, hp["base"])

    def where(pid: int) -> str:
        with open(f"/proc/{pid}/cgroup") as f:
            for line in f:
                hid, ctrls, p = line.rstrip("\n").split(":", 2)
                if (h.version == 2 and hid == "0") or (ctrls and key in ctrls.split(",")):
                    return p
        raise LookupError(pid)

    return m, operations.Request(requestor, requestor), hp, where


class _RecycleAfterDecision:
    """Wraps the victim rule (permission.may_move, as MovePid calls it): once it has said yes
    about *victim*, recycle the victim's pid to a root process in *elsewhere*."""

    def __init__(self, victim: int, go: int, elsewhere: str) -> None:
        from cgmanager.operations import leaf, lifecycle, processes
        from cgmanager.permission import may_move

        self.modules, self.real = (processes, leaf, lifecycle), may_move
        self.victim, self.go, self.elsewhere = victim, go, elsewhere
        self.newcomer: int | None = None

    def __call__(self, r, pid, victim_uid):
        allowed = self.real(r, pid, victim_uid)
        if allowed and pid == self.victim and self.newcomer is None:
            self.newcomer = _recycle(self.victim, self.go, self.elsewhere)[0]
        return allowed

    def __enter__(self):
        for module in self.modules:
            module.may_move = self
        return self

    def __exit__(self, *exc) -> None:
        for module in self.modules:
            module.may_move = self.real


def _race_after_the_decision(key: str, dirs: dict[str, str], uid: int, path: str) -> dict:
    """pid 1 of a fresh pid namespace: judge a victim, recycle its pid, then let the move go
    on.  *path* is "plain" (the daemon opens the pid) or "scm" (the pidfd came with the
    victim's SCM_CREDENTIALS, as SO_PASSPIDFD delivers it)."""
    import asyncio

    from cgmanager.errors import CgmError
    from cgmanager.operations.processes import move_pid
    from cgmanager.scm_server import SO_PASSPIDFD, ScmServer

    m, req, hp, where = _manager_in_ns(key, dirs, uid)
    out: dict = {}
    # control: without the race the very same request moves the victim
    control, control_go = _fork_waiting(dirs["from"], uid)
    move_pid(m, req, key, "control", control, absolute=False)
    out["control"] = where(control)
    os.write(control_go, b"x")
    os.waitpid(control, 0)

    pidfd = None
    if path == "scm":
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        mine.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        mine.setsockopt(socket.SOL_SOCKET, SO_PASSPIDFD, 1)
        victim, go = _fork_waiting(dirs["from"], uid, cred_to=theirs)
        received = asyncio.run(ScmServer()._recv_cred(mine))
        assert received.cred.pid == victim and received.pidfd is not None
        pidfd = received.pidfd
    else:
        victim, go = _fork_waiting(dirs["from"], uid)

    with _RecycleAfterDecision(victim, go, dirs["elsewhere"]) as race:
        try:
            move_pid(m, req, key, "to", victim, absolute=False, pidfd=pidfd)
            out["result"] = "moved"
        except CgmError as e:
            out["result"] = f"{e.kind}: {e.message}"
    out["recycled"] = race.newcomer == victim
    out["newcomer"] = where(victim)
    with open(os.path.join(dirs["to"], "cgroup.procs")) as f:
        out["to"] = f.read().split()
    out["hp"] = hp
    return out


@pytest.mark.parametrize("key", ["pids", "unified"])
@pytest.mark.parametrize("path", ["plain", "scm"])
def test_pid_reused_between_check_and_move_moves_nobody(cgdir, test_user, key, path):
    """The permission decision is about the process the pidfd pins; when that process is gone
    by the time of the write, its recycled pid names a stranger, and the move must fail."""
    base = cgdir(key)
    dirs = {"base": base}
    for name in ("from", "to", "control", "elsewhere"):
        dirs[name] = os.path.join(base, name)
        os.mkdir(dirs[name])
    for name in ("to", "control"):  # handed to the requestor, as a delegation would
        for f in ("", "cgroup.procs", "tasks"):
            p = os.path.join(dirs[name], f)
            if os.path.exists(p):
                os.chown(p, test_user.uid, test_user.gid)
    out = run_in_ns(
        _race_after_the_decision,
        key,
        dirs,
        test_user.uid,
        path,
        pidns=True,
        mountns=True,
        mount_proc=True,
        timeout=30,
    )
    hp = out["hp"]
    assert out["control"] == hp["control"]  # the seam is real: unraced, the move works
    assert out["recycled"], out  # the race really happened
    assert out["result"].startswith("NotFound"), out
    assert out["newcomer"] == hp["elsewhere"]  # the stranger was not moved
    assert out["to"] == []


def _race_while_making_room(dirs: dict[str, str], uid: int) -> dict:
    """pid 1 of a fresh pid namespace: the requestor enables hugetlb for the children of its
    cgroup ``room``, which holds its process; the daemon must move that process into
    ``room/.cgm_leaf`` first — and the process is recycled right after being judged."""
    from cgmanager.errors import CgmError
    from cgmanager.operations.values import set_value

    m, req, hp, where = _manager_in_ns("unified", dirs, uid)
    victim, go = _fork_waiting(dirs["room"], uid)
    out: dict = {}
    with _RecycleAfterDecision(victim, go, dirs["elsewhere"]) as race:
        try:
            set_value(m, req, "unified", "room", "cgroup.subtree_control", "+hugetlb")
            out["result"] = "ok"
        except CgmError as e:
            out["result"] = f"{e.kind}: {e.message}"
    out["recycled"] = race.newcomer == victim
    out["newcomer"] = where(victim)
    out["hp"] = hp
    return out


def test_pid_reused_while_making_room_for_controllers_moves_nobody(hugetlb, cgdir, test_user):
    """cgroup v2's no-internal-process rule makes the daemon move a cgroup's processes into its
    leaf before enabling a controller: each was judged by pid, and a recycled pid must not
    carry a stranger into the requestor's cgroup."""
    base = cgdir("unified")
    with open(f"{base}/cgroup.subtree_control", "w") as f:
        f.write("+hugetlb")
    dirs = {"base": base, "room": f"{base}/room", "elsewhere": f"{base}/elsewhere"}
    os.mkdir(dirs["room"]), os.mkdir(dirs["elsewhere"])
    for f in ("", "cgroup.procs", "cgroup.subtree_control"):
        os.chown(os.path.join(dirs["room"], f), test_user.uid, test_user.gid)
    out = run_in_ns(
        _race_while_making_room,
        dirs,
        test_user.uid,
        pidns=True,
        mountns=True,
        mount_proc=True,
        timeout=30,
    )
    assert out["recycled"], out
    assert out["newcomer"] == out["hp"]["elsewhere"], out  # the stranger stayed put


def _race_in_the_kernel_window(key: str, dirs: dict[str, str], uid: int) -> dict:
    """pid 1 of a fresh pid namespace: the victim is recycled after the last liveness check,
    right before the pid is written (the one window no userspace check can close)."""
    from cgmanager.errors import CgmError
    from cgmanager.operations.processes import move_pid

    m, req, hp, where = _manager_in_ns(key, dirs, uid)
    victim, go = _fork_waiting(dirs["from"], uid)
    tree = next(iter(m.trees.values()))
    real_move, state = tree.move, {}

    def recycle_then_move(path: str, pid: int) -> None:
        if pid == victim and "newcomer" not in state:
            state["newcomer"] = _recycle(victim, go, dirs["elsewhere"])[0]
        real_move(path, pid)

    tree.move = recycle_then_move
    try:
        move_pid(m, req, key, "to", victim, absolute=False)
        result = "moved"
    except CgmError as e:
        result = f"{e.kind}: {e.message}"
    return {
        "result": result,
        "recycled": state.get("newcomer") == victim,
        "newcomer": where(victim),
        "hp": hp,
    }


@pytest.mark.parametrize("key", ["pids", "unified"])
def test_pid_recycled_inside_the_write_is_reported_as_a_failure(cgdir, test_user, key):
    """The residual limit, stated honestly: cgroup.procs takes a pid, so a victim that dies
    and is recycled between the last check and the write sends the stranger along (the
    kernel offers no move by pidfd).  The daemon notices through the pidfd afterwards and
    reports a failure, never a success (SECURITY.md, "Limits")."""
    base = cgdir(key)
    dirs = {"base": base}
    for name in ("from", "to", "elsewhere"):
        dirs[name] = os.path.join(base, name)
        os.mkdir(dirs[name])
    for f in ("", "cgroup.procs", "tasks"):
        if os.path.exists(os.path.join(dirs["to"], f)):
            os.chown(os.path.join(dirs["to"], f), test_user.uid, test_user.gid)
    out = run_in_ns(
        _race_in_the_kernel_window,
        key,
        dirs,
        test_user.uid,
        pidns=True,
        mountns=True,
        mount_proc=True,
        timeout=30,
    )
    assert out["recycled"], out
    assert out["result"].startswith("NotFound") and "exited during the move" in out["result"]
    assert out["newcomer"] == out["hp"]["to"]  # the kernel did move the stranger


class _OneDatagram:
    """A socket stand-in that delivers one datagram with the given ancillary data."""

    def __init__(self, anc):
        self.anc = anc

    def recvmsg(self, *args):
        return b"p", self.anc, 0, None


def test_a_credential_whose_pidfd_the_kernel_could_not_make_is_refused():
    """Kernels that cannot make a pidfd of a reaped process put a negative errno in SCM_PIDFD.
    That process is gone and its pid may be recycled: the credential must be refused, never
    fall back to reading /proc by pid (as if the kernel had no SO_PASSPIDFD at all)."""
    import asyncio

    from cgmanager import scm
    from cgmanager.errors import NotPermitted
    from cgmanager.scm_server import SCM_PIDFD, ScmServer

    srv = ScmServer()
    cred = (socket.SOL_SOCKET, socket.SCM_CREDENTIALS, scm.UCRED.pack(4242, 0, 0))
    esrch = (socket.SOL_SOCKET, SCM_PIDFD, (-3).to_bytes(4, sys.byteorder, signed=True))
    gone = asyncio.run(srv._recv_cred(_OneDatagram([cred, esrch])))
    assert gone.gone and gone.pidfd is None
    plain = asyncio.run(srv._recv_cred(_OneDatagram([cred])))  # a kernel without SO_PASSPIDFD
    assert not plain.gone and plain.pidfd is None
    move = scm.BY_NAME["MovePidScm"]
    srv._check_known(plain, plain, move)
    with pytest.raises(NotPermitted):
        srv._check_known(gone, None, scm.BY_NAME["CreateScm"])  # as the requestor
    with pytest.raises(NotPermitted):
        srv._check_known(plain, gone, move)  # as the victim


# -- the same, end to end: a live daemon in a fresh pid namespace ---------------------------------


def _stop(pid: int) -> None:
    os.kill(pid, signal.SIGSTOP)
    os.waitid(os.P_PID, pid, os.WSTOPPED | os.WNOWAIT)


def _scm_start(address: str, member: str, args: tuple):
    """Start an Scm call and wait for its first kick → (connection, our end)."""
    from cgmanager import scm
    from cgmanager.dbus.client import connect

    conn = connect(address, timeout=10)
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    for s in (mine, theirs):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    mine.settimeout(10)
    sig = scm.BY_NAME[member].signature
    conn.call(
        "/org/linuxcontainers/cgmanager",
        "org.linuxcontainers.cgmanager0_0",
        member,
        sig,
        (*args, theirs.fileno()),
    )
    theirs.close()
    assert mine.recv(16) == scm.KICK
    return conn, mine


def _live_daemon_in_fresh_pidns(
    argv: list[str], address: str, dirs: dict[str, str], uid: int
) -> dict:
    """pid 1 of a fresh pid namespace: run cgmanager here, so that this namespace's pids are
    the daemon's and the test can recycle them; then send Scm credentials whose processes
    are recycled before the (stopped) daemon reads them."""
    from cgmanager import scm, scm_client
    from cgmanager.dbus.client import connect

    daemon = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out: dict = {}
    try:
        assert wait_for(lambda: _connectable(address), timeout=20)
        with open(os.path.join(dirs["base"], "cgroup.procs"), "w") as f:
            f.write("0")  # the requestor (and proxy) lives in base
        me = (os.getpid(), 0, 0)
        # controls: unraced, the same requests succeed
        control, control_go = _fork_waiting(dirs["from"], None)
        with connect(address, timeout=10) as c:
            out["control_move"] = scm_client.call(
                c, "MovePidScm", ("pids", "control"), me, (control, 0, 0)
            )
        out["control_where"] = _where_pids(control)
        os.write(control_go, b"x"), os.waitpid(control, 0)
        conn, mine = _scm_start(address, "CreateScm", ("pids", "made"))
        r, r_go = _fork_waiting(dirs["user"], uid, cred_to=mine)
        out["control_create"] = scm.decode_status(mine.recv(16))
        os.write(r_go, b"x"), os.waitpid(r, 0)
        conn.close(), mine.close()

        # the victim's credential is sent, then the victim recycled, then the daemon reads it
        victim, go = _fork_waiting(dirs["from"], None)
        conn, mine = _scm_start(address, "MovePidScm", ("pids", "to"))
        scm_client.send_cred(mine, me)
        assert mine.recv(16) == scm.KICK
        _stop(daemon.pid)
        scm_client.send_cred(mine, (victim, 0, 0))
        newcomer, _ = _recycle(victim, go, dirs["elsewhere"])
        os.kill(daemon.pid, signal.SIGCONT)
        out["victim_result"] = scm.decode_status(mine.recv(16))
        out["newcomer"] = _where_pids(newcomer)
        conn.close(), mine.close()

        # the requestor's credential is sent, then the requestor recycled (as root, in a cgroup
        # where the user could create: judged by the newcomer's /proc, the request would pass)
        conn, mine = _scm_start(address, "CreateScm", ("pids", "escaped"))
        _stop(daemon.pid)
        r, r_go = _fork_waiting(dirs["user"], uid, cred_to=mine)
        newcomer2, _ = _recycle(r, r_go, dirs["open"])
        os.kill(daemon.pid, signal.SIGCONT)
        out["requestor_result"] = scm.decode_status(mine.recv(16))
        out["newcomer2"] = _where_pids(newcomer2)
        conn.close(), mine.close()
        out["alive"] = daemon.poll() is None
    finally:
        daemon.terminate()
        daemon.wait(10)
    return out


def _connectable(address: str) -> bool:
    from cgmanager.dbus.client import connect

    try:
        connect(address, timeout=2).close()
        return True
    except Exception:  # noqa: BLE001
        return False


def _where_pids(pid: int) -> str:
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _hid, ctrls, path = line.rstrip("\n").split(":", 2)
            if "pids" in ctrls.split(","):
                return path
    raise LookupError(pid)


def test_scm_credentials_of_recycled_processes_are_refused_end_to_end(
    cgroots, cgdir, test_user, tmp_path
):
    """A live daemon whose pid namespace the test controls: credentials (requestor and victim)
    are stated for processes that are then reaped and whose pids go to root processes in other
    cgroups before the daemon reads them.  SO_PASSPIDFD pins each credential to the process
    that sent it: both requests fail, and nothing moves or appears."""
    from daemon.conftest import VENV_BIN, served_and_skipped

    base = cgdir("pids")
    dirs = {"base": base}
    for name in ("from", "to", "control", "elsewhere", "user", "open"):
        dirs[name] = os.path.join(base, name)
        os.mkdir(dirs[name])
    for name in ("user", "open"):
        for f in ("", "cgroup.procs", "tasks"):
            os.chown(os.path.join(dirs[name], f), test_user.uid, test_user.gid)
    os.chmod(tmp_path, 0o755)
    sock = f"{tmp_path}/sock"
    _served, skipped = served_and_skipped(cgroots)
    argv = [
        f"{VENV_BIN}/cgmanager",
        "--socket",
        sock,
        "--fs-dir",
        f"{tmp_path}/fs",
        "--log-level",
        "debug",
    ]
    if skipped:
        argv += ["--skip", ",".join(skipped)]
    before = snapshot(base)
    out = run_in_ns(
        _live_daemon_in_fresh_pidns,
        argv,
        f"unix:path={sock}",
        dirs,
        test_user.uid,
        pidns=True,
        mountns=True,
        mount_proc=True,
        timeout=60,
    )
    hp = "/" + os.path.relpath(base, cgroots.mount("pids"))
    from cgmanager import scm

    assert out["control_move"] is None and out["control_where"] == hp + "/control", out
    assert out["control_create"] == scm.OK, out
    assert out["victim_result"] == scm.FAILED, out
    assert out["newcomer"] == hp + "/elsewhere"
    assert out["requestor_result"] == scm.FAILED, out
    assert out["newcomer2"] == hp + "/open"
    assert out["alive"]
    assert not [d for d, _, _ in os.walk(base) if d.endswith("/escaped")]
    after = snapshot(base)
    assert set(after) - set(before) == {p for p in after if p.startswith("user/made")}
    with open(f"{dirs['to']}/cgroup.procs") as f:
        assert f.read() == ""
