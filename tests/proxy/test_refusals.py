"""What a container must not be able to do through its proxy, or around it, with the host
side checked unchanged after every refusal."""

from __future__ import annotations

import errno
import os
import signal

import pytest
from daemon.hostile_helpers import FORBIDDEN_KEYS, O_CLOEXEC, cgroups_of, fd_flags, kernel_state

from proxy import container as ct
from proxy.helpers import host_cgroup, hpath, in_box, ok, refused, snapshot

pytestmark = pytest.mark.t3


def _cgroups_of(pid: int) -> dict[str, str]:
    return {k: host_cgroup(pid, k) for k in ("pids", "freezer", "unified")}


def test_cannot_reach_host_or_sibling_cgroups(containers, cgroots):
    a, b = containers.new(), containers.new()
    ok(a(ct.py_call, "Create", "ss", ("pids", "x")))
    b_sleeper = in_box(b, b(ct.spawn_sleeper))
    me = os.getpid()  # a host process
    assert not a(ct.pid_exists, b_sleeper) and not a(ct.pid_exists, me)
    run_root = "/" + cgroots.name
    sib = hpath(cgroots, "pids", b.dirs["pids"])  # the sibling's cgroup, host spelling
    sib_name = os.path.basename(b.dirs["pids"])
    before = snapshot(cgroots)
    victims = {p: _cgroups_of(p) for p in (me, b_sleeper)}

    attempts = [
        ("GetValue", "sss", ("pids", "/", "pids.max")),
        ("GetValue", "sss", ("pids", run_root, "pids.max")),
        ("GetValue", "sss", ("pids", sib, "pids.max")),
        ("GetValue", "sss", ("pids", f"../{sib_name}", "pids.max")),
        ("GetValue", "sss", ("pids", "..", "pids.max")),
        ("GetValue", "sss", ("pids", "/..", "pids.max")),
        ("SetValue", "ssss", ("pids", sib, "pids.max", "1")),
        ("SetValue", "ssss", ("pids", f"x/../../{sib_name}", "pids.max", "1")),
        ("SetValue", "ssss", ("pids", "/", "pids.max", "1")),
        ("ListChildren", "ss", ("pids", "/")),
        ("ListChildren", "ss", ("pids", run_root)),
        ("ListKeys", "ss", ("pids", sib)),
        ("GetTasks", "ss", ("pids", "/")),
        ("GetTasksRecursive", "ss", ("unified", run_root)),
        ("Create", "ss", ("pids", "../escape")),
        ("Create", "ss", ("pids", "x/../../escape")),
        ("Create", "ss", ("pids", "/../escape")),
        ("Remove", "ssi", ("pids", f"../{sib_name}", 1)),
        ("Remove", "ssi", ("pids", "/", 1)),  # its own root cgroup: its parent is not its
        ("Remove", "ssi", ("pids", "", 1)),
        ("Chown", "ssii", ("pids", f"../{sib_name}", 0, 0)),
        ("Chmod", "sssi", ("pids", f"../{sib_name}", "pids.max", 0o666)),
        ("MovePid", "ssi", ("pids", "", b_sleeper)),  # a sibling container's process
        ("MovePid", "ssi", ("pids", "x", me)),  # a host process
        ("MovePidAbs", "ssi", ("pids", "/", me)),
        ("MovePidAbs", "ssi", ("pids", sib, b_sleeper)),
        ("MovePid", "ssi", ("pids", "/x", 1)),  # MovePid takes a relative path
        ("GetPidCgroup", "si", ("pids", me)),
        ("GetPidCgroupAbs", "si", ("pids", b_sleeper)),
        ("Chown", "ssii", ("pids", "x", 200000, 200000)),  # unmapped in the container
        ("Chown", "ssii", ("pids", "x", 70000, 0)),
        ("Chown", "ssii", ("pids", "x", -1, -1)),
        ("RemoveOnEmpty", "ss", ("pids", f"../{sib_name}")),
        ("Prune", "ss", ("pids", "..")),
    ]
    for method, sig, args in attempts:
        res = a(ct.py_call, method, sig, args)
        assert res[0] == "err", (method, args, res)
        assert res[1].startswith(ct.ERR), (method, args, res)
    # and through plain dbus-send
    for method, *args in [
        ("GetValue", "string:pids", f"string:{sib}", "string:pids.max"),
        ("Create", "string:pids", "string:../escape"),
        ("MovePid", "string:pids", "string:x", f"int32:{me}"),
        ("Chown", "string:pids", "string:x", "int32:200000", "int32:200000"),
    ]:
        rc, out, err = a(ct.dbus_send, method, *args)
        assert rc != 0 and "Error org.linuxcontainers.cgmanager.Error." in err, (method, out)
    assert snapshot(cgroots) == before
    assert {p: _cgroups_of(p) for p in victims} == victims


