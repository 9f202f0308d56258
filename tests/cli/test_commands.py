"""Every subcommand of 0.42's cgm against the live daemon, as root: output lines, exit status and
error lines checked exactly (pids, freezer and the v2 tree only; never memory)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from .conftest import CGM

pytestmark = pytest.mark.t3


def daemon_error(place, method, sig, *args, user=None):
    """(error name, message) the daemon gives our Python client for the same call."""
    cp = place.py(method, sig, *args, user=user)
    assert cp.returncode == 1, cp.stdout + cp.stderr
    name, message = cp.stdout.split("\n", 2)[:2]
    return name, message


def failed(cp, fn, place=None, call=None, user=None):
    """The 0.42-shaped error line, exactly; with *call*, the daemon's own message (the same
    call made by our Python client, as *user*)."""
    assert cp.returncode == 1, (cp.returncode, cp.stdout, cp.stderr)
    assert cp.stdout == ""
    prefix = f"call to cgmanager_{fn} failed: "
    assert (
        cp.stderr.startswith(prefix) and cp.stderr.endswith("\n") and cp.stderr.count("\n") == 1
    ), cp.stderr
    message = cp.stderr[len(prefix) : -1]
    if call is not None:
        assert message == daemon_error(place, *call, user=user)[1]
    return message


def sleeper(place, user=None):
    p = place.spawn(["sleep", "300"], user=user)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # until it has exec'd (its cmdline says sleep)
        try:
            with open(f"/proc/{p.pid}/cmdline", "rb") as f:
                if f.read().startswith(b"sleep\0"):
                    return p
        except FileNotFoundError:
            pass
        time.sleep(0.01)
    return p


def cgroup_of(pid, key):
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            hid, ctrls, path = line.rstrip("\n").split(":", 2)
            if (key == "unified" and hid == "0") or key in ctrls.split(","):
                return path
    raise KeyError(key)


# -- ping / apiversion / listcontrollers -------------------------------------------------------


def test_ping_prints_nothing(cgm):
    assert cgm.ok("ping") == ""


def test_ping_ignores_extra_arguments(cgm):
    assert cgm.ok("ping", "extra", "args") == ""


def test_apiversion(cgm):
    assert cgm.ok("apiversion") == "10\n"
    assert cgm.ok("apiversion", "ignored") == "10\n"


def test_listcontrollers_matches_the_daemon(cgm, place):
    cp = place.py("ListControllers")
    want = eval(cp.stdout)[0]  # repr of the reply tuple from our own client
    assert cgm.ok("listcontrollers") == "".join(f"{c}\n" for c in want)
    assert "pids" in want and "freezer" in want and "memory" not in want


# -- create / remove ---------------------------------------------------------------------------


def test_create_then_existed(cgm, place):
    assert cgm.ok("create", "pids", "a") == ""
    assert os.path.isdir(place.path("pids") + "/a")
    assert cgm.ok("create", "pids", "a") == "Path existed\n"


def test_create_nested_and_all(cgm, place):
    assert cgm.ok("create", "all", "x/y") == ""
    for key in place.dirs:
        assert os.path.isdir(f"{place.path(key)}/x/y"), key
    assert cgm.ok("create", "pids,freezer", "x") == "Path existed\n"


def test_create_empty_cgroup_is_a_no_op(cgm):
    assert cgm.ok("create", "pids", "") == ""


def test_create_refuses_dotdot(cgm, place):
    failed(
        cgm("create", "pids", "../escape"),
        "create_sync",
        place,
        ("Create", "ss", "pids", "../escape"),
    )
    assert not os.path.exists(os.path.dirname(place.path("pids")) + "/escape")


def test_create_unknown_controller(cgm, place):
    msg = failed(
        cgm("create", "nosuchctl", "a"), "create_sync", place, ("Create", "ss", "nosuchctl", "a")
    )
    assert "nosuchctl" in msg


def test_remove_recursive_by_default(cgm, place):
    cgm.ok("create", "pids", "r/a/b")
    assert cgm.ok("remove", "pids", "r") == ""
    assert not os.path.exists(place.path("pids") + "/r")
    assert cgm.ok("remove", "pids", "r") == "Path did not exist\n"


def test_remove_non_recursive_fails_on_children(cgm, place):
    """0.42's test14."""
    cgm.ok("create", "pids", "xxx/bbb")
    assert cgm.ok("listchildren", "pids", "xxx") == "bbb\n"
    failed(cgm("remove", "pids", "xxx", "0"), "remove_sync (non-recursive)")
    assert os.path.isdir(place.path("pids") + "/xxx/bbb")
    assert cgm.ok("remove", "pids", "xxx/bbb", "0") == ""
    assert cgm.ok("remove", "pids", "xxx/bbb", "0") == "Path did not exist\n"
    assert cgm.ok("remove", "pids", "xxx", "1") == ""
    assert not os.path.exists(place.path("pids") + "/xxx")


