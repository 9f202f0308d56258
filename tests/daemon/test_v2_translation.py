"""T1 through the daemon: an old client's v1 keys on this machine's v2 tree.

Only what needs no v2 resource controller can run here (they are bound to v1); memory, cpu
and pids translations run in the T5 VM."""

import ast
import os

import pytest
from kernel.helpers import wait_for

pytestmark = [pytest.mark.t1, pytest.mark.t3]


def value(cp):
    assert cp.returncode == 0, cp.stdout + cp.stderr
    return ast.literal_eval(cp.stdout.strip())


def test_freezer_state_on_v2(place):
    assert value(place.py("Create", "ss", "unified", "fz")) == (-1,)
    sleeper = place.spawn(["sleep", "100"])
    value(place.py("MovePid", "ssi", "unified", "fz", sleeper.pid))
    assert value(place.py("GetValue", "sss", "unified", "fz", "freezer.state")) == ("THAWED",)
    value(place.py("SetValue", "ssss", "unified", "fz", "freezer.state", "FROZEN"))
    assert open(place.path("unified") + "/fz/cgroup.freeze").read() == "1\n"
    assert wait_for(
        lambda: value(place.py("GetValue", "sss", "unified", "fz", "freezer.state")) == ("FROZEN",)
    )
    assert "frozen 1" in open(place.path("unified") + "/fz/cgroup.events").read()
    value(place.py("SetValue", "ssss", "unified", "fz", "freezer.state", "THAWED"))
    assert wait_for(
        lambda: value(place.py("GetValue", "sss", "unified", "fz", "freezer.state")) == ("THAWED",)
    )


def test_bad_freezer_value_changes_nothing(place):
    value(place.py("Create", "ss", "unified", "fz2"))
    cp = place.py("SetValue", "ssss", "unified", "fz2", "freezer.state", "MELTED")
    assert cp.returncode != 0 and "InvalidArgument" in cp.stdout
    assert open(place.path("unified") + "/fz2/cgroup.freeze").read() == "0\n"


def test_tasks_reads_cgroup_threads(place):
    value(place.py("Create", "ss", "unified", "t"))
    sleeper = place.spawn(["sleep", "100"])
    value(place.py("MovePid", "ssi", "unified", "t", sleeper.pid))
    assert value(place.py("GetValue", "sss", "unified", "t", "tasks")) == (str(sleeper.pid),)
    cp = place.py("SetValue", "ssss", "unified", "t", "tasks", str(os.getpid()))
    assert cp.returncode != 0


def test_unmappable_keys_name_the_v2_alternative(place):
    value(place.py("Create", "ss", "unified", "u"))
    cp = place.py("SetValue", "ssss", "unified", "u", "devices.allow", "a *:* rwm")
    assert cp.returncode != 0 and "Unsupported" in cp.stdout and "BPF" in cp.stdout
    cp = place.py("SetValue", "ssss", "unified", "u", "notify_on_release", "1")
    assert cp.returncode != 0 and "RemoveOnEmpty" in cp.stdout


def test_v1_hierarchies_are_never_translated(place):
    value(place.py("Create", "ss", "freezer", "v1"))
    assert value(place.py("GetValue", "sss", "freezer", "v1", "freezer.state")) == ("THAWED",)
    assert not os.path.exists(place.path("freezer") + "/v1/cgroup.freeze")
