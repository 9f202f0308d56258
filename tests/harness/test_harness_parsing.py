"""Pure logic of the harness: mountinfo parsing, owner marks, tier counting (t0)."""

from __future__ import annotations

import os
import subprocess

import pytest
from support import cgroots, leftovers, marks, mounts, tiers

SAMPLE = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
50 27 0:36 /sub /mnt/pids\\040bind rw,relatime - cgroup cgroup rw,pids
51 27 0:36 / /mnt/pids\\040again rw,relatime - cgroup cgroup rw,pids
"""


@pytest.mark.t0
def test_hierarchies_from_mountinfo() -> None:
    hs = mounts.hierarchies(mounts.parse_mountinfo(SAMPLE))
    by = mounts.by_key(hs)
    assert by["cpu"] is by["cpuacct"]  # comounted
    assert by["cpu"].mount == "/sys/fs/cgroup/cpu"
    assert by["systemd"].name == "systemd" and by["systemd"].controllers == frozenset()
    assert by["unified"].version == 2
    assert by["pids"].mount == "/sys/fs/cgroup/pids"  # first mount of that superblock wins
    assert len([h for h in hs if "pids" in h.keys]) == 1


@pytest.mark.t0
def test_mountinfo_unescapes_and_skips_non_root_binds() -> None:
    entries = mounts.parse_mountinfo(SAMPLE)
    assert entries[-2].mountpoint == "/mnt/pids bind" and entries[-2].root == "/sub"
    only_bind = mounts.hierarchies([entries[-2]])
    assert only_bind == []  # a bind of a sub-cgroup does not show the hierarchy root


@pytest.mark.t0
def test_memory_hierarchy_is_never_wanted() -> None:
    hs = mounts.hierarchies(mounts.parse_mountinfo(SAMPLE))
    mem = mounts.by_key(hs)["memory"]
    assert not cgroots.hierarchy_writable(mem)
    assert not cgroots._wanted(mem)
    comounted = mounts.Hierarchy(1, "/x", "0:99", frozenset({"pids", "memory"}))
    assert not cgroots._wanted(comounted)
    assert cgroots._wanted(mounts.by_key(hs)["pids"])


@pytest.mark.t0
def test_normalize_key() -> None:
    assert mounts.normalize_key("name=systemd") == "systemd"
    assert mounts.normalize_key("cgroup2") == "unified"
    assert mounts.normalize_key("pids") == "pids"


@pytest.mark.t0
def test_owner_marks() -> None:
    me = marks.my_mark()
    assert me == f"{os.getpid()}:{marks.proc_starttime(os.getpid())}"
    assert marks.mark_alive(me) is True
    pid, start = marks.parse_mark(me)
    assert marks.mark_alive(f"{pid}:{start + 1}") is False  # same pid, other process
    assert marks.mark_alive("garbage") is None
    assert marks.parse_mark("12:") is None


@pytest.mark.t0
def test_starttime_survives_odd_comm(tmp_path) -> None:
    exe = tmp_path / "a) b ("
    os.symlink("/bin/sleep", exe)
    p = subprocess.Popen([str(exe), "5"])
    try:
        with open(f"/proc/{p.pid}/stat") as f:
            assert ") b (" in f.read()
        start = marks.proc_starttime(p.pid)
        assert start is not None and start >= marks.proc_starttime(os.getpid())
    finally:
        p.kill()
        p.wait()


@pytest.mark.t0
def test_dead_process_mark() -> None:
    p = subprocess.Popen(["true"])
    mark = marks.mark_of(p.pid)
    p.wait()
    assert mark is not None and marks.mark_alive(mark) is False


@pytest.mark.t0
def test_tier_stats_lines() -> None:
    s = tiers.TierStats()
    s.record("a", ("t1",), "setup", "passed")
    s.record("a", ("t1",), "call", "passed")
    s.record("a", ("t1",), "teardown", "passed")
    s.record("b", ("t1",), "setup", "passed")
    s.record("b", ("t1",), "call", "failed")
    s.record("c", ("t2",), "setup", "skipped")
    s.record("d", ("t1",), "call", "passed")
    s.record("d", ("t1",), "teardown", "failed")  # error in teardown counts as failed
    s.record("e", (), "call", "passed")
    lines = s.lines()
    assert "tier t1: 1 passed, 2 failed, 0 skipped" in lines
    assert "tier t2: 0 passed, 0 failed, 1 skipped" in lines
    assert "tier t5: 0 passed, 0 failed, 0 skipped" in lines
    assert "no tier: 1 passed, 0 failed, 0 skipped" in lines
    assert len(lines) == 7


@pytest.mark.t0
def test_prober_caches_and_ci_policy(monkeypatch) -> None:
    calls = []
    p = tiers.Prober({"t1": lambda: calls.append(1) or "nope"})
    assert p.reason("t1") == "nope" and p.reason("t1") == "nope"
    assert calls == [1]
    monkeypatch.setenv("CI", "true")
    assert all(tiers.must_run(t) for t in ("t0", "t1", "t2", "t3", "t4", "t5"))
    monkeypatch.setattr(tiers, "CI_MAY_SKIP", frozenset({"t5"}))  # the exemption mechanism
    assert not tiers.must_run("t5") and tiers.must_run("t4")
    monkeypatch.setenv("CI", "false")
    assert not tiers.must_run("t1")


@pytest.mark.t0
def test_new_mounts_are_detected_in_both_namespaces() -> None:
    now = leftovers.snapshot_mounts()
    assert leftovers.new_mounts(now) == []
    own_id, own_desc = next(iter(now.own.items()))
    start = leftovers.MountSnapshot(
        own={k: v for k, v in now.own.items() if k != own_id}, pid1=dict(now.pid1)
    )
    assert leftovers.new_mounts(start) == [f"mount {own_desc} (our mount namespace)"]
    if now.pid1:
        p1_id, p1_desc = next(iter(now.pid1.items()))
        fake_own = {k: v for k, v in now.own.items() if k != p1_id}
        start = leftovers.MountSnapshot(
            own=fake_own, pid1={k: v for k, v in now.pid1.items() if k != p1_id}
        )
        found = leftovers.new_mounts(start)
        assert any(p1_desc in f for f in found)