def test_remove_1_is_recursive_and_other_values_are_refused(cgm, place):
    """0.42 removed recursively for any value but 0; only 0 and 1 are taken now (a typo must
    not remove a subtree), and the refusal changes nothing."""
    cgm.ok("create", "pids", "q/w")
    for flag in ("yes", "2", "O"):
        cp = cgm("remove", "pids", "q", flag)
        assert cp.returncode == 1 and cp.stderr.startswith(f"Bad recursive flag: {flag!r}; ")
    assert os.path.isdir(place.path("pids") + "/q/w")
    assert cgm.ok("remove", "pids", "q", "1") == ""
    assert not os.path.exists(place.path("pids") + "/q")


def test_remove_busy_cgroup_fails(cgm, place):
    cgm.ok("create", "pids", "busy")
    s = sleeper(place)
    cgm.ok("movepid", "pids", "busy", str(s.pid))
    msg = failed(
        cgm("remove", "pids", "busy"),
        "remove_sync (recursive)",
        place,
        ("Remove", "ssi", "pids", "busy", 1),
    )
    assert "busy" in msg


# -- values --------------------------------------------------------------------------------------


def test_getvalue_setvalue(cgm, place):
    cgm.ok("create", "pids", "v")
    assert cgm.ok("getvalue", "pids", "v", "pids.max") == "max\n"
    assert cgm.ok("setvalue", "pids", "v", "pids.max", "42") == ""
    assert cgm.ok("getvalue", "pids", "v", "pids.max") == "42\n"
    with open(place.path("pids") + "/v/pids.max") as f:
        assert f.read() == "42\n"


def test_getvalue_of_own_cgroup_and_absolute_path(cgm, place):
    assert cgm.ok("getvalue", "freezer", "", "freezer.state") == "THAWED\n"
    cgm.ok("create", "pids", "abs")
    assert cgm.ok("getvalue", "pids", place.hp("pids") + "/abs", "pids.max") == "max\n"


def test_getvalue_multi_line(cgm, place):
    cgm.ok("create", "unified", "ml")
    assert cgm.ok("getvalue", "unified", "ml", "cgroup.events") == "populated 0\nfrozen 0\n"


def test_getvalue_missing_cgroup(cgm, place):
    msg = failed(
        cgm("getvalue", "pids", "nope", "pids.max"),
        "get_value_sync",
        place,
        ("GetValue", "sss", "pids", "nope", "pids.max"),
    )
    assert "not found" in msg


def test_getvalue_dotdot_refused(cgm, place):
    """0.42's test05."""
    failed(
        cgm("getvalue", "pids", "../xxx0123/b", "pids.max"),
        "get_value_sync",
        place,
        ("GetValue", "sss", "pids", "../xxx0123/b", "pids.max"),
    )


def test_getvalue_of_a_sibling_refused(cgm, place):
    """0.42's test27: an absolute path outside the caller's cgroup is refused."""
    outside = os.path.dirname(place.hp("pids"))
    failed(
        cgm("getvalue", "pids", outside, "pids.max"),
        "get_value_sync",
        place,
        ("GetValue", "sss", "pids", outside, "pids.max"),
    )


