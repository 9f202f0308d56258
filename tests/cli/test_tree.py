"""``cgm tree``: a subtree with its processes, built from ListChildren + GetTasks."""

from __future__ import annotations

import json
import sys
import time

import pytest

from .test_commands import failed, sleeper

pytestmark = pytest.mark.t3


@pytest.fixture
def small_tree(cgm, place):
    """t/{a/c, b} in pids with a sleeping process in t/a."""
    cgm.ok("create", "pids", "t/a/c")
    cgm.ok("create", "pids", "t/b")
    s = sleeper(place)
    cgm.ok("movepid", "pids", "t/a", str(s.pid))
    return s


def test_tree_text(cgm, place, small_tree):
    s = small_tree
    assert cgm.ok("tree", "pids", "t") == (
        f"pids:{place.hp('pids')}/t\n├─a\n│ ├─{s.pid} sleep 300\n│ └─c\n└─b\n"
    )


def test_tree_of_a_leaf_and_absolute_path(cgm, place, small_tree):
    s = small_tree
    start = place.hp("pids") + "/t/a"
    assert cgm.ok("tree", "pids", start) == f"pids:{start}\n├─{s.pid} sleep 300\n└─c\n"
    assert cgm.ok("tree", "pids", "t/b") == f"pids:{place.hp('pids')}/t/b\n"


def test_tree_json(cgm, place, small_tree):
    s = small_tree
    doc = json.loads(cgm.ok("--json", "tree", "pids", "t"))
    assert doc == {
        "controller": "pids",
        "cgroup": "t",
        "path": place.hp("pids") + "/t",
        "tasks": [],
        "children": [
            {
                "name": "a",
                "tasks": [{"pid": s.pid, "cmd": "sleep 300", "threads": 0}],
                "children": [{"name": "c", "tasks": [], "children": []}],
            },
            {"name": "b", "tasks": [], "children": []},
        ],
    }


def test_tree_own_cgroup_shows_cgm_itself(cgm, place, small_tree):
    out = cgm.ok("tree", "pids").splitlines()
    assert out[0] == f"pids:{place.hp('pids')}"
    # the cgm process runs in the test's cgroup: it lists itself
    assert any(line.startswith("├─") and line.endswith("/cgm tree pids") for line in out), out
    assert "└─t" in out


def test_tree_of_every_hierarchy(cgm, place, small_tree):
    out = cgm.ok("tree")
    controllers = cgm.ok("listcontrollers").splitlines()
    heads = [line for line in out.splitlines() if line and line[0] not in "├└│ "]
    assert [h.split(":", 1)[0] for h in heads] == controllers
    assert f"pids:{place.hp('pids')}" in heads
    docs = json.loads(cgm.ok("--json", "tree"))
    assert [d["controller"] for d in docs] == controllers


def test_tree_folds_threads(cgm, place):
    cgm.ok("create", "pids", "thr")
    code = (
        "import threading, time; [threading.Thread(target=time.sleep, args=(300,),"
        " daemon=True).start() for _ in range(2)]; time.sleep(300)"
    )
    p = place.spawn([sys.executable, "-c", code])
    deadline = time.monotonic() + 10
    while True:  # wait for both threads
        with open(f"/proc/{p.pid}/status") as f:
            if "Threads:\t3" in f.read():
                break
        assert time.monotonic() < deadline
        time.sleep(0.02)
    cgm.ok("movepid", "pids", "thr", str(p.pid))  # v1: moves the whole thread group
    assert cgm.ok("gettasks", "pids", "thr").count("\n") == 3  # v1 lists threads
    out = cgm.ok("tree", "pids", "thr")
    assert out == (
        f"pids:{place.hp('pids')}/thr\n└─{p.pid} {sys.executable} -c {code} (+2 threads)\n"
    )


def test_tree_unknown_cgroup(cgm, place):
    failed(cgm("tree", "pids", "nope"), "get_tasks_sync", place, ("GetTasks", "ss", "pids", "nope"))


def test_tree_unknown_controller(cgm, place):
    failed(cgm("tree", "nosuch"), "get_tasks_sync", place, ("GetTasks", "ss", "nosuch", ""))


def test_tree_as_user_marks_unreadable_cgroups(cgm, place, test_user):
    cgm.ok("create", "pids", "u/open")
    cgm.ok("create", "pids", "u/closed")
    cgm.ok("chmod", "pids", "u/closed", "0700")
    cp = cgm("tree", "pids", "u", user=test_user)
    assert cp.returncode == 1
    lines = cp.stdout.splitlines()
    assert lines[0] == f"pids:{place.hp('pids')}/u"
    assert lines[1].startswith("├─closed (cannot read: ") and "not permitted" in lines[1]
    assert lines[2:] == ["└─open"]
    assert cp.stderr == "cgm: tree: some cgroups could not be read (shown with the reason)\n"


@pytest.mark.t0
def test_command_lines_stay_on_one_line():
    from cgmanager.cli.tree import printable

    assert printable("sleep 300") == "sleep 300"
    assert (
        printable("python -c a\nb\tc\\d\x01\x7f\u2028")
        == "python -c a\\nb\\tc\\\\d\\x01\\x7f\\u2028"
    )
