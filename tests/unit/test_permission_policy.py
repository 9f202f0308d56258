"""T0: the decision tables of the policy predicates beyond access and victims (delegation,
the daemon's own cgroups, depth, modes) — every predicate that can refuse a request."""

import pytest

from cgmanager.errors import InvalidArgument, LimitExceeded, NotFound, NotPermitted
from cgmanager.permission import (
    delegatee_accepts,
    may_hand_over,
    require_depth,
    require_may_chown,
    require_mode,
    require_not_base,
    require_outside,
)

from .test_permission import CROOT, CUSER, NSUSER, OTHER, ROOT, USER, who

pytestmark = pytest.mark.t0

CROOT2 = who(100000, 100000, pid=600)  # host uid 100000 but in the host's namespace: no map


@pytest.mark.parametrize(
    "identity, owner, victim_pid, victim_uid, accepted",
    [
        (ROOT, 0, 7, 1001, True),  # a cgroup of root's: anyone's process (root decides)
        (ROOT, 1000, 7, 1000, True),  # the delegatee's own process
        (ROOT, 1000, 7, 1001, False),  # another user's process: never, even from host root
        (ROOT, 1000, 500, 0, True),  # the requestor itself (pam_cgm enters before setuid)
        (USER, 1000, 7, 1001, True),  # the delegatee itself asks
        (OTHER, 1000, 7, 1001, False),  # a third user's process, asked by that third user
        (CROOT, 100000, 7, 101000, True),  # container root, owner and victim mapped
        (CROOT, 101000, 7, 100000, True),  # likewise, the other way round
        (CROOT, 101000, 7, 1001, False),  # the victim is not mapped in its namespace
        (CROOT, 1000, 7, 101000, False),  # the owner is not mapped
        (CUSER, 100000, 7, 101001, False),  # not root of its namespace
        (NSUSER, 1001, 7, 1000, False),  # root of a namespace mapping only itself
    ],
)
def test_delegatee_accepts(identity, owner, victim_pid, victim_uid, accepted):
    assert delegatee_accepts(identity, owner, victim_pid, victim_uid) is accepted
    assert delegatee_accepts(identity, owner, victim_pid, lambda: victim_uid) is accepted


def test_delegatee_accepts_reads_the_victims_uid_only_when_needed():
    def never() -> int:
        raise AssertionError("the victim's uid was read")

    assert delegatee_accepts(ROOT, 0, 7, never)
    assert delegatee_accepts(USER, 1000, 7, never)
    assert delegatee_accepts(ROOT, 1000, 500, never)


@pytest.mark.parametrize(
    "new_owner, requestor_pid, pid, process_uid, allowed",
    [
        (0, 500, 7, 1001, True),  # handing to root is no delegation
        (1000, 500, 7, 1000, True),  # the new owner's own process
        (1000, 500, 7, 1001, False),  # another user's process would be handed over
        (1000, 500, 7, 0, False),  # root's process likewise
        (1000, 500, 500, 0, True),  # the requestor's own process: knowingly
    ],
)
def test_may_hand_over(new_owner, requestor_pid, pid, process_uid, allowed):
    assert may_hand_over(new_owner, requestor_pid, pid, process_uid) is allowed


@pytest.mark.parametrize(
    "identity, allowed",
    [(ROOT, True), (CROOT, True), (USER, False), (CUSER, False), (CROOT2, False)],
)
def test_require_may_chown(identity, allowed):
    if allowed:
        require_may_chown(identity)
    else:
        with pytest.raises(NotPermitted):
            require_may_chown(identity)


@pytest.mark.parametrize(
    "path, fence, reached",
    [
        ("/d/cgmanager", "/d/cgmanager", False),
        ("/d/cgmanager/x", "/d/cgmanager", False),
        ("/d/cgmanager2", "/d/cgmanager", True),
        ("/d", "/d/cgmanager", True),
    ],
)
def test_the_daemons_leaf_is_out_of_reach(path, fence, reached):
    if reached:
        require_outside(path, fence, "shown")
    else:
        with pytest.raises(NotFound, match="cgroup shown: not found"):
            require_outside(path, fence, "shown")


@pytest.mark.parametrize("path, ok", [("/d", False), ("/d/x", True), ("/", True), ("/d2", True)])
def test_the_daemons_own_cgroup_is_never_changed(path, ok):
    if ok:
        require_not_base(path, "/d", "p")
    else:
        with pytest.raises(NotPermitted, match="started in"):
            require_not_base(path, "/d", "p")


@pytest.mark.parametrize("depth, limit, ok", [(1, 1, True), (16, 16, True), (17, 16, False)])
def test_depth(depth, limit, ok):
    if ok:
        require_depth(depth, limit, "p")
    else:
        with pytest.raises(LimitExceeded, match=r"deeper than this cgmanager allows \(16\)"):
            require_depth(depth, limit, "p")


@pytest.mark.parametrize(
    "mode, ok",
    [
        (0, True),
        (0o755, True),
        (0o777, True),
        (0o1777, False),
        (0o4755, False),
        (-1, False),
        (0o100644, False),
    ],
)
def test_modes(mode, ok):
    if ok:
        require_mode(mode)
    else:
        with pytest.raises(InvalidArgument):
            require_mode(mode)
