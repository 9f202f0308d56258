"""v1 details the daemon takes care of without global writes."""

import ast
import os

import pytest

pytestmark = [pytest.mark.t2, pytest.mark.t3]


def test_created_cpuset_cgroups_inherit_cpus_and_mems(place):
    if "cpuset" not in place.dirs:
        pytest.skip("no cpuset hierarchy served")
    cp = place.py("Create", "ss", "cpuset", "cs/a")
    assert cp.returncode == 0, cp.stdout
    base = place.path("cpuset")
    for key in ("cpuset.cpus", "cpuset.mems"):
        assert open(f"{base}/cs/a/{key}").read() == open(f"{base}/{key}").read() != "\n"
    sleeper = place.spawn(["sleep", "100"])
    cp = place.py("MovePid", "ssi", "cpuset", "cs/a", sleeper.pid)
    assert cp.returncode == 0, cp.stdout
    # no host-global switch was flipped for it
    root = place.mounts["cpuset"]
    assert open(f"{root}/cgroup.clone_children").read() == "0\n"
    assert ast.literal_eval(place.py("GetTasks", "ss", "cpuset", "cs/a").stdout.strip()) == (
        [sleeper.pid],
    )
    assert os.path.isdir(f"{base}/cs/a")
