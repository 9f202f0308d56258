"""cgm as an unprivileged user (0.42's tests 07, 10–13, 16, 17, 19, 24 with pids/freezer)."""

from __future__ import annotations

import json
import os

import pytest
from kernel.helpers import wait_for

from .conftest import CGM
from .test_commands import cgroup_of, failed, sleeper

pytestmark = pytest.mark.t3


@pytest.fixture
def zzz(cgm, test_user):
    """A cgroup root created and chowned to the test user (0.42's test09 setup)."""
    cgm.ok("create", "pids", "zzz")
    cgm.ok("chown", "pids", "zzz", str(test_user.uid), str(test_user.gid))
    return "zzz"


def test_user_cannot_create_in_roots_cgroup(cgm, place, test_user):
    msg = failed(
        cgm("create", "pids", "u1", user=test_user),
        "create_sync",
        place,
        ("Create", "ss", "pids", "u1"),
        user=test_user,
    )
    assert "not permitted" in msg
    assert not os.path.exists(place.path("pids") + "/u1")


def test_user_creates_inside_a_chowned_cgroup(cgm, place, test_user, zzz):
    """0.42's test12."""
    assert cgm.ok("create", "pids", "zzz/b", user=test_user) == ""
    st = os.stat(place.path("pids") + "/zzz/b")
    assert (st.st_uid, st.st_gid) == (test_user.uid, test_user.gid)
    assert cgm.ok("create", "pids", "zzz/b", user=test_user) == "Path existed\n"


def test_user_cannot_set_a_root_owned_limit(cgm, place, test_user, zzz):
    """0.42's test11."""
    msg = failed(
        cgm("setvalue", "pids", "zzz", "pids.max", "99", user=test_user),
        "set_value_sync",
        place,
        ("SetValue", "ssss", "pids", "zzz", "pids.max", "99"),
        user=test_user,
    )
    assert "not permitted" in msg
    assert cgm.ok("getvalue", "pids", "zzz", "pids.max") == "max\n"


def test_user_sets_limits_of_its_own_child(cgm, place, test_user, zzz):
    """0.42's test13: the creator owns every file of the cgroups it creates."""
    cgm.ok("create", "pids", "zzz/b", user=test_user)
    assert cgm.ok("setvalue", "pids", "zzz/b", "pids.max", "99", user=test_user) == ""
    assert cgm.ok("getvalue", "pids", "zzz/b", "pids.max", user=test_user) == "99\n"


def test_user_cannot_set_limits_of_a_root_created_child(cgm, place, test_user):
    """0.42's test16: chowning gives the cgroup, not its limits."""
    cgm.ok("create", "pids", "zzz/b")
    cgm.ok("chown", "pids", "zzz/b", str(test_user.uid), "0")
    failed(cgm("setvalue", "pids", "zzz/b", "pids.max", "5", user=test_user), "set_value_sync")


def test_user_cannot_chown(cgm, place, test_user, zzz):
    msg = failed(
        cgm("chown", "pids", "zzz", "0", "0", user=test_user),
        "chown_sync",
        place,
        ("Chown", "ssii", "pids", "zzz", 0, 0),
        user=test_user,
    )
    assert "not permitted" in msg


def test_user_cannot_move_roots_process(cgm, place, test_user, zzz):
    """0.42's test07."""
    s = sleeper(place)
    msg = failed(
        cgm("movepid", "pids", "zzz", str(s.pid), user=test_user),
        "move_pid_main_sync",
        place,
        ("MovePid", "ssi", "pids", "zzz", s.pid),
        user=test_user,
    )
    assert "not permitted" in msg
    assert cgroup_of(s.pid, "pids") == place.hp("pids")


def test_user_moves_its_own_process_into_its_cgroup(cgm, place, test_user, zzz):
    """0.42's test10."""
    s = sleeper(place, user=test_user)
    assert cgm.ok("movepid", "pids", "zzz", str(s.pid), user=test_user) == ""
    assert cgroup_of(s.pid, "pids") == place.hp("pids") + "/zzz"
    assert cgm.ok("gettasks", "pids", "zzz", user=test_user) == f"{s.pid}\n"


def test_user_movepid_to_slash_refused(cgm, place, test_user):
    """0.42's test19: an unprivileged movepid to '/' fails."""
    s = sleeper(place, user=test_user)
    failed(cgm("movepid", "pids", "/", str(s.pid), user=test_user), "move_pid_main_sync")


def test_user_chmodfile_needs_ownership(cgm, place, test_user):
    """0.42's test17."""
    cgm.ok("create", "pids", "testchown")
    failed(cgm("chmodfile", "pids", "testchown", "tasks", "0775", user=test_user), "chmod_sync")
    cgm.ok("chown", "pids", "testchown", str(test_user.uid), "0")
    assert cgm.ok("chmodfile", "pids", "testchown", "tasks", "0775", user=test_user) == ""
    assert os.stat(place.path("pids") + "/testchown/tasks").st_mode & 0o777 == 0o775


def test_user_prune_refused(cgm, place, test_user):
    """0.42's test24."""
    cgm.ok("create", "freezer", "prune0/prune1/prune2")
    failed(cgm("prune", "freezer", "prune0", user=test_user), "prune_sync")
    assert os.path.isdir(place.path("freezer") + "/prune0/prune1/prune2")


