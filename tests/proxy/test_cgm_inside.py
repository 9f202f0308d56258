"""cgm works unchanged inside a container, through cgproxy at the standard socket."""

from __future__ import annotations

import json
import os
import sys

import pytest

from proxy import container as ct

pytestmark = pytest.mark.t3
CGM = os.path.join(os.path.dirname(sys.executable), "cgm")


def test_cgm_session_inside_a_container(box):
    script = f"""
set -e
cgm() {{ {CGM} "$@"; }}
cgm ping
cgm apiversion
cgm create pids,freezer job
cgm create pids job
cgm setvalue pids job pids.max 10
cgm getvalue pids job pids.max
cgm movepid pids job $$
cgm getpidcgroup pids $$
cgm getpidcgroupabs pids $$
cgm gettasks pids '' | grep -qx $$
cgm --json listkeys pids '' > /tmp/keys.json
cgm movepidabs pids / $$
cgm getpidcgroup pids $$
cgm listchildren pids
cgm remove pids job
cgm remove freezer job 0
"""
    rc, out, err = box(ct.sh, script)
    assert rc == 0, err
    assert out.splitlines() == [
        "10",  # apiversion
        "Path existed",  # the second create
        "10",  # getvalue
        "/",  # getpidcgroup: relative to cgm's own cgroup, which is now job as well
        "/job",  # getpidcgroupabs: "absolute" inside the container = below the proxy
        "/",  # back at the container's root
        "job",  # listchildren
    ]
    keys = json.loads(box(ct.run, ["cat", "/tmp/keys.json"])[1])
    by_name = {k["name"]: k for k in keys}
    assert by_name["pids.max"]["uid"] == 0  # the container's root, as the container sees it
    assert not os.path.exists(box.dirs["pids"] + "/job")


def test_cgm_refusals_inside_a_container(box):
    rc, out, err = box(ct.run, [CGM, "create", "pids", "x"], uid=1000)
    assert rc == 1 and out == ""
    assert err.startswith("call to cgmanager_create_sync failed: ")
    rc, _, err = box(ct.run, [CGM, "getvalue", "pids", "/", "pids.max"])
    assert rc == 1 and "cgmanager_get_value_sync failed" in err
    rc, out, err = box(ct.run, [CGM, "movepid", "pids", "", "1"], uid=1000)
    assert rc == 1


def test_exec_top_and_tree_through_cgproxy(box):
    """cgproxy forwards the 0.42 methods only: exec makes its cgroup step by step (Create,
    then MovePid), top and tree read cgroup by cgroup (ListChildren, GetValue)."""
    script = f"""
set -e
cgm() {{ {CGM} "$@"; }}
cgm exec --create pids job pids.max=1K -- sh -c 'grep pids /proc/self/cgroup'
cgm getvalue pids job pids.max
cgm exec --create --remove-on-exit pids tmp -- true
cgm listchildren pids
cgm --json top --once -d 0.2 pids
cgm tree pids
cgm remove pids job
"""
    rc, out, err = box(ct.sh, script)
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].endswith(":pids:/job")  # inside the container, relative to its root
    assert lines[1] == "1000"
    assert lines[2] == "job"  # tmp was removed after its command
    frame = json.loads(lines[3])
    by_path = {c["path"]: c for c in frame["cgroups"]}
    assert by_path["/job"]["tasks"] == 0 and "/" in by_path
    assert lines[4] == "pids:/"
    assert "└─job" in lines[5:]
    assert not os.path.exists(box.dirs["pids"] + "/job")
