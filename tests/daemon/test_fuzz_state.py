"""The method fuzzer's "nothing outside the place changed" check compares only what the test
owns: on a shared host others create and remove cgroups at the hierarchy roots meanwhile.

Pure logic over a directory tree shaped like the hierarchies (a root with a run root holding
the place, and the root's own files); the fuzzer reads it with the same os.walk/lstat calls."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from daemon.test_fuzz_methods import Fuzzer

pytestmark = pytest.mark.t0


@pytest.fixture
def fuzzer(tmp_path) -> tuple[Fuzzer, str, str]:
    root = tmp_path / "pids"  # a hierarchy root
    place = root / "cgtest-0123abcd" / "test-a1b2c3"
    place.mkdir(parents=True)
    (root / "cgroup.procs").write_text("")
    (root / "release_agent").write_text("\n")
    (root / "system.slice").mkdir()  # someone else's
    (root / "cgtest-0123abcd" / "pids.max").write_text("max\n")
    log = tmp_path / "daemon.log"
    log.write_text("")
    p = SimpleNamespace(
        daemon=SimpleNamespace(log_path=str(log)),
        dirs={"pids": str(place)},
        mounts={"pids": str(root)},
        hp=lambda key: "/cgtest-0123abcd/test-a1b2c3",
    )
    return Fuzzer(p, None, None, root=True), str(root), str(place)


def test_others_cgroups_at_a_hierarchy_root_come_and_go(fuzzer):
    fz, root, _place = fuzzer
    fz.remember(["pids", "a/b", {"k": "x"}])
    os.mkdir(f"{root}/machine.slice")  # another manager creates a cgroup meanwhile
    os.rmdir(f"{root}/system.slice")  # and removes one
    assert fz.outside_changes() == []


def test_a_cgroup_the_daemon_made_at_the_root_from_a_name_sent_is_caught(fuzzer):
    fz, root, _place = fuzzer
    fz.remember(["pids", "../../escaped"])
    os.mkdir(f"{root}/escaped")
    os.mkdir(f"{root}/.cgm_leaf")  # the daemon's own name, never sent
    assert fz.outside_changes() == [f"{root}/.cgm_leaf", f"{root}/escaped"]


def test_the_roots_files_and_the_run_root_are_compared_whole(fuzzer):
    fz, root, place = fuzzer
    run_root = os.path.dirname(place)
    os.mkdir(f"{run_root}/stray")  # below this run's root, outside the place
    os.chmod(f"{root}/cgroup.procs", 0o666)  # the root cgroup's own files
    with open(f"{root}/release_agent", "w") as f:
        f.write("/evil\n")
    os.mkdir(f"{place}/inside")  # the place is the fuzzer's to change
    assert fz.outside_changes() == sorted(
        [f"{root}/cgroup.procs", f"{root}/release_agent:content"]
        + [f"{run_root}/stray", f"{run_root}/stray/"]  # the entry, and the directory itself
    )
