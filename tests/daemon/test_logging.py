"""Where the daemon's log lines go, with a live daemon (t3): a log file with the audit line of
each change naming the requestor by its kernel-given pid/uid/gid, reopened after logrotate
moved it; `--daemon` detaching only once it serves, saying on stderr why it could not, and
removing its pidfile when it stops.  (syslog and the journal: tests/under_systemd, where a
real journald listens; the formats: tests/unit/test_logs.py.)"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import pytest
from support import run

from cgmanager.dbus.client import connect

from .conftest import VENV_BIN, Daemon, Place, served_and_skipped

pytestmark = pytest.mark.t3

LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} cgmanager\[(\d+)\]: (INFO|WARNING|ERROR): (.*)$"
)
CLIENT = (
    "import os, sys\n"
    "from cgmanager.dbus.client import connect\n"
    "from cgmanager.dbus.errors import DBusError\n"
    "print(os.getpid(), flush=True)\n"
    "c = connect(sys.argv[1])\n"
    "try:\n"
    "    c.call('/org/linuxcontainers/cgmanager', 'org.linuxcontainers.cgmanager0_0',\n"
    "           'Create', 'ss', ('unified', sys.argv[2]))\n"
    "except DBusError as e:\n"
    "    print(e.name)\n"
)


@pytest.fixture(scope="module")
def logged(start_daemon) -> Iterator[tuple[Daemon, str]]:
    d = tempfile.mkdtemp(prefix="cgmanager-log-")
    path = os.path.join(d, "cgmanager.log")
    daemon = start_daemon("--log-target", path)
    yield daemon, path
    for f in os.listdir(d):
        os.unlink(os.path.join(d, f))
    os.rmdir(d)


@pytest.fixture
def lplace(logged, cgdir, cgroots, procs) -> Place:
    daemon, _ = logged
    if "unified" not in daemon.served:
        pytest.skip("the v2 tree is not served here")
    return Place(
        daemon, {"unified": cgdir("unified")}, {"unified": cgroots.mount("unified")}, procs
    )


def entries(path: str) -> list[tuple[int, str, str]]:
    with open(path) as f:
        lines = f.read().splitlines()
    out = []
    for line in lines:
        m = LINE.match(line)
        assert m, f"not a log line: {line!r}"
        out.append((int(m.group(1)), m.group(2), m.group(3)))
    return out


def create(place: Place, name: str, user=None) -> tuple[int, str]:
    cp = place.run([sys.executable, "-c", CLIENT, place.daemon.address, name], user=user)
    assert cp.returncode == 0, cp.stderr
    pid, *rest = cp.stdout.split()
    return int(pid), " ".join(rest)


def test_log_file_holds_audit_lines_with_kernel_given_identities(logged, lplace, test_user):
    daemon, path = logged
    assert os.stat(path).st_mode & 0o777 == 0o640  # who did what is not for everyone
    pid, err = create(lplace, "logged")
    assert err == ""
    upid, uerr = create(lplace, "refused", user=test_user)  # a root-owned place: refused
    assert uerr == "org.linuxcontainers.cgmanager.Error.NotPermitted"
    lines = entries(path)
    assert {p for p, _, _ in lines} == {daemon.popen.pid}
    audits = [m for _, level, m in lines if m.startswith("audit: ")]
    ok = [m for m in audits if f"audit: pid={pid} uid=0 gid=0 Create(" in m]
    assert ok and ok[0].endswith("'unified', 'logged'): ok -> -1"), audits  # -1: made now
    no = [m for m in audits if f"pid={upid} uid={test_user.uid} gid={test_user.gid} Create(" in m]
    assert no and "refused (NotPermitted" in no[0], audits
    assert daemon.log() == ""  # nothing on stderr: the file has it all


def test_log_file_is_reopened_after_logrotate_moved_it(logged, lplace):
    _, path = logged
    os.rename(path, path + ".1")
    pid, _ = create(lplace, "rotated")
    assert any(f"audit: pid={pid} " in m for _, _, m in entries(path))
    assert not any(f"audit: pid={pid} " in m for _, _, m in entries(path + ".1"))


class Detached:
    """A daemon that detached itself (its pid from the pidfile), tracked for the run's
    cleanup like any process a test started."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.pidfd = os.pidfd_open(pid)

    def alive(self) -> bool:
        try:
            signal.pidfd_send_signal(self.pidfd, 0)
            return True
        except ProcessLookupError:
            return False

    def kill(self, timeout: float = 5.0) -> int | None:
        if self.alive():
            signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
        return self.wait_gone(timeout)

    def wait_gone(self, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while self.alive():
            if time.monotonic() > deadline:
                return None
            time.sleep(0.01)
        return 0


def daemon_argv(cgroots, d: str, *extra: str) -> list[str]:
    _, skipped = served_and_skipped(cgroots)
    argv = [f"{VENV_BIN}/cgmanager", "--fs-dir", f"{d}/fs", "--pidfile", f"{d}/pid", "--daemon"]
    if skipped:
        argv += ["--skip", ",".join(skipped)]
    return [*argv, *extra]


def test_daemon_detaches_once_serving_and_removes_its_pidfile(cgroots):
    d = tempfile.mkdtemp(prefix="cgmanager-detach-")
    try:
        sock = f"{d}/sock"
        cp = subprocess.run(
            daemon_argv(cgroots, d, "--socket", sock, "--log-target", f"{d}/log"),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert (cp.returncode, cp.stdout) == (0, ""), cp.stderr
        # until it served, its warnings (e.g. a low RLIMIT_NOFILE) reached the caller too
        assert all(ln.startswith("cgmanager: WARNING: ") for ln in cp.stderr.splitlines())
        with open(f"{d}/pid") as f:
            proc = Detached(int(f.read()))
        run.current().track_process(proc)
        connect(f"unix:path={sock}", timeout=5).close()  # serving when the parent exited
        assert proc.alive()
        signal.pidfd_send_signal(proc.pidfd, signal.SIGTERM)
        assert proc.wait_gone(10) == 0
        assert not os.path.exists(f"{d}/pid") and not os.path.exists(sock)
        with open(f"{d}/log") as f:
            assert "ready: serving" in f.read()
    finally:
        for name in ("log", "pid", "sock"):
            if os.path.lexists(f"{d}/{name}"):
                os.unlink(f"{d}/{name}")
        os.rmdir(f"{d}/fs") if os.path.isdir(f"{d}/fs") else None
        os.rmdir(d)


def test_daemon_that_cannot_start_says_why_on_stderr(cgroots):
    """The failure comes after detaching began (the socket is refused inside cgroupfs): the
    waiting parent exits 1 and the reason reaches the caller's stderr, not only syslog."""
    d = tempfile.mkdtemp(prefix="cgmanager-detach-")
    inside = os.path.join(cgroots.path("unified"), "not-a-socket-dir", "sock")
    try:
        cp = subprocess.run(
            daemon_argv(cgroots, d, "--socket", inside, "--log-target", "syslog"),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert cp.returncode == 1
        assert "cgmanager: ERROR: cannot listen on" in cp.stderr, cp.stderr
        assert "inside a cgroup filesystem" in cp.stderr
        assert not os.path.exists(os.path.dirname(inside))  # no cgroup made
    finally:
        for name in ("pid",):
            if os.path.lexists(f"{d}/{name}"):
                os.unlink(f"{d}/{name}")
        if os.path.isdir(f"{d}/fs"):
            os.rmdir(f"{d}/fs")
        os.rmdir(d)
