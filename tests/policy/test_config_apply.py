"""T1/T2: the daemon applies its configuration directory for real — at start, on SIGHUP and
on Reload — idempotently, all or nothing per group, never touching what it does not describe;
a bad file changes nothing."""

from __future__ import annotations

import os
import signal
import time

import pytest

from cgmanager.dbus.errors import DBusError

from .conftest import rel

pytestmark = [pytest.mark.t2]


def _read(path: str, key: str) -> str:
    with open(os.path.join(path, key)) as f:
        return f.read().strip()


def _config(ns: dict[str, str], body: str) -> str:
    table = "".join(f"    {k} = {v};\n" for k, v in ns.items())
    return f"namespace {{\n{table}}}\n{body}"


@pytest.fixture
def where(cgdir, cgroots):
    """Per-test cgroups in pids (v1), freezer (v1) and the v2 tree; the configuration's
    namespace block puts every group below them."""
    dirs = {name: cgdir(name) for name in ("pids", "freezer", "unified")}
    ns = {name: rel(cgroots, path, name) for name, path in dirs.items()}
    return dirs, ns


WEB = """
group web {{
    perm {{
        admin {{ uid = {uid}; gid = {gid}; dperm = 775; }}
        task {{ uid = {uid}; gid = {gid}; fperm = 664; }}
    }}
    pids {{ pids.max = 10; }}
    freezer {{ }}
    unified {{ cgroup.max.depth = 3; }}
}}
"""


def test_boot_config_applied_then_idempotent(policy_daemon, where, test_user):
    dirs, ns = where
    policy_daemon.write(_config(ns, WEB.format(uid=test_user.uid, gid=test_user.gid)))
    d = policy_daemon.start()  # applied before the socket answers
    web = {name: os.path.join(path, "web") for name, path in dirs.items()}
    assert _read(web["pids"], "pids.max") == "10"
    assert _read(web["unified"], "cgroup.max.depth") == "3"
    for name in ("pids", "freezer", "unified"):
        st = os.stat(web[name])
        assert (st.st_uid, st.st_gid) == (test_user.uid, test_user.gid), name
        assert st.st_mode & 0o777 == 0o775
        procs = os.stat(os.path.join(web[name], "cgroup.procs"))
        assert (procs.st_uid, procs.st_mode & 0o777) == (test_user.uid, 0o664)
    # resource files stay root's: a delegatee must not raise its own limits
    assert os.stat(os.path.join(web["pids"], "pids.max")).st_uid == 0
    assert "config: group web" in d.log()
    # a second application changes nothing; the diff is empty
    (report,) = policy_daemon.call("Reload")
    assert report == []
    (diff,) = policy_daemon.call("ConfigDiff", "s", ("",))
    assert diff == []


def test_existing_groups_brought_to_state_not_recreated(policy_daemon, where, procs, test_user):
    dirs, ns = where
    web = os.path.join(dirs["pids"], "web")
    os.mkdir(web)
    with open(os.path.join(web, "pids.max"), "w") as f:
        f.write("50")
    sibling = os.path.join(dirs["pids"], "undescribed")
    os.mkdir(sibling)
    p = procs.spawn(["sleep", "60"], cgroup=web)
    policy_daemon.write(_config(ns, "group web { pids { pids.max = 20; } }"))
    policy_daemon.start()
    assert _read(web, "pids.max") == "20"
    assert str(p.pid) in _read(web, "cgroup.procs").split()  # the same cgroup, not a new one
    assert os.path.isdir(sibling)  # what is not described is never touched
    # a changed file: the diff shows exactly the change; SIGHUP applies it
    policy_daemon.write(_config(ns, "group web { pids { pids.max = 30; } }"))
    (diff,) = policy_daemon.call("ConfigDiff", "s", ("",))
    assert len(diff) == 1 and "set    pids:" in diff[0] and "pids.max: 20 -> 30" in diff[0], diff
    assert _read(web, "pids.max") == "20"  # diffing changed nothing
    policy_daemon.daemon.popen.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while _read(web, "pids.max") != "30" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _read(web, "pids.max") == "30"


def test_a_bad_file_changes_nothing(policy_daemon, where):
    dirs, ns = where
    good = _config(ns, "group a { pids { pids.max = 5; } }")
    policy_daemon.write(good)
    d = policy_daemon.start()
    a = os.path.join(dirs["pids"], "a")
    assert _read(a, "pids.max") == "5"
    # group b is fine, but line 7 is not: nothing of the file is applied
    bad = _config(
        ns, "group a { pids { pids.max = 6; } }\ngroup b { pids { } }\ngroup c { pids {\n"
    )
    policy_daemon.write(bad)
    with pytest.raises(DBusError) as e:
        policy_daemon.call("Reload")
    assert e.value.name == "org.linuxcontainers.cgmanager.Error.InvalidArgument"
    assert "test.conf:" in e.value.message and "unexpected end of file" in e.value.message
    d.popen.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while d.log().count("the last good one stays in force") < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert d.log().count("the last good one stays in force") == 2
    assert _read(a, "pids.max") == "5"
    assert not os.path.exists(os.path.join(dirs["pids"], "b"))
    assert d.popen.poll() is None  # still serving
    policy_daemon.call("PolicyStatus")


def test_all_or_nothing_per_group(policy_daemon, where):
    dirs, ns = where
    policy_daemon.write(
        _config(
            ns,
            "group good { pids { pids.max = 7; } }\n"
            "group bad { pids { pids.max = 3; } freezer { } unified { cgroup.max.depth = lots; } }\n",
        )
    )
    policy_daemon.start()
    (report,) = policy_daemon.call("Reload")
    assert _read(os.path.join(dirs["pids"], "good"), "pids.max") == "7"
    # the kernel refused one value of group bad: none of its hierarchies keep anything
    for name in ("pids", "freezer", "unified"):
        assert not os.path.exists(os.path.join(dirs[name], "bad")), name
    failed = [line for line in report if "group bad" in line]
    assert failed and "failed: at set" in failed[0] and "nothing was changed" in failed[0]


def test_only_host_root_reloads(policy_daemon, where, place, test_user):
    policy_daemon.start()
    place.daemon = policy_daemon.daemon
    r = place.py("Reload", user=test_user, iface="org.linuxcontainers.cgmanager1")
    assert r.returncode == 1 and "NotPermitted" in r.stdout and "only host root" in r.stdout
    r = place.py("ConfigDiff", "s", "", user=test_user, iface="org.linuxcontainers.cgmanager1")
    assert r.returncode == 1 and "NotPermitted" in r.stdout
