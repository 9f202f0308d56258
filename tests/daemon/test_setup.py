"""org.linuxcontainers.cgmanager1.Setup: a container's set-up in one request, all or nothing.

Each case checks the kernel: what a success made (directories, owner, values, where the
processes are) and that a failure at any step left cgroupfs and every process as before.
"""

import os
import subprocess
import sys

import pytest

from cgmanager.contract import INTERFACE1

from .hostile_helpers import kernel_state as _kernel_state
from .replies import ok, refused

pytestmark = pytest.mark.t3

SIG = "ssiia{ss}ai"


def kernel_state(*dirs):
    """The hostile suite's snapshot, with member lists as sets: a process moved out and back
    is listed in another order."""
    return {
        k: sorted(v.split())
        if k[-1] == "content" and k[-2] in ("cgroup.procs", "cgroup.threads", "tasks")
        else v
        for k, v in _kernel_state(*dirs).items()
    }


def setup(place, controllers, cgroup, uid=-1, gid=-1, values=None, pids=(), user=None):
    return place.py(
        "Setup",
        SIG,
        controllers,
        cgroup,
        uid,
        gid,
        dict(values or {}),
        list(pids),
        user=user,
        iface=INTERFACE1,
    )


def cgroup_of(pid: int, key: str, place) -> str:
    """The process's cgroup in hierarchy *key*, relative to the place's cgroup."""
    want = place.hp(key)
    for line in open(f"/proc/{pid}/cgroup").read().splitlines():
        hid, ctrls, path = line.split(":", 2)
        names = set(ctrls.split(",")) if ctrls else {"unified"}
        if key in names or (key == "unified" and hid == "0"):
            return os.path.relpath(path, want)
    raise AssertionError(f"{pid} not in {key}")


def test_setup_creates_chowns_writes_and_moves_in_one_request(place, test_user):
    kid = place.spawn(["sleep", "100"], user=test_user)
    created = ok(
        setup(
            place,
            "pids,freezer,unified",
            "ct/one",
            test_user.uid,
            test_user.gid,
            {"pids.max": "10", "unified:cgroup.max.descendants": "5"},
            [kid.pid],
        )
    )
    assert created == (["pids:ct/one", "freezer:ct/one", "unified:ct/one"],)
    for key in ("pids", "freezer", "unified"):
        d = f"{place.path(key)}/ct/one"
        st = os.stat(d)
        assert (st.st_uid, st.st_gid) == (test_user.uid, test_user.gid), key
        assert os.stat(f"{d}/cgroup.procs").st_uid == test_user.uid
        assert cgroup_of(kid.pid, key, place) == "ct/one"
    assert open(f"{place.path('pids')}/ct/one/pids.max").read().strip() == "10"
    assert open(f"{place.path('unified')}/ct/one/cgroup.max.descendants").read().strip() == "5"


@pytest.mark.parametrize(
    "values, pids, kind, step",
    [
        (
            {"pids.max": "10", "unified:cgroup.max.depth": "not-a-number"},
            (),
            "KernelRejected",
            "write unified:cgroup.max.depth",
        ),
        ({"pids.max": "10"}, ("dead",), "NotFound", "move"),
        ({"pids.max": "10"}, ("root's",), "NotPermitted", "move"),
    ],
)
def test_a_failing_step_undoes_everything(place, test_user, values, pids, kind, step):
    kid = place.spawn(["sleep", "100"], user=test_user)
    ok(place.py("Create", "ss", "pids", "keep"))  # a sibling that must stay as it is
    moved = [kid.pid]
    for p in pids:
        if p == "dead":
            gone = subprocess.Popen(["true"])
            gone.wait()
            moved.append(gone.pid)
        else:
            moved.append(place.spawn(["sleep", "100"]).pid)
    before = kernel_state(*place.dirs.values())
    where = {key: cgroup_of(kid.pid, key, place) for key in ("pids", "unified")}
    cp = setup(place, "pids,unified", "ct", test_user.uid, test_user.gid, values, moved)
    refused(cp, kind)
    assert f"Setup failed at {step}" in cp.stdout and "nothing was changed" in cp.stdout
    assert kernel_state(*place.dirs.values()) == before
    for key in ("pids", "unified"):
        assert not os.path.exists(f"{place.path(key)}/ct")
        assert cgroup_of(kid.pid, key, place) == where[key]  # moved, then moved back


@pytest.mark.parametrize(
    "controllers, cgroup, uid, gid, values, pids, kind",
    [
        ("pids", "", -1, -1, {}, [], "InvalidArgument"),
        ("pids", "../x", -1, -1, {}, [], "InvalidArgument"),
        ("pids", "ct", 1000, -1, {}, [], "InvalidArgument"),
        ("pids", "ct", -1, -1, {"freezer.state": "FROZEN"}, [], "InvalidArgument"),
        ("pids", "ct", -1, -1, {"cgroup.max.depth": "1"}, [], "InvalidArgument"),
        ("pids", "ct", -1, -1, {"pids:../pids.max": "1"}, [], "InvalidArgument"),
        ("pids", "ct", -1, -1, {"pids:tasks": "1"}, [], "NotPermitted"),
        ("pids", "ct", -1, -1, {}, [0], "InvalidArgument"),
        ("nosuch", "ct", -1, -1, {}, [], "NotFound"),
        ("pids", "exists", -1, -1, {}, [], "Busy"),
    ],
)
def test_bad_requests_change_nothing(place, controllers, cgroup, uid, gid, values, pids, kind):
    ok(place.py("Create", "ss", "pids", "exists"))
    before = kernel_state(*place.dirs.values())
    refused(setup(place, controllers, cgroup, uid, gid, values, pids), kind)
    assert kernel_state(*place.dirs.values()) == before