def test_refusals_say_why(box):
    """The Scm protocol carries no reason; the proxy says what it knows."""
    me = os.getpid()
    msg = refused(box(ct.py_call, "MovePid", "ssi", ("pids", "", me)), "NotFound")
    assert "no such process in this container" in msg
    msg = refused(box(ct.py_call, "Chown", "ssii", ("pids", "", 200000, 0)), "InvalidArgument")
    assert "not mapped" in msg
    msg = refused(box(ct.py_call, "GetValue", "sss", ("pids", "/", "pids.max")), "Failed")
    assert msg == "GetValue failed: refused or failed at the host cgmanager"
    refused(box(ct.py_call, "Create", "ss", ("pids", "a/../b")), "InvalidArgument")
    refused(box(ct.py_call, "MovePid", "ssi", ("pids", "/a", 1)), "InvalidArgument")
    refused(box(ct.py_call, "GetValue", "sss", ("nosuch", "", "x")), "Failed")


def test_movepidabs_escapes_up_to_the_proxy_and_no_further(box, cgroots):
    sleeper = box(ct.spawn_sleeper)
    host = in_box(box, sleeper)
    ok(box(ct.py_call, "Create", "ss", ("pids", "a/b")))
    ok(box(ct.py_call, "MovePid", "ssi", ("pids", "a/b", sleeper)))
    assert host_cgroup(host, "pids") == hpath(cgroots, "pids", box.dirs["pids"] + "/a/b")
    before = snapshot(cgroots)
    for target in ("/..", f"/{cgroots.name}", "..", "/../.."):
        refused(box(ct.py_call, "MovePidAbs", "ssi", ("pids", target, sleeper)))
    assert snapshot(cgroots) == before
    assert host_cgroup(host, "pids") == hpath(cgroots, "pids", box.dirs["pids"] + "/a/b")
    ok(box(ct.py_call, "MovePidAbs", "ssi", ("pids", "/", sleeper)))  # to the proxy's cgroup
    assert host_cgroup(host, "pids") == hpath(cgroots, "pids", box.dirs["pids"])
    # acting as its own proxy towards the daemon, a process escapes nowhere (0.42 §4.9)
    ok(box(ct.py_call, "MovePid", "ssi", ("pids", "a", sleeper)))
    res = box(
        ct.scm_call, "MovePidAbsScm", ("pids", "/"), None, (sleeper, 0, 0), address=ct.LOWER_ADDRESS
    )
    assert res == ("ok", None)  # "/" is the agent's own cgroup: the container's root
    assert host_cgroup(host, "pids") == hpath(cgroots, "pids", box.dirs["pids"])


