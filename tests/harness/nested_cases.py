"""Scenarios run by a *nested* pytest in the harness's end-to-end tests.

Not collected by the main run: the file name does not match test_*.py. Each scenario
reports what it created through the JSON file named by $CGTEST_NESTED_STATE.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time

import pytest
from support import marks, run


def _report(state: dict) -> None:
    path = os.environ["CGTEST_NESTED_STATE"]
    with open(path + ".tmp", "w") as f:
        json.dump(state, f)
    os.rename(path + ".tmp", path)  # atomic: the parent never reads half a file


@pytest.mark.t1
@pytest.mark.t3
def test_sleep_until_sigterm(cgroots, cgdir, procs, test_user) -> None:
    """Cgroups (nested, v2 and v1), tracked and untracked children, a user; then wait."""
    outer = cgdir("unified")
    inner = cgdir("unified", parent=outer)
    pids_cg = cgdir("pids")
    a = procs.spawn(["sleep", "1000"], cgroup=inner)
    b = procs.spawn(["sleep", "1000"], cgroup=pids_cg, user=test_user)
    c = subprocess.Popen(["sleep", "1000"])  # untracked: only the cgroup teardown finds it
    with open(os.path.join(outer, "cgroup.procs"), "w") as f:
        f.write(str(c.pid))
    _report(
        {
            "roots": [cgroots.path(n) for n in ("unified", "pids")],
            "cgroups": {str(a.pid): inner, str(b.pid): pids_cg, str(c.pid): outer},
            "user": test_user.name,
            "home": test_user.home,
            "mark": run.current().mark,
        }
    )
    time.sleep(60)


@pytest.mark.t1
def test_needs_t1() -> None:
    pass


@pytest.mark.t4
def test_needs_t4() -> None:
    pass


@pytest.mark.t0
def test_plain() -> None:
    pass


@pytest.mark.t1
def test_leaks(cgroots) -> None:
    """Leaves a marked cgroup and a running child behind, on purpose."""
    path = os.path.join(cgroots.mount("pids"), "cgtest-leak" + secrets.token_hex(3))
    os.mkdir(path)
    marks.write_owner(path, run.current().mark)
    child = subprocess.Popen(["sleep", "30"])
    _report({"leaked": path, "child": child.pid})


@pytest.fixture
def slow_teardown():
    yield
    base = os.environ["CGTEST_NESTED_STATE"]
    with open(base + ".in-teardown", "w"):
        pass
    time.sleep(0.5)  # the SIGTERM arrives here
    with open(base + ".teardown-done", "w"):
        pass


@pytest.mark.t0
def test_sigterm_in_teardown(slow_teardown) -> None:
    pass


@pytest.mark.t0
def test_after_sigterm_in_teardown() -> None:
    """Must not run: the deferred SIGTERM stops the session after the teardown."""
    with open(os.environ["CGTEST_NESTED_STATE"] + ".next-test-ran", "w"):
        pass