def test_setvalue_kernel_rejects(cgm, place):
    cgm.ok("create", "pids", "kr")
    failed(
        cgm("setvalue", "pids", "kr", "pids.max", "lots"),
        "set_value_sync",
        place,
        ("SetValue", "ssss", "pids", "kr", "pids.max", "lots"),
    )
    assert cgm.ok("getvalue", "pids", "kr", "pids.max") == "max\n"


def test_setvalue_freezer(cgm, place):
    cgm.ok("create", "freezer", "fz")
    s = sleeper(place)
    cgm.ok("movepid", "freezer", "fz", str(s.pid))
    assert cgm.ok("setvalue", "freezer", "fz", "freezer.state", "FROZEN") == ""
    deadline = time.monotonic() + 5
    while cgm.ok("getvalue", "freezer", "fz", "freezer.state") != "FROZEN\n":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert cgm.ok("setvalue", "freezer", "fz", "freezer.state", "THAWED") == ""


def test_setvalue_tasks_refused(cgm, place):
    cgm.ok("create", "pids", "t")
    failed(
        cgm("setvalue", "pids", "t", "tasks", "1"),
        "set_value_sync",
        place,
        ("SetValue", "ssss", "pids", "t", "tasks", "1"),
    )


def test_value_starting_with_dash_is_an_argument(cgm, place):
    cgm.ok("create", "unified", "dash")
    # "-1" is not an option: it reaches the daemon (and the kernel refuses it for this key)
    failed(
        cgm("setvalue", "unified", "dash", "cgroup.max.depth", "-1"),
        "set_value_sync",
        place,
        ("SetValue", "ssss", "unified", "dash", "cgroup.max.depth", "-1"),
    )
    assert cgm.ok("setvalue", "unified", "dash", "cgroup.max.depth", "--", "3") == ""
    assert cgm.ok("getvalue", "unified", "dash", "cgroup.max.depth") == "3\n"


# -- pids ---------------------------------------------------------------------------------------


def test_movepid_and_getpidcgroup(cgm, place):
    """0.42's test06."""
    cgm.ok("create", "pids", "xxx/b")
    s = sleeper(place)
    assert cgm.ok("getpidcgroup", "pids", str(s.pid)) == "/\n"
    assert cgm.ok("movepid", "pids", "xxx/b", str(s.pid)) == ""
    assert cgroup_of(s.pid, "pids") == place.hp("pids") + "/xxx/b"
    assert cgm.ok("getpidcgroup", "pids", str(s.pid)) == "xxx/b\n"
    assert cgm.ok("getpidcgroupabs", "pids", str(s.pid)) == place.hp("pids") + "/xxx/b\n"
    assert cgm.ok("movepid", "pids", "xxx", str(s.pid)) == ""
    assert cgm.ok("getpidcgroup", "pids", str(s.pid)) == "xxx\n"


def test_movepid_to_a_list_of_controllers(cgm, place):
    cgm.ok("create", "all", "everywhere")
    s = sleeper(place)
    assert cgm.ok("movepid", "pids,freezer,unified", "everywhere", str(s.pid)) == ""
    for key in ("pids", "freezer", "unified"):
        assert cgroup_of(s.pid, key) == place.hp(key) + "/everywhere", key
    # "all" includes cpuset: a cgroup created by cgmanager inherits its parent's cpus and mems
    assert cgm.ok("movepid", "all", "everywhere", str(s.pid)) == ""
    if "cpuset" in place.dirs:
        assert cgroup_of(s.pid, "cpuset") == place.hp("cpuset") + "/everywhere"


def test_movepidabs(cgm, place):
    """0.42's test19 (as root, to the run's own cgroup rather than /)."""
    cgm.ok("create", "pids", "esc/deeper")
    s = sleeper(place)
    cgm.ok("movepid", "pids", "esc/deeper", str(s.pid))
    assert cgm.ok("movepidabs", "pids", place.hp("pids") + "/esc", str(s.pid)) == ""
    assert cgroup_of(s.pid, "pids") == place.hp("pids") + "/esc"