def test_an_unprivileged_user_sets_up_below_its_delegation(place, test_user):
    ok(place.py("Create", "ss", "pids", "mine"))
    ok(place.py("Chown", "ssii", "pids", "mine", test_user.uid, test_user.gid))
    kid = place.spawn(["sleep", "100"], user=test_user)
    user_place_rel = "mine/job"
    # relative to the caller's cgroup: the user's client runs in the place's cgroup
    assert ok(
        setup(
            place, "pids", user_place_rel, values={"pids.max": "3"}, pids=[kid.pid], user=test_user
        )
    ) == (["pids:mine/job"],)
    assert open(f"{place.path('pids')}/mine/job/pids.max").read().strip() == "3"
    assert cgroup_of(kid.pid, "pids", place) == "mine/job"
    # handing it to someone else is root's business: refused, and the new cgroup is gone
    before = kernel_state(*place.dirs.values())
    refused(setup(place, "pids", "mine/other", 0, 0, user=test_user), "NotPermitted")
    assert kernel_state(*place.dirs.values()) == before


def test_dbus_send_can_call_setup(place):
    cp = place.run(
        [
            "dbus-send",
            f"--address={place.daemon.address}",
            "--print-reply",
            "--type=method_call",
            "/org/linuxcontainers/cgmanager",
            f"{INTERFACE1}.Setup",
            "string:pids",
            "string:ds",
            "int32:-1",
            "int32:-1",
            "dict:string:string:pids.max,7",
            "array:int32:",
        ]
    )
    assert cp.returncode == 0, cp.stderr
    assert '"pids:ds"' in cp.stdout
    assert open(f"{place.path('pids')}/ds/pids.max").read().strip() == "7"


def test_the_python_client_helper(place):
    code = (
        "from cgmanager.dbus.client import connect\n"
        "from cgmanager import client\n"
        f"with connect({place.daemon.address!r}) as c:\n"
        "    print(client.setup(c, 'pids', 'py', values={'pids.max': '4'}))\n"
    )
    cp = place.run([sys.executable, "-c", code])
    assert (cp.returncode, cp.stdout) == (0, "['pids:py']\n"), cp.stderr
    assert open(f"{place.path('pids')}/py/pids.max").read().strip() == "4"


def _in_process(place, uid=0):
    """The daemon's operations in this process, on the place's cgroups: the daemon bounded by
    the hierarchy roots, the requestor (root) sitting in the place."""
    from cgmanager.cgroupfs import CgroupTree
    from cgmanager.hierarchy import discover_host
    from cgmanager.operations import Manager, Request
    from cgmanager.permission import Credentials, Identity
    from cgmanager.procfs import IdMap
    from cgmanager.requestor import Party

    layout = discover_host(
        skip=[h.key for h in discover_host().hierarchies if h.key not in place.dirs]
    )
    ident = Identity(
        Credentials(os.getpid(), uid, uid), IdMap.identity(), IdMap.identity(), True, True
    )
    daemon = Party(ident, {h.key: "/" for h in layout.hierarchies})
    me = Party(ident, {h.key: place.hp(h.key) for h in layout.hierarchies})
    m = Manager(
        layout, {h.key: CgroupTree(h, place.mounts[h.key]) for h in layout.hierarchies}, daemon
    )
    return m, Request(me, me)


def test_the_rollback_leaves_what_the_new_owner_added(place, test_user, monkeypatch):
    """Setup chowns the new cgroup, then a write fails; meanwhile the new owner made a cgroup
    of its own inside: the rollback removes nothing of it (nor the cgroup holding it), says so,
    and still moves the processes back."""
    from cgmanager.errors import KernelRejected
    from cgmanager.operations import transaction as setup_module

    m, req = _in_process(place)
    kid = place.spawn(["sleep", "100"], user=test_user)
    where = cgroup_of(kid.pid, "pids", place)
    real_write_key = setup_module.write_key
    added = f"{place.path('pids')}/ct/owners"

    def owner_adds_then_write(*args):
        if not os.path.exists(added):
            os.mkdir(added)
            os.chown(added, test_user.uid, test_user.gid)
        return real_write_key(*args)

    monkeypatch.setattr(setup_module, "write_key", owner_adds_then_write)
    try:
        with pytest.raises(KernelRejected) as e:
            setup_module.setup(
                m, req, "pids", "ct", test_user.uid, test_user.gid, {"pids.max": "lots"}, [kid.pid]
            )
        assert "Setup failed at write pids.max" in e.value.message
        assert "their new owner added 1 cgroup(s)" in e.value.message
        assert os.path.isdir(added)  # nothing the owner made was removed
        assert os.stat(f"{place.path('pids')}/ct").st_uid == test_user.uid
        assert cgroup_of(kid.pid, "pids", place) == where  # (moves come after the write)
    finally:
        m.close()


def test_the_rollback_removes_exactly_what_it_made(place, test_user):
    """Nested new cgroups (ct/a/b, ct existing): only a and b go; ct and its other child
    stay."""
    from cgmanager.errors import KernelRejected
    from cgmanager.operations import transaction as setup_module

    m, req = _in_process(place)
    base = place.path("pids")
    os.makedirs(f"{base}/ct/other")
    try:
        with pytest.raises(KernelRejected) as e:
            setup_module.setup(m, req, "pids", "ct/a/b", -1, -1, {"pids.max": "lots"}, [])
        assert "nothing was changed" in e.value.message
        assert [n for n in os.listdir(f"{base}/ct") if os.path.isdir(f"{base}/ct/{n}")] == ["other"]
    finally:
        m.close()
