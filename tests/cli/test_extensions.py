"""cgm freeze, thaw, kill, events, stat: the front end of org.linuxcontainers.cgmanager1."""

import json
import os

import pytest
from kernel.helpers import wait_for

from .test_commands import sleeper

pytestmark = pytest.mark.t3


def test_freeze_thaw_events(cgm, place):
    cgm.ok("create", "unified", "job")
    s = sleeper(place)
    cgm.ok("movepid", "unified", "job", str(s.pid))
    assert cgm.ok("events", "unified", "job") == "populated 1\nfrozen 0\n"
    assert cgm.ok("freeze", "unified", "job") == ""
    assert cgm.ok("events", "unified", "job") == "populated 1\nfrozen 1\n"
    assert json.loads(cgm.ok("--json", "events", "unified", "job")) == {"populated": 1, "frozen": 1}
    assert cgm.ok("thaw", "unified", "job") == ""
    assert cgm.ok("events", "unified", "job") == "populated 1\nfrozen 0\n"


def test_kill_prints_the_count(cgm, place):
    cgm.ok("create", "pids", "k")
    victims = [sleeper(place) for _ in range(2)]
    for v in victims:
        cgm.ok("movepid", "pids", "k", str(v.pid))
    assert cgm.ok("kill", "pids", "k") == "2\n"
    assert all(wait_for(lambda v=v: not v.alive()) for v in victims)
    assert json.loads(cgm.ok("--json", "kill", "pids", "k")) == {"killed": 0}


def test_stat(cgm, place):
    cgm.ok("create", "unified", "st/a")
    out = cgm.ok("stat", "unified", "st")
    assert "nr_descendants 1\n" in out and "nr_dying_descendants" in out


def test_refusals_keep_the_042_error_shape(cgm, place, test_user):
    cp = cgm("freeze", "pids", "")
    assert cp.returncode == 1 and cp.stderr.startswith("call to cgmanager_freeze_sync failed: ")
    cp = cgm("kill", "unified", "/", user=test_user)
    assert cp.returncode == 1 and "cgmanager_kill_sync failed" in cp.stderr


def test_setup_in_one_call(cgm, place, test_user):
    s = sleeper(place)
    out = cgm.ok(
        "setup", "pids,unified", "ct", "pids.max=9", "unified:cgroup.max.depth=2", f"pid={s.pid}"
    )
    assert out == "pids:ct\nunified:ct\n"
    assert open(place.path("pids") + "/ct/pids.max").read().strip() == "9"
    assert open(place.path("unified") + "/ct/cgroup.max.depth").read().strip() == "2"
    assert str(s.pid) in open(place.path("pids") + "/ct/cgroup.procs").read().split()
    assert json.loads(cgm.ok("--json", "setup", "pids", "ct2")) == ["pids:ct2"]
    # a failing step: nothing is left behind, and the 0.42 error shape holds
    cp = cgm("setup", "pids", "ct3", "pids.max=lots")
    assert cp.returncode == 1 and cp.stderr.startswith("call to cgmanager_setup_sync failed: ")
    assert "Setup failed at write pids.max" in cp.stderr
    assert not os.path.exists(place.path("pids") + "/ct3")


@pytest.mark.parametrize(
    "items, says",
    [
        (["owner=1"], "give uid:gid"),
        (["owner=a:b"], "decimal"),
        (["pid=0"], "not a process"),
        (["pid=x"], "not a process"),
        (["bogus"], "is not owner="),
        (["max=1"], "unknown item"),
        (["pids.max=1", "pids.max=2"], "given twice"),
    ],
)
def test_setup_items_are_checked_before_calling(cgm, place, items, says):
    cp = cgm("setup", "pids", "bad", *items)
    assert cp.returncode == 1 and says in cp.stderr and "Usage:" in cp.stderr
    assert not os.path.exists(place.path("pids") + "/bad")