def test_movepid_leading_slash_refused(cgm, place):
    s = sleeper(place)
    failed(
        cgm("movepid", "pids", "/", str(s.pid)),
        "move_pid_main_sync",
        place,
        ("MovePid", "ssi", "pids", "/", s.pid),
    )


def test_movepid_missing_process(cgm, place):
    cgm.ok("create", "pids", "m")
    failed(cgm("movepid", "pids", "m", "2147483647"), "move_pid_main_sync")
    failed(cgm("movepidabs", "pids", "m", "2147483647"), "move_pid_main_sync")


def test_getpidcgroup_of_a_process_outside(cgm, place):
    failed(
        cgm("getpidcgroup", "pids", "1"),
        "get_pid_cgroup_sync",
        place,
        ("GetPidCgroup", "si", "pids", 1),
    )
    failed(cgm("getpidcgroupabs", "pids", "2147483647"), "get_pid_cgroup_abs_sync")


def test_gettasks(cgm, place):
    """0.42's test15."""
    cgm.ok("create", "pids", "xxx/c")
    assert cgm.ok("gettasks", "pids", "xxx/c") == ""
    s = sleeper(place)
    cgm.ok("movepid", "pids", "xxx/c", str(s.pid))
    assert cgm.ok("gettasks", "pids", "xxx/c") == f"{s.pid}\n"
    own = cgm.ok("gettasks", "pids").splitlines()  # '' by default: the caller's cgroup
    assert own and str(s.pid) not in own and all(line.isdigit() for line in own)


def test_gettasksrecursive(cgm, place):
    """0.42's test25 (freezer and pids instead of freezer and memory)."""
    cgm.ok("create", "freezer,pids", "z1/z2/z3")
    p = [sleeper(place) for _ in range(4)]
    for s in p[:2]:
        cgm.ok("movepid", "freezer", "z1/z2/z3", str(s.pid))
    cgm.ok("movepid", "freezer", "z1/z2", str(p[2].pid))
    cgm.ok("movepid", "pids", "z1/z2/z3", str(p[1].pid))
    cgm.ok("movepid", "pids", "z1", str(p[2].pid))
    want = sorted(s.pid for s in p[:3])
    assert cgm.ok("gettasksrecursive", "freezer", "z1") == "".join(f"{x}\n" for x in want)
    assert cgm.ok("gettasksrecursive", "pids", "z1") == "".join(
        f"{x}\n" for x in sorted([p[1].pid, p[2].pid])
    )
    assert cgm.ok("gettasksrecursive", "freezer", "z1/z2/z3").count("\n") == 2
    assert cgm.ok("gettasksrecursive", "freezer,pids", "z1") == "".join(f"{x}\n" for x in want)


def test_gettasks_missing_cgroup(cgm, place):
    failed(
        cgm("gettasks", "pids", "ghost"),
        "get_tasks_sync",
        place,
        ("GetTasks", "ss", "pids", "ghost"),
    )
    failed(cgm("gettasksrecursive", "pids", "/"), "get_tasks_recursive_sync")


def test_gettasksrecursive_missing_everywhere_fails(cgm, place):
    """Issue 13.2: 0 and no output before.  Missing (or unreadable) in every hierarchy named
    fails with the first one's error, as GetTasks; missing in some of several is skipped."""
    msg = failed(
        cgm("gettasksrecursive", "pids", "ghost"),
        "get_tasks_recursive_sync",
        place,
        ("GetTasksRecursive", "ss", "pids", "ghost"),
    )
    assert "ghost" in msg and "not found" in msg
    assert failed(cgm("gettasksrecursive", "pids,freezer", "ghost"), "get_tasks_recursive_sync")
    cgm.ok("create", "pids", "half")
    s = sleeper(place)
    cgm.ok("movepid", "pids", "half", str(s.pid))
    assert cgm.ok("gettasksrecursive", "freezer,pids", "half") == f"{s.pid}\n"
    cgm.ok("create", "freezer", "empty")
    assert cgm.ok("gettasksrecursive", "freezer,pids", "empty") == ""


