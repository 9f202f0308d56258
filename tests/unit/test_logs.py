"""Log targets and formats (cgmanager.logs): priorities, one prefix per line, the journal
stream test, the syslog datagrams (to a socket of the test's own), target resolution."""

from __future__ import annotations

import argparse
import logging
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator

import pytest

from cgmanager import logs

pytestmark = pytest.mark.t0


def record(name: str, level: int, msg: str) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, (), None)


@pytest.mark.parametrize(
    "name, level, prio",
    [
        ("cgmanager", logging.DEBUG, 7),
        ("cgmanager", logging.INFO, 6),
        ("cgmanager.audit", logging.INFO, 5),  # notice: a change made for a client
        ("cgproxy.audit", logging.INFO, 5),
        ("cgmanager.dbus", logging.WARNING, 4),
        ("cgmanager", logging.ERROR, 3),
        ("cgmanager", logging.CRITICAL, 2),
    ],
)
def test_priorities(name, level, prio):
    assert logs.priority(record(name, level, "x")) == prio


def test_every_line_carries_the_prefix():
    """A message with a newline (a traceback, a multi-line summary, or text a client chose)
    cannot make a line of its own, with a priority of its own, in the journal."""
    f = logs.LineFormatter("<{priority}>")
    out = f.format(record("cgmanager", logging.INFO, "serving:\n<0>forged\n  unified"))
    assert out.split("\n") == ["<6>serving:", "<6><0>forged", "<6>  unified"]


def test_tracebacks_are_prefixed_too():
    f = logs.LineFormatter("cgmanager: {level}: ")
    try:
        raise ValueError("boom")
    except ValueError:
        rec = logging.LogRecord(
            "cgmanager", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    lines = f.format(rec).split("\n")
    assert len(lines) > 2
    assert all(line.startswith("cgmanager: ERROR: ") for line in lines)
    assert lines[-1] == "cgmanager: ERROR: ValueError: boom"


def test_file_lines_have_time_program_pid_and_level():
    f = logs.LineFormatter("{time} cgmanager[{pid}]: {level}: ")
    out = f.format(record("cgmanager.audit", logging.INFO, "audit: pid=1 uid=0 gid=0 Ping(0): ok"))
    stamp, rest = out.split(" ", 1)
    assert len(stamp) == len("2025-01-01T00:00:00+0000") and stamp[10] == "T"
    assert rest == f"cgmanager[{os.getpid()}]: INFO: audit: pid=1 uid=0 gid=0 Ping(0): ok"


@pytest.mark.parametrize("value", ["auto", "stderr", "syslog", "/var/log/cgmanager.log"])
def test_target_arg_accepts(value):
    assert logs.target_arg(value) == value


@pytest.mark.parametrize("value", ["journal", "relative.log", "", "/var/log/"])
def test_target_arg_refuses(value):
    with pytest.raises(argparse.ArgumentTypeError):
        logs.target_arg(value)


def test_auto_resolution(monkeypatch):
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    assert logs.resolve("auto", detach=True) == "syslog"
    assert logs.resolve("auto", detach=False) == "stderr"
    assert logs.resolve("/x.log", detach=True) == "/x.log"
    assert logs.resolve("stderr", detach=True) == "stderr"


JOURNAL_PROBE = (
    "from cgmanager import logs; print(logs.stderr_is_journal(), logs.resolve('auto', False))"
)


def test_journal_stream_is_recognised_by_device_and_inode():
    """systemd sets JOURNAL_STREAM=<dev>:<ino> of the stream it connected to stderr; a child
    whose stderr was redirected inherits the variable but not the stream."""
    with tempfile.TemporaryFile() as err:
        st = os.fstat(err.fileno())
        env = dict(os.environ, JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}")
        cp = subprocess.run(
            [sys.executable, "-c", JOURNAL_PROBE], env=env, stderr=err, stdout=subprocess.PIPE
        )
        assert cp.stdout.decode().split() == ["True", "journal"]
        cp = subprocess.run(
            [sys.executable, "-c", JOURNAL_PROBE],
            env=env,
            stderr=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
        )
        assert cp.stdout.decode().split() == ["False", "stderr"]
        env["JOURNAL_STREAM"] = "garbage"
        cp = subprocess.run(
            [sys.executable, "-c", JOURNAL_PROBE], env=env, stderr=err, stdout=subprocess.PIPE
        )
        assert cp.stdout.decode().split() == ["False", "stderr"]


@pytest.fixture
def syslog_socket() -> Iterator[tuple[str, socket.socket]]:
    d = tempfile.mkdtemp(prefix="cgtest-syslog-")
    path = os.path.join(d, "log")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(2)
    yield path, s
    s.close()
    if os.path.exists(path):
        os.unlink(path)
    os.rmdir(d)


def test_syslog_datagrams(syslog_socket):
    path, server = syslog_socket
    h = logs.SyslogHandler("cgmanager", path)
    h.setFormatter(logs.LineFormatter(""))
    try:
        h.handle(record("cgmanager.audit", logging.INFO, "audit: pid=7 uid=0 gid=0 Create(a)\nb"))
        h.handle(record("cgmanager", logging.WARNING, "careful"))
        got = [server.recv(4096) for _ in range(3)]
    finally:
        h.close()
    me = f"cgmanager[{os.getpid()}]: "
    assert got == [
        f"<29>{me}audit: pid=7 uid=0 gid=0 Create(a)".encode(),  # daemon.notice
        f"<29>{me}b".encode(),
        f"<28>{me}careful".encode(),  # daemon.warning
    ]


def test_syslog_reconnects_after_a_restart_and_drops_while_none_listens(syslog_socket):
    path, server = syslog_socket
    h = logs.SyslogHandler("cgproxy", path)
    h.setFormatter(logs.LineFormatter(""))
    try:
        h.handle(record("cgproxy", logging.INFO, "one"))
        assert server.recv(4096).endswith(b"one")
        server.close()
        os.unlink(path)
        h.handle(record("cgproxy", logging.INFO, "lost"))  # nobody listens: dropped, no error
        again = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        again.bind(path)
        again.settimeout(2)
        try:
            h.handle(record("cgproxy", logging.INFO, "two"))
            assert again.recv(4096).endswith(b"cgproxy[%d]: two" % os.getpid())
        finally:
            again.close()
    finally:
        h.close()


def test_file_target_is_created_0640(tmp_path):
    path = tmp_path / "cgmanager.log"
    h = logs.FileHandler(str(path))
    try:
        assert os.stat(path).st_mode & 0o777 == 0o640
    finally:
        h.close()