def test_cannot_forge_credentials_talking_scm_to_the_daemon(containers, cgroots):
    """Inside, the host daemon's socket is reachable (cgmanager.lower); Scm calls there are
    legitimate for the caller itself, and the kernel stops every forgery."""
    a, b = containers.new(), containers.new()
    ok(a(ct.py_call, "Create", "ss", ("pids", "x")))
    b_sleeper = in_box(b, b(ct.spawn_sleeper))
    me = os.getpid()
    assert not a(ct.pid_exists, me) and not a(ct.pid_exists, b_sleeper)
    before = snapshot(cgroots)
    low = {"address": ct.LOWER_ADDRESS}
    # a host pid as the requestor, or as the victim: the kernel knows no such pid here
    assert a(ct.scm_call, "CreateScm", ("pids", "forged"), (me, 0, 0), **low) == (
        "oserror",
        errno.ESRCH,
    )
    assert a(ct.scm_call, "MovePidScm", ("pids", "x"), None, (b_sleeper, 0, 0), **low) == (
        "oserror",
        errno.ESRCH,
    )
    # an unmapped uid as Chown's target: EINVAL
    assert a(ct.scm_call, "ChownScm", ("pids", "x"), None, (1, 200000, 200000), **low) == (
        "oserror",
        errno.EINVAL,
    )
    # an unprivileged container user cannot even state root of its own container
    assert a(ct.scm_call, "CreateScm", ("pids", "forged"), (1, 0, 0), uid=1000, **low) == (
        "oserror",
        errno.EPERM,
    )
    # nor can the container forge through its proxy with a requestor other than itself
    sleeper = a(ct.spawn_sleeper)
    res = a(ct.scm_call, "CreateScm", ("pids", "forged"), (sleeper, 0, 0))
    assert res[0] == "err" and res[1] == "org.linuxcontainers.cgmanager.Error.Failed", res
    assert snapshot(cgroots) == before
    # the same calls for itself work, directly and through the proxy
    assert a(ct.scm_call, "CreateScm", ("pids", "direct"), None, **low) == ("ok", -1)
    assert a(ct.scm_call, "CreateScm", ("pids", "viaproxy"), None) == ("ok", -1)
    for name in ("direct", "viaproxy"):
        assert os.stat(f"{a.dirs['pids']}/{name}").st_uid == 100000


def test_scm_calls_to_the_proxy(box, cgroots):
    """0.42 §9.4: Scm calls made to the proxy are forwarded when the requestor is the caller."""
    sleeper = box(ct.spawn_sleeper)
    host = in_box(box, sleeper)
    assert box(ct.scm_call, "CreateScm", ("pids", "s"), None) == ("ok", -1)
    assert box(ct.scm_call, "MovePidScm", ("pids", "s"), None, (sleeper, 0, 0)) == ("ok", None)
    assert host_cgroup(host, "pids") == hpath(cgroots, "pids", box.dirs["pids"] + "/s")
    assert box(ct.scm_call, "GetTasksScm", ("pids", "s"), None) == ("ok", [sleeper])
    assert box(ct.scm_call, "GetPidCgroupAbsScm", ("pids",), None, (sleeper, 0, 0)) == ("ok", "/s")
    assert box(ct.scm_call, "GetValueScm", ("pids", "s", "pids.max"), None) == ("ok", "max")
    assert box(ct.scm_call, "ListChildrenScm", ("pids", ""), None) == ("ok", ["s"])
    # s holds the container root's sleeper: not to be handed to a container user
    assert box(ct.scm_call, "ChownScm", ("pids", "s"), None, (1, 1000, 1000))[0] == "err"
    assert os.stat(f"{box.dirs['pids']}/s").st_uid == 100000
    assert box(ct.scm_call, "MovePidAbsScm", ("pids", "/"), None, (sleeper, 0, 0)) == ("ok", None)
    assert box(ct.scm_call, "ChownScm", ("pids", "s"), None, (1, 1000, 1000)) == ("ok", None)
    assert os.stat(f"{box.dirs['pids']}/s").st_uid == 101000
    # a container user, for itself
    assert box(ct.scm_call, "CreateScm", ("pids", "s/u"), None, uid=1000) == ("ok", -1)
    assert os.stat(f"{box.dirs['pids']}/s/u").st_uid == 101000
    # failures come back as failures
    res = box(ct.scm_call, "GetValueScm", ("pids", "/", "pids.max"), None)
    assert res[0] == "err", res


