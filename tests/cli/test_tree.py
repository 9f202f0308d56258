"""``cgm tree``: a subtree with its processes, built from ListChildren + GetTasks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from .conftest import CGM
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


@pytest.fixture
def at_root(place, cgroots):
    """cgm run from this test process (not from the place): it sits at / in the hierarchies
    used, so relative paths are the same absolute path in each of them; the paths made are
    below this run's cgtest root, which has one name everywhere."""
    for key in ("pids", "freezer"):
        with open("/proc/self/cgroup") as f:
            mine = [ln.split(":", 2)[2].strip() for ln in f if f":{key}:" in ln]
        if mine != ["/"]:
            pytest.skip(f"the test process is not at / in {key}")
    root = os.path.basename(cgroots.path("pids"))
    env = dict(os.environ, CGM_SOCKET=place.daemon.socket)
    env.pop("CGM_DEBUG", None)

    def run(*args):
        cp = subprocess.run([CGM, *args], env=env, capture_output=True, text=True, timeout=60)
        assert cp.returncode == 0 and cp.stderr == "", cp.stderr
        return cp.stdout

    name = f"{root}/merge-{os.getpid()}-{time.monotonic_ns()}"
    yield run, name
    for key in ("pids", "freezer"):
        subprocess.run([CGM, "remove", key, name], env=env, capture_output=True, timeout=60)


def test_tree_merges_hierarchies_where_paths_coincide(at_root, place):
    """Without a controller: one tree where paths coincide; a cgroup or process that is not
    in every hierarchy of its parent carries the list of those it is in."""
    run, t = at_root
    run("create", "pids,freezer", f"{t}/a")
    run("create", "pids", f"{t}/a/c")
    run("create", "pids", f"{t}/b")
    run("create", "freezer", f"{t}/f")
    s = sleeper(place)
    run("movepidabs", "pids", f"/{t}/a", str(s.pid))
    out = run("tree", "pids,freezer", t).splitlines()
    assert out == [
        f"/{t}",
        "├─a",
        f"│ ├─{s.pid} sleep 300 [pids]",
        "│ └─c [pids]",
        "├─b [pids]",
        "└─f [freezer]",
    ]
    doc = json.loads(run("--json", "tree", "pids,freezer", t))
    assert [d["path"] for d in doc] == [f"/{t}"]
    a = doc[0]["children"][0]
    assert a["name"] == "a" and a["hierarchies"] == ["freezer", "pids"]
    assert a["tasks"] == [{"pid": s.pid, "cmd": "sleep 300", "threads": 0, "hierarchies": ["pids"]}]
    s.kill()


def test_tree_of_several_places_is_a_tree_each(cgm, place, small_tree):
    """Where the starting cgroups differ (each hierarchy has its own place here), each gets
    its own tree, marked with its hierarchies."""
    out = cgm.ok("tree", "pids,freezer").split("\n\n")
    assert len(out) == 2
    heads = sorted(part.splitlines()[0] for part in out)
    assert heads == sorted([f"{place.hp('pids')} [pids]", f"{place.hp('freezer')} [freezer]"])
    assert "└─t" in cgm.ok("tree").split(f"{place.hp('pids')} [pids]\n")[1].split("\n\n")[0]


def test_kernel_threads_are_hidden_unless_asked(at_root):
    run, _ = at_root
    assert "─2 [kthreadd]" not in run("tree", "pids", "/", "--depth", "0")
    assert "─2 [kthreadd]" in run("tree", "pids", "/", "--depth", "0", "--all")
    assert "─2 [kthreadd]" in run("tree", "-k", "pids", "/", "--depth", "0")


def test_a_lone_absolute_path_is_the_cgroup(cgm, place, small_tree):
    """Only pids has this path (each hierarchy has its own place here): one tree, marked."""
    out = cgm.ok("tree", place.hp("pids") + "/t").splitlines()
    assert out[0] == f"{place.hp('pids')}/t [pids]"
    assert out[1:] == ["├─a", f"│ ├─{small_tree.pid} sleep 300", "│ └─c", "└─b"]
    (frame,) = [
        json.loads(x)
        for x in cgm.ok(
            "--json", "top", "--once", "-d", "0.1", place.hp("pids") + "/t"
        ).splitlines()
    ]
    assert {c["path"] for c in frame["cgroups"]} == {
        place.hp("pids") + p for p in ("/t", "/t/a", "/t/a/c", "/t/b")
    }


def test_tree_depth(cgm, place, small_tree):
    assert cgm.ok("tree", "pids", "t", "--depth", "0") == f"pids:{place.hp('pids')}/t\n"
    assert cgm.ok("tree", "--depth=1", "pids", "t") == (
        f"pids:{place.hp('pids')}/t\n├─a\n│ └─{small_tree.pid} sleep 300\n└─b\n"
    )


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
    failed(
        cgm("tree", "pids", "nope"),
        "snapshot_sync",
        place,
        ("GetValue", "sss", "pids", "nope", "cgroup.procs"),
    )


def test_tree_unknown_controller(cgm, place):
    failed(
        cgm("tree", "nosuch"),
        "snapshot_sync",
        place,
        ("GetValue", "sss", "nosuch", "", "cgroup.procs"),
    )


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
    from cgmanager.cli.processes import printable

    assert printable("sleep 300") == "sleep 300"
    assert (
        printable("python -c a\nb\tc\\d\x01\x7f\u2028")
        == "python -c a\\nb\\tc\\\\d\\x01\\x7f\\u2028"
    )


# -- in a terminal ----------------------------------------------------------------------------


def test_tree_in_a_terminal_cuts_lines_and_uses_colour(cgm, place, fast_cgm):
    from .terminal import Screen

    cgm.ok("create", "pids", "wide")
    long = place.spawn(["sh", "-c", "sleep 300; : " + "x" * 150])
    cgm.ok("movepid", "pids", "wide", str(long.pid))
    full = cgm.ok("tree", "pids", "wide")  # not a terminal: whole lines, no colour
    assert "x" * 150 in full and "\x1b[" not in full
    screen = Screen(place, [fast_cgm, "tree", "pids", "wide"], cols=60, rows=20)
    try:
        shown = screen.wait_for(lambda t: "EXIT=0" in t, "cgm tree ending with status 0")
        line = next(ln for ln in shown.split("\n") if f"{long.pid} sh -c" in ln)
        assert len(line) == 60 and line.endswith("…")
        assert "\x1b[1m" in screen.text(escapes=True)  # cgroup names in bold
    finally:
        screen.close()


def test_tree_longer_than_the_terminal_goes_through_the_pager(cgm, place, fast_cgm):
    from .terminal import Screen

    for i in range(30):
        cgm.ok("create", "pids", f"many/c{i:02d}")
    screen = Screen(place, [fast_cgm, "tree", "pids", "many"], cols=80, rows=10)
    try:
        first = screen.wait_for(lambda t: "c00" in t, "the first page")
        assert "c29" not in first and "EXIT=" not in first  # less holds the rest
        screen.keys("G")
        screen.wait_for(lambda t: "└─c29" in t, "the end of the tree after G")
        screen.keys("q")
        screen.wait_for(lambda t: "EXIT=0" in t, "cgm tree ending with status 0 after q")
    finally:
        screen.close()
    # --no-pager (and a short tree) write straight to the terminal
    screen = Screen(place, [fast_cgm, "tree", "--no-pager", "pids", "many"], cols=80, rows=10)
    try:
        shown = screen.wait_for(lambda t: "EXIT=0" in t, "cgm tree --no-pager ending")
        assert "└─c29" in shown
    finally:
        screen.close()
