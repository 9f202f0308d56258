"""The real daemon under a hard RLIMIT_NOFILE it may not raise (no CAP_SYS_RESOURCE, as on
these machines): one info line saying what the limit allows, or a warning when it cannot hold
the configured connections."""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from daemon.conftest import served_and_skipped

pytestmark = pytest.mark.t3
VENV_BIN = os.path.dirname(sys.executable)
PR_CAPBSET_DROP, CAP_SYS_RESOURCE = 24, 24


def _start_under(hard: int, tmp: str, *extra: str, skipped: list[str]) -> str:
    """Run cgmanager until it serves, with RLIMIT_NOFILE (hard, hard) and without
    CAP_SYS_RESOURCE (dropped from the bounding set: gone after exec); its log."""

    def limit() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_CAPBSET_DROP, CAP_SYS_RESOURCE, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "PR_CAPBSET_DROP")
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    log = f"{tmp}/daemon-{hard}.log"
    argv = [f"{VENV_BIN}/cgmanager", "--socket", f"{tmp}/sock-{hard}", "--fs-dir", f"{tmp}/fs"]
    if skipped:
        argv += ["--skip", ",".join(skipped)]
    with open(log, "w") as f:
        p = subprocess.Popen([*argv, *extra], stdout=f, stderr=f, preexec_fn=limit)
    try:
        deadline = time.monotonic() + 30
        while "ready: serving" not in open(log).read():
            assert p.poll() is None, open(log).read()
            assert time.monotonic() < deadline, open(log).read()
            time.sleep(0.02)
        with open(f"/proc/{p.pid}/limits") as f:
            assert any(line.startswith("Max open files") and f" {hard} " in line for line in f)
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(20)
    return open(log).read()


def rlimit_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if "RLIMIT_NOFILE" in line]


def test_a_hard_limit_that_holds_every_connection_is_one_info_line(cgroots):
    _served, skipped = served_and_skipped(cgroots)
    with tempfile.TemporaryDirectory() as tmp:
        log = _start_under(20000, tmp, skipped=skipped)
    (line,) = rlimit_lines(log)
    assert line.startswith("cgmanager: INFO: RLIMIT_NOFILE is 20000"), log
    assert "every one of the 2048 connections" in line


def test_a_hard_limit_too_low_for_the_configured_connections_is_a_warning(cgroots):
    _served, skipped = served_and_skipped(cgroots)
    with tempfile.TemporaryDirectory() as tmp:
        log = _start_under(4096, tmp, skipped=skipped)
        (line,) = rlimit_lines(log)
        assert line.startswith("cgmanager: WARNING: RLIMIT_NOFILE is 4096"), log
        assert "about 768 clients" in line
        # configured within what the limit holds: no warning
        log = _start_under(4096, tmp, "--max-connections", "500", skipped=skipped)
        assert [x.split(":")[1] for x in rlimit_lines(log)] == [" INFO"], log
