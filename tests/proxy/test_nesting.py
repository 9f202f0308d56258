"""A container inside the container, with its own proxy talking to the host daemon directly
(the host socket directory is bind-mounted all the way down)."""

from __future__ import annotations

import os

import pytest

from proxy import container as ct
from proxy.helpers import host_cgroup, host_pid, hpath, in_box, ok, refused, snapshot

pytestmark = pytest.mark.t3

NESTED = "pids,freezer,unified"


def test_second_level_container(containers, cgroots):
    a = containers.new()
    # A hands cgroup "nest" to its uid 1000 (host 101000), the nested container's root
    ok(a(ct.py_call, "Create", "ss", (NESTED, "nest")))
    ok(a(ct.py_call, "Chown", "ssii", (NESTED, "nest", 1000, 1000)))
    nid = a(ct.spawn_nested, "0 1000 1000", (NESTED, "nest"))
    b_pid1 = in_box(a, a(ct.nested_pid1, nid))
    # B sits in A's "nest" and sees it as its root
    assert host_cgroup(b_pid1, "pids") == hpath(cgroots, "pids", a.dirs["pids"] + "/nest")
    assert a(ct.nested, nid, ct.cgroup_of, 1)["pids"] == "/"
    a(ct.nested, nid, ct.start_proxy)
    assert a(ct.nested, nid, ct.listdir, ct.CG) == ["cgmanager", "cgmanager.lower", "cgproxy.log"]

    def inside_b(fn, *args, **kw):
        return a(ct.nested, nid, fn, *args, **kw)

    nest = a.dirs["pids"] + "/nest"
    sleeper = inside_b(ct.spawn_sleeper)
    host_sleeper = host_pid(b_pid1, sleeper)
    assert ok(inside_b(ct.py_call, "Create", "ss", ("pids", "inner"))) == (-1,)
    assert os.stat(f"{nest}/inner").st_uid == 101000  # B's root, as the host knows it
    rc, _, err = inside_b(
        ct.dbus_send, "MovePid", "string:pids", "string:inner", f"int32:{sleeper}"
    )
    assert rc == 0, err
    assert host_cgroup(host_sleeper, "pids") == hpath(cgroots, "pids", f"{nest}/inner")
    assert ok(inside_b(ct.py_call, "GetPidCgroupAbs", "si", ("pids", sleeper))) == ("/inner",)
    assert ok(inside_b(ct.py_call, "GetTasks", "ss", ("pids", "inner"))) == ([sleeper],)
    # B's root may not hand a cgroup holding its own process to its user 5 ...
    assert inside_b(ct.py_call, "Chown", "ssii", ("pids", "inner", 5, 5))[0] == "err"
    assert os.stat(f"{nest}/inner").st_uid == 101000
    # ... but an empty one, yes
    ok(inside_b(ct.py_call, "Create", "ss", ("pids", "inner5")))
    ok(inside_b(ct.py_call, "Chown", "ssii", ("pids", "inner5", 5, 5)))
    assert os.stat(f"{nest}/inner5").st_uid == 101005
    # A sees the same process under its own pid for it
    a_tasks = ok(a(ct.py_call, "GetTasks", "ss", ("pids", "nest/inner")))[0]
    assert len(a_tasks) == 1 and a_tasks[0] != 0

    # B reaches nothing of A's, nor of the host's
    a_sleeper = in_box(a, a(ct.spawn_sleeper))
    assert not inside_b(ct.pid_exists, a_sleeper)
    before = snapshot(cgroots)
    where = host_cgroup(a_sleeper, "pids")
    for method, sig, args in [
        ("GetValue", "sss", ("pids", "/", "pids.max")),
        ("ListChildren", "ss", ("pids", hpath(cgroots, "pids", a.dirs["pids"]))),
        ("SetValue", "ssss", ("pids", hpath(cgroots, "pids", a.dirs["pids"]), "pids.max", "1")),
        ("Create", "ss", ("pids", "../escape")),
        ("Remove", "ssi", ("pids", "", 1)),
        ("Chown", "ssii", ("pids", "inner", 5000, 5000)),  # unmapped in B (0..999 only)
        ("MovePid", "ssi", ("pids", "inner", a_sleeper)),  # A's process: invisible in B
        ("MovePidAbs", "ssi", ("pids", "/..", sleeper)),
    ]:
        refused(inside_b(ct.py_call, method, sig, args))
    assert snapshot(cgroots) == before
    assert host_cgroup(a_sleeper, "pids") == where
    # MovePidAbs escapes only up to B's proxy's cgroup: A's "nest"
    ok(inside_b(ct.py_call, "MovePidAbs", "ssi", ("pids", "/", sleeper)))
    assert host_cgroup(host_sleeper, "pids") == hpath(cgroots, "pids", nest)
    # B's proxy really talks to the host daemon, not to A's proxy
    log_a = a(ct.proxy_log)
    assert "Create('pids', 'inner')" not in log_a
    assert "Create('pids', 'inner'): ok" in inside_b(ct.proxy_log)
    a(ct.close_nested, nid)
