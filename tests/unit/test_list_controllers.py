"""ListControllers as 0.42's clients read it, over recorded layouts: where v1 hierarchies are
served, every entry is a controllers field of ``/proc/self/cgroup`` (0.42's test23 greps for
it, lxcfs compares it with the whole field); on a pure v2 host, one entry of every name the
tree answers to.  The live daemon with 0.42-style client loops: tests/daemon/
test_original_suite.py::test23_listcontrollers."""

from __future__ import annotations

from pathlib import Path

import pytest

from cgmanager import operations
from cgmanager.hierarchy import discover
from cgmanager.operations import Manager

pytestmark = pytest.mark.t0
SAMPLES = Path(__file__).parent.parent / "samples"


def listed(kind: str, **kw) -> tuple[list[str], str]:
    d = SAMPLES / kind
    ctrl = d / "v2-controllers"
    layout = discover(
        (d / "mountinfo").read_text(),
        (d / "cgroups").read_text(),
        (lambda _mp: ctrl.read_text()) if ctrl.exists() else None,
        **kw,
    )
    m = Manager(layout, {}, None)
    # (a function of the operations package on main, a method of Manager before its split)
    entries = operations.list_controllers(m)
    return entries, (d / "self-cgroup").read_text()


def fields(self_cgroup: str) -> set[str]:
    return {line.split(":")[1] for line in self_cgroup.split("\n") if line}


@pytest.mark.parametrize("kind", ["hybrid", "legacy", "container"])
def test_every_entry_is_a_hierarchy_of_proc_self_cgroup(kind):
    entries, text = listed(kind, skip=("memory",))
    assert entries
    for e in entries:
        assert e in text  # 0.42's test23: grep for each word
        assert e in fields(text)  # lxcfs: the whole controllers field
    assert not any(e.startswith("unified") or e == "" for e in entries)


def test_hybrid_lists_the_v1_hierarchies_as_0_42_did():
    entries, _ = listed("hybrid", skip=("memory",))
    assert entries == [
        "blkio",
        "cpu",
        "cpuacct",
        "cpuset",
        "devices",
        "freezer",
        "name=systemd",
        "pids",
    ]


def test_pure_v2_is_one_entry_of_every_name_the_tree_answers_to():
    entries, text = listed("unified")
    assert fields(text) == {""}  # nothing any entry could match
    (entry,) = entries
    names = entry.split(",")
    assert names[0] == "unified"
    assert {"cpuset", "cpu", "io", "memory", "hugetlb", "pids"} <= set(names)
    # v1 names old clients check against the list (pam_cgm -c freezer,name=systemd)
    assert {"freezer", "cpuacct", "blkio", "name=systemd"} <= set(names)
    assert "systemd" not in names and len(names) == len(set(names))


def test_v2_served_alone_on_a_hybrid_host_is_listed():
    skip = ("blkio", "cpu", "cpuacct", "cpuset", "devices", "freezer", "memory", "pids")
    entries, _ = listed("hybrid", skip=(*skip, "name=systemd"))
    assert entries == ["unified,hugetlb"]
