"""Issue 12, finding 1: a cgroup name posing as a line of /proc/<pid>/cgroup.

The kernel shows cgroup names unescaped in /proc/<pid>/cgroup.  A parser that splits lines
anywhere but at ``\\n`` (``str.splitlines`` splits at U+2028, U+0085, ``\\r``…) lets a
delegatee name a cgroup ``x<U+2028>8:pids:`` in a hierarchy the kernel lists before ``pids``,
move itself there, and be believed to sit at ``/`` of ``pids``.  Each test plays the attacker:
first through the API (refused: the name holds a character no name may hold), then as the
kernel lets a delegatee do anyway (``mkdir`` on cgroupfs, a write to its own ``cgroup.procs``),
and checks that what the daemon believes is what the kernel says and that nothing outside
the attacker's own cgroups changed.
"""

from __future__ import annotations

import json
import os
import sys

import pytest
from support.ns import run_in_ns

from cgmanager.kerneltext import proc_cgroup

from .hostile_helpers import kernel_state
from .replies import ok

pytestmark = pytest.mark.t3

ERR = "org.linuxcontainers.cgmanager.Error."
LS = "\u2028"  # LINE SEPARATOR: a line break for str.splitlines, not for the kernel


def _order() -> list[tuple[int, str]]:
    """(hierarchy id, controllers) of the lines of /proc/self/cgroup, in the kernel's order."""
    with open("/proc/self/cgroup") as f:
        return [(ln.hierarchy_id, ",".join(ln.controllers)) for ln in proc_cgroup(f.read())]


def _forging_setup(place) -> tuple[str, str, str]:
    """(hierarchy the name is made in, hierarchy it poses as, the name): a served v1
    hierarchy listed before the target, and a name that would read as the target's line."""
    order = _order()
    served = {"unified" if hid == 0 else ctrls: i for i, (hid, ctrls) in enumerate(order)}
    for target in ("pids", "unified"):
        before = [k for k in place.dirs if k != target and served.get(k, 99) < served[target]]
        if before and target in place.dirs:
            hid, ctrls = order[served[target]]
            return before[0], target, f"x{LS}{hid}:{ctrls}:"
    pytest.skip("no served hierarchy is listed before pids or the v2 line")


ATTACK = r"""
import json, os, sys
from cgmanager.dbus.client import connect
from cgmanager.dbus.errors import DBusError
O, I = '/org/linuxcontainers/cgmanager', 'org.linuxcontainers.cgmanager0_0'
addr, src, target, delegated, name = json.loads(sys.argv[1])
c = connect(addr)
def call(method, sig, *args):
    try:
        return ['ok', c.call(O, I, method, sig, args)]
    except DBusError as e:
        return [e.name, e.message]
out = {'api_create': call('Create', 'ss', src, 'd/' + name)}
# what the kernel lets the owner of d do anyway: make the name, move itself in
made = os.path.join(delegated, name)
os.makedirs(made, exist_ok=True)
with open(os.path.join(made, 'cgroup.procs'), 'w') as f:
    f.write(str(os.getpid()))
out['where'] = open('/proc/self/cgroup').read()
out['abs'] = call('GetPidCgroupAbs', 'si', target, os.getpid())
out['children'] = call('ListChildren', 'ss', target, '')
out['tasks_of_root'] = call('GetTasks', 'ss', target, '/')
print(json.dumps(out))
"""


