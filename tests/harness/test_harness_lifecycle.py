"""End-to-end: SIGTERM teardown, CI tier enforcement, the leftover check (nested pytest)."""

from __future__ import annotations

import json
import os
import pwd
import re
import signal
import time

import pytest
from support import cgtree, nested, run
from support import procs as procs_mod

CASES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nested_cases.py")


def _wait_for_state(proc, path: str, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if not proc.alive():
            out = proc.popen.communicate()[0]
            pytest.fail(f"nested pytest ended before reporting its state:\n{out}")
        if time.monotonic() > deadline:
            pytest.fail("nested pytest did not report its state in time")
        time.sleep(0.02)
    with open(path) as f:
        return json.load(f)


def _in_cgroup(pid: int, cgroup: str) -> bool:
    return pid in cgtree.members(cgroup)


@pytest.mark.t1
@pytest.mark.t3
def test_sigterm_during_a_test_removes_everything(procs, tmp_path) -> None:
    state_file = str(tmp_path / "state.json")
    env = nested.nested_env({"CGTEST_NESTED_STATE": state_file}, ci=False)
    p = nested.spawn_pytest(procs, [CASES, "-k", "test_sleep_until_sigterm"], env)
    state = _wait_for_state(p, state_file)

    # Pin the nested run's children by pidfd, checking each is where it said it put it.
    pidfds = {}
    for pid_s, cgroup in state["cgroups"].items():
        fd = os.pidfd_open(int(pid_s))
        assert _in_cgroup(int(pid_s), cgroup), (pid_s, cgroup)
        pidfds[int(pid_s)] = fd
    try:
        assert all(os.path.isdir(r) for r in state["roots"])
        p.signal(signal.SIGTERM)
        out, _ = p.popen.communicate(timeout=30)
        assert p.popen.returncode == pytest.ExitCode.INTERRUPTED, out
        for pid, fd in pidfds.items():
            assert procs_mod.pidfd_wait_exit(fd, 5), f"process {pid} survived:\n{out}"
        for path in list(state["cgroups"].values()) + state["roots"]:
            assert not os.path.exists(path), f"{path} survived:\n{out}"
        with pytest.raises(KeyError):
            pwd.getpwnam(state["user"])
        assert not os.path.exists(state["home"])
        assert "LEFTOVER" not in out and "cleanup problem" not in out, out
        assert "SIGTERM received" in out, out
    finally:
        for fd in pidfds.values():
            os.close(fd)


def _tier_lines_then_final(out: str) -> tuple[list[str], str]:
    lines = [ln for ln in out.splitlines() if ln.strip()]
    return [ln for ln in lines if ln.startswith("tier ")], lines[-1]


@pytest.mark.t1
def test_ci_turns_a_missing_tier_into_a_failure(procs) -> None:
    args = [CASES, "-k", "needs_t1 or needs_t4 or plain"]
    env = nested.nested_env({"CGTEST_PRETEND_MISSING": "t1"}, ci=True)
    p = nested.spawn_pytest(procs, args, env)
    out, _ = p.popen.communicate(timeout=60)
    assert p.popen.returncode == pytest.ExitCode.TESTS_FAILED, out
    assert "tier t1 must run in CI but cannot: pretended missing" in out
    tier_lines, final = _tier_lines_then_final(out)
    assert "tier t1: 0 passed, 1 failed, 0 skipped" in tier_lines, out
    assert "tier t4: 1 passed, 0 failed, 0 skipped" in tier_lines, out  # really runs
    assert "tier t0: 1 passed, 0 failed, 0 skipped" in tier_lines, out
    assert re.fullmatch(r"2 passed, \d+ deselected, 1 error in .*", final), final
    assert out.index("tier t5:") < out.rindex(final)


@pytest.mark.t1
def test_outside_ci_a_missing_tier_skips_with_its_reason(procs) -> None:
    args = [CASES, "-k", "needs_t1 or plain", "-rs"]
    env = nested.nested_env({"CGTEST_PRETEND_MISSING": "t1"}, ci=False)
    p = nested.spawn_pytest(procs, args, env)
    out, _ = p.popen.communicate(timeout=60)
    assert p.popen.returncode == pytest.ExitCode.OK, out
    assert "tier t1: pretended missing via CGTEST_PRETEND_MISSING" in out, out
    tier_lines, final = _tier_lines_then_final(out)
    assert "tier t1: 0 passed, 0 failed, 1 skipped" in tier_lines, out
    assert re.fullmatch(r"1 passed, 1 skipped, \d+ deselected in .*", final), final


@pytest.mark.t1
def test_leftovers_are_reported_and_fail_the_run(procs, tmp_path) -> None:
    state_file = str(tmp_path / "state.json")
    env = nested.nested_env({"CGTEST_NESTED_STATE": state_file}, ci=False)
    p = nested.spawn_pytest(procs, [CASES, "-k", "test_leaks"], env)
    out, _ = p.popen.communicate(timeout=60)
    with open(state_file) as f:
        state = json.load(f)
    leaked = state["leaked"]
    run.current().track_cgroup(leaked, 1)  # ours to remove now
    try:
        assert p.popen.returncode == pytest.ExitCode.TESTS_FAILED, out
        assert f"LEFTOVER: cgroup {leaked}" in out, out
        assert f"untracked child process {state['child']}" in out, out
        _, final = _tier_lines_then_final(out)
        assert re.fullmatch(r"1 passed, \d+ deselected, 1 error in .*", final), final
    finally:
        os.rmdir(leaked)


@pytest.mark.t0
def test_sigterm_during_teardown_lets_it_finish(procs, tmp_path) -> None:
    base = str(tmp_path / "state")
    env = nested.nested_env({"CGTEST_NESTED_STATE": base}, ci=False)
    p = nested.spawn_pytest(procs, [CASES, "-k", "sigterm_in_teardown or after_sigterm"], env)
    deadline = time.monotonic() + 30
    while not os.path.exists(base + ".in-teardown"):
        assert p.alive() and time.monotonic() < deadline, p.popen.communicate()[0]
        time.sleep(0.01)
    p.signal(signal.SIGTERM)
    out, _ = p.popen.communicate(timeout=30)
    assert os.path.exists(base + ".teardown-done"), out  # not cut short
    assert not os.path.exists(base + ".next-test-ran"), out  # but the run stopped
    assert p.popen.returncode == pytest.ExitCode.INTERRUPTED, out
