"""T1: the cgroup layer on the host's real v2 tree (inside this run's cgtest root)."""

import os
import stat

import pytest

from cgmanager.cgroupfs import release
from cgmanager.errors import Busy, InvalidArgument, KernelRejected, LimitExceeded, NotFound
from cgmanager.procfs import ProcDir

from .helpers import host_layout, hpath, snapshot, tree, wait_for

pytestmark = pytest.mark.t1


@pytest.fixture
def v2(cgdir):
    t = tree("unified")
    base = cgdir("unified")
    yield t, base, hpath(t, base)
    t.close()


def test_create_with_parents_children_and_exists(v2):
    t, base, hp = v2
    assert t.create(hp + "/a/b/c") == [hp + "/a", hp + "/a/b", hp + "/a/b/c"]
    assert os.path.isdir(base + "/a/b/c")
    assert t.create(hp + "/a/b/c") == []
    assert t.mkdir(hp + "/a") is False
    assert t.mkdir(hp + "/a/d") is True
    assert sorted(t.children(hp + "/a")) == ["b", "d"]
    assert t.exists(hp + "/a/d") and not t.exists(hp + "/a/nope")
    walked = t.walk(hp + "/a")
    assert sorted(walked) == [hp + "/a", hp + "/a/b", hp + "/a/b/c", hp + "/a/d"]
    assert walked.index(hp + "/a/b") < walked.index(hp + "/a/b/c")  # parents first
    assert walked[0] == hp + "/a"


def test_move_and_list_processes(v2, procs):
    t, base, hp = v2
    t.create(hp + "/box/inner")
    p = procs.spawn(["sleep", "100"])
    t.move(hp + "/box/inner", p.pid)
    assert t.procs(hp + "/box/inner") == [p.pid]
    assert t.procs(hp + "/box") == []
    assert t.procs_recursive(hp + "/box") == [p.pid]
    assert t.populated(hp + "/box") and t.populated(hp)
    t.mkdir(hp + "/empty")
    assert not t.populated(hp + "/empty")
    # the kernel agrees on where the process is
    with ProcDir(p.pid, p.pidfd) as d:
        where = host_layout().for_lines(d.cgroups())[host_layout().v2]
    assert where == hp + "/box/inner"


def test_remove_refuses_busy_trees_without_changing_anything(v2, procs):
    t, base, hp = v2
    t.create(hp + "/r/x/y")
    t.create(hp + "/r/z")
    p = procs.spawn(["sleep", "100"])
    t.move(hp + "/r/x/y", p.pid)
    before = snapshot(base)
    with pytest.raises(Busy):
        t.remove(hp + "/r", recursive=False)  # has children
    with pytest.raises(Busy):
        t.remove(hp + "/r", recursive=True)  # a descendant holds a process
    assert snapshot(base) == before
    p.kill()
    assert wait_for(lambda: not t.populated(hp + "/r"))
    t.remove(hp + "/r/z")
    t.remove(hp + "/r", recursive=True)
    assert not os.path.exists(base + "/r")


def test_remove_missing_and_root(v2):
    t, base, hp = v2
    with pytest.raises(NotFound):
        t.remove(hp + "/ghost")
    with pytest.raises(InvalidArgument):
        t.rmdir("/")


def test_keys_read_write(v2):
    t, base, hp = v2
    t.mkdir(hp + "/k")
    keys = {k.name: k for k in t.keys(hp + "/k")}
    assert {"cgroup.procs", "cgroup.events", "cgroup.max.descendants"} <= set(keys)
    st = os.stat(base + "/k/cgroup.procs")
    assert keys["cgroup.procs"].mode == st.st_mode and stat.S_ISREG(st.st_mode)
    assert t.read(hp + "/k", "cgroup.max.descendants") == "max\n"
    t.write(hp + "/k", "cgroup.max.descendants", "1")
    assert t.read(hp + "/k", "cgroup.max.descendants") == "1\n"
    t.mkdir(hp + "/k/one")
    with pytest.raises(LimitExceeded):
        t.mkdir(hp + "/k/two")
    assert not os.path.exists(base + "/k/two")


def test_kernel_rejects_bad_values_and_nothing_changes(v2):
    t, base, hp = v2
    t.mkdir(hp + "/v")
    with pytest.raises(KernelRejected):
        t.write(hp + "/v", "cgroup.max.depth", "minus one")
    assert t.read(hp + "/v", "cgroup.max.depth") == "max\n"


def test_depth_limit(v2):
    t, base, hp = v2
    t.mkdir(hp + "/d")
    t.write(hp + "/d", "cgroup.max.depth", "1")
    t.mkdir(hp + "/d/one")
    with pytest.raises(LimitExceeded):
        t.mkdir(hp + "/d/one/two")


