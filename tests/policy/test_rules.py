"""T0: cgrules.conf parsing and matching; the proc connector's parsing (kernel-only).
T2/T3: the rules engine for real — exec and uid events move a test user's processes, user:command
rules, templates, Classify, a forged netlink message from an unprivileged user is refused."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import sys
import time

import pytest

from cgmanager.contract import INTERFACE1
from cgmanager.dbus.errors import DBusError
from cgmanager.policy import cgrules, proc_connector
from cgmanager.policy.lexer import ConfigError

from .conftest import rel

WAIT = 20.0


# -- t0 ---------------------------------------------------------------------------------------

RULES = """\
# libcgroup's example, unchanged
peter           cpu             test1/
%               memory          test2/
@admin          *               admin/
peter:ftp       cpu             ftp/
*:sshd          pids,freezer    daemons/sshd
*               cpu             default/%u/%p
"""


def P(uid=1000, gid=1000, groups=(), exe="/usr/bin/bash", comm="bash", pid=42):
    return cgrules.Process(pid, uid, gid, frozenset(groups), exe, comm)


def resolved(text=RULES):
    users = {"peter": 1000, "root": 0}
    groups = {"admin": 50}
    return cgrules.resolve(cgrules.parse(text, "r"), users.__getitem__, groups.__getitem__)


@pytest.mark.t0
@pytest.mark.parametrize(
    "proc, first_line, n",
    [
        (P(uid=1000), 2, 2),  # peter: test1 (cpu) and its % continuation (memory)
        (P(uid=7, groups=(50,)), 4, 1),  # @admin through a supplementary group
        (P(uid=7, gid=50), 4, 1),  # ... or the effective group
        (P(uid=7, exe="/usr/sbin/sshd", comm="sshd"), 6, 1),
        (P(uid=7, exe="", comm="sshd"), 6, 1),  # no executable (kernel thread): comm
        (P(uid=7), 7, 1),
    ],
)
def test_first_match_wins(proc, first_line, n):
    rules, warnings = resolved()
    got = cgrules.match(rules, proc)
    assert warnings == []
    assert got[0].rule.line == first_line and len(got) == n


@pytest.mark.t0
def test_destination_templates_and_hostile_names():
    rules, _ = resolved()
    last = rules[-1]
    users = {7: "eve"}.__getitem__
    assert cgrules.destination(last, P(uid=7), users, str) == "default/eve/bash"
    for bad in ("..", "cgroup.procs", "tasks", "a\nb", "pids.max"):
        with pytest.raises(Exception, match="invalid"):
            cgrules.destination(last, P(uid=7, exe="/x/" + bad, comm=bad), users, str)


@pytest.mark.t0
def test_unknown_users_make_their_rule_inert():
    rules, warnings = cgrules.resolve(
        cgrules.parse("ghost cpu a\n% pids b\n* cpu c\n", "r"), {}.__getitem__, {}.__getitem__
    )
    assert [r.rule.line for r in rules] == [3]
    assert warnings == ["line 1: no user or group 'ghost' here; rule inert"]


@pytest.mark.t0
@pytest.mark.parametrize(
    "text, line, message",
    [
        ("peter cpu", 1, "a rule is"),
        ("\n\npeter cpu a b c", 3, "a rule is"),
        ("% cpu a", 1, "continues the rule above"),
        ("peter: cpu a", 1, "invalid user"),
        ("@ cpu a", 1, "needs a group name"),
        ("peter cpu,,pids a", 1, "empty controller"),
        ("peter cpu ../a", 1, "'..' is not allowed"),
        ("peter cpu /", 1, "names cgmanager's own cgroup"),
        ("peter cpu a/%x", 1, "'%' must be followed"),
        ("peter cpu a/cgroup.procs", 1, "reserved for kernel attribute files"),
        ("peter cpu a nosuchoption", 1, "unknown option"),
    ],
)
def test_rule_errors_name_their_line(text, line, message):
    with pytest.raises(ConfigError) as e:
        cgrules.parse(text, "r")
    assert e.value.line == line and message in e.value.message, str(e.value)


def _kernel_msg(what, data, port=0):
    ev = proc_connector.PROC_EVENT.pack(what, 0, 123) + data
    cn = proc_connector.CN_MSG.pack(1, 1, 0, 0, len(ev), 0) + ev
    return proc_connector.NLMSGHDR.pack(16 + len(cn), 3, 0, 0, port) + cn


@pytest.mark.t0
def test_proc_connector_believes_the_kernel_only():
    exec_ev = _kernel_msg(proc_connector.PROC_EVENT_EXEC, struct.pack("=ii", 5, 5))
    uid_ev = _kernel_msg(proc_connector.PROC_EVENT_UID, struct.pack("=iiII", 6, 6, 1, 2))
    fork_ev = _kernel_msg(proc_connector.PROC_EVENT_FORK, struct.pack("=iiii", 1, 1, 2, 2))
    events, refused, _ = proc_connector.parse(exec_ev + uid_ev + fork_ev, 0)
    assert [(e.what, e.tgid, e.euid) for e in events] == [(2, 5, None), (4, 6, 2)]
    assert refused == 0
    # from a user's socket (port != 0), or claiming a port in the header: refused whole
    assert proc_connector.parse(exec_ev, 4242)[:2] == ([], 1)
    assert proc_connector.parse(_kernel_msg(2, struct.pack("=ii", 5, 5), port=9), 0)[:2] == ([], 1)
    # truncated messages are ignored, not misread
    assert proc_connector.parse(exec_ev[:30], 0)[0] == []
    assert proc_connector.kernel_filters("6.18.0-1-amd64")
    assert not proc_connector.kernel_filters("6.1.0-13-amd64")


# -- live ---------------------------------------------------------------------------------------


def _pids_cgroup(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            for line in f.read().split("\n"):
                parts = line.split(":", 2)
                if len(parts) == 3 and "pids" in parts[1].split(","):
                    return parts[2]
    except OSError:
        return None
    return None


def _wait_cgroup(pid: int, want: str) -> str | None:
    deadline = time.monotonic() + WAIT
    while (got := _pids_cgroup(pid)) != want and time.monotonic() < deadline:
        time.sleep(0.01)
    return got


@pytest.fixture
def rules_user(make_test_user):
    return make_test_user()


@pytest.mark.t3
def test_exec_of_a_users_process_is_placed(policy_daemon, cgdir, cgroots, procs, rules_user):
    d = cgdir("pids")
    r = rel(cgroots, d, "pids")
    os.makedirs(os.path.join(d, rules_user.name))
    policy_daemon.write_rules(f"{rules_user.name}  pids  {r}/%u\n")
    policy_daemon.start()
    p = procs.spawn(["sleep", "60"], user=rules_user)
    assert _wait_cgroup(p.pid, f"/{r}/{rules_user.name}") == f"/{r}/{rules_user.name}"
    (counters,) = policy_daemon.call("PolicyStatus")
    assert counters["rules_moved"] >= 1 and counters["rules_in_force"] == 1


@pytest.mark.t3
def test_uid_change_is_placed(policy_daemon, cgdir, cgroots, procs, rules_user):
    d = cgdir("pids")
    r = rel(cgroots, d, "pids")
    policy_daemon.write_rules(f"{rules_user.name}  pids  {r}\n")
    policy_daemon.start()
    # root starts (no rule matches), then becomes the user without exec: a uid event
    code = (
        "import os, sys, time\n"
        f"os.setgroups([]); os.setresgid({rules_user.gid}, {rules_user.gid}, {rules_user.gid})\n"
        "sys.stdin.readline()\n"
        f"os.setresuid({rules_user.uid}, {rules_user.uid}, {rules_user.uid})\n"
        "time.sleep(60)\n"
    )
    import subprocess

    p = procs.spawn([sys.executable, "-c", code], stdin=subprocess.PIPE)
    time.sleep(0.2)
    assert _pids_cgroup(p.pid) != f"/{r}"
    p.popen.stdin.write(b"go\n")
    p.popen.stdin.flush()
    assert _wait_cgroup(p.pid, f"/{r}") == f"/{r}"


@pytest.mark.t2
def test_user_command_rule_and_template(policy_daemon, cgdir, cgroots, procs, tmp_path):
    d = cgdir("pids")
    r = rel(cgroots, d, "pids")
    name = "cgtsleep" + os.urandom(3).hex()
    binary = tmp_path / name
    shutil.copy("/bin/sleep", binary)
    policy_daemon.write_rules(f"*:{name}  pids  {r}/by-name/%p\n")
    policy_daemon.write(f"template {r}/by-name/%p {{ pids {{ pids.max = 33; }} }}\n")
    policy_daemon.start()
    p = procs.spawn([str(binary), "60"])
    made = os.path.join(d, "by-name", name)
    assert _wait_cgroup(p.pid, f"/{r}/by-name/{name}") == f"/{r}/by-name/{name}"
    with open(os.path.join(made, "pids.max")) as f:
        assert f.read().strip() == "33"  # made from the template
    p.kill()
    deadline = time.monotonic() + WAIT  # template-made: removed once empty
    while os.path.exists(made) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(made)


@pytest.mark.t3
def test_classify_root_or_owner(policy_daemon, cgdir, cgroots, procs, rules_user, place, test_user):
    d = cgdir("pids")
    r = rel(cgroots, d, "pids")
    policy_daemon.write_rules(f"{rules_user.name}  pids  {r}\n{test_user.name} pids {r}\n")
    policy_daemon.start()
    place.daemon = policy_daemon.daemon
    mine = procs.spawn(["sleep", "60"])  # root's: no rule matches
    (results,) = policy_daemon.call("Classify", "ai", ([mine.pid, 999999999],))
    assert results == [(mine.pid, "no rule matches"), (999999999, "not found")]
    theirs = procs.spawn(["sleep", "60"], user=rules_user)
    _wait_cgroup(theirs.pid, f"/{r}")
    # another user may not classify it; its owner and root may
    out = place.py("Classify", "ai", [theirs.pid], user=test_user, iface=INTERFACE1)
    assert out.returncode == 0 and "belongs to another user" in out.stdout, out.stdout
    (results,) = policy_daemon.call("Classify", "ai", ([theirs.pid],))
    assert results[0][1] == f"moved to pids:{r}"


@pytest.mark.t3
def test_bad_rules_change_nothing(policy_daemon, cgdir, cgroots, procs, rules_user):
    d = cgdir("pids")
    r = rel(cgroots, d, "pids")
    policy_daemon.write_rules(f"{rules_user.name}  pids  {r}\n")
    policy_daemon.start()
    policy_daemon.write_rules(f"{rules_user.name}  pids  {r}\n\n{rules_user.name} pids ../x\n")
    with pytest.raises(DBusError) as e:
        policy_daemon.call("Reload")
    assert "cgrules.conf:3:" in e.value.message and "'..'" in e.value.message
    p = procs.spawn(["sleep", "60"], user=rules_user)  # the old rules still apply
    assert _wait_cgroup(p.pid, f"/{r}") == f"/{r}"


@pytest.mark.t3
def test_forged_netlink_events_are_refused(
    policy_daemon, cgdir, cgroots, procs, rules_user, tmp_path
):
    """CVE-2011-1022: a local sender unicasts to the daemon's netlink port.  The rule names
    only a binary of this test's own (a rule matching every process would move whatever runs
    on the host meanwhile)."""
    d = cgdir("pids")
    r = rel(cgroots, d, "pids")
    name = "cgtforged" + os.urandom(3).hex()
    binary = tmp_path / name
    shutil.copy("/bin/sleep", binary)
    policy_daemon.write_rules(f"*:{name}  pids  {r}\n")  # would move the victim if believed
    daemon = policy_daemon.start()
    victim = procs.spawn([str(binary), "60"])
    # its own (real) exec event moves it: wait for that, move it back, then forge one
    assert _wait_cgroup(victim.pid, f"/{r}") == f"/{r}"
    with open(os.path.join(cgroots.mount("pids"), "cgroup.procs"), "w") as f:
        f.write(str(victim.pid))
    port = _netlink_port(daemon.popen.pid)
    forged = _kernel_msg(proc_connector.PROC_EVENT_EXEC, struct.pack("=ii", victim.pid, victim.pid))
    code = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 11)\n"
        f"s.sendto({forged!r}, ({port}, 0))\n"
    )
    # this kernel refuses an unprivileged sender outright; older ones delivered the message
    out = rules_user.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 or "PermissionError" in out.stderr, out.stderr
    # a sender the kernel does let through (root here) is refused by the daemon: not port 0
    import subprocess

    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)
    deadline = time.monotonic() + WAIT
    while policy_daemon.call("PolicyStatus")[0]["rules_refused"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert _pids_cgroup(victim.pid) == "/"


def _netlink_port(pid: int) -> int:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    with open("/proc/net/netlink") as f:
        for line in f.read().split("\n")[1:]:
            cols = line.split()
            if len(cols) >= 10 and cols[1] == "11" and cols[9] in inodes:
                return int(cols[2])
    raise AssertionError("the daemon has no NETLINK_CONNECTOR socket")


@pytest.mark.t2
def test_no_rules_no_socket(policy_daemon):
    daemon = policy_daemon.start()
    with pytest.raises(AssertionError):
        _netlink_port(daemon.popen.pid)
    assert socket  # (imported for the forged sender's constants)


@pytest.mark.t0
def test_a_failing_event_never_stalls_the_queue():
    """A process dying under the engine's feet can make its /proc short or empty: that event
    is counted and skipped, and the events behind it are still handled."""
    import asyncio

    from cgmanager.policy import engine
    from cgmanager.policy.proc_connector import Event

    loop = asyncio.new_event_loop()
    try:
        eng = engine.Engine(loop, None, None, None, lambda: None)
        seen = []

        def handle(e):
            seen.append(e.tgid)
            if e.tgid == 1:
                raise ValueError("substring not found")  # parse of an empty stat

        eng._handle = handle
        for tgid in (1, 2, 3):
            eng._queue.append(Event(proc_connector.PROC_EVENT_EXEC, tgid, 0))
            eng._queued.add(tgid)
        eng._draining = True
        loop.call_soon(eng._drain)
        loop.run_until_complete(asyncio.sleep(0.05))
        assert seen == [1, 2, 3] and not eng._draining and eng.n["exited"] == 1
    finally:
        loop.close()
