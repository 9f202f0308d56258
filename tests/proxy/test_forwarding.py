"""A container uses its cgproxy: everything a container legitimately does, through plain
``dbus-send`` and our Python client, with the effects checked on the host."""

from __future__ import annotations

import os

import pytest

from proxy import container as ct
from proxy.helpers import (
    dbus_ints,
    dbus_strings,
    host_cgroup,
    hpath,
    in_box,
    ok,
    owner,
    read,
    refused,
)

pytestmark = pytest.mark.t3


def test_setup_moves_the_socket_dir_and_serves_locally(box):
    assert box(ct.listdir, ct.CG) == ["cgmanager", "cgmanager.lower", "cgproxy.log"]
    mounts = box(ct.mountinfo)
    assert " /sys/fs/cgroup/cgmanager.lower " in mounts  # moved, not copied
    assert " /sys/fs/cgroup/cgmanager " not in mounts
    assert box(ct.connectable, ct.LOWER_ADDRESS)  # the host daemon, below
    rc, out, _ = box(ct.run, ["pidof", "cgproxy"])
    assert rc == 0 and len(out.split()) == 1
    rc, out, err = box(
        ct.run,
        [
            "dbus-send",
            f"--address={ct.PROXY_ADDRESS}",
            "--print-reply",
            "--type=method_call",
            ct.OBJ,
            "org.freedesktop.DBus.Properties.Get",
            f"string:{ct.IFACE}",
            "string:api_version",
        ],
    )
    assert rc == 0, err
    assert "int32 10" in out
    rc, _, err = box(ct.dbus_send, "Ping", "int32:0")
    assert rc == 0, err
    controllers = ok(box(ct.py_call, "ListControllers"))[0]
    assert "pids" in controllers and "freezer" in controllers


def test_dbus_send_lifecycle(box, cgroots):
    pids = box.dirs["pids"]
    sleeper = box(ct.spawn_sleeper)
    host_sleeper = in_box(box, sleeper)

    def send(method: str, *args: str) -> str:
        rc, out, err = box(ct.dbus_send, method, *args)
        assert rc == 0, f"{method}{args}: {err}"
        return out

    assert dbus_ints(send("Create", "string:pids", "string:c1")) == [-1]  # created
    assert dbus_ints(send("Create", "string:pids", "string:c1")) == [1]  # existed
    assert owner(f"{pids}/c1") == (100000, 100000)  # the container's root, as the host sees it

    send("Chown", "string:pids", "string:c1", "int32:1000", "int32:1000")
    assert owner(f"{pids}/c1") == (101000, 101000)  # container uid 1000, translated

    send("MovePid", "string:pids", "string:c1", f"int32:{sleeper}")
    assert host_cgroup(host_sleeper, "pids") == hpath(cgroots, "pids", f"{pids}/c1")
    assert dbus_ints(send("GetTasks", "string:pids", "string:c1")) == [sleeper]  # its own pids
    assert sleeper in dbus_ints(send("GetTasksRecursive", "string:pids", "string:"))
    assert dbus_strings(send("GetPidCgroup", "string:pids", f"int32:{sleeper}")) == ["c1"]
    assert dbus_strings(send("GetPidCgroupAbs", "string:pids", f"int32:{sleeper}")) == ["/c1"]

    send("SetValue", "string:pids", "string:c1", "string:pids.max", "string:7")
    assert read(f"{pids}/c1/pids.max") == "7"
    assert dbus_strings(send("GetValue", "string:pids", "string:c1", "string:pids.max")) == ["7"]
    assert "c1" in dbus_strings(send("ListChildren", "string:pids", "string:"))
    keys = send("ListKeys", "string:pids", "string:c1")
    assert 'string "pids.max"' in keys

    send("MovePid", "string:pids", "string:", f"int32:{sleeper}")  # back to the container's root
    assert host_cgroup(host_sleeper, "pids") == hpath(cgroots, "pids", pids)
    assert dbus_ints(send("Remove", "string:pids", "string:c1", "int32:0")) == [1]
    assert not os.path.exists(f"{pids}/c1")
    assert dbus_ints(send("Remove", "string:pids", "string:c1", "int32:0")) == [-1]