def test_events_populated_and_freeze(v2, procs):
    t, base, hp = v2
    t.mkdir(hp + "/f")
    assert t.events(hp + "/f") == {"populated": 0, "frozen": 0}
    p = procs.spawn(["sleep", "100"])
    t.move(hp + "/f", p.pid)
    assert t.events(hp + "/f")["populated"] == 1
    t.write(hp + "/f", "cgroup.freeze", "1")
    assert wait_for(lambda: t.events(hp + "/f")["frozen"] == 1)
    t.write(hp + "/f", "cgroup.freeze", "0")
    assert wait_for(lambda: t.events(hp + "/f")["frozen"] == 0)


def test_chown_delegates_exactly_the_kernel_list(v2):
    t, base, hp = v2
    t.mkdir(hp + "/del")
    done = t.chown(hp + "/del", 4242, 4343)
    delegate = open("/sys/kernel/cgroup/delegate").read().split()
    present = [f for f in delegate if os.path.exists(f"{base}/del/{f}")]
    assert sorted(done) == sorted(present)
    assert (os.stat(base + "/del").st_uid, os.stat(base + "/del").st_gid) == (4242, 4343)
    for name in os.listdir(base + "/del"):
        owner = os.stat(f"{base}/del/{name}").st_uid
        assert owner == (4242 if name in delegate else 0), name


def test_chown_all_gives_every_file_to_the_creator(v2):
    t, base, hp = v2
    t.mkdir(hp + "/mine")
    t.chown_all(hp + "/mine", 4242, 4242)
    assert {os.stat(f"{base}/mine/{n}").st_uid for n in os.listdir(base + "/mine")} == {4242}


def test_chmod_dir_and_keys_including_write_only(v2):
    t, base, hp = v2
    t.mkdir(hp + "/m")
    t.chmod(hp + "/m", None, 0o775)
    assert stat.S_IMODE(os.stat(base + "/m").st_mode) == 0o775
    t.chmod(hp + "/m", "cgroup.procs", 0o664)
    assert stat.S_IMODE(os.stat(base + "/m/cgroup.procs").st_mode) == 0o664
    t.chmod(hp + "/m", "cgroup.kill", 0o220)  # write-only: cannot be opened for reading
    assert stat.S_IMODE(os.stat(base + "/m/cgroup.kill").st_mode) == 0o220
    with pytest.raises(InvalidArgument):
        t.chmod(hp + "/m", None, 0o17777)


def test_no_internal_processes_rule_is_reported_as_busy(v2, procs, hugetlb_enabled):
    t, base, hp = v2
    t.mkdir(hp + "/nip")
    # the run root and the test dir must pass hugetlb down for the rule to apply below them
    for p_ in _ancestors(hp):
        t.write(p_, "cgroup.subtree_control", "+hugetlb")
    p = procs.spawn(["sleep", "100"])
    t.move(hp + "/nip", p.pid)
    with pytest.raises(Busy):
        t.write(hp + "/nip", "cgroup.subtree_control", "+hugetlb")
    t.mkdir(hp + "/nip/leaf")
    t.move(hp + "/nip/leaf", p.pid)
    t.write(hp + "/nip", "cgroup.subtree_control", "+hugetlb")
    assert "hugetlb" in t.read(hp + "/nip", "cgroup.subtree_control")
    with pytest.raises(Busy):
        t.move(hp + "/nip", p.pid)
    assert t.procs(hp + "/nip/leaf") == [p.pid]


def _ancestors(hp):
    parts = hp.strip("/").split("/")
    return ["/" + "/".join(parts[:i]) for i in range(1, len(parts) + 1)]


def test_threaded_subtree(v2, procs):
    t, base, hp = v2
    t.create(hp + "/thr/a")
    t.write(hp + "/thr/a", "cgroup.type", "threaded")
    assert t.read(hp + "/thr", "cgroup.type").strip() == "domain threaded"
    p = procs.spawn(["sleep", "100"])
    t.move(hp + "/thr", p.pid)
    assert t.threads(hp + "/thr") == [p.pid]


