"""Processes tracked by pidfd: spawning into cgroups and as users, teardown."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest
from support import procs as procs_mod
from support import run


@pytest.mark.t3
def test_teardown_kills_and_reaps_survivors() -> None:
    tracker = procs_mod.ProcTracker()
    plain = tracker.spawn(["sleep", "100"])
    stubborn = tracker.spawn(["sh", "-c", "trap '' TERM INT HUP; while :; do sleep 1; done"])
    done = tracker.spawn(["true"])
    done.wait(5)
    fds = [os.dup(p.pidfd) for p in (plain, stubborn)]
    try:
        assert plain.alive() and stubborn.alive()
        assert tracker.cleanup() == []
        for fd in fds:
            assert procs_mod.pidfd_exited(fd)
        assert plain.popen.returncode == -signal.SIGKILL
        assert stubborn.popen.returncode == -signal.SIGKILL
        assert tracker.procs == [] and plain.pidfd == -1
    finally:
        for fd in fds:
            os.close(fd)


@pytest.mark.t3
def test_proc_api(procs) -> None:
    p = procs.spawn(["sleep", "100"], stdout=subprocess.DEVNULL)
    assert p.alive() and p.pid == p.popen.pid
    assert p in run.current().processes  # registered for the SIGTERM cleanup
    assert p.kill() == -signal.SIGKILL
    assert not p.alive()
    assert p.signal(signal.SIGTERM) is False


@pytest.mark.t1
def test_spawn_joins_the_cgroup_before_exec(cgroots, cgdir, procs) -> None:
    cg = cgdir("unified")
    p = procs.spawn(["cat", "/proc/self/cgroup"], cgroup=cg, stdout=subprocess.PIPE, text=True)
    out, _ = p.popen.communicate(timeout=5)
    rel = cg[len(cgroots.mount("unified")) :]
    assert f"0::{rel}" in out.splitlines()


@pytest.mark.t1
@pytest.mark.t3
def test_spawn_as_user_into_cgroup(cgroots, cgdir, procs, test_user) -> None:
    cg = cgdir("pids")
    p = procs.spawn(
        ["sh", "-c", "id -u; id -g; cat /proc/self/cgroup; pwd"],
        cgroup=cg,
        user=test_user,
        stdout=subprocess.PIPE,
        text=True,
    )
    out, _ = p.popen.communicate(timeout=5)
    lines = out.splitlines()
    assert lines[0] == str(test_user.uid) and lines[1] == str(test_user.gid)
    assert any(ln.endswith(f":pids:{cg[len(cgroots.mount('pids')) :]}") for ln in lines), out
    assert lines[-1] == test_user.home


@pytest.mark.t2
def test_teardown_thaws_frozen_v1_processes(cgdir) -> None:
    r = run.current()
    tracker = procs_mod.ProcTracker(on_spawn=r.track_process, on_stuck=r.thaw_if_ours)
    cg = cgdir("freezer")
    p = tracker.spawn(["sleep", "100"], cgroup=cg)
    with open(os.path.join(cg, "freezer.state"), "w") as f:
        f.write("FROZEN")
    assert tracker.cleanup() == []
    assert p.popen.returncode == -signal.SIGKILL
    with open(os.path.join(cg, "freezer.state")) as f:
        assert f.read().strip() == "THAWED"


@pytest.mark.t3
def test_spawn_as_user_without_cgroup(procs, test_user) -> None:
    p = procs.spawn(
        ["sh", "-c", "id -u; id -G; echo $HOME"], user=test_user, stdout=subprocess.PIPE, text=True
    )
    out, _ = p.popen.communicate(timeout=5)
    uid, groups, home = out.splitlines()
    assert uid == str(test_user.uid) and home == test_user.home
    assert sorted(map(int, groups.split())) == sorted(set(test_user.groups))
    assert p.user is test_user