def test_gettasksrecursive_unreadable_for_the_caller_fails(cgm, place, test_user):
    cgm.ok("create", "pids", "shut")
    cgm.ok("chmod", "pids", "shut", "0700")
    msg = failed(
        cgm("gettasksrecursive", "pids", "shut", user=test_user),
        "get_tasks_recursive_sync",
        place,
        ("GetTasksRecursive", "ss", "pids", "shut"),
        user=test_user,
    )
    assert "not permitted" in msg


# -- listing ------------------------------------------------------------------------------------


def test_listchildren(cgm, place):
    """0.42's test20."""
    assert cgm.ok("listchildren", "pids", "") == ""
    cgm.ok("create", "pids", "ooga")
    cgm.ok("create", "pids", "booga/x")
    assert sorted(cgm.ok("listchildren", "pids", "").splitlines()) == ["booga", "ooga"]
    assert sorted(cgm.ok("listchildren", "pids").splitlines()) == ["booga", "ooga"]
    assert cgm.ok("listchildren", "pids", "booga") == "x\n"
    assert cgm.ok("listchildren", "pids", "ooga") == ""
    failed(
        cgm("listchildren", "pids", "ooga2"),
        "list_children_sync",
        place,
        ("ListChildren", "ss", "pids", "ooga2"),
    )


def test_listkeys_lines_match_the_files(cgm, place):
    cgm.ok("create", "pids", "lk")
    d = place.path("pids") + "/lk"
    want = sorted(
        f"{n} {st.st_uid} {st.st_gid} {st.st_mode:o}"
        for n in os.listdir(d)
        if os.path.isfile(os.path.join(d, n)) and (st := os.stat(os.path.join(d, n)))
    )
    out = cgm.ok("listkeys", "pids", "lk")
    assert sorted(out.splitlines()) == want
    assert "tasks 0 0 100644" in out.splitlines()
    assert "pids.max 0 0 100644" in out.splitlines()


def test_listkeys_after_chown(cgm, place):
    """0.42's test26: the chowned tasks file shows the new owner."""
    cgm.ok("create", "pids", "listkeys1")
    cgm.ok("chown", "pids", "listkeys1", "100000", "100000")
    lines = cgm.ok("listkeys", "pids", "listkeys1").splitlines()
    assert "tasks 100000 100000 100644" in lines
    assert "pids.max 0 0 100644" in lines


def test_listkeys_of_own_cgroup(cgm, place):
    names = [line.split()[0] for line in cgm.ok("listkeys", "pids").splitlines()]
    assert "cgroup.procs" in names and "pids.max" in names


# -- chown / chmod -------------------------------------------------------------------------------


def test_chown(cgm, place):
    """0.42's test09: the directory and the delegation files change owner, limits do not."""
    cgm.ok("create", "pids", "zzz")
    assert cgm.ok("chown", "pids", "zzz", "12345", "23456") == ""
    d = place.path("pids") + "/zzz"
    for f in ("", "/tasks", "/cgroup.procs"):
        st = os.stat(d + f)
        assert (st.st_uid, st.st_gid) == (12345, 23456), f
    assert os.stat(d + "/pids.max").st_uid == 0


def test_chmod_and_chmodfile(cgm, place):
    """0.42's test17 (as root)."""
    cgm.ok("create", "pids", "testchown")
    d = place.path("pids") + "/testchown"
    assert cgm.ok("chmodfile", "pids", "testchown", "tasks", "0775") == ""
    assert os.stat(d + "/tasks").st_mode & 0o7777 == 0o775
    assert cgm.ok("chmodfile", "pids", "testchown", "tasks", "644") == ""
    assert os.stat(d + "/tasks").st_mode & 0o7777 == 0o644
    assert cgm.ok("chmod", "pids", "testchown", "0700") == ""
    assert os.stat(d).st_mode & 0o7777 == 0o700