class TestHostileInput:
    """Every hostile spelling is refused with a clear error and changes nothing."""

    @pytest.mark.parametrize("key", ["../cgroup.procs", "..", ".", "", "a/b", "x\0y", "k" * 256])
    def test_hostile_keys(self, v2, key):
        t, base, hp = v2
        t.mkdir(hp + "/h")
        before = snapshot(base)
        for op in (
            lambda: t.read(hp + "/h", key),
            lambda: t.write(hp + "/h", key, "1"),
            lambda: t.chmod(hp + "/h", key, 0o777),
            lambda: t.stat(hp + "/h", key),
        ):
            with pytest.raises(InvalidArgument):
                op()
        assert snapshot(base) == before

    @pytest.mark.parametrize("suffix", ["/..", "/../..", "/a/../..", "/./a"])
    def test_dot_components_in_paths(self, v2, suffix):
        t, base, hp = v2
        before = snapshot(base)
        with pytest.raises(InvalidArgument):
            t.mkdir(hp + suffix)
        with pytest.raises(InvalidArgument):
            t.read(hp + suffix, "cgroup.procs")
        assert snapshot(base) == before

    def test_relative_path_is_an_internal_error(self, v2):
        t, base, hp = v2
        with pytest.raises(InvalidArgument):
            t.children(hp.lstrip("/"))

    def test_overlong_name(self, v2):
        t, base, hp = v2
        before = snapshot(base)
        with pytest.raises(InvalidArgument):
            t.mkdir(hp + "/" + "n" * 256)
        assert snapshot(base) == before

    def test_kernel_file_names_as_cgroups(self, v2):
        t, base, hp = v2
        before = snapshot(base)
        with pytest.raises(InvalidArgument):
            t.mkdir(hp + "/cgroup.procs")  # an existing file
        with pytest.raises(InvalidArgument, match="not a cgroup"):
            t.children(hp + "/cgroup.procs")  # a file where a cgroup is expected
        with pytest.raises(InvalidArgument):
            t.read(hp + "/cgroup.procs", "x")
        assert snapshot(base) == before

    def test_a_child_cgroup_is_not_a_key(self, v2):
        t, base, hp = v2
        t.create(hp + "/parent/child")
        with pytest.raises(NotFound):
            t.read(hp + "/parent", "child")
        with pytest.raises(NotFound):
            t.write(hp + "/parent", "child", "1")

    def test_the_kernel_refuses_symlinks_in_cgroupfs(self, v2):
        """The premise that makes symlink attacks moot on a real cgroupfs; the layer still
        refuses them (see test_resolution.py, on a tmpfs where they can exist)."""
        t, base, hp = v2
        with pytest.raises(OSError):
            os.symlink("/etc", base + "/evil")
        assert not os.path.lexists(base + "/evil")


def test_a_held_cgroup_is_resolved_once_and_forgotten_when_removed(v2):
    """Within one request (its bound view) a path names the directory first resolved; a
    removal drops it (and its descendants) so a re-created cgroup is seen afresh, and release
    closes every fd held.  The tree itself and other requests' views are unaffected."""
    t, base, hp = v2
    t.create(hp + "/h/k")
    fds_before = set(os.listdir("/proc/self/fd"))
    held: dict[str, int] = {}
    view = t.bound(held)
    try:
        first = view.stat(hp + "/h")
        os.rmdir(base + "/h/k")
        os.rmdir(base + "/h")
        os.mkdir(base + "/h")  # replaced behind the layer's back: the held directory stays
        assert view.stat(hp + "/h").st_ino == first.st_ino
        assert t.stat(hp + "/h").st_ino != first.st_ino  # the tree itself holds nothing
        view.rmdir(hp + "/h")  # removed through the layer: forgotten
        assert not view.exists(hp + "/h")
        view.mkdir(hp + "/h")
        assert view.stat(hp + "/h").st_ino != first.st_ino
    finally:
        release(held)
    assert set(os.listdir("/proc/self/fd")) == fds_before
    assert t.stat(hp + "/h").st_ino == os.stat(base + "/h").st_ino


def test_holding_is_bounded_for_requests_that_walk_subtrees(v2):
    """A request over a big subtree must not hold an fd per cgroup (EMFILE at ~20,000)."""
    from cgmanager.cgroupfs import MAX_HELD

    t0, base, hp = v2
    for i in range(MAX_HELD * 3):
        t0.mkdir(hp + f"/w{i}")
    fds_before = len(os.listdir("/proc/self/fd"))
    held: dict[str, int] = {}
    t = t0.bound(held)
    try:
        for i in range(MAX_HELD * 3):
            assert t.stat(hp + f"/w{i}").st_nlink >= 2
        assert len(os.listdir("/proc/self/fd")) - fds_before <= MAX_HELD + 1
        for i in range(MAX_HELD * 3):
            t.rmdir(hp + f"/w{i}")
        assert t.children(hp) == []
    finally:
        release(held)
    assert len(os.listdir("/proc/self/fd")) == fds_before
