"""Delegation done right: the per-delegation quota, and no other user's processes in a
delegatee's subtree (with the self-move and own-cgroup cases 0.42 clients rely on)."""

import os
import sys
from dataclasses import replace

import pytest

from .replies import ok, refused

pytestmark = pytest.mark.t3


def read(path):
    with open(path) as f:
        return f.read().strip()


def test_quota_on_delegated_v2_cgroups(start_daemon, place, test_user):
    d = start_daemon("--delegate-max-descendants", "2", "--delegate-max-depth", "3")
    p = replace(place, daemon=d)
    base = place.path("unified")
    ok(p.py("Create", "ss", "unified", "q"))
    ok(p.py("Chown", "ssii", "unified", "q", test_user.uid, test_user.gid))
    assert read(f"{base}/q/cgroup.max.descendants") == "2"
    assert read(f"{base}/q/cgroup.max.depth") == "3"
    assert os.stat(f"{base}/q/cgroup.max.descendants").st_uid == 0  # not the delegatee's
    ok(p.py("Create", "ss", "unified", "q/a", user=test_user))
    ok(p.py("Create", "ss", "unified", "q/b", user=test_user))
    refused(p.py("Create", "ss", "unified", "q/c", user=test_user), "LimitExceeded")
    assert not os.path.exists(f"{base}/q/c")
    refused(
        p.py("SetValue", "ssss", "unified", "q", "cgroup.max.descendants", "100", user=test_user),
        "NotPermitted",
    )
    # handing a cgroup to root is no delegation: no quota
    ok(p.py("Create", "ss", "unified", "r"))
    ok(p.py("Chown", "ssii", "unified", "r", 0, 0))
    assert read(f"{base}/r/cgroup.max.descendants") == "max"
    d.stop()


def test_no_quota_unless_asked(place, test_user):
    ok(place.py("Create", "ss", "unified", "nq"))
    ok(place.py("Chown", "ssii", "unified", "nq", test_user.uid, test_user.gid))
    assert read(place.path("unified") + "/nq/cgroup.max.descendants") == "max"


@pytest.mark.parametrize("key", ["unified", "pids"])
def test_other_users_processes_stay_out_of_a_delegation(place, test_user, make_test_user, key):
    other = make_test_user()
    ok(place.py("Create", "ss", key, "d"))
    ok(place.py("Chown", "ssii", key, "d", test_user.uid, test_user.gid))
    root_proc = place.spawn(["sleep", "100"])
    other_proc = place.spawn(["sleep", "100"], user=other)
    mine = place.spawn(["sleep", "100"], user=test_user)
    refused(place.py("MovePid", "ssi", key, "d", root_proc.pid), "NotPermitted")
    refused(place.py("MovePid", "ssi", key, "d", other_proc.pid), "NotPermitted")
    ok(place.py("MovePid", "ssi", key, "d", mine.pid))  # root placing the delegatee's own
    assert [int(x) for x in read(place.path(key) + "/d/cgroup.procs").split()] == [mine.pid]


def test_a_populated_cgroup_is_not_handed_to_another_user(place, test_user):
    ok(place.py("Create", "ss", "pids", "busy"))
    root_proc = place.spawn(["sleep", "100"])
    ok(place.py("MovePid", "ssi", "pids", "busy", root_proc.pid))
    refused(place.py("Chown", "ssii", "pids", "busy", test_user.uid, test_user.gid), "NotPermitted")
    assert os.stat(place.path("pids") + "/busy").st_uid == 0


CLIENT = """
import os, sys
from cgmanager.dbus.client import connect
c = connect({addr!r})
O, I = '/org/linuxcontainers/cgmanager', 'org.linuxcontainers.cgmanager0_0'
for step in sys.argv[1:]:
    method, *args = step.split(':')
    sig = {{'MovePid': 'ssi', 'Chown': 'ssii', 'Create': 'ss'}}[method]
    args = [os.getpid() if a == 'SELF' else int(a) if a.isdigit() else a for a in args]
    c.call(O, I, method, sig, tuple(args))
print(open('/proc/self/cgroup').read())
"""


def test_root_may_move_itself_into_a_users_cgroup(place, test_user):
    """pam_cgm's flow: create the session cgroup, hand it to the user, then enter it (still
    root, about to drop privileges)."""
    ok(place.py("Create", "ss", "pids", "session"))
    ok(place.py("Chown", "ssii", "pids", "session", test_user.uid, test_user.gid))
    code = CLIENT.format(addr=place.daemon.address)
    cp = place.run([sys.executable, "-c", code, "MovePid:pids:session:SELF"])
    assert cp.returncode == 0, cp.stderr
    assert f"pids:{place.hp('pids')}/session" in cp.stdout


def test_root_may_hand_over_the_cgroup_it_sits_in(place, test_user):
    """0.42's nstest: Chown of the caller's own cgroup, with only the caller in it."""
    ok(place.py("Create", "ss", "pids", "mine"))
    code = CLIENT.format(addr=place.daemon.address)
    cp = place.run(
        [
            sys.executable,
            "-c",
            code,
            "MovePid:pids:mine:SELF",
            f"Chown:pids::{test_user.uid}:{test_user.gid}",
        ]
    )
    assert cp.returncode == 0, cp.stderr
    assert os.stat(place.path("pids") + "/mine").st_uid == test_user.uid
