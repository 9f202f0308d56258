"""org.linuxcontainers.cgmanager1: freeze/thaw (waiting for the kernel), kill (v2
cgroup.kill, v1 fallback), events and stat — under the same permission model as 0_0."""

import pytest
from kernel.helpers import wait_for

from cgmanager.contract import INTERFACE1

from .replies import ok, refused

pytestmark = pytest.mark.t3


def call(place, method, *args, user=None):
    return place.py(method, "ss", *args, user=user, iface=INTERFACE1)


def sleepers(place, key, cgroup, n=2, user=None):
    procs = [place.spawn(["sleep", "100"], user=user) for _ in range(n)]
    for p in procs:
        assert place.py("MovePid", "ssi", key, cgroup, p.pid).returncode == 0
    return procs


@pytest.mark.parametrize("key, state", [("unified", "cgroup.events"), ("freezer", "freezer.state")])
def test_freeze_returns_once_frozen_and_thaw_once_thawed(place, key, state):
    ok(place.py("Create", "ss", key, "fz"))
    sleepers(place, key, "fz")
    assert ok(call(place, "Freeze", key, "fz")) == ()
    text = open(f"{place.path(key)}/fz/{state}").read()
    assert "frozen 1" in text if key == "unified" else text.strip() == "FROZEN"
    assert ok(call(place, "GetEvents", key, "fz"))[0]["frozen"] == 1
    assert ok(call(place, "Thaw", key, "fz")) == ()
    text = open(f"{place.path(key)}/fz/{state}").read()
    assert "frozen 0" in text if key == "unified" else text.strip() == "THAWED"


def test_freeze_needs_a_freezer(place):
    ok(place.py("Create", "ss", "pids", "nf"))
    refused(call(place, "Freeze", "pids", "nf"), "Unsupported")


@pytest.mark.parametrize("key", ["unified", "pids", "freezer"])
def test_kill_empties_the_subtree(place, key):
    ok(place.py("Create", "ss", key, "k/deeper"))
    victims = sleepers(place, key, "k") + sleepers(place, key, "k/deeper", 1)
    assert ok(call(place, "Kill", key, "k")) == (3,)
    for v in victims:
        assert wait_for(lambda v=v: not v.alive())
    assert wait_for(lambda: ok(call(place, "GetEvents", key, "k"))[0]["populated"] == 0)
    if key == "freezer":
        assert open(place.path(key) + "/k/freezer.state").read().strip() == "THAWED"


def test_events_and_stat(place):
    ok(place.py("Create", "ss", "unified", "e/a/b"))
    assert ok(call(place, "GetEvents", "unified", "e")) == ({"populated": 0, "frozen": 0},)
    st = ok(call(place, "GetStat", "unified", "e"))[0]
    assert st["nr_descendants"] == 2 and "nr_dying_descendants" in st
    ok(place.py("Create", "ss", "pids", "e/a/b"))
    assert ok(call(place, "GetStat", "pids", "e")) == ({"nr_descendants": 2},)
    sleepers(place, "pids", "e/a/b", 1)
    assert ok(call(place, "GetEvents", "pids", "e")) == ({"populated": 1},)


def test_a_delegatee_cannot_freeze_or_kill_another_users_process(place, test_user):
    ok(place.py("Create", "ss", "unified", "d"))
    ok(place.py("Chown", "ssii", "unified", "d", test_user.uid, test_user.gid))
    root_proc = place.spawn(["sleep", "100"])
    # the daemon refuses to place root's process in the user's cgroup ...
    refused(place.py("MovePid", "ssi", "unified", "d", root_proc.pid), "NotPermitted")
    # ... but an administrator may do it behind the daemon's back: the victim rule still holds
    with open(place.path("unified") + "/d/cgroup.procs", "w") as f:
        f.write(str(root_proc.pid))
    ok(place.py("Create", "ss", "unified", "d/own", user=test_user))
    refused(call(place, "Kill", "unified", "d", user=test_user), "NotPermitted")
    refused(call(place, "Freeze", "unified", "d", user=test_user), "NotPermitted")
    assert root_proc.alive()
    assert "frozen 0" in open(place.path("unified") + "/d/cgroup.events").read()
    # its own processes in its own child: fine
    [mine] = sleepers(place, "unified", "d/own", 1, user=test_user)
    assert ok(call(place, "Kill", "unified", "d/own", user=test_user)) == (1,)
    assert wait_for(lambda: not mine.alive())
    assert root_proc.alive()


def test_outside_the_callers_subtree_is_not_found(place, test_user):
    for m in ("Freeze", "Kill", "GetEvents", "GetStat"):
        refused(call(place, m, "unified", "/", user=test_user), "NotFound")


def test_list_hierarchies_names_the_v2_tree_that_list_controllers_leaves_out(place):
    """On this hybrid host ListControllers lists what 0.42's clients find in /proc/self/cgroup
    (the v1 hierarchies); ListHierarchies lists every served hierarchy with its version."""
    from cgmanager.hierarchy import discover_host

    (got,) = ok(place.py("ListHierarchies", "", iface=INTERFACE1))
    served = {h.key: h for h in discover_host().hierarchies if h.key in place.daemon.served}
    assert {key for key, _, _ in got} == set(served)
    for key, version, names in got:
        assert version == served[key].version
        assert key in names and set(names) == set(served[key].names)
    assert ("unified", 2) in {(k, v) for k, v, _ in got}
    (controllers,) = ok(place.py("ListControllers"))
    assert sorted(controllers) == sorted(k for k, v, _ in got if v == 1)
