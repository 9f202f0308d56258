"""T3: a login session through a real PAM stack — libpam, pam_exec and ``cgm pamsession`` —
against a live daemon: the session cgroup is created, delegated to the user, entered by the
login process, and cleaned up when the session ends.  The PAM service file is created under
/etc/pam.d by the test and removed afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from .conftest import rel

pytestmark = pytest.mark.t3
DRIVER = os.path.join(os.path.dirname(__file__), "pam_driver.py")
CGM = os.path.join(os.path.dirname(sys.executable), "cgm")
PAM_EXEC = "/lib/x86_64-linux-gnu/security/pam_exec.so"


@pytest.fixture
def pam_service(daemon):
    if not os.path.exists(PAM_EXEC) and not os.path.exists("/usr/lib/security/pam_exec.so"):
        pytest.skip("pam_exec.so is not installed")
    name = "cgtest-pam-" + os.urandom(4).hex()
    path = f"/etc/pam.d/{name}"

    def write(args: str) -> str:
        with open(path, "w") as f:
            f.write(
                "auth     required pam_permit.so\n"
                "account  required pam_permit.so\n"
                f"session  required pam_exec.so {CGM} --socket {daemon.socket} pamsession {args}\n"
            )
        return name

    yield write
    if os.path.exists(path):
        os.unlink(path)


def _wait_gone(path: str, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not os.path.exists(path)


def test_session_cgroup_made_delegated_entered_and_removed(
    pam_service, cgdir, cgroots, procs, test_user
):
    pattern_p = rel(cgroots, cgdir("pids"), "pids")
    service = pam_service(f"-c pids -p {pattern_p}/user/%u/ -s pids,pids.max,77")
    p = procs.spawn(
        [sys.executable, DRIVER, service, test_user.name],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    opened = json.loads(p.popen.stdout.readline())
    assert opened["open"] == 0, opened
    want = f"/{pattern_p}/user/{test_user.name}/0"
    assert opened["cgroups"]["pids"] == want
    session = os.path.join(cgroots.mount("pids"), want.lstrip("/"))
    st = os.stat(session)
    assert (st.st_uid, st.st_gid) == (test_user.uid, test_user.gid)  # delegated
    assert os.stat(os.path.join(session, "cgroup.procs")).st_uid == test_user.uid
    with open(os.path.join(session, "pids.max")) as f:
        assert f.read().strip() == "77"
    # a second session of the same user gets the next index
    q = procs.spawn(
        [sys.executable, DRIVER, service, test_user.name],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    second = json.loads(q.popen.stdout.readline())
    assert second["cgroups"]["pids"] == f"/{pattern_p}/user/{test_user.name}/1"
    for proc in (p, q):
        proc.popen.stdin.write("\n")
        proc.popen.stdin.flush()
        closed = json.loads(proc.popen.stdout.readline())
        assert closed["close"] == 0 and closed["cgroups"]["pids"] == "/"
        assert proc.popen.wait(10) == 0
    assert _wait_gone(session)  # removed at close_session
    assert _wait_gone(os.path.dirname(session))  # the user's cgroup once empty


def test_bad_options_fail_the_session(pam_service, test_user, procs):
    service = pam_service("--no-such-option")
    p = procs.spawn(
        [sys.executable, DRIVER, service, test_user.name],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    opened = json.loads(p.popen.stdout.readline())
    assert opened["open"] != 0  # "required": the session does not open
    assert opened["cgroups"]["pids"] == "/"
    p.popen.stdin.write("\n")
    p.popen.stdin.flush()
    p.popen.wait(10)
