"""``--json``: every command that prints data prints one JSON document; failures too."""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cgmanager.cli.output import to_json

from .test_commands import sleeper


def js(cgm, *args, user=None):
    out = cgm.ok("--json", *args, user=user)
    assert out.endswith("\n") and out.count("\n") == 1, out
    return json.loads(out)


@pytest.mark.t3
def test_create_and_remove(cgm):
    assert js(cgm, "create", "pids", "j") == {"existed": False}
    assert js(cgm, "create", "pids", "j") == {"existed": True}
    assert js(cgm, "remove", "pids", "j") == {"existed": True}
    assert js(cgm, "remove", "pids", "j") == {"existed": False}


@pytest.mark.t3
def test_values(cgm):
    cgm.ok("create", "unified", "v")
    assert js(cgm, "getvalue", "unified", "v", "cgroup.max.depth") == {"value": "max"}
    assert js(cgm, "getvalue", "unified", "v", "cgroup.events") == {
        "value": "populated 0\nfrozen 0"
    }
    assert js(cgm, "apiversion") == {"api_version": 10}


@pytest.mark.t3
def test_option_after_the_subcommand(cgm):
    assert json.loads(cgm.ok("apiversion", "--json")) == {"api_version": 10}


@pytest.mark.t3
def test_lists(cgm, place):
    cgm.ok("create", "pids", "l/a")
    cgm.ok("create", "pids", "l/b")
    assert sorted(js(cgm, "listchildren", "pids", "l")) == ["a", "b"]
    assert js(cgm, "listchildren", "pids", "l/a") == []
    assert js(cgm, "listcontrollers") == cgm.ok("listcontrollers").splitlines()
    s = sleeper(place)
    cgm.ok("movepid", "pids", "l/a", str(s.pid))
    assert js(cgm, "gettasks", "pids", "l/a") == [s.pid]
    assert js(cgm, "gettasksrecursive", "pids", "l") == [s.pid]
    assert js(cgm, "getpidcgroup", "pids", str(s.pid)) == {"pid": s.pid, "cgroup": "l/a"}
    assert js(cgm, "getpidcgroupabs", "pids", str(s.pid)) == {
        "pid": s.pid,
        "cgroup": place.hp("pids") + "/l/a",
    }


@pytest.mark.t3
def test_listkeys(cgm, place):
    cgm.ok("create", "pids", "k")
    keys = js(cgm, "listkeys", "pids", "k")
    d = place.path("pids") + "/k"
    assert sorted(k["name"] for k in keys) == sorted(
        n for n in os.listdir(d) if os.path.isfile(os.path.join(d, n))
    )
    for k in keys:
        s = os.stat(os.path.join(d, k["name"]))
        assert (k["uid"], k["gid"], k["mode"]) == (s.st_uid, s.st_gid, s.st_mode)
        assert k["mode_octal"] == f"{s.st_mode:o}"


@pytest.mark.t3
def test_commands_without_data_print_nothing(cgm):
    assert cgm.ok("--json", "ping") == ""
    cgm.ok("create", "pids", "n")
    assert cgm.ok("--json", "setvalue", "pids", "n", "pids.max", "3") == ""


@pytest.mark.t3
def test_failure_is_json_on_stderr(cgm, place):
    cp = cgm("--json", "getvalue", "pids", "nope", "pids.max")
    assert (cp.returncode, cp.stdout) == (1, "")
    err = json.loads(cp.stderr)
    assert err["error"] == "org.linuxcontainers.cgmanager.Error.NotFound"
    assert err["call"] == "cgmanager_get_value_sync"
    assert "not found" in err["message"]


@pytest.mark.t3
def test_connection_failure_is_json_on_stderr(cgm, tmp_path):
    sock = str(tmp_path / "none" / "sock")  # no directory: cgm does not wait for a restart
    cp = cgm("--json", "--socket", sock, "ping")
    assert (cp.returncode, cp.stdout) == (1, "")
    err = json.loads(cp.stderr)
    assert err == {
        "error": "org.freedesktop.DBus.Error.FileNotFound",
        "message": f"Failed to connect to socket {sock}: No such file or directory",
        "socket": sock,
        "reason": f"cgmanager is not running (nothing listens on {sock}, from --socket)",
    }


# -- the hand-rolled writer against the json module ----------------------------------------------


@pytest.mark.t0
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers(-(2**63), 2**64) | st.text(),
        lambda kids: st.lists(kids) | st.dictionaries(st.text(), kids),
        max_leaves=20,
    )
)
def test_to_json_round_trips(value):
    assert json.loads(to_json(value)) == value


@pytest.mark.t0
def test_to_json_escapes():
    s = 'a"b\\c\nd\te\x00f\x1fg\x7fh\u2028i\U0001f600'
    assert json.loads(to_json(s)) == s
    assert "\n" not in to_json(s)
    assert to_json([1.5, float("nan"), {1: 2}]) == '[1.5, null, {"1": 2}]'
    with pytest.raises(TypeError):
        to_json({1.5})
