"""Issue 12, findings 2 and 3, played against a live daemon by an unprivileged user: a deep
chain of watched cgroups over many processes costs one fd per process, the caps answer
``LimitExceeded`` to the one who asks and change nothing, and running out of fds is a clear
error, never ``Failed``, after which the daemon serves on.  (The full-size scenario, with
numbers before and after: bench/reaper_attack.py.)"""

from __future__ import annotations

import json
import os
import resource
import sys
from dataclasses import replace

import pytest
from kernel.helpers import wait_for

from .hostile_helpers import kernel_state
from .replies import ok

pytestmark = pytest.mark.t3

ERR = "org.linuxcontainers.cgmanager.Error."
LEVELS = 15

CLIENT = r"""
import json, sys
from cgmanager.dbus.client import connect
from cgmanager.dbus.errors import DBusError
O, I = '/org/linuxcontainers/cgmanager', 'org.linuxcontainers.cgmanager0_0'
addr, calls = json.loads(sys.argv[1])
c = connect(addr)
out = []
for method, sig, args in calls:
    try:
        out.append(['ok', c.call(O, I, method, sig, tuple(args))])
    except DBusError as e:
        out.append([e.name, e.message])
print(json.dumps(out))
"""


def calls(place, todo, user=None):
    cp = place.run(
        [sys.executable, "-c", CLIENT, json.dumps([place.daemon.address, todo])], user=user
    )
    assert cp.returncode == 0, cp.stderr
    return json.loads(cp.stdout)


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def levels(n: int = LEVELS) -> list[str]:
    return ["/".join(f"l{i}" for i in range(1, k + 1)) for k in range(1, n + 1)]


@pytest.fixture
def delegated(place, test_user):
    ok(place.py("Create", "ss", "pids", "d"))
    ok(place.py("Chown", "ssii", "pids", "d", test_user.uid, test_user.gid))
    return place


def test_a_deep_chain_of_watches_costs_one_fd_per_process(start_daemon, delegated, test_user):
    """Finding 2 (scaled down): 15 watched levels over 150 processes held 2,250 pidfds
    before; now 150.  Another client is served throughout, and all goes once they exit."""
    d = start_daemon("--max-depth", "32")
    place = replace(delegated, daemon=d)
    chain = [f"d/{p}" for p in levels()]
    assert (
        calls(place, [["Create", "ss", ["pids", "d/" + levels()[-1]]]], user=test_user)[0][0]
        == "ok"
    )
    bottom = os.path.join(place.path("pids"), chain[-1])
    kids = [place.procs.spawn(["sleep", "1000"], user=test_user, cgroup=bottom) for _ in range(150)]
    base = fds(d.popen.pid)
    out = calls(place, [["RemoveOnEmpty", "ss", ["pids", c]] for c in chain], user=test_user)
    assert out == [["ok", []]] * LEVELS, out
    held = fds(d.popen.pid) - base
    assert 150 <= held < 150 + 20, held  # one pidfd per process, not one per process per level
    assert place.py("Ping", "i", 0).returncode == 0
    for k in kids:
        k.kill()
    top = os.path.join(place.path("pids"), chain[0])
    assert wait_for(lambda: not os.path.exists(top), timeout=30)
    assert wait_for(lambda: fds(d.popen.pid) <= base, timeout=10), (fds(d.popen.pid), base)
    assert "Traceback" not in d.log()
    d.stop()


def test_the_caps_refuse_the_one_who_asks_and_change_nothing(start_daemon, delegated, test_user):
    d = start_daemon("--max-watched-processes-per-uid", "20", "--max-watches-per-uid", "3")
    place = replace(delegated, daemon=d)
    pids = place.path("pids")
    for name in ("d/many", "d/a", "d/b", "d/c", "d/e"):
        assert calls(place, [["Create", "ss", ["pids", name]]], user=test_user)[0][0] == "ok"
    many = [
        place.procs.spawn(["sleep", "1000"], user=test_user, cgroup=f"{pids}/d/many")
        for _ in range(25)
    ]
    for name in ("a", "b", "c", "e"):
        place.procs.spawn(["sleep", "1000"], user=test_user, cgroup=f"{pids}/d/{name}")
    state, base = kernel_state(pids), fds(d.popen.pid)
    out = calls(place, [["RemoveOnEmpty", "ss", ["pids", "d/many"]]], user=test_user)
    assert out[0][0] == ERR + "LimitExceeded" and "25 processes" in out[0][1], out
    assert wait_for(lambda: fds(d.popen.pid) == base), (fds(d.popen.pid), base)
    assert kernel_state(pids) == state
    out = calls(
        place, [["RemoveOnEmpty", "ss", ["pids", f"d/{n}"]] for n in "abce"], user=test_user
    )
    assert [o[0] for o in out] == ["ok", "ok", "ok", ERR + "LimitExceeded"], out
    # root is another requestor: its own quota
    assert calls(place, [["RemoveOnEmpty", "ss", ["pids", "d/e"]]])[0][0] == "ok"
    assert kernel_state(pids) == state
    for k in many:
        k.kill()
    d.stop()


def test_running_out_of_fds_is_a_clear_error_and_the_daemon_serves_on(start_daemon, place):
    """No request path ends in ``Failed`` because fds ran out (EMFILE → LimitExceeded)."""
    d = start_daemon()
    pid = d.popen.pid
    ok(place.py("Create", "ss", "pids", "x"))
    code = (
        "import json, os, sys, resource\n"
        "from cgmanager.dbus.client import connect\n"
        "from cgmanager.dbus.errors import DBusError\n"
        "O, I = '/org/linuxcontainers/cgmanager', 'org.linuxcontainers.cgmanager0_0'\n"
        f"c = connect({d.address!r}); c.call(O, I, 'Ping', 'i', (0,))\n"
        "sys.stdout.write('ready\\n'); sys.stdout.flush(); sys.stdin.readline()\n"
        "out = []\n"
        "for m, s, a in [('ListChildren','ss',('pids','')), ('GetTasksRecursive','ss',('pids','')),"
        " ('Create','ss',('pids','y')), ('GetValue','sss',('pids','x','pids.max')),"
        " ('RemoveOnEmpty','ss',('pids','x')), ('GetPidCgroup','si',('pids',os.getpid()))]:\n"
        "    try: out.append(['ok', c.call(O, I, m, s, a)])\n"
        "    except DBusError as e: out.append([e.name, e.message])\n"
        "print(json.dumps(out)); sys.stdout.flush(); sys.stdin.readline()\n"
        "print(json.dumps(c.call(O, I, 'ListChildren', 'ss', ('pids', ''))))\n"
    )
    import subprocess

    client = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=place.preexec(),
    )
    try:
        assert client.stdout.readline() == "ready\n"
        soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (fds(pid), hard))  # nothing more opens
        try:
            client.stdin.write("go\n")
            client.stdin.flush()
            out = json.loads(client.stdout.readline())
        finally:
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
        kinds = {o[0] for o in out}
        assert ERR + "Failed" not in kinds and "org.freedesktop.DBus.Error.Failed" not in kinds, out
        assert ERR + "LimitExceeded" in kinds, out
        assert all(o[0] == "ok" or "out of file descriptors" in o[1] for o in out), out
        client.stdin.write("again\n")
        client.stdin.flush()
        assert "x" in json.loads(client.stdout.readline())[0]  # served again, same connection
    finally:
        client.kill()
        client.wait()
    assert place.py("Ping", "i", 0).returncode == 0
    assert "Traceback" not in d.log() and "internal error" not in d.log()
    d.stop()
