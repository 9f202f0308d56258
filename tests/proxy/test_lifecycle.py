"""cgproxy's life: set-up variants, --daemon, --sigstop, --check-master, root only, a
restarting or stalled host daemon, a stalled client."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from proxy import container as ct
from proxy.helpers import ok, refused

pytestmark = pytest.mark.t3


def test_daemon_restart_is_survived(containers, private_daemon):
    c = containers.new(private_daemon)
    ok(c(ct.py_call, "Create", "ss", ("pids", "r1")))
    private_daemon.stop()
    t0 = time.monotonic()
    msg = refused(c(ct.py_call, "GetValue", "sss", ("pids", "r1", "pids.max")), "Unavailable")
    assert time.monotonic() - t0 < 5
    assert "host cgmanager unavailable" in msg
    assert ok(c(ct.py_call, "Ping", "i", (0,))) == ()  # answered locally meanwhile
    private_daemon.start()  # a new socket in the bind-mounted directory
    assert ok(c(ct.py_call, "GetValue", "sss", ("pids", "r1", "pids.max"))) == ("max",)
    rc, out, err = c(ct.dbus_send, "Create", "string:pids", "string:r2")
    assert rc == 0, err
    assert os.path.isdir(f"{c.dirs['pids']}/r2")
    assert c(ct.proxy_alive)
    assert "reconnected to cgmanager" in c(ct.proxy_log)


def test_daemon_killed_and_restarted_is_survived(containers, private_daemon):
    """kill -9 (no clean shutdown: the connection just drops, a stale socket stays) twice:
    meanwhile forwarded calls fail at once with Unavailable and local ones are answered; once
    a new daemon has replaced the stale socket, the proxy reconnects by itself."""
    c = containers.new(private_daemon)
    ok(c(ct.py_call, "Create", "ss", ("pids", "k0")))
    for i in (1, 2):
        assert private_daemon.proc is not None
        assert private_daemon.proc.kill() == -signal.SIGKILL
        private_daemon.proc = None
        assert os.path.exists(private_daemon.socket)  # stale: nobody listens
        t0 = time.monotonic()
        msg = refused(c(ct.py_call, "GetValue", "sss", ("pids", "k0", "pids.max")), "Unavailable")
        assert time.monotonic() - t0 < 5
        assert "host cgmanager unavailable" in msg
        assert ok(c(ct.py_call, "Ping", "i", (0,))) == ()
        private_daemon.start()  # replaces the stale socket
        assert ok(c(ct.py_call, "GetValue", "sss", ("pids", "k0", "pids.max"))) == ("max",)
        ok(c(ct.py_call, "Create", "ss", ("pids", f"k{i}")))
        assert os.path.isdir(f"{c.dirs['pids']}/k{i}")
    assert c(ct.proxy_alive)
    assert c(ct.proxy_log).count("reconnected to cgmanager") >= 2


def test_a_stalled_daemon_blocks_no_one_for_long(containers, private_daemon):
    """Each forwarded call is its own task with a bounded wait: while the daemon does not
    answer, local calls are answered at once and calls of several clients time out together,
    not one after the other."""
    c = containers.new(private_daemon, proxy_args=("--timeout", "1.5"))
    ok(c(ct.py_call, "GetValue", "sss", ("pids", "", "pids.max")))  # connected upstream
    assert private_daemon.proc is not None
    private_daemon.proc.signal(signal.SIGSTOP)
    try:
        calls = [("GetValue", "sss", ("pids", "", "pids.max"))] * 3 + [("Ping", "i", (0,))]
        results = c(ct.timed_calls, calls)
    finally:
        private_daemon.proc.signal(signal.SIGCONT)
    *forwarded, (ping_time, ping) = results
    assert ping == ("ok", ()) and ping_time < 1.0, results
    for elapsed, res in forwarded:
        assert res[0] == "err" and res[1] == ct.ERR + "Unavailable", results
        assert 1.0 < elapsed < 4.0, results  # together, not 3 × 1.5 s
    assert ok(c(ct.py_call, "GetValue", "sss", ("pids", "", "pids.max"))) == ("max",)


def test_a_stalled_client_blocks_no_one(box):
    box(ct.stall_scm_client)  # its request waits for credentials that never come
    t0 = time.monotonic()
    ok(box(ct.py_call, "Create", "ss", ("pids", "meanwhile")))
    assert box(ct.scm_call, "CreateScm", ("pids", "meanwhile2"), None) == ("ok", -1)
    assert time.monotonic() - t0 < 2
    assert not os.path.exists(f"{box.dirs['pids']}/stalled")


def test_daemon_mode_pidfile_and_restart_of_the_proxy(containers):
    c = containers.new(proxy=False)
    pidfile = f"{ct.CG}/cgproxy.pid"
    rc, out, err = c(ct.run, [ct.CGPROXY, "--daemon", "--pidfile", pidfile])
    assert rc == 0, out + err  # returns once the proxy serves
    pid = int(c(ct.read_file, pidfile))
    rc, out, _ = c(ct.run, ["pidof", "cgproxy"])
    assert rc == 0 and out.split() == [str(pid)]
    ok(c(ct.py_call, "Create", "ss", ("pids", "d1")))
    # a second proxy refuses: both sockets answer
    rc, out, err = c(ct.run, [ct.CGPROXY])
    assert rc == 1 and "already running" in err
    ok(c(ct.py_call, "Create", "ss", ("pids", "d2")))
    # stopped, a new proxy finds the mount already moved (cgmanager.lower only) and uses it
    c(ct.kill, pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while c(ct.pid_exists, pid) and "Z" not in c(ct.proc_status_field, pid, "State"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    c(ct.start_proxy)
    ok(c(ct.py_call, "Create", "ss", ("pids", "d3")))
    assert {"d1", "d2", "d3"} <= set(os.listdir(c.dirs["pids"]))
    # the stopped proxy removed its pidfile (process.daemonize: at a clean exit)
    assert c(ct.listdir, ct.CG) == ["cgmanager", "cgmanager.lower", "cgproxy.log"]


def test_sigstop(containers):
    c = containers.new(proxy=False)
    info = c(ct.start_stopped_proxy)
    assert info["stopped"] and info["listening"], info
    assert info["state"].startswith("T"), info
    ok(c(ct.py_call, "Create", "ss", ("pids", "afterstop")))


def test_root_only(box, test_user):
    p = subprocess.run(
        [ct.CGPROXY, "--socket-dir", "/nonexistent/cgmanager"],
        capture_output=True,
        text=True,
        timeout=30,
        **test_user.popen_kwargs(),
    )
    assert p.returncode == 1
    assert "Cgmanager proxy must be run as root" in p.stderr
    rc, _, err = box(ct.run, [ct.CGPROXY], uid=1000)  # not root in the container either
    assert rc == 1 and "Cgmanager proxy must be run as root" in err


def test_nothing_to_talk_to():
    """No cgmanager below: refuse, and change nothing."""
    with tempfile.TemporaryDirectory() as d:
        os.mkdir(f"{d}/cgmanager")
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(f"{d}/cgmanager/sock")  # a socket nobody listens on
        stale.close()
        p = subprocess.run(
            [ct.CGPROXY, "--socket-dir", f"{d}/cgmanager"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert p.returncode == 1 and "no cgmanager answers" in p.stderr
        assert sorted(os.listdir(d)) == ["cgmanager"]
        assert os.listdir(f"{d}/cgmanager") == ["sock"]


def test_check_master(host_daemon, test_user):
    def check(socket_dir: str, **kw) -> int:
        return subprocess.run(
            [ct.CGPROXY, "--check-master", "--socket-dir", socket_dir],
            capture_output=True,
            timeout=30,
            **kw,
        ).returncode

    with tempfile.TemporaryDirectory() as d:
        os.chmod(d, 0o755)
        assert check(host_daemon.dir) == 0  # <dir>/sock answers
        assert check(f"{d}/cgmanager") == 1  # nothing there
        os.mkdir(f"{d}/cgmanager")
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(f"{d}/cgmanager/sock")
        stale.close()
        assert check(f"{d}/cgmanager") == 1  # a dead socket
        os.symlink(host_daemon.dir, f"{d}/cgmanager.lower")
        assert check(f"{d}/cgmanager") == 0  # <dir>.lower/sock answers
        assert sorted(os.listdir(d)) == ["cgmanager", "cgmanager.lower"]  # moved nothing
        assert os.listdir(f"{d}/cgmanager") == ["sock"]
        assert check(host_daemon.dir, **test_user.popen_kwargs()) == 0  # needs no root


def test_many_clients_at_once(box):
    """More concurrent clients than the daemon accepts Scm requests per connection (32):
    the proxy queues them (bounded) instead of failing them."""
    calls = [("Create", "ss", ("pids", f"many/c{i}")) for i in range(48)]
    results = box(ct.timed_calls, calls)
    assert all(res[0] == "ok" for _t, res in results), [r for _t, r in results if r[0] != "ok"]
    assert len(os.listdir(f"{box.dirs['pids']}/many")) > 48  # 48 cgroups plus the knobs
    assert all(os.path.isdir(f"{box.dirs['pids']}/many/c{i}") for i in range(48))


def test_read_only_cgroup_dir_is_remounted(containers):
    c = containers.new(proxy=False, setup=ct.setup_cgroup_dir_readonly)
    top = [line for line in c(ct.mountinfo).splitlines() if " /sys/fs/cgroup " in line][-1]
    assert " ro," in top
    rc, _, err = c(ct.run, ["touch", f"{ct.CG}/probe"])
    assert rc != 0 and "Read-only" in err
    # the log of start_proxy lives in the tmpfs: start without it
    rc, out, err = c(ct.run, [ct.CGPROXY, "--daemon", "--pidfile", "/dev/null"])
    assert rc == 0, out + err
    ok(c(ct.py_call, "Create", "ss", ("pids", "rw")))
    top = [line for line in c(ct.mountinfo).splitlines() if " /sys/fs/cgroup " in line][-1]
    assert " rw,nosuid,nodev,noexec," in top  # writable again, other flags kept