def test_namespace_gates_at_the_proxy(box):
    """Plain pid and uid arguments mean something only in the proxy's own namespaces."""
    sleeper = box(ct.spawn_sleeper)
    res = box(ct.in_new_namespaces, ct.py_call, "MovePid", "ssi", ("pids", "", sleeper), pidns=True)
    assert "different pid namespace" in refused(res, "NotPermitted")
    res = box(ct.in_new_namespaces, ct.py_call, "GetPidCgroup", "si", ("pids", 1), pidns=True)
    assert "different pid namespace" in refused(res, "NotPermitted")
    # calls without pid arguments work from there
    assert ok(
        box(
            ct.in_new_namespaces,
            ct.py_call,
            "GetValue",
            "sss",
            ("pids", "", "pids.max"),
            pidns=True,
        )
    ) == ("max",)
    res = box(
        ct.in_new_namespaces,
        ct.py_call,
        "Chown",
        "ssii",
        ("pids", "", 0, 0),
        userns=True,
        uid_map="0 0 1",
    )
    assert "different user namespace" in refused(res, "NotPermitted")


def test_host_processes_cannot_use_a_containers_proxy(box):
    """A process outside the container's namespaces is "unknown" to its proxy (pid 0,
    overflow uid), never an identity."""
    from cgmanager.dbus.client import connect

    sock = f"/proc/{box.child.inner_pid}/root{ct.PROXY_SOCK}"
    with connect(f"unix:path={sock}", timeout=10) as c:
        c.call(ct.OBJ, ct.IFACE, "Ping", "i", (0,))  # local, harmless
        with pytest.raises(Exception) as exc:
            c.call(ct.OBJ, ct.IFACE, "Create", "ss", ("pids", "fromhost"))
    assert "outside this proxy's pid or user namespace" in str(exc.value)
    assert not os.path.exists(f"{box.dirs['pids']}/fromhost")


# -- the threat model's classes, as root (and a user) of a user-namespaced container -------------


def _box_state(box) -> dict:
    return kernel_state(*box.dirs.values())


def test_keys_outside_the_allowlist_change_nothing(box):
    """§15.4.1 / CVE-2022-0492 through the proxy: container root owns every file of its own
    cgroup k, yet no key outside the allowlist is written, nothing is reached by traversal,
    and no host-global release_agent changes."""
    ok(box(ct.py_call, "Create", "ss", ("pids", "k")))
    sleeper = box(ct.spawn_sleeper)
    host = in_box(box, sleeper)
    where = cgroups_of(host)
    before = _box_state(box)
    for key in FORBIDDEN_KEYS:
        for value in ("1", str(sleeper), "/tmp/pwn"):
            res = box(ct.py_call, "SetValue", "ssss", ("pids", "k", key, value))
            assert res[0] == "err", (key, value, res)
        res = box(ct.py_call, "GetValue", "sss", ("pids", "k", "../" + key))
        assert res[0] == "err", (key, res)
    assert _box_state(box) == before
    assert cgroups_of(host) == where
    ok(box(ct.py_call, "SetValue", "ssss", ("pids", "k", "pids.max", "5")))  # the allowlist works


def test_a_sibling_whose_name_extends_ours_is_unreachable(box, cgroots):
    """0.42's 9c41660 from a container: the host sibling C2 of the container's cgroup C is
    handed to the container's root too, so only the subtree bound (with its "/" boundary)
    stands between them; names of kernel files are no cgroup names either."""
    mine = box.dirs["pids"]
    sib = mine + "2"
    os.mkdir(sib)
    try:
        for f in ("", "cgroup.procs", "tasks", "pids.max"):
            os.chown(os.path.join(sib, f), 100000, 100000)
        host_spelling = hpath(cgroots, "pids", sib)
        name = os.path.basename(sib)
        before = _box_state(box) | kernel_state(sib)
        attempts = []
        for spelling in (
            host_spelling,
            "/" + host_spelling,
            f"/../{name}",
            f"../{name}",
            f"..//{name}",
            f"//..//{name}",
            "/..",
            "//",
        ):
            attempts += [
                ("GetValue", "sss", ("pids", spelling, "pids.max")),
                ("SetValue", "ssss", ("pids", spelling, "pids.max", "1")),
                ("ListKeys", "ss", ("pids", spelling)),
                ("GetTasks", "ss", ("pids", spelling)),
            ]
            if ".." in spelling:  # the relative methods read "/a" as "a" below their cgroup
                attempts += [
                    ("Create", "ss", ("pids", spelling + "/x")),
                    ("Chmod", "sssi", ("pids", spelling, "", 0o777)),
                ]
        for kernel_file in (
            "cgroup.procs",
            "tasks",
            "pids.max",
            "release_agent",
            "notify_on_release",
            "cgroup.clone_children",
        ):
            attempts.append(("Create", "ss", ("pids", kernel_file)))
        for method, sig, args in attempts:
            res = box(ct.py_call, method, sig, args)
            assert res[0] == "err", (method, args, res)
        assert _box_state(box) | kernel_state(sib) == before
    finally:
        os.rmdir(sib)


