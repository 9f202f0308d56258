"""cgmanager1.Snapshot: chosen keys of a whole subtree in one request, each cgroup and key
checked exactly as ListChildren and GetValue check them; bounded; v1 and v2; root and an
unprivileged user in a delegation."""

from __future__ import annotations

import os

import pytest

from cgmanager.contract import INTERFACE1
from cgmanager.operations import snapshots

from .replies import ok, refused

pytestmark = pytest.mark.t3


def snap(place, key, cgroup, keys, depth=-1, user=None):
    return place.py("Snapshot", "ssasi", key, cgroup, keys, depth, user=user, iface=INTERFACE1)


def entries(place, key, cgroup, keys, depth=-1, user=None):
    """{path: (readable, {key: value})} and the complete flag."""
    rows, complete = ok(snap(place, key, cgroup, keys, depth, user))
    return {p: (r, {keys[i]: v for i, v in vals.items()}) for p, r, vals in rows}, complete


def getvalue(place, key, cgroup, file, user=None):
    return ok(place.py("GetValue", "sss", key, cgroup, file, user=user))[0]


@pytest.mark.parametrize("key", ["pids", "unified"])
def test_values_of_every_cgroup_in_pre_order_as_getvalue_reads_them(place, key):
    for p in ("s/b/deep", "s/a", "s/c"):
        ok(place.py("Create", "ss", key, p))
    sleeper = place.spawn(["sleep", "100"])
    ok(place.py("MovePid", "ssi", key, "s/a", sleeper.pid))
    files = ["cgroup.procs", "pids.max" if key == "pids" else "cgroup.max.depth"]
    rows, complete = ok(snap(place, key, "s", files))
    assert complete is True
    assert [r[0] for r in rows] == ["", "a", "b", "b/deep", "c"]  # parents first, sorted
    assert all(r[1] for r in rows)
    for path, _, values in rows:
        cg = "s/" + path if path else "s"
        assert values == {i: getvalue(place, key, cg, f) for i, f in enumerate(files)}
    assert rows[1][2][0] == str(sleeper.pid)
    assert rows[0][2][0] == ""  # an empty file is an empty value, not a missing one


def test_depth_and_start(place):
    ok(place.py("Create", "ss", "pids", "d/x/y/z"))
    for depth, want in [
        (0, [""]),
        (1, ["", "x"]),
        (2, ["", "x", "x/y"]),
        (-1, ["", "x", "x/y", "x/y/z"]),
    ]:
        assert [r[0] for r in ok(snap(place, "pids", "d", ["pids.max"], depth))[0]] == want
    # '' is the caller's own cgroup; an absolute path inside it works too
    own = {r[0] for r in ok(snap(place, "pids", "", ["pids.max"]))[0]}
    assert {"", "d", "d/x", "d/x/y", "d/x/y/z"} <= own
    absolute = ok(snap(place, "pids", place.hp("pids") + "/d/x", ["pids.max"]))[0]
    assert [r[0] for r in absolute] == ["", "y", "y/z"]


def test_fields_of_keyed_files(place):
    ok(place.py("Create", "ss", "unified", "f"))
    got, _ = entries(
        place, "unified", "f", ["cpu.stat/usage_usec", "cpu.stat/nosuch", "cgroup.events/populated"]
    )
    readable, values = got[""]
    assert readable and values["cpu.stat/usage_usec"].isdigit()
    assert "cpu.stat/nosuch" not in values
    assert values["cgroup.events/populated"] == "0"
    if os.path.exists(place.path("unified") + "/f/cpu.pressure"):
        got, _ = entries(place, "unified", "f", ["cpu.pressure/some"])
        assert got[""][1]["cpu.pressure/some"].startswith("avg10=")


def test_missing_files_are_left_out(place):
    ok(place.py("Create", "ss", "pids", "m"))
    got, _ = entries(place, "pids", "m", ["pids.max", "memory.current", "nosuch.file"])
    assert got == {"": (True, {"pids.max": "max"})}


def test_processes_in_the_daemons_v2_leaf_count_as_the_cgroups(hugetlb, place):
    ok(place.py("Create", "ss", "hugetlb", "l/inner"))
    sleeper = place.spawn(["sleep", "100"])
    ok(place.py("MovePid", "ssi", "unified", "l", sleeper.pid))  # lands in l/.cgm_leaf
    assert os.path.isdir(place.path("unified") + "/l/.cgm_leaf")
    got, _ = entries(place, "unified", "l", ["cgroup.procs"])
    assert set(got) == {"", "inner"}  # the leaf itself is never shown
    assert got[""][1]["cgroup.procs"] == str(sleeper.pid)


# -- permissions -------------------------------------------------------------------------------


def test_unreadable_cgroups_and_keys_for_an_unprivileged_user(place, test_user):
    ok(place.py("Create", "ss", "pids", "u/open/below"))
    ok(place.py("Create", "ss", "pids", "u/shut/hidden"))
    ok(place.py("Chmod", "sssi", "pids", "u/shut", "", 0o700))
    ok(place.py("Chmod", "sssi", "pids", "u/open", "pids.max", 0o600))
    got, complete = entries(place, "pids", "u", ["pids.max", "pids.current"], user=test_user)
    assert complete is True
    # shut: shown (its parent's listing names it) but neither read nor descended into
    assert got["shut"] == (False, {})
    assert "shut/hidden" not in got
    # a key the user may not read is left out, as GetValue would refuse it
    assert got["open"] == (True, {"pids.current": "0"})
    refused(
        place.py("GetValue", "sss", "pids", "u/open", "pids.max", user=test_user), "NotPermitted"
    )
    assert got["open/below"][1]["pids.max"] == "max"
    # root reads them all
    got, _ = entries(place, "pids", "u", ["pids.max"])
    assert got["shut"] == (True, {"pids.max": "max"}) and "shut/hidden" in got


