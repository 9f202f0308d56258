"""T0: the permission model's decision table, including user-namespace mappings."""

import pytest

from cgmanager.errors import InvalidArgument, NotFound, NotPermitted
from cgmanager.permission import (
    UNMAPPED_ID,
    Access,
    Credentials,
    FileOwner,
    Identity,
    may_access,
    may_chown,
    may_move,
    require_access,
    require_reach,
    require_same_pidns,
    require_same_userns,
    require_settable_key,
    require_valid_id,
)
from cgmanager.procfs import IdMap

pytestmark = pytest.mark.t0

HOST = IdMap.identity()
CONTAINER = IdMap.parse("0 100000 65536\n")  # root of a container = host uid 100000
USERNS_SELF = IdMap.parse("0 1000 1\n")  # a user that unshared a userns mapping only itself


def who(uid, gid=None, pid=500, uid_map=HOST, gid_map=None, pidns=True, userns=True):
    return Identity(
        Credentials(pid, uid, uid if gid is None else gid),
        uid_map,
        gid_map or uid_map,
        pidns,
        userns,
    )


ROOT = who(0)
USER = who(1000, 1000)
OTHER = who(1001, 1001)
CROOT = who(100000, 100000, uid_map=CONTAINER, userns=False)  # container root
CUSER = who(101000, 101000, uid_map=CONTAINER, userns=False)  # a user inside the container
NSUSER = who(1000, 1000, uid_map=USERNS_SELF, userns=False)


def f(uid, gid, mode):
    return FileOwner(uid, gid, 0o100000 | mode)


R, W, RW = Access.READ, Access.WRITE, Access.READ_WRITE


@pytest.mark.parametrize(
    "identity, file, want, allowed",
    [
        # host root: everything, even mode 000
        (ROOT, f(1000, 1000, 0o000), RW, True),
        # owner bits decide for the owner ...
        (USER, f(1000, 1000, 0o600), RW, True),
        (USER, f(1000, 1000, 0o400), W, False),
        # ... and never fall through to group/other (0.42's 40cd3f7)
        (USER, f(1000, 0, 0o066), W, False),
        (USER, f(0, 1000, 0o060), RW, True),
        (USER, f(0, 1000, 0o006), RW, False),  # group match decides: group has nothing
        (USER, f(0, 0, 0o644), R, True),
        (USER, f(0, 0, 0o644), W, False),
        (OTHER, f(1000, 1000, 0o644), R, True),
        (OTHER, f(1000, 1000, 0o664), W, False),
        # root of a container: files owned by ids mapped into its namespace, whatever the mode
        (CROOT, f(100000, 100000, 0o000), RW, True),
        (CROOT, f(165535, 0, 0o000), RW, True),
        (CROOT, f(0, 0, 0o644), W, False),  # host root's file: not mapped
        (CROOT, f(0, 0, 0o644), R, True),  # but "other" bits still apply
        (CROOT, f(165536, 0, 0o600), R, False),  # just past the map
        # a container user is an ordinary user
        (CUSER, f(100000, 100000, 0o600), R, False),
        (CUSER, f(101000, 101000, 0o600), RW, True),
        # a user root in a namespace that maps only itself gains nothing over others' files
        (NSUSER, f(1001, 1001, 0o600), R, False),
        (NSUSER, f(1000, 1000, 0o400), W, True),  # its own file: as its namespace's root may
    ],
)
def test_may_access(identity, file, want, allowed):
    assert may_access(identity, file, want) is allowed


