"""The suite from a checkout the test users cannot reach (support/relocate.py): a checkout
below a 0700 directory runs from a reachable copy, which is removed afterwards."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile

import pytest
from support import marks, nested, relocate


@pytest.mark.t3
def test_the_probe_tells_a_0700_location_from_a_reachable_one() -> None:
    repo = relocate.repo_dir()
    assert relocate.unreachable(repo) is None  # this run's checkout (or its copy)
    d = tempfile.mkdtemp(prefix="cgtest-0700-")
    try:
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
        os.symlink(sys.executable, f"{d}/python")
        why = relocate.unreachable(repo, f"{d}/python")
        assert why is not None and "cannot run" in why and "Permission denied" in why, why
        # the interpreter reachable, the code not: refused too
        relocate.copy_tree(repo, f"{d}/checkout")
        why = relocate.unreachable(f"{d}/checkout")
        assert why is not None and "cannot use the checkout" in why, why
    finally:
        shutil.rmtree(d)


@pytest.mark.t0
def test_the_sweep_removes_only_copies_of_dead_runs() -> None:
    parent = tempfile.mkdtemp(prefix="cgtest-sweep-")
    try:
        dead_proc = subprocess.Popen(["true"])
        dead = marks.mark_of(dead_proc.pid)
        dead_proc.wait()
        assert dead is not None and marks.mark_alive(dead) is False
        for name, mark in (("a", dead), ("b", marks.my_mark())):
            os.mkdir(f"{parent}/{relocate.COPY_PREFIX}{name}")
            with open(f"{parent}/{relocate.COPY_PREFIX}{name}/{relocate.OWNER_FILE}", "w") as f:
                f.write(mark)
        os.mkdir(f"{parent}/other")
        assert relocate.sweep(parent) == [f"{parent}/{relocate.COPY_PREFIX}a"]
        assert sorted(os.listdir(parent)) == [f"{relocate.COPY_PREFIX}b", "other"]
    finally:
        shutil.rmtree(parent)


@pytest.mark.t3
def test_a_checkout_in_a_0700_directory_runs_from_a_reachable_copy(procs) -> None:
    """End to end: a checkout (tree and venv) in a 0700 directory; a nested pytest there runs
    tests that need an unprivileged test user and a container's root, from a copy."""
    repo = relocate.repo_dir()
    d = tempfile.mkdtemp(prefix="cgtest-0700-")
    try:
        checkout = f"{d}/cgm"
        relocate.copy_tree(repo, checkout)
        relocate.copy_venv(sys.prefix, f"{checkout}/.venv", ((sys.prefix, f"{checkout}/.venv"),))
        python = f"{checkout}/.venv/bin/{os.path.basename(sys.executable)}"
        tests = [
            "tests/cli/test_unprivileged.py::test_user_cannot_create_in_roots_cgroup",
            "tests/proxy/test_forwarding.py::test_setup_moves_the_socket_dir_and_serves_locally",
        ]
        env = nested.nested_env(ci=True)
        p = procs.spawn(
            [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
            cwd=checkout,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        out, _ = p.popen.communicate(timeout=300)
        assert p.popen.returncode == 0, out
        assert "cgtest: uid 65534 cannot run" in out, out
        m = re.search(r"running the suite from a copy the test users can reach: (\S+)", out)
        assert m, out
        assert "tier t3: 2 passed, 0 failed, 0 skipped" in out, out
        assert not os.path.exists(os.path.dirname(m.group(1)))  # removed afterwards
    finally:
        shutil.rmtree(d)
