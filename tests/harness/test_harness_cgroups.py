"""Run roots, per-test cgroups and the sweeper, on the host's real hierarchies."""

from __future__ import annotations

import os
import secrets
import subprocess
import time

import pytest
from support import cgroots as cgr
from support import cgtree, marks, mounts, run


def _cg_of(pid: int, key: str) -> str:
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _id, ctrls, path = line.rstrip("\n").split(":", 2)
            names = {mounts.normalize_key(c) for c in ctrls.split(",")} if ctrls else {"unified"}
            if key in names:
                return path
    raise LookupError(key)


@pytest.mark.t1
def test_run_roots_are_marked_and_consistent(cgroots) -> None:
    assert "unified" in cgroots.available()
    assert "memory" not in cgroots.available()
    me = run.current().mark
    for name in cgroots.available():
        path = cgroots.path(name)
        assert path == cgroots.mount(name) + cgroots.rel(name)
        assert os.path.basename(path).startswith("cgtest-")
        assert marks.read_owner(path) == me
    assert not os.path.exists(os.path.join("/sys/fs/cgroup/memory", cgroots.name))
    with pytest.raises(KeyError, match="memory"):
        cgroots.path("memory")


@pytest.mark.t2
def test_v1_roots_include_the_wanted_hierarchies(cgroots) -> None:
    for name in ("pids", "freezer", "cpu", "cpuset", "devices", "blkio", "systemd"):
        assert name in cgroots.available(), name
    with open(cgr.cpuset_file(cgroots.path("cpuset"), "cpus")) as f:
        assert f.read().strip()  # copied from the parent: tasks can be moved in


@pytest.mark.t2
def test_cgdir_cpuset_accepts_tasks(cgdir, procs) -> None:
    cg = cgdir("cpuset")
    p = procs.spawn(["sleep", "100"], cgroup=cg)
    assert p.pid in cgtree.members(cg)


@pytest.mark.t1
def test_cgdir_paths_are_unique_and_nested(cgroots, cgdir) -> None:
    a, b = cgdir(), cgdir()
    assert a != b and os.path.dirname(a) == cgroots.path("unified")
    c = cgdir("unified", parent=a)
    assert os.path.dirname(c) == a
    with pytest.raises(ValueError):
        cgdir("unified", parent="/sys/fs/cgroup/unified")


@pytest.mark.t1
@pytest.mark.t2
def test_cgdir_teardown_removes_populated_cgroups(cgroots, procs, request) -> None:
    factory = cgr.CgDirFactory(cgroots, label="teardown")
    u = factory("unified")
    u_child = factory("unified", parent=u)
    grandchild = os.path.join(u_child, "made-by-test")
    os.mkdir(grandchild)  # not created through the factory: must still go
    pcg = factory("pids")
    fcg = factory("freezer")
    victims = [
        procs.spawn(["sleep", "100"], cgroup=grandchild),
        procs.spawn(["sh", "-c", "trap '' TERM; sleep 100"], cgroup=u),
        procs.spawn(["sleep", "100"], cgroup=pcg),
        procs.spawn(["sleep", "100"], cgroup=fcg),
    ]
    with open(os.path.join(fcg, "freezer.state"), "w") as f:
        f.write("FROZEN")  # frozen v1 tasks ignore SIGKILL until thawed
    with open(os.path.join(u, "cgroup.freeze"), "w") as f:
        f.write("1")
    assert factory.cleanup() == []
    for path in (u, u_child, grandchild, pcg, fcg):
        assert not os.path.exists(path), path
    for v in victims:
        assert v.wait(5) is not None and not v.alive()


@pytest.mark.t1
def test_destroy_tree_read_only_never_kills(cgdir, procs) -> None:
    """The memory-hierarchy mode: only rmdir -- a populated cgroup stays (and its process)."""
    cg = cgdir("unified")
    p = procs.spawn(["sleep", "100"], cgroup=cg)
    problems = cgtree.destroy_tree(cg, 2, writable=False, timeout=0.1)
    assert problems and "rmdir" in problems[0]
    assert p.alive() and os.path.isdir(cg)


def _fabricate_root(h: mounts.Hierarchy, mark: str | None) -> str:
    path = os.path.join(h.mount, "cgtest-fake" + secrets.token_hex(3))
    os.mkdir(path)
    run.current().track_cgroup(path, h.version)  # removed at session end if the test fails
    if mark is not None:
        marks.write_owner(path, mark)
    return path


@pytest.mark.t1
@pytest.mark.t2
def test_sweeper_removes_dead_owners_roots_only(cgroots, procs) -> None:
    hs = {h.label: h for h in mounts.hierarchies()}
    v2 = next(h for h in hs.values() if h.version == 2)
    pids_h = cgroots.hierarchy("pids")

    dead = subprocess.Popen(["true"])
    dead_mark = marks.mark_of(dead.pid)
    dead.wait()
    keeper = procs.spawn(["sleep", "100"])
    live_mark = marks.mark_of(keeper.pid)

    stale_v2 = _fabricate_root(v2, dead_mark)
    os.mkdir(os.path.join(stale_v2, "child"))
    stale_v1 = _fabricate_root(pids_h, dead_mark)
    unmarked = _fabricate_root(v2, None)
    alive_root = _fabricate_root(v2, live_mark)
    inmate_v2 = procs.spawn(["sleep", "100"], cgroup=os.path.join(stale_v2, "child"))
    inmate_v1 = procs.spawn(["sleep", "100"], cgroup=stale_v1)
    try:
        t0 = time.monotonic()
        report = cgr.sweep(grace=0.2)  # > the 0.02 s marking delay above
        assert time.monotonic() - t0 < 3
        for path in (stale_v2, stale_v1, unmarked):
            assert not os.path.exists(path), (path, report)
        assert os.path.isdir(alive_root) and alive_root in report.kept
        assert cgroots.path("unified") in report.kept  # our own run root: owner alive
        assert os.path.isdir(cgroots.path("unified"))
        assert inmate_v2.wait(5) is not None and inmate_v1.wait(5) is not None
        assert keeper.alive()
    finally:
        if os.path.isdir(alive_root):
            os.rmdir(alive_root)


@pytest.mark.t1
def test_sweeper_waits_for_a_root_being_marked(cgroots) -> None:
    """An unmarked root that gets its mark during the grace period is kept."""
    v2 = cgroots.hierarchy("unified")
    fresh = _fabricate_root(v2, None)
    try:
        import threading

        t = threading.Timer(0.02, marks.write_owner, (fresh, run.current().mark))
        t.start()
        report = cgr.sweep(grace=0.3)
        t.join()
        assert os.path.isdir(fresh) and fresh in report.kept
    finally:
        os.rmdir(fresh)