@pytest.mark.parametrize(
    "identity, victim_pid, victim_uid, allowed",
    [
        (USER, 500, 0, True),  # itself (pid equal), whatever uid /proc says
        (USER, 600, 1000, True),  # same uid
        (USER, 600, 0, False),  # root's process
        (USER, 1, 0, False),  # pid 1
        (OTHER, 600, 1000, False),
        (ROOT, 1, 0, True),
        (CROOT, 600, 100500, True),  # mapped into its namespace
        (CROOT, 600, 0, False),  # host root's process
        (CROOT, 600, 1000, False),  # a host user's process
        (CUSER, 600, 100000, False),  # container root's process, from a container user
    ],
)
def test_may_move(identity, victim_pid, victim_uid, allowed):
    assert may_move(identity, victim_pid, victim_uid) is allowed
    # the uid may be given lazily: same answer, and asked for only when it decides
    asked = []
    assert may_move(identity, victim_pid, lambda: asked.append(1) or victim_uid) is allowed
    decided_without_uid = identity.pid == victim_pid or identity.is_host_root
    assert asked == ([] if decided_without_uid else [1])


def test_may_chown():
    assert may_chown(ROOT) and may_chown(CROOT) and may_chown(NSUSER)
    assert not may_chown(USER) and not may_chown(CUSER)


def test_ids_as_seen_from_a_container():
    assert CROOT.uid_as_seen(100000) == 0
    assert CROOT.uid_as_seen(0) == UNMAPPED_ID
    assert CROOT.gid_as_seen(100007) == 7
    assert ROOT.uid_as_seen(1000) == 1000
    assert CROOT.root_in_userns and not CUSER.root_in_userns and ROOT.root_in_userns


def test_refusal_message_names_owner_as_the_caller_sees_it():
    with pytest.raises(NotPermitted, match=r"pids:a/b is owned by uid 1000 \(mode 644\)"):
        require_access(OTHER, f(1000, 1000, 0o644), W, "pids:a/b")
    with pytest.raises(NotPermitted, match="owned by uid 4294967295"):
        require_access(CUSER, f(0, 0, 0o600), R, "pids:x")


@pytest.mark.parametrize(
    "path, bound, ok",
    [
        ("/a", "/a", True),
        ("/a/b", "/a", True),
        ("/a2", "/a", False),
        ("/", "/a", False),
        ("/x", "/", True),
    ],
)
def test_reach_refusal_is_not_found(path, bound, ok):
    if ok:
        require_reach(path, bound, "shown")
    else:
        with pytest.raises(NotFound) as e:
            require_reach(path, bound, "pids:/a2")
        assert "/a2" in str(e.value) and bound not in str(e.value).replace("/a2", "")


def test_namespace_gates():
    require_same_pidns(USER, "MovePid")
    with pytest.raises(NotPermitted, match="pid namespace"):
        require_same_pidns(who(0, pidns=False), "MovePid")
    require_same_userns(ROOT, "Chown")
    with pytest.raises(NotPermitted, match="user namespace"):
        require_same_userns(CROOT, "Chown")


@pytest.mark.parametrize("value", [-1, -5, UNMAPPED_ID, 1 << 40])
def test_invalid_ids(value):
    with pytest.raises(InvalidArgument):
        require_valid_id(value, "uid")


@pytest.mark.parametrize(
    "key, controllers",
    [
        ("pids.max", ("pids",)),
        ("cpu.shares", ("cpu", "cpuacct")),
        ("cpuacct.usage", ("cpu", "cpuacct")),
        ("cgroup.subtree_control", ("hugetlb",)),
        ("cgroup.freeze", ()),
        ("cgroup.max.descendants", ()),
        ("memory.max", ("memory", "pids")),
        ("freezer.state", ("freezer",)),
        ("devices.allow", ("devices",)),
    ],
)
def test_settable_keys(key, controllers):
    require_settable_key(key, controllers)


@pytest.mark.parametrize(
    "key, controllers",
    [
        ("tasks", ("pids",)),
        ("cgroup.procs", ("pids",)),
        ("cgroup.threads", ()),
        ("release_agent", ("pids",)),
        ("notify_on_release", ("pids",)),
        ("cgroup.clone_children", ("cpuset",)),
        ("memory.max", ("pids",)),
        ("pids.", ("pids",)),
        ("cgroup.sane_behavior", ()),
        ("release-agent", ("pids",)),
    ],
)
def test_unsettable_keys(key, controllers):
    with pytest.raises(NotPermitted):
        require_settable_key(key, controllers)
