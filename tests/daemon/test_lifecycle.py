"""The cgmanager command: start-up, discoverability, audit, refusal to double-start, SIGTERM."""

import os
import signal
import subprocess
import sys

import pytest
from kernel.helpers import snapshot, wait_for

pytestmark = pytest.mark.t3
VENV_BIN = os.path.dirname(sys.executable)


def test_pidof_finds_it_and_private_mounts_live_in_its_namespace(daemon):
    out = subprocess.run(["pidof", "cgmanager"], capture_output=True, text=True)
    assert str(daemon.popen.pid) in out.stdout.split()
    fs = os.path.dirname(daemon.socket) + "/fs"
    # 0.42's test24 looks at /proc/<pid>/root/run/cgmanager/fs/<controller>
    assert os.path.exists(f"/proc/{daemon.popen.pid}/root{fs}/pids/cgroup.procs")
    assert os.listdir(fs) == []  # not mounted in our namespace


def test_audit_line_for_every_change(place):
    place.py("Create", "ss", "pids", "audited")
    place.py("SetValue", "ssss", "pids", "audited", "pids.max", "nope")
    place.py("GetValue", "sss", "pids", "audited", "pids.max")
    log = place.daemon.log()
    assert "audit: pid=" in log and "Create('pids', 'audited'): ok -> -1" in log
    assert "SetValue('pids', 'audited', 'pids.max', 'nope'): refused (KernelRejected" in log
    assert "GetValue('pids', 'audited'" not in log  # reads are not audited


def test_second_daemon_on_a_live_socket_refuses(daemon, tmp_path):
    cp = subprocess.run(
        [
            f"{VENV_BIN}/cgmanager",
            "--socket",
            daemon.socket,
            "--fs-dir",
            str(tmp_path / "fs"),
            "--skip",
            "memory",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert cp.returncode == 1
    assert "already" in cp.stderr.lower() or "in use" in cp.stderr.lower(), cp.stderr
    assert os.path.exists(daemon.socket)


def test_socket_inside_a_cgroup_filesystem_is_refused(cgroots, tmp_path):
    inside = cgroots.path("pids") + "/cgmanager/sock"
    cp = subprocess.run(
        [
            f"{VENV_BIN}/cgmanager",
            "--socket",
            inside,
            "--fs-dir",
            str(tmp_path / "fs"),
            "--skip",
            "memory",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert cp.returncode == 1 and "cgroup filesystem" in cp.stderr
    assert not os.path.exists(cgroots.path("pids") + "/cgmanager")


def test_sigterm_removes_the_socket_and_touches_no_cgroup(start_daemon, place):
    d = start_daemon()
    from dataclasses import replace

    p = replace(place, daemon=d)
    assert p.py("Create", "ss", "pids", "keep").returncode == 0
    before = snapshot(place.path("pids"))
    d.popen.send_signal(signal.SIGTERM)
    assert d.popen.wait(timeout=20) == 0
    assert not os.path.exists(d.socket)
    assert snapshot(place.path("pids")) == before
    assert "stopping" in d.log()


def test_print_layout_and_help():
    out = subprocess.run(
        [f"{VENV_BIN}/cgmanager", "--print-layout"], capture_output=True, text=True
    )
    assert out.returncode == 0 and "mode: hybrid" in out.stdout and "unified" in out.stdout
    h = subprocess.run([f"{VENV_BIN}/cgmanager", "--help"], capture_output=True, text=True)
    assert h.returncode == 0 and "--max-depth" in h.stdout and "--skip" in h.stdout
    bad = subprocess.run(
        [f"{VENV_BIN}/cgmanager", "--max-depth", "x"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_daemon_mode_writes_a_pidfile(cgroots, tmp_path):
    import tempfile

    d = tempfile.mkdtemp(prefix="cgmanager-test-")
    pidfile = f"{d}/cgmanager.pid"
    cp = subprocess.run(
        [
            f"{VENV_BIN}/cgmanager",
            "--daemon",
            "--pidfile",
            pidfile,
            "--socket",
            f"{d}/sock",
            "--fs-dir",
            f"{d}/fs",
            "--skip",
            "memory",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert cp.returncode == 0
    assert wait_for(lambda: os.path.exists(f"{d}/sock") and os.path.exists(pidfile))
    pid = int(open(pidfile).read())
    fd = os.pidfd_open(pid)
    try:
        signal.pidfd_send_signal(fd, signal.SIGTERM)
        assert wait_for(lambda: not os.path.exists(f"/proc/{pid}"))
    finally:
        os.close(fd)
    import shutil

    shutil.rmtree(d, ignore_errors=True)