def test_user_reads_what_it_may(cgm, place, test_user, zzz):
    assert cgm.ok("ping", user=test_user) == ""
    assert cgm.ok("apiversion", user=test_user) == "10\n"
    assert cgm.ok("getvalue", "pids", "zzz", "pids.max", user=test_user) == "max\n"
    assert cgm.ok("listchildren", "pids", "", user=test_user) == "zzz\n"
    lines = cgm.ok("listkeys", "pids", "zzz", user=test_user).splitlines()
    assert f"tasks {test_user.uid} {test_user.gid} 100644" in lines


def test_user_remove_refused_then_allowed_below_its_cgroup(cgm, place, test_user, zzz):
    failed(cgm("remove", "pids", "zzz", user=test_user), "remove_sync (recursive)")
    cgm.ok("create", "pids", "zzz/mine/deeper", user=test_user)
    assert cgm.ok("remove", "pids", "zzz/mine", user=test_user) == ""
    assert not os.path.exists(place.path("pids") + "/zzz/mine")


def test_user_runs_the_fast_launcher(cgm, place, test_user, fast_cgm, zzz):
    cp = cgm("getvalue", "pids", "zzz", "pids.max", user=test_user, binary=fast_cgm)
    assert (cp.returncode, cp.stdout, cp.stderr) == (0, "max\n", "")
    cp = cgm("create", "pids", "nope", user=test_user, binary=fast_cgm)
    assert cp.returncode == 1 and cp.stderr.startswith("call to cgmanager_create_sync failed: ")


def test_the_man_page_example(cgm, place, test_user):
    """man/cgm.1 EXAMPLES, with a bash run as the user standing for the user's shell."""
    uid, gid = str(test_user.uid), str(test_user.gid)
    cgm.ok("create", "all", "foo")
    cgm.ok("setvalue", "pids", "foo", "pids.max", "100")
    cgm.ok("chown", "all", "foo", uid, gid)
    script = (
        "set -e\n"
        "cgm movepid all foo $$\n"
        "cgm getvalue pids '' pids.max\n"
        "cgm create pids,freezer job\n"
        "cgm setvalue pids job pids.max 10\n"
        "cgm setvalue freezer job freezer.state FROZEN\n"
        "cgm --json gettasks pids job\n"
        "cgm setvalue freezer job freezer.state THAWED\n"
        "echo done\n"
    )
    path = f"PATH={os.path.dirname(CGM)}:/usr/bin:/bin"  # `cgm` is the venv's console script
    cp = place.run(["env", path, "bash", "-c", script], user=test_user)
    assert (cp.returncode, cp.stderr) == (0, ""), cp.stdout + cp.stderr
    assert cp.stdout == "100\n[]\ndone\n"
    for key in place.dirs:
        assert os.path.isdir(place.path(key) + "/foo"), key
    assert os.stat(place.path("pids") + "/foo/job/pids.max").st_uid == test_user.uid
    with open(place.path("pids") + "/foo/job/pids.max") as f:
        assert f.read() == "10\n"


def test_socket_the_user_may_not_reach(cgm, test_user):
    import socket
    import tempfile

    d = tempfile.mkdtemp(prefix="cgm-private-")  # root's, mode 0700
    path = os.path.join(d, "sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.bind(path)
        s.listen(1)
        cp = cgm("--socket", path, "ping", user=test_user)
    finally:
        s.close()
        os.unlink(path)
        os.rmdir(d)
    assert (cp.returncode, cp.stdout) == (1, "")
    assert cp.stderr == (
        "Failed opening dbus connection: org.freedesktop.DBus.Error.AccessDenied: Failed to "
        f"connect to socket {path}: Permission denied\n"
        f"cgm: not allowed to connect to {path} (from --socket); "
        "use --socket PATH or CGM_SOCKET to reach a cgmanager listening elsewhere\n"
    )


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def test_new_subcommands_inside_a_delegation(cgm, place, test_user, zzz):
    """exec, setvalue with units, get, dump, tree and top as the user, on its own cgroups."""
    spawned = place.spawn(
        [cgm.binary, "exec", "--create", "pids", "zzz/job", "pids.max=1K", "--", "sleep", "300"],
        user=test_user,
    )
    worker = spawned.pid  # cgm becomes sleep: the harness's own child, reaped by it
    assert wait_for(lambda: _cmdline(worker).startswith(b"sleep\0"), timeout=30)
    try:
        assert cgroup_of(worker, "pids") == place.hp("pids") + "/zzz/job"
        assert cgm.ok("setvalue", "pids", "zzz/job", "pids.max", "2.5K", user=test_user) == ""
        assert cgm.ok("get", "zzz/job", "pids.max", "pids.current", user=test_user) == (
            "pids.max:     2500\npids.current: 1\n"
        )
        assert "pids.events:" in cgm.ok("dump", "pids", "zzz/job", user=test_user)
        tree = cgm.ok("tree", "pids", "zzz", user=test_user).splitlines()
        assert tree == [f"pids:{place.hp('pids')}/zzz", "└─job", f"  └─{worker} sleep 300"]
        (frame,) = [
            json.loads(line)
            for line in cgm.ok(
                "--json", "top", "--once", "-d", "0.1", "pids", "zzz", user=test_user
            ).splitlines()
        ]
        rows = {c["path"]: c for c in frame["cgroups"]}
        assert rows[place.hp("pids") + "/zzz/job"]["tasks"] == 1
    finally:
        assert cgm.ok("kill", "pids", "zzz/job", user=test_user) == "1\n"