def test_chmod_refuses_special_bits(cgm, place):
    cgm.ok("create", "pids", "sb")
    failed(
        cgm("chmod", "pids", "sb", "4755"),
        "chmod_sync",
        place,
        ("Chmod", "sssi", "pids", "sb", "", 0o4755),
    )


def test_chmodfile_missing_file(cgm, place):
    cgm.ok("create", "pids", "mf")
    failed(
        cgm("chmodfile", "pids", "mf", "nonesuch", "0644"),
        "chmod_sync",
        place,
        ("Chmod", "sssi", "pids", "mf", "nonesuch", 0o644),
    )


# -- removeonempty / prune -----------------------------------------------------------------------


def wait_gone(path, timeout=10.0):
    deadline = time.monotonic() + timeout
    while os.path.exists(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_removeonempty(cgm, place):
    """0.42's test21 (pids instead of memory: the daemon watches without a release agent)."""
    cgm.ok("create", "pids", "roe")
    s = sleeper(place)
    cgm.ok("movepid", "pids", "roe", str(s.pid))
    assert cgm.ok("removeonempty", "pids", "roe") == ""
    assert os.path.isdir(place.path("pids") + "/roe")
    s.signal(signal.SIGKILL)
    s.wait(5)
    assert wait_gone(place.path("pids") + "/roe")


def test_removeonempty_missing(cgm, place):
    failed(
        cgm("removeonempty", "pids", "nothere"),
        "remove_on_empty_sync",
        place,
        ("RemoveOnEmpty", "ss", "pids", "nothere"),
    )


def test_prune(cgm, place):
    """0.42's test24 (as root)."""
    cgm.ok("create", "freezer", "prune0/prune1/prune2")
    assert cgm.ok("prune", "freezer", "prune0") == ""
    assert wait_gone(place.path("freezer") + "/prune0")
    failed(cgm("listchildren", "freezer", "prune0"), "list_children_sync")


def test_prune_busy_subtree_goes_when_empty(cgm, place):
    cgm.ok("create", "pids", "pb/busy")
    cgm.ok("create", "pids", "pb/idle")
    s = sleeper(place)
    cgm.ok("movepid", "pids", "pb/busy", str(s.pid))
    assert cgm.ok("prune", "pids", "pb") == ""
    assert wait_gone(place.path("pids") + "/pb/idle")
    assert os.path.isdir(place.path("pids") + "/pb/busy")
    s.signal(signal.SIGKILL)
    s.wait(5)
    assert wait_gone(place.path("pids") + "/pb")


# -- the same transcript through the fast launcher ----------------------------------------------


@pytest.mark.parametrize("which", ["pip script", "fast launcher"])
def test_both_launchers_behave_alike(cgm, place, fast_cgm, which):
    binary = CGM if which == "pip script" else fast_cgm
    run = lambda *a: cgm(*a, binary=binary)  # noqa: E731
    assert run("create", "pids", "both").stdout == ""
    assert run("create", "pids", "both").stdout == "Path existed\n"
    cp = run("getvalue", "pids", "both", "pids.max")
    assert (cp.returncode, cp.stdout, cp.stderr) == (0, "max\n", "")
    cp = run("getvalue", "pids", "nope", "pids.max")
    assert cp.returncode == 1 and cp.stderr.startswith("call to cgmanager_get_value_sync failed: ")
    assert run("--version").stdout == cgm("--version").stdout
    cp = run()
    assert (cp.returncode, cp.stdout) == (1, cgm().stdout)


def test_v1_key_on_the_v2_tree(cgm, place):
    """What cgm's help says: on unified, v1 key names are translated by the daemon."""
    cgm.ok("create", "unified", "v1keys")
    assert cgm.ok("getvalue", "unified", "v1keys", "freezer.state") == "THAWED\n"
