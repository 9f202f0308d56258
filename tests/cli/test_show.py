"""Units in and out through cgm, and ``cgm get``/``dump`` (cgget): several files across
hierarchies at once, table or JSON, as root and as an unprivileged user."""

from __future__ import annotations

import json

import pytest

from .test_commands import failed

pytestmark = pytest.mark.t3


@pytest.mark.parametrize(
    "key,file,given,kernel",
    [
        ("pids", "pids.max", "1K", "1000"),
        ("pids", "pids.max", "2.5K", "2500"),
        ("pids", "pids.max", "max", "max"),
        ("unified", "cgroup.max.descendants", "1k", "1000"),
        ("unified", "cgroup.max.depth", "12", "12"),
        ("cpu", "cpu.cfs_quota_us", "50ms", "50000"),
        ("cpu", "cpu.cfs_period_us", "0.2s", "200000"),
        ("cpu", "cpu.cfs_quota_us", "max", "-1"),
    ],
)
def test_setvalue_converts_units_exactly(cgm, place, key, file, given, kernel):
    if key not in place.dirs:
        pytest.skip(f"this run serves no {key} hierarchy")
    cgm.ok("create", key, "u")
    assert cgm.ok("setvalue", key, "u", file, given) == ""
    with open(f"{place.path(key)}/u/{file}") as f:
        assert f.read().strip() == kernel


def test_a_value_that_cannot_be_converted_changes_nothing(cgm, place):
    cgm.ok("create", "pids", "u")
    cp = cgm("setvalue", "pids", "u", "pids.max", "1.2345K")
    assert (cp.returncode, cp.stdout) == (1, "")
    assert cp.stderr.startswith("Bad value: pids.max: 1.2345K is not a whole number\n")
    assert cgm.ok("getvalue", "pids", "u", "pids.max") == "max\n"
    # unknown syntax goes to the kernel, which judges it
    failed(cgm("setvalue", "pids", "u", "pids.max", "12Q"), "set_value_sync")


def test_setup_takes_units(cgm, place):
    cgm.ok("setup", "pids,unified", "s", "pids.max=1K", "unified:cgroup.max.descendants=2k")
    assert open(place.path("pids") + "/s/pids.max").read() == "1000\n"
    assert open(place.path("unified") + "/s/cgroup.max.descendants").read() == "2000\n"


def test_human_output(cgm, place):
    cgm.ok("create", "unified", "h")
    usage = cgm.ok("getvalue", "-h", "unified", "h", "cpu.stat")
    assert usage.splitlines()[0].startswith("usage_usec ")
    assert usage.splitlines()[0].split()[1][-1] in "sm" or usage.startswith("usage_usec 0us")
    assert cgm.ok("getvalue", "--human", "pids", "", "pids.max") == "max\n"
    raw = cgm.ok("getvalue", "unified", "h", "cpu.stat").splitlines()[0]
    assert raw.split()[1].isdigit()  # raw by default


def test_get_across_hierarchies(cgm, place):
    cgm.ok("create", "pids,unified", "g")
    cgm.ok("setvalue", "pids", "g", "pids.max", "7")
    out = cgm.ok("get", "g", "pids.max", "pids.current", "unified:cgroup.max.depth")
    assert out == (
        "pids:\npids.max:         7\npids.current:     0\n\nunified:\ncgroup.max.depth: max\n"
    )
    # one hierarchy: no headers; a value of several lines is indented below its first
    out = cgm.ok("get", "g", "unified:cgroup.events", "unified:cgroup.max.depth").splitlines()
    assert out[0] == "cgroup.events:    populated 0"
    assert out[1] == "                  frozen 0"
    doc = json.loads(cgm.ok("--json", "get", "g", "pids.max", "unified:cgroup.max.depth"))
    assert doc == {
        "pids": {"cgroup": "g", "values": {"pids.max": "7"}, "errors": {}},
        "unified": {"cgroup": "g", "values": {"cgroup.max.depth": "max"}, "errors": {}},
    }


def test_get_reports_what_it_could_not_read_after_the_rest(cgm, place):
    cgm.ok("create", "pids", "g")
    cp = cgm("get", "g", "pids.max", "pids.nosuch")
    assert cp.returncode == 1
    assert cp.stdout == "pids.max: max\n"
    assert cp.stderr.startswith("cgm: get pids:pids.nosuch: ")
    cp = cgm("get", "g", "cgroup.procs")
    assert cp.returncode == 1 and "names no hierarchy; say controller:file" in cp.stderr


def test_dump_every_readable_file(cgm, place, test_user):
    cgm.ok("create", "pids", "d")
    cgm.ok("chmodfile", "pids", "d", "pids.max", "0600")
    out = cgm.ok("dump", "pids", "d")
    files = [line.split(":")[0] for line in out.splitlines() if line and line[0] != " "]
    assert {"pids.max", "pids.current", "pids.events", "cgroup.procs", "tasks"} <= set(files)
    assert files == sorted(files)
    # as a user: what it may read, without the file it may not
    mine = cgm.ok("dump", "pids", "d", user=test_user)
    assert "pids.current:" in mine and "pids.max:" not in mine
    doc = json.loads(cgm.ok("--json", "dump", "pids,unified", "d"))
    assert doc["pids"]["values"]["pids.max"] == "max" and "unified" not in doc  # (no d there)


def test_dump_of_nothing_fails_as_listkeys(cgm, place):
    failed(
        cgm("dump", "pids", "ghost"), "list_keys_sync", place, ("ListKeys", "ss", "pids", "ghost")
    )
