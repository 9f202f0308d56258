"""The unprivileged test users (t3)."""

from __future__ import annotations

import os
import pwd
import subprocess

import pytest
from support import marks, users


@pytest.mark.t3
def test_user_creates_files_as_itself(test_user) -> None:
    cp = test_user.run(
        ["sh", "-c", "echo hi > made-by-me && id -u && id -g && echo $HOME"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert cp.stdout.split() == [str(test_user.uid), str(test_user.gid), test_user.home]
    st = os.stat(os.path.join(test_user.home, "made-by-me"))
    assert (st.st_uid, st.st_gid) == (test_user.uid, test_user.gid)
    cp = test_user.run(["touch", "/root/not-allowed"], capture_output=True)
    assert cp.returncode != 0  # really unprivileged


@pytest.mark.t3
def test_user_has_subordinate_ids(test_user) -> None:
    lines = users.subid_lines(test_user.name)
    assert any(ln.startswith("/etc/subuid") for ln in lines), lines
    assert any(ln.startswith("/etc/subgid") for ln in lines), lines
    assert test_user.uid != 0 and test_user.name.startswith("cgtu")


@pytest.mark.t3
def test_second_user_is_distinct(test_user, make_test_user) -> None:
    other = make_test_user()
    assert other.uid != test_user.uid and other.name != test_user.name


@pytest.mark.t3
def test_remove_user_kills_its_processes_and_cleans_subids() -> None:
    u = users.create_user(marks.my_mark())
    try:
        bg = subprocess.Popen(["sleep", "100"], **u.popen_kwargs())
        assert users.pids_of_uid(u.uid) == [bg.pid]
        assert users.remove_user(u) == []
        assert bg.wait(5) is not None
        with pytest.raises(KeyError):
            pwd.getpwnam(u.name)
        assert users.subid_lines(u.name) == [] and not os.path.exists(u.home)
    finally:
        users.remove_user(u)


@pytest.mark.t3
def test_sweep_removes_users_of_dead_runs_only(test_user) -> None:
    dead = subprocess.Popen(["true"])
    dead_mark = marks.mark_of(dead.pid)
    dead.wait()
    stale = users.create_user(dead_mark)
    try:
        removed, problems = users.sweep_users()
        assert problems == []
        assert any(stale.name in r for r in removed)
        assert users.user_leftovers(stale) == []
        pwd.getpwnam(test_user.name)  # ours: owner alive, kept
    finally:
        users.remove_user(stale)
