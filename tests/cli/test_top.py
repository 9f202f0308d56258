"""``cgm top``: figures read through the daemon, batch and JSON for scripts, a live view in a
real terminal (tmux), as root and as a user in its delegation."""

from __future__ import annotations

import json
import sys

import pytest

from .terminal import Screen
from .test_commands import sleeper

pytestmark = pytest.mark.t3

BUSY = [sys.executable, "-c", "while True: pass"]


def frames(text):
    return [json.loads(line) for line in text.splitlines()]


def by_path(frame):
    return {c["path"]: c for c in frame["cgroups"]}


@pytest.fixture
def busy_and_idle(cgm, place):
    """place/busy spins a CPU; place/idle sleeps (v2 and pids)."""
    cgm.ok("create", "unified,pids", "busy")
    cgm.ok("create", "unified,pids", "idle")
    spin = place.spawn(BUSY)
    cgm.ok("movepid", "unified,pids", "busy", str(spin.pid))
    rest = sleeper(place)
    cgm.ok("movepid", "unified,pids", "idle", str(rest.pid))
    return spin, rest


def test_json_frames_with_cpu_tasks_and_order(cgm, place, busy_and_idle):
    out = cgm.ok("--json", "top", "--iterations", "2", "--delay", "0.3", "unified,pids")
    got = frames(out)
    assert len(got) == 2
    base = place.hp("unified")
    for f in got:
        assert f["complete"] is True and f["interval"] > 0
        rows = by_path(f)
        busy, idle = rows[f"{base}/busy"], rows[f"{base}/idle"]
        assert busy["cpu_percent"] > idle["cpu_percent"] >= 0
        # CPU first: the busy cgroup comes before the idle one
        paths = [c["path"] for c in f["cgroups"]]
        assert paths.index(f"{base}/busy") < paths.index(f"{base}/idle")
        assert set(busy) == {
            "path",
            "tasks",
            "cpu_percent",
            "memory_bytes",
            "io_read_bytes_per_second",
            "io_write_bytes_per_second",
            "pressure_some_avg10",
        }


def test_tasks_come_from_pids_current(cgm, place, busy_and_idle):
    """pids.current of the pids hierarchy, merged with v2's figures where the paths coincide
    (they do not here: each hierarchy has its own place), and v2 pressure."""
    (f,) = frames(cgm.ok("--json", "top", "--once", "-d", "0.2", "pids"))
    rows = by_path(f)
    assert rows[place.hp("pids") + "/busy"]["tasks"] == 1
    assert rows[place.hp("pids") + "/idle"]["tasks"] == 1
    (f,) = frames(cgm.ok("--json", "top", "--once", "-d", "0.2", "unified"))
    psi = by_path(f)[place.hp("unified") + "/busy"]["pressure_some_avg10"]
    assert set(psi) == {"cpu", "memory", "io"} and isinstance(psi["cpu"], float)


def test_batch_table_sorted_and_depth(cgm, place, busy_and_idle):
    cgm.ok("create", "unified", "idle/deeper")
    out = cgm.ok("top", "--once", "-d", "0.2", "--order", "path", "unified")
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["Control", "Group", "Tasks"]
    paths = [line.split()[0] for line in lines[1:]]
    base = place.hp("unified")
    assert paths == sorted(paths) and f"{base}/idle/deeper" in paths
    shallow = cgm.ok("top", "--once", "-d", "0.2", "--depth", "1", "unified")
    assert f"{base}/idle/deeper" not in shallow and f"{base}/idle " in shallow


def test_bad_options(cgm):
    cp = cgm("top", "--order", "colour")
    assert cp.returncode == 1 and "--order takes one of cpu, memory, io" in cp.stderr
    cp = cgm("top", "--delay", "0")
    assert cp.returncode == 1 and "--delay takes seconds" in cp.stderr
    cp = cgm("top", "--frobnicate")
    assert cp.returncode == 1 and cp.stderr.startswith("cgm: top: unknown option --frobnicate\n")


def test_a_user_sees_its_delegation_only(cgm, place, test_user):
    cgm.ok("create", "unified", "dlg")
    cgm.ok("chown", "unified", "dlg", str(test_user.uid), str(test_user.gid))
    cgm.ok("create", "unified", "dlg/job", user=test_user)
    spin = place.spawn(BUSY, user=test_user)
    cgm.ok("movepid", "unified", "dlg/job", str(spin.pid), user=test_user)
    cgm.ok("create", "unified", "dlg/shut")
    cgm.ok("chmod", "unified", "dlg/shut", "0700")
    (f,) = frames(cgm.ok("--json", "top", "--once", "-d", "0.3", "unified", "dlg", user=test_user))
    rows = by_path(f)
    base = place.hp("unified") + "/dlg"
    assert rows[f"{base}/job"]["cpu_percent"] > 0
    # a cgroup it may not read has no figures
    assert rows[f"{base}/shut"]["cpu_percent"] is None
    # above its delegation: refused, as GetValue would be
    cp = cgm("top", "--once", "unified", "/", user=test_user)
    assert cp.returncode == 1 and "call to cgmanager_snapshot_sync failed: " in cp.stderr


# -- in a terminal ----------------------------------------------------------------------------


def test_live_view_in_a_terminal(cgm, place, busy_and_idle, fast_cgm):
    base = place.hp("unified")
    screen = Screen(place, [fast_cgm, "top", "unified"], cols=120, rows=20)
    try:
        shown = screen.wait_for(
            lambda t: f"{base}/busy" in t and "by cpu" in t and _cpu_of(t, f"{base}/busy"),
            "the busy cgroup with a CPU figure",
        )
        lines = shown.rstrip("\n").split("\n")
        assert lines[0].startswith("cgm top: ") and "q quit" in lines[0]
        assert lines[1].split()[:3] == ["Control", "Group", "Tasks"]
        order = [ln.split()[0] for ln in lines[2:] if ln.strip()]
        assert order.index(f"{base}/busy") < order.index(f"{base}/idle")
        assert all(len(ln) <= 120 for ln in lines)
        screen.keys("p")
        shown = screen.wait_for(lambda t: "by path" in t, "the order by path")
        order = [ln.split()[0] for ln in shown.rstrip("\n").split("\n")[2:] if ln.strip()]
        assert order == sorted(order)
        screen.keys("q")
        screen.wait_for(lambda t: "EXIT=0" in t, "cgm top ending with status 0")
        assert "Control Group" not in screen.text()  # the terminal's own screen is back
    finally:
        screen.close()


def test_live_view_fits_a_narrow_terminal(cgm, place, busy_and_idle, fast_cgm):
    cgm.ok("create", "unified", "a-cgroup-with-a-name-much-longer-than-the-terminal-is-wide")
    screen = Screen(place, [fast_cgm, "top", "unified"], cols=60, rows=12)
    try:
        shown = screen.wait_for(lambda t: "…" in t and "Tasks" in t, "a path cut to fit")
        assert all(len(ln) <= 60 for ln in shown.split("\n"))
        assert len(shown.rstrip("\n").split("\n")) <= 12
    finally:
        screen.close()


def _cpu_of(screen: str, path: str) -> bool:
    for line in screen.split("\n"):
        words = line.split()
        if words and words[0] == path:
            return words[2] != "-"
    return False
