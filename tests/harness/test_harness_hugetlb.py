"""The shared `+hugetlb` toggle at the v2 root."""

from __future__ import annotations

import os
import subprocess

import pytest
from support import hugetlb, marks, run


@pytest.mark.t1
def test_fixture_enables_hugetlb_below_the_root(hugetlb_enabled, cgroots) -> None:
    with open(os.path.join(hugetlb_enabled, "cgroup.subtree_control")) as f:
        assert "hugetlb" in f.read().split()
    with open(os.path.join(cgroots.path("unified"), "cgroup.controllers")) as f:
        assert "hugetlb" in f.read().split()
    assert hugetlb.holder_exists(run.current().mark)


@pytest.fixture
def fake_root(tmp_path):
    root = tmp_path / "v2"
    root.mkdir()
    (root / "cgroup.controllers").write_text("hugetlb\n")
    (root / "cgroup.subtree_control").write_text("\n")
    return root


def _enabled(root) -> bool:
    return "hugetlb" in hugetlb._subtree_control(str(root))


def _dead_mark() -> str:
    p = subprocess.Popen(["true"])
    m = marks.mark_of(p.pid)
    p.wait()
    return m


@pytest.mark.t0
def test_refcount_last_holder_disables(fake_root, tmp_path, procs) -> None:
    kw = {"lock": str(tmp_path / "lock"), "holders": str(tmp_path / "holders")}
    other = procs.spawn(["sleep", "100"])
    a = hugetlb.HugetlbToggle(str(fake_root), marks.my_mark(), **kw)
    b = hugetlb.HugetlbToggle(str(fake_root), marks.mark_of(other.pid), **kw)
    a.acquire()
    assert _enabled(fake_root)
    b.acquire()
    assert a.release() == [] and _enabled(fake_root)  # b still needs it
    assert b.release() == [] and not _enabled(fake_root)
    assert os.listdir(kw["holders"]) == []


@pytest.mark.t0
def test_dead_holders_do_not_pin_the_toggle(fake_root, tmp_path) -> None:
    kw = {"lock": str(tmp_path / "lock"), "holders": str(tmp_path / "holders")}
    dead = hugetlb.HugetlbToggle(str(fake_root), _dead_mark(), **kw)
    dead.acquire()  # a run that was SIGKILLed while holding it
    assert _enabled(fake_root)
    assert hugetlb.prune(str(fake_root), **kw) == []
    assert not _enabled(fake_root)


@pytest.mark.t0
def test_never_removes_a_toggle_it_did_not_add(fake_root, tmp_path) -> None:
    kw = {"lock": str(tmp_path / "lock"), "holders": str(tmp_path / "holders")}
    (fake_root / "cgroup.subtree_control").write_text("hugetlb\n")  # the host set it
    t = hugetlb.HugetlbToggle(str(fake_root), marks.my_mark(), **kw)
    t.acquire()
    assert t.release() == []
    assert _enabled(fake_root)
    assert hugetlb.prune(str(fake_root), **kw) == [] and _enabled(fake_root)
