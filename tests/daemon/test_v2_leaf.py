"""T1 through the daemon: controllers enabled top-down on Create, and the no-internal-process
rule met with the daemon's `.cgm_leaf` (hugetlb is this machine's one v2 controller)."""

import os

import pytest

from .replies import ok, refused

pytestmark = [pytest.mark.t1, pytest.mark.t3]


def read(path):
    with open(path) as f:
        return f.read().split()


def hugetlb_files(path):
    return [n for n in os.listdir(path) if n.startswith("hugetlb.")]


def test_create_in_a_controller_enables_it_top_down(hugetlb, place):
    base = place.path("unified")
    sleeper = place.spawn(["sleep", "100"])  # a process in the place, like the client
    assert ok(place.py("Create", "ss", "hugetlb", "c/d")) == (-1,)
    assert "hugetlb" in read(f"{base}/cgroup.subtree_control")
    assert "hugetlb" in read(f"{base}/c/cgroup.subtree_control")
    assert hugetlb_files(f"{base}/c/d")
    # the place's processes moved into its leaf so it could pass hugetlb down ...
    assert int(read(f"{base}/.cgm_leaf/cgroup.procs")[0]) == sleeper.pid
    assert read(f"{base}/cgroup.procs") == []
    # ... and clients still see them in the place itself
    assert ok(place.py("GetPidCgroup", "si", "unified", sleeper.pid)) == ("/",)
    assert sleeper.pid in ok(place.py("GetTasks", "ss", "unified", ""))[0]
    assert ".cgm_leaf" not in ok(place.py("ListChildren", "ss", "unified", ""))[0]


def test_moves_into_a_cgroup_with_controllers_land_in_its_leaf(hugetlb, place):
    base = place.path("unified")
    ok(place.py("Create", "ss", "hugetlb", "m/inner"))
    sleeper = place.spawn(["sleep", "100"])
    ok(place.py("MovePid", "ssi", "unified", "m", sleeper.pid))  # m passes hugetlb down
    assert read(f"{base}/m/.cgm_leaf/cgroup.procs") == [str(sleeper.pid)]
    assert ok(place.py("GetPidCgroup", "si", "unified", sleeper.pid)) == ("m",)
    assert ok(place.py("GetTasks", "ss", "unified", "m")) == ([sleeper.pid],)
    sleeper.kill()
    # the leaf goes with its cgroup
    assert ok(place.py("Remove", "ssi", "unified", "m/inner", 0)) == (1,)
    assert ok(place.py("Remove", "ssi", "unified", "m", 0)) == (1,)
    assert not os.path.exists(f"{base}/m")


def test_the_leaf_is_reserved(place):
    for method, sig, args in [
        ("Create", "ss", ("unified", ".cgm_leaf")),
        ("MovePid", "ssi", ("unified", ".cgm_leaf", os.getpid())),
        ("GetValue", "sss", ("unified", ".cgm_leaf", "cgroup.procs")),
    ]:
        refused(place.py(method, sig, *args), "InvalidArgument")


def test_other_users_processes_are_never_moved_to_make_room(hugetlb, place, test_user):
    base = place.path("unified")
    ok(place.py("Create", "ss", "hugetlb", "d"))  # d has hugetlb available
    ok(place.py("Chown", "ssii", "unified", "d", test_user.uid, test_user.gid))
    root_proc = place.spawn(["sleep", "100"])
    with open(f"{base}/d/cgroup.procs", "w") as f:  # an administrator, behind the daemon
        f.write(str(root_proc.pid))
    refused(
        place.py(
            "SetValue", "ssss", "unified", "d", "cgroup.subtree_control", "+hugetlb", user=test_user
        ),
        "Busy",
    )
    assert read(f"{base}/d/cgroup.procs") == [str(root_proc.pid)]
    assert not os.path.exists(f"{base}/d/.cgm_leaf")


def test_a_controller_not_available_above_is_a_clear_error(place):
    """Without +hugetlb in the run's root, the place has no hugetlb to pass on."""
    assert "hugetlb" not in read(place.path("unified") + "/cgroup.controllers")
    cp = place.py("Create", "ss", "hugetlb", "x")
    refused(cp, "Unsupported")
    assert "must be enabled above" in cp.stdout
    assert not os.path.exists(place.path("unified") + "/x")
    cp = place.py("SetValue", "ssss", "unified", "", "cgroup.subtree_control", "+hugetlb")
    refused(cp, "Unsupported")
    assert "must be enabled above" in cp.stdout
