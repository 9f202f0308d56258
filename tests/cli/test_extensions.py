"""cgm freeze, thaw, kill, events, stat: the front end of org.linuxcontainers.cgmanager1."""

import json

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
