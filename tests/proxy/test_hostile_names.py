"""Issue 12, findings 1 and 4, through cgproxy: root of a container (whose uid map it shares
with its user's other containers, as LXC maps them) names a cgroup as a line of
/proc/<pid>/cgroup; a name that is not UTF-8 sits in a container's cgroup.  The names are
made on cgroupfs by the host on the container's behalf, as a container with a cgroupfs mount
makes them itself."""

from __future__ import annotations

import os

import pytest
from daemon.hostile_helpers import kernel_state

from cgmanager.kerneltext import proc_cgroup
from proxy import container as ct
from proxy.helpers import hpath, ok, refused

pytestmark = pytest.mark.t3

LS = "\u2028"


def _forging(box) -> tuple[str, str]:
    """(hierarchy listed before pids, the name posing as the pids line)."""
    with open("/proc/self/cgroup") as f:
        lines = proc_cgroup(f.read())
    pids = next(i for i, ln in enumerate(lines) if "pids" in ln.controllers)
    for ln in lines[:pids]:
        key = ",".join(ln.controllers)
        if key in box.dirs and key != "pids":
            return key, f"x{LS}{lines[pids].hierarchy_id}:pids:"
    pytest.skip("no served hierarchy is listed before pids")


def _give(path: bytes, uid: int = 100000) -> None:
    os.mkdir(path)
    for f in (b"", b"cgroup.procs", b"tasks"):
        p = os.path.join(path, f) if f else path
        if os.path.exists(p):
            os.chown(p, uid, uid)


def _pose(src: str, escaped: str, b_rel: str) -> dict:
    """inside, in a child of the agent (container root): move itself into the name, then ask."""
    from cgmanager.dbus.client import connect
    from cgmanager.dbus.errors import DBusError

    def run() -> dict:
        out = {}
        with connect(ct.PROXY_ADDRESS, timeout=20) as c:

            def call(method, sig, *args):
                try:
                    return ["ok", c.call(ct.OBJ, ct.IFACE, method, sig, args)]
                except DBusError as e:
                    return [e.name, e.message]

            out["move"] = call("MovePid", "ssi", src, escaped, os.getpid())
            with open("/proc/self/cgroup") as f:
                out["where"] = f.read()
            out["abs"] = call("GetPidCgroupAbs", "si", "pids", os.getpid())
            out["children"] = call("ListChildren", "ss", "pids", "")
            out["create_in_b"] = call("Create", "ss", "pids", b_rel + "/evil")
        return out

    return ct._as_uid(0, run)


def test_a_container_cannot_pose_as_sitting_at_the_hosts_root(containers, cgroots):
    a, b = containers.new(), containers.new()
    src, name = _forging(a)
    res = a(ct.py_call, "Create", "ss", (src, name))
    assert "U+2028" in refused(res, "InvalidArgument")
    raw = name.encode()
    _give(os.fsencode(a.dirs[src]) + b"/" + raw)
    escaped = "x\ufffde2\ufffd80\ufffda8" + name[2:]
    b_rel = hpath(cgroots, "pids", b.dirs["pids"]).lstrip("/")  # b's cgroup from the host root
    b_before = kernel_state(*b.dirs.values())
    real = {e.name for e in os.scandir(a.dirs["pids"]) if e.is_dir(follow_symlinks=False)}
    out = a(_pose, src, escaped, b_rel)
    assert out["move"] == ["ok", ()], out
    assert f"{name}\n" in out["where"]  # the attack happened: the kernel shows the name
    assert out["abs"] == ["ok", ("/",)], out  # the truth: the proxy's own cgroup, not the host's
    assert out["children"][0] == "ok", out
    assert set(out["children"][1][0]) == real  # its own children, not the host root's
    assert kernel_state(*b.dirs.values()) == b_before  # the other tenant's cgroups untouched
    assert not os.path.exists(os.path.join(b.dirs["pids"], "evil"))


def test_a_name_that_is_not_utf8_is_listed_escaped_through_the_proxy(box):
    base = os.fsencode(box.dirs["pids"])
    _give(base + b"/\xff\xfe")
    _give(base + b"/fine")
    before = kernel_state(box.dirs["pids"])
    want = {"\ufffdff\ufffdfe", "fine"}
    assert set(ok(box(ct.py_call, "ListChildren", "ss", ("pids", "")))[0]) == want
    assert set(box(ct.scm_call, "ListChildrenScm", ("pids", ""), None)[1]) == want
    assert ok(box(ct.py_call, "GetTasksRecursive", "ss", ("pids", "")))[0]  # (init, proxy)
    assert kernel_state(box.dirs["pids"]) == before
    assert ok(box(ct.py_call, "Remove", "ssi", ("pids", "\ufffdff\ufffdfe", 1))) == (1,)
    assert not os.path.exists(base + b"/\xff\xfe")
