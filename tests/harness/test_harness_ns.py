"""The namespace helper (t3)."""

from __future__ import annotations

import os
import time

import pytest
from support import ns
from support import procs as procs_mod


@pytest.fixture
def open_tmp(tmp_path):
    """A directory that uids mapped into user namespaces can reach (tmp_path's parents
    are 0700 root)."""
    import shutil
    import tempfile

    d = tempfile.mkdtemp(prefix="cgtest-ns-")
    os.chmod(d, 0o777)
    yield __import__("pathlib").Path(d)
    shutil.rmtree(d)


def _ids() -> tuple[int, int, str, str]:
    with open("/proc/self/uid_map") as f:
        uid_map = f.read().split()
    with open("/proc/self/setgroups") as f:
        setgroups = f.read().strip()
    return os.getuid(), os.getgid(), " ".join(uid_map), setgroups


@pytest.mark.t3
def test_userns_root_inside_is_100000_outside(open_tmp) -> None:
    target = open_tmp / "made-inside"

    def inside() -> tuple[int, int, str, str]:
        target.write_text("x")
        return _ids()

    assert ns.run_in_ns(inside, userns=True) == (0, 0, "0 100000 65536", "allow")
    st = target.stat()
    assert (st.st_uid, st.st_gid) == (100000, 100000)


@pytest.mark.t3
def test_userns_setgroups_deny_and_custom_map() -> None:
    got = ns.run_in_ns(
        _ids, userns=True, uid_map="0 200000 10", gid_map="0 200000 10", setgroups="deny"
    )
    assert got == (0, 0, "0 200000 10", "deny")


@pytest.mark.t3
def test_outside_view_of_the_child(open_tmp) -> None:
    """While the child runs, the host sees uid 100000; `before` gets the host pid first."""
    seen = []
    go = open_tmp / "go"

    def wait_for_go() -> int:
        while not go.exists():
            time.sleep(0.01)
        return os.getuid()

    child = ns.spawn_in_ns(wait_for_go, userns=True, before=seen.append)
    try:
        assert seen == [child.pid]
        deadline = time.monotonic() + 5
        while True:
            with open(f"/proc/{child.pid}/status") as f:
                uid_line = next(ln for ln in f if ln.startswith("Uid:"))
            if uid_line.split()[1] == "100000" or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        assert uid_line.split()[1:] == ["100000"] * 4
        go.write_text("")
        assert child.wait(5) == 0
    finally:
        child.kill()


@pytest.mark.t3
def test_pid_namespace_runs_as_pid_1_with_own_proc() -> None:
    def inside() -> tuple[int, list[str]]:
        return os.getpid(), sorted(e for e in os.listdir("/proc") if e.isdigit())

    child = ns.spawn_in_ns(inside, userns=True, pidns=True, mountns=True, mount_proc=True)
    pid, visible = child.wait(5)
    assert pid == 1 and visible == ["1"]
    assert child.inner_pid is not None and child.inner_pid != child.pid


@pytest.mark.t3
def test_mount_namespace_is_private(tmp_path) -> None:
    def inside() -> list[str]:
        ns.mount("tmpfs", str(tmp_path), "tmpfs")
        (tmp_path / "only-inside").write_text("x")
        return os.listdir(tmp_path)

    assert ns.run_in_ns(inside, mountns=True) == ["only-inside"]
    assert os.listdir(tmp_path) == []
    with open("/proc/self/mountinfo") as f:
        assert str(tmp_path) not in f.read()


@pytest.mark.t1
@pytest.mark.t3
def test_cgroup_namespace_after_before_hook(cgroots, cgdir) -> None:
    cg = cgdir("unified")
    rel = cg[len(cgroots.mount("unified")) :]

    def join(pid: int) -> None:
        with open(os.path.join(cg, "cgroup.procs"), "w") as f:
            f.write(str(pid))

    def inside() -> str:
        with open("/proc/self/cgroup") as f:
            return next(ln.strip() for ln in f if ln.startswith("0::"))

    assert ns.run_in_ns(inside, cgroupns=True, before=join) == "0::/"
    assert ns.run_in_ns(inside, before=join) == f"0::{rel}"


@pytest.mark.t3
def test_exceptions_are_reraised_with_the_child_traceback() -> None:
    def boom() -> None:
        raise ValueError("boom inside")

    with pytest.raises(ValueError, match="boom inside") as ei:
        ns.run_in_ns(boom, userns=True, pidns=True)
    assert any("raised in namespaced child" in n for n in ei.value.__notes__)


@pytest.mark.t3
def test_setup_errors_are_reraised(test_user) -> None:
    # an unprivileged user cannot create a mount namespace without a user namespace
    with pytest.raises(PermissionError):
        ns.run_in_ns(os.getpid, mountns=True, uid=test_user.uid, gid=test_user.gid)


@pytest.mark.t3
def test_unpicklable_results_are_reported() -> None:
    with pytest.raises(ns.NsChildError, match="not picklable"):
        ns.run_in_ns(lambda: lambda: 1)


@pytest.mark.t3
def test_run_as_a_given_user_then_userns(test_user) -> None:
    assert ns.run_in_ns(os.getuid, uid=test_user.uid, gid=test_user.gid) == test_user.uid
    got = ns.run_in_ns(
        _ids,
        userns=True,
        uid=test_user.uid,
        gid=test_user.gid,
        uid_map=f"0 {test_user.uid} 1",
        gid_map=f"0 {test_user.gid} 1",
        setgroups="deny",
    )
    assert got == (0, 0, f"0 {test_user.uid} 1", "deny")


@pytest.mark.t3
def test_timeout_kills_the_whole_namespace() -> None:
    child = ns.spawn_in_ns(time.sleep, 100, userns=True, pidns=True)
    inner_fd = os.pidfd_open(child.inner_pid)
    try:
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            child.wait(0.3)
        assert time.monotonic() - t0 < 3
        assert not child.alive()
        assert procs_mod.pidfd_wait_exit(inner_fd, 3)  # pid 1 of the namespace died too
    finally:
        os.close(inner_fd)