def test_a_user_cannot_pose_as_sitting_at_the_root(place, test_user):
    """An unprivileged user in its delegated cgroup: the name is refused by the API, and the
    one it makes directly on cgroupfs does not change who the daemon thinks it is."""
    src, target, name = _forging_setup(place)
    ok(place.py("Create", "ss", src, "d"))
    ok(place.py("Chown", "ssii", src, "d", test_user.uid, test_user.gid))
    delegated = os.path.join(place.path(src), "d")
    before_target = kernel_state(place.path(target))
    before_src = kernel_state(place.path(src))
    cp = place.run(
        [
            sys.executable,
            "-c",
            ATTACK,
            json.dumps([place.daemon.address, src, target, delegated, name]),
        ],
        user=test_user,
    )
    assert cp.returncode == 0, cp.stderr
    out = json.loads(cp.stdout)
    # the attack itself happened: the kernel shows the name, unescaped, in the cgroup file
    assert f"{name}\n" in out["where"], out["where"]
    # what the daemon believes is what the kernel says
    assert out["abs"] == ["ok", [place.hp(target)]], out
    real = sorted(e.name for e in os.scandir(place.path(target)) if e.is_dir(follow_symlinks=False))
    assert out["children"][0] == "ok" and sorted(out["children"][1][0]) == real, out
    assert out["tasks_of_root"][0] == ERR + "NotFound", out  # "/" is out of its reach
    # the API refuses the name itself
    assert out["api_create"][0] == ERR + "InvalidArgument", out
    assert "U+2028" in out["api_create"][1]
    # nothing else changed: the target hierarchy not at all, the other only by the user's mkdir
    assert kernel_state(place.path(target)) == before_target
    after_src = kernel_state(place.path(src))
    added = {k for k in after_src if k not in before_src}
    assert added and all(any(name in part for part in k) for k in added), added
    assert {k: v for k, v in after_src.items() if k in before_src} == before_src


def _tenant_attack(address: str, src: str, target: str, delegated: str, name: str, b_rel: str):
    """Root of a user namespace mapping tenants A and B (as LXC maps one user's containers):
    pose as sitting at the root of *target*, then create a cgroup in B's."""
    from cgmanager.dbus.client import connect
    from cgmanager.dbus.errors import DBusError

    obj, iface = "/org/linuxcontainers/cgmanager", "org.linuxcontainers.cgmanager0_0"
    c = connect(address)

    def call(method, sig, *args):
        try:
            return ["ok", c.call(obj, iface, method, sig, args)]
        except DBusError as e:
            return [e.name, e.message]

    out = {"api_create": call("Create", "ss", src, "d/" + name)}
    made = os.path.join(delegated, name)
    os.makedirs(made, exist_ok=True)
    with open(os.path.join(made, "cgroup.procs"), "w") as f:
        f.write(str(os.getpid()))
    out["create_in_b"] = call("Create", "ss", target, b_rel + "/evil")
    out["chmod_b"] = call("Chmod", "sssi", target, b_rel, "", 0o777)
    return out


def test_root_of_a_user_namespace_cannot_reach_the_other_tenants_cgroups(
    place, test_user, make_test_user
):
    """LXC maps all of one user's containers to the same host ids, so root of one maps both
    tenants A and B: posing as sitting at ``/`` it would create in and re-own B's cgroups
    (which root of a namespace mapping B's uid may).  Refused, and B's cgroups unchanged."""
    src, target, name = _forging_setup(place)
    a, b = test_user, make_test_user()
    ok(place.py("Create", "ss", src, "d"))
    ok(place.py("Chown", "ssii", src, "d", a.uid, a.gid))
    ok(place.py("Create", "ss", target, "b"))
    ok(place.py("Chown", "ssii", target, "b", b.uid, b.gid))
    b_dir = os.path.join(place.path(target), "b")
    b_rel = os.path.relpath(b_dir, place.mounts[target])  # from the hierarchy root
    before = kernel_state(place.path(target))
    files = [os.path.join(p, "cgroup.procs") for p in place.dirs.values()]

    def enter(pid: int) -> None:
        for f in files:
            with open(f, "w") as fh:
                fh.write(str(pid))

    out = run_in_ns(
        _tenant_attack,
        place.daemon.address,
        src,
        target,
        os.path.join(place.path(src), "d"),
        name,
        b_rel,
        userns=True,
        uid_map=f"0 {a.uid} 1\n1 {b.uid} 1\n",
        gid_map=f"0 {a.gid} 1\n1 {b.gid} 1\n",
        setgroups="deny",
        before=enter,
        timeout=30,
    )
    assert out["create_in_b"][0].startswith(ERR), out
    assert out["chmod_b"][0].startswith(ERR), out
    assert out["api_create"][0] == ERR + "InvalidArgument", out
    assert not os.path.exists(os.path.join(b_dir, "evil"))
    assert kernel_state(place.path(target)) == before