def test_the_start_is_checked_as_getvalue_checks_it(place, test_user):
    ok(place.py("Create", "ss", "pids", "closed"))
    ok(place.py("Chmod", "sssi", "pids", "closed", "", 0o700))
    refused(snap(place, "pids", "closed", ["pids.max"], user=test_user), "NotPermitted")
    refused(snap(place, "pids", "/", ["pids.max"], user=test_user), "NotFound")  # out of reach
    refused(snap(place, "pids", "ghost", ["pids.max"]), "NotFound")
    refused(snap(place, "nosuch", "", ["pids.max"]), "NotFound")  # as GetValue


def test_a_user_in_its_delegation(place, test_user):
    ok(place.py("Create", "ss", "unified", "dlg"))
    ok(place.py("Chown", "ssii", "unified", "dlg", test_user.uid, test_user.gid))
    ok(place.py("Create", "ss", "unified", "dlg/job", user=test_user))
    worker = place.spawn(["sleep", "100"], user=test_user)
    ok(place.py("MovePid", "ssi", "unified", "dlg/job", worker.pid, user=test_user))
    got, _ = entries(
        place, "unified", "dlg", ["cgroup.procs", "cgroup.events/populated"], user=test_user
    )
    assert got["job"] == (True, {"cgroup.procs": str(worker.pid), "cgroup.events/populated": "1"})
    assert got[""][1]["cgroup.events/populated"] == "1"


@pytest.mark.parametrize(
    "keys,depth",
    [
        ([], -1),
        (["../pids.max"], -1),
        (["a/b/c"], -1),  # a field is one word
        (["pids.max/"], -1),
        (["pids.max/x y"], -1),
        (["tasks\n"], -1),
        (["pids.max"] * (snapshots.MAX_KEYS + 1), -1),
        (["pids.max"], -2),
    ],
)
def test_bad_requests_are_refused(place, keys, depth):
    refused(snap(place, "pids", "", keys, depth), "InvalidArgument")
    assert place.py("Ping", "i", 0).returncode == 0


# -- bounds and fairness, in-process over the run's real cgroups ----------------------------


@pytest.fixture
def local(cgdir):
    """The operation in this process, the requestor root in a fresh pids cgroup."""
    from cgmanager import operations
    from cgmanager.cgroupfs import CgroupTree
    from cgmanager.hierarchy import discover_host
    from cgmanager.permission import Credentials, Identity
    from cgmanager.procfs import IdMap
    from cgmanager.requestor import Party

    layout = discover_host()
    h = layout.lookup("pids")
    base = cgdir("pids")
    hp = "/" + os.path.relpath(base, h.mountpoint)

    def party(cgroup):
        ident = Identity(
            Credentials(os.getpid(), 0, 0), IdMap.identity(), IdMap.identity(), True, True
        )
        return Party(ident, {h.key: cgroup})

    m = operations.Manager(layout, {h.key: CgroupTree(h)}, party("/"))
    req = operations.Request(party(hp), party(hp), operations.Scope(may_escalate=False))
    for i in range(5):
        os.makedirs(f"{base}/b{i}/c")
    return m, req


def test_bounds_stop_with_a_prefix_and_complete_false(local, monkeypatch):
    m, req = local
    rows, complete = snapshots.snapshot(m, req, "pids", "", ["pids.max"], -1)
    assert complete and len(rows) == 11
    monkeypatch.setattr(snapshots, "MAX_CGROUPS", 4)
    assert snapshots.snapshot(m, req, "pids", "", ["pids.max"], -1) == (rows[:4], False)
    monkeypatch.setattr(snapshots, "MAX_CGROUPS", 100)
    monkeypatch.setattr(snapshots, "MAX_BYTES", 16 * 3 + 40)
    got, complete = snapshots.snapshot(m, req, "pids", "", ["pids.max"], -1)
    assert not complete and 0 < len(got) < len(rows) and got == rows[: len(got)]


def test_a_subtree_is_walked_on_a_worker(local):
    """On the event loop (a scope that may escalate) a walk below a cgroup with children
    stops before reading anything and asks for a worker; one cgroup alone, or depth 0, is read
    at once."""
    from cgmanager import operations

    m, req = local
    inline = operations.Request(req.requestor, req.proxy, operations.Scope(may_escalate=True))
    with pytest.raises(operations.Escalate):
        snapshots.snapshot(m, inline, "pids", "", ["pids.max"], -1)
    rows, complete = snapshots.snapshot(m, inline, "pids", "", ["pids.max"], 0)
    assert complete and [r[0] for r in rows] == [""]
    rows, _ = snapshots.snapshot(m, inline, "pids", "b0/c", ["pids.max"], -1)
    assert [r[0] for r in rows] == [""]