def test_python_client_on_v1_and_v2(box, cgroots):
    sleeper = box(ct.spawn_sleeper)
    host_sleeper = in_box(box, sleeper)
    for ctrl in ("unified", "freezer"):
        assert ok(box(ct.py_call, "Create", "ss", (ctrl, "p/q"))) == (-1,)
        ok(box(ct.py_call, "MovePid", "ssi", (ctrl, "p/q", sleeper)))
        assert host_cgroup(host_sleeper, ctrl) == hpath(cgroots, ctrl, f"{box.dirs[ctrl]}/p/q")
        assert ok(box(ct.py_call, "GetTasks", "ss", (ctrl, "p/q"))) == ([sleeper],)
        assert ok(box(ct.py_call, "GetTasksRecursive", "ss", (ctrl, "p"))) == ([sleeper],)
        assert ok(box(ct.py_call, "ListChildren", "ss", (ctrl, "p"))) == (["q"],)
    ok(box(ct.py_call, "SetValue", "ssss", ("freezer", "p/q", "freezer.state", "FROZEN")))
    assert read(f"{box.dirs['freezer']}/p/q/freezer.state") in ("FREEZING", "FROZEN")
    ok(box(ct.py_call, "SetValue", "ssss", ("freezer", "p/q", "freezer.state", "THAWED")))
    assert read(f"{box.dirs['freezer']}/p/q/freezer.state") == "THAWED"
    keys = ok(box(ct.py_call, "ListKeys", "ss", ("unified", "p/q")))[0]
    procs = next(k for k in keys if k[0] == "cgroup.procs")
    assert procs[1:3] == (0, 0)  # owned by the container's root, shown as the container sees it
    ok(box(ct.py_call, "Chmod", "sssi", ("unified", "p/q", "cgroup.procs", 0o664)))
    assert os.stat(f"{box.dirs['unified']}/p/q/cgroup.procs").st_mode & 0o777 == 0o664
    # several controllers at once, and Prune of an empty subtree
    assert ok(box(ct.py_call, "Create", "ss", ("pids,freezer", "multi/x"))) == (-1,)
    assert os.path.isdir(f"{box.dirs['pids']}/multi/x")
    assert os.path.isdir(f"{box.dirs['freezer']}/multi/x")
    ok(box(ct.py_call, "Prune", "ss", ("pids", "multi")))


def test_getpidcgroupabs_relative_to_the_proxy_like_test22(box):
    """0.42's test22: through the proxy, GetPidCgroup is relative to the requestor's cgroup,
    GetPidCgroupAbs to the proxy's (the container's root)."""
    script = f"""
set -e
send() {{ m=$1; shift; dbus-send --address={ct.PROXY_ADDRESS} --print-reply \\
    --type=method_call {ct.OBJ} {ct.IFACE}.$m "$@"; }}
sleep 100 >/dev/null 2>&1 &
spid=$!
send Create string:pids string:ab >/dev/null
send Create string:pids string:test22_cg >/dev/null
send MovePid string:pids string:test22_cg int32:$spid >/dev/null
send MovePid string:pids string:test22_cg int32:$$ >/dev/null
echo "p=$(send GetPidCgroup string:pids int32:$spid | sed -n 's/.*string "\\(.*\\)"/\\1/p')"
echo "absp=$(send GetPidCgroupAbs string:pids int32:$spid | sed -n 's/.*string "\\(.*\\)"/\\1/p')"
kill $spid
"""
    rc, out, err = box(ct.sh, script)
    assert rc == 0, err
    assert out.split() == ["p=/", "absp=/test22_cg"]


def test_unprivileged_container_user(box, cgroots):
    """A non-root user of the container works in a cgroup its root handed to it."""
    ok(box(ct.py_call, "Create", "ss", ("pids", "u1000")))
    ok(box(ct.py_call, "Chown", "ssii", ("pids", "u1000", 1000, 1000)))
    sleeper = box(ct.spawn_sleeper, 1000)
    root_sleeper = box(ct.spawn_sleeper)
    # uid 1000 is in the container's root cgroup; it may create below its own cgroup only
    # where it has write access: u1000 is its
    ok(box(ct.py_call, "Create", "ss", ("pids", "u1000/mine"), uid=1000))
    assert owner(f"{box.dirs['pids']}/u1000/mine") == (101000, 101000)
    ok(box(ct.py_call, "MovePid", "ssi", ("pids", "u1000/mine", sleeper), uid=1000))
    assert host_cgroup(in_box(box, sleeper), "pids").endswith("/u1000/mine")
    # but not a process of the container's root
    refused(box(ct.py_call, "MovePid", "ssi", ("pids", "u1000/mine", root_sleeper), uid=1000))
    assert not host_cgroup(in_box(box, root_sleeper), "pids").endswith("/u1000/mine")
    # nor chown (only root of the namespace may)
    refused(box(ct.py_call, "Chown", "ssii", ("pids", "u1000/mine", 1000, 1000), uid=1000))


def test_tasks_outside_the_container_are_not_listed(box, procs):
    """Pids the container cannot see (pid 0 after translation) name nothing there."""
    host_sleeper = procs.spawn(["sleep", "300"], cgroup=box.dirs["pids"])
    sleeper = box(ct.spawn_sleeper)
    tasks = ok(box(ct.py_call, "GetTasks", "ss", ("pids", "")))[0]
    assert sleeper in tasks and 1 in tasks
    assert 0 not in tasks and host_sleeper.pid not in tasks
    assert box(ct.scm_call, "GetTasksScm", ("pids", ""), None)[1] == tasks