def test_a_container_user_cannot_move_the_containers_init_or_root_processes(box):
    """CVE-2015-1344 from inside: uid 1000 of the container owns a cgroup, but pid 1 there is
    the container's init (root's), and the host's pid 1 cannot even be named."""
    ok(box(ct.py_call, "Create", "ss", ("pids", "u")))
    ok(box(ct.py_call, "Chown", "ssii", ("pids", "u", 1000, 1000)))
    root_sleeper = box(ct.spawn_sleeper)
    victims = [1, root_sleeper]
    hosts = [box.child.inner_pid, in_box(box, root_sleeper), 1]
    before = {p: cgroups_of(p) for p in hosts}
    state = _box_state(box)
    for pid in victims:
        for method, cg in (("MovePid", "u"), ("MovePidAbs", "/u")):
            refused(box(ct.py_call, method, "ssi", ("pids", cg, pid), uid=1000))
        res = box(ct.scm_call, "MovePidScm", ("pids", "u"), None, (pid, 1000, 1000), uid=1000)
        assert res[0] != "ok", res
    assert {p: cgroups_of(p) for p in hosts} == before
    assert _box_state(box) == state


def _start_lingering_client() -> None:
    """inside: a client connected to the proxy, waiting for a line before it sends Create
    and exits without waiting for the reply."""
    import subprocess
    import sys

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
    ct.STATE["lingering"] = p


def _release_lingering_client() -> int:
    p = ct.STATE.pop("lingering")
    p.stdin.write("go\n")
    p.stdin.flush()
    return p.wait(10)


def _proxy_pid() -> int:
    return ct.STATE["proxy"].pid


def test_a_client_that_exits_before_the_proxy_looks_is_refused(box):
    """CVE-2021-3560 through the proxy: the request arrives from a process that is gone; the
    proxy cannot state its credential (the kernel refuses a dead pid), so nothing is done —
    and the proxy keeps serving."""
    proxy = in_box(box, box(_proxy_pid))
    before = _box_state(box)
    box(_start_lingering_client)
    os.kill(proxy, signal.SIGSTOP)
    try:
        assert box(_release_lingering_client) == 0  # sent, and gone
    finally:
        os.kill(proxy, signal.SIGCONT)
    assert box(ct.py_call, "Ping", "i", (0,))[0] == "ok"  # the proxy has caught up
    assert not os.path.exists(f"{box.dirs['pids']}/ghost")
    assert _box_state(box) == before
    assert ok(box(ct.py_call, "Create", "ss", ("pids", "alive"))) == (-1,)
    assert "Create('pids', 'ghost'): refused" in box(ct.proxy_log)


def test_every_proxy_fd_is_cloexec(box):
    """CVE-2024-21626 class for cgproxy: with a client connected and an Scm request pending,
    no fd of the proxy would survive an exec."""
    box(ct.stall_scm_client)
    ok(box(ct.py_call, "Create", "ss", ("pids", "fds")))
    flags = fd_flags(in_box(box, box(_proxy_pid)))
    leaking = {fd: oct(f) for fd, f in flags.items() if fd > 2 and not f & O_CLOEXEC}
    assert leaking == {}
    assert len(flags) > 6  # listeners, the upstream connection, the stalled client and its fd
