"""Reliability of the live daemon (issue 7, item 5): 1,000 connections at once under the
default limits, idle and half-open connections that delay no one, kill -9 under load and a
restart that loses nothing, SIGTERM under load, and cgm retrying while the daemon restarts.

The client processes are tests/daemon/reliability_client.py (also used by
bench/reliability.py, which measures the same things with more care).  Measured numbers are
added to the run's notes (printed under "cgtest notes").
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace

import pytest
from kernel.helpers import wait_for
from support import run as support_run

from cgmanager.dbus.client import connect
from daemon import reliability_client as rc
from daemon.conftest import IFACE, OBJ, VENV_BIN, Daemon, served_and_skipped

pytestmark = pytest.mark.t3

CLIENT = rc.__file__
CGM = f"{VENV_BIN}/cgm"
#: the documented bound for a well-behaved client's connect + two calls + close while 300
#: idle or half-open connections are open (the median is under a millisecond here; see the notes)
LATENCY_BOUND = 2.0
#: the documented bound for a clean shutdown under load
SHUTDOWN_BOUND = 10.0


def note(line: str) -> None:
    r = support_run.current()
    if r is not None:
        r.notes.append(f"reliability: {line}")


# ------------------------------------------------------------------------------------ helpers


def client(place, *args: str, user=None):
    """A reliability client (see reliability_client.py) in the place, talking over pipes."""
    return place.spawn(
        [sys.executable, CLIENT, *args],
        user=user,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def line_of(proc, timeout: float = 60.0) -> str:
    """The client's next output line (a hang guard, not a timing assertion)."""
    out = proc.popen.stdout
    r, _, _ = select.select([out], [], [], timeout)
    line = out.readline() if r else ""
    if not line:
        proc.kill()
        raise AssertionError(f"client {proc.argv[2:]} said nothing: {proc.popen.stderr.read()}")
    return line


def ask(proc, command: str) -> dict:
    proc.popen.stdin.write(command + "\n")
    proc.popen.stdin.flush()
    return json.loads(line_of(proc))


def finish(proc, timeout: float = 30.0) -> int | None:
    proc.popen.stdin.close()
    return proc.wait(timeout)


def daemon_sockets(d: Daemon) -> int:
    return rc.sockets_of(d.popen.pid)


def ping(address: str) -> None:
    with connect(address, timeout=10) as c:
        assert c.call(OBJ, IFACE, "Ping", "i", (0,)) == ()


def socket_dir() -> str:
    d = tempfile.mkdtemp(prefix="cgmanager-rel-")
    os.chmod(d, 0o755)  # the test users' clients must reach the socket
    return d


def launch(cgroots, procs, sock: str, *extra: str) -> tuple[Daemon, float]:
    """cgmanager on `sock` (replacing a stale socket there) -> (daemon, seconds from exec to
    the first successful call)."""
    served, skipped = served_and_skipped(cgroots)
    log = f"{sock}.{time.monotonic_ns()}.log"
    argv = [
        f"{VENV_BIN}/cgmanager",
        "--socket",
        sock,
        "--fs-dir",
        f"{sock}.fs",
        "--log-level",
        "info",
        *(["--skip", ",".join(skipped)] if skipped else []),
        *extra,
    ]
    t0 = time.monotonic()
    with open(log, "w") as f:
        proc = procs.spawn(argv, stdout=f, stderr=subprocess.STDOUT)
    d = Daemon(sock, log, proc.popen, served)
    while True:
        try:
            ping(d.address)
            return d, time.monotonic() - t0
        except Exception:
            if proc.popen.poll() is not None or time.monotonic() - t0 > 30:
                raise RuntimeError(f"cgmanager did not come up:\n{d.log()}") from None
            time.sleep(0.005)


@pytest.fixture(scope="module")
def users(test_user, make_test_user):
    """Three unprivileged users (the session's test user and two more)."""
    return [test_user, make_test_user(), make_test_user()]


# ----------------------------------------------------------------- 1,000 connections at once


def test_thousand_connections_at_once_under_the_default_limits(start_daemon, place, users):
    """1,000 authenticated connections open at the same time (250 each for root and three
    users: the default per-uid limit is 256), every one making real calls while all are
    open; then uid limits under that load: a uid's 257th connection is refused, other uids
    are served, and a closed connection frees its slot."""
    d = start_daemon()  # default limits: 2048 connections, 256 per uid
    p = replace(place, daemon=d)
    holders = [client(p, "hold", d.address, "250", user=u) for u in (None, *users)]
    t0 = time.monotonic()
    for h in holders:
        assert line_of(h) == "open 250\n"
    opened = time.monotonic() - t0
    assert daemon_sockets(d) >= 1001  # 1,000 connections and the listener
    for h in holders:
        h.popen.stdin.write("calls\n")
        h.popen.stdin.flush()
    t0 = time.monotonic()
    results = [json.loads(line_of(h)) for h in holders]
    served_in = time.monotonic() - t0
    for r in results:
        assert (r["conns"], r["n_errors"], r["ok"]) == (250, 0, 750), r
    assert daemon_sockets(d) >= 1001  # still all open

    # the per-uid limit, with 1,000 connections open: users[0] fills its 256
    a, b = holders[1], holders[2]
    assert ask(a, "more 6") == {"opened": 6, "errors": [], "conns": 256}
    probe = ask(a, "probe")
    assert probe["refused"], probe
    assert "AuthFailed" in probe["error"] or "Disconnected" in probe["error"], probe
    assert ask(b, "more 1") == {"opened": 1, "errors": [], "conns": 251}  # another uid: served
    ping(d.address)  # root too
    assert ask(a, "drop 1") == {"conns": 255}
    assert wait_for(lambda: not ask(a, "probe")["refused"], timeout=10)  # the slot is free again
    assert f"uid {users[0].uid}: uid has 256 connections" in d.log()
    assert f"uid {users[1].uid}: uid has" not in d.log() and "uid 0: uid has" not in d.log()

    for h in holders:
        assert finish(h) == 0
    assert d.popen.poll() is None
    ping(d.address)
    note(
        f"1000 connections held at once (root + 3 users x 250, default limits): opened in "
        f"{opened:.2f} s, 3000 calls served in {served_in:.2f} s, 0 errors; the 257th "
        f"connection of one uid refused, other uids served"
    )
    d.stop()


# ------------------------------------------------------------- idle and half-open connections


def test_idle_and_half_open_connections_delay_no_one(start_daemon, place, users):
    """300 connections that never finish anything (no byte; a SASL line never ended;
    authenticated and silent; half a method call) -- 100 each from root and two users, within
    the default per-uid limit of 256 -- leave a well-behaved client's connect + Ping +
    GetValue + close under LATENCY_BOUND, every time."""
    d = start_daemon()  # default limits
    p = replace(place, daemon=d)

    def latencies(n: int) -> list[float]:
        m = client(p, "measure", d.address, str(n))
        values = json.loads(line_of(m))
        assert m.wait(30) == 0
        return values

    before = latencies(40)
    held = rc.open_idle(d.socket, 25)  # 100 from root (this process)
    others = [client(p, "idle", d.address, "25", user=u) for u in users[:2]]
    for o in others:
        assert line_of(o) == "open\n"
    t_open = time.monotonic()
    assert daemon_sockets(d) >= 301
    during = latencies(100)
    elapsed = time.monotonic() - t_open
    # all 300 were still open while we measured (the SASL timeout is 10 s, message 30 s)
    if elapsed < 9:
        assert rc.idle_status(held) == dict.fromkeys(rc.KINDS, 0)
        for o in others:
            assert ask(o, "status") == dict.fromkeys(rc.KINDS, 0)
    assert max(during) < LATENCY_BOUND, during
    for o in others:
        assert finish(o) == 0
    for socks in held.values():
        for s in socks:
            s.close()
    ms = [1000 * x for x in during]
    ms0 = [1000 * x for x in before]
    note(
        f"well-behaved client (connect+Ping+GetValue+close) with 300 idle/half-open "
        f"connections: median {statistics.median(ms):.1f} ms, max {max(ms):.1f} ms "
        f"(none: median {statistics.median(ms0):.1f} ms, max {max(ms0):.1f} ms); "
        f"bound {LATENCY_BOUND} s"
    )
    d.stop()


# ------------------------------------------------------------------- load and its journals


def start_workers(place, address: str, tmp: str, owner, n: int, after: int) -> list:
    """n load clients (root, in the place) doing Create/SetValue/Chown/MovePid/Remove in
    w<i>, journaling to <tmp>/j<i>; `after` rounds once reconnected (0: stop when lost)."""
    return [
        client(
            place,
            "work",
            address,
            f"{tmp}/j{i}",
            f"w{i}",
            str(owner.uid),
            str(owner.gid),
            str(after),
        )
        for i in range(n)
    ]


def journal(path: str) -> list[dict]:
    return rc.read_journal(path)


def acked(path: str) -> int:
    return sum(e["ev"] == "ok" for e in journal(path))


def check_kernel(place, journals: list[str], sleepers: bool) -> int:
    """cgroupfs holds exactly what the clients were told (rc.check_kernel)."""
    return rc.check_kernel(place.path("pids"), place.hp("pids"), journals, sleepers)


def wait_journals(journals: list[str], pred, what: str, timeout: float = 30.0) -> None:
    assert wait_for(lambda: all(pred(journal(j)) for j in journals), timeout=timeout), (
        what,
        [journal(j)[-3:] for j in journals],
    )


# ------------------------------------------------------------------------ kill -9 and restart


def test_kill_9_under_load_loses_nothing_and_clients_reconnect(
    cgroots, procs, place, test_user, tmp_path
):
    """SIGKILL while 3 clients loop Create/SetValue/Chown/MovePid/Remove: cgroupfs holds every
    change a client got a reply for (each value touched by the request in flight is old or
    new: a Chown is several chown() calls, which SIGKILL can split); a new
    daemon replaces the stale socket, a cgm started meanwhile waits for it, and the clients
    reconnect and go on."""
    sock = os.path.join(socket_dir(), "sock")
    try:
        d1, first_start = launch(cgroots, procs, sock)
        workers = start_workers(
            replace(place, daemon=d1), d1.address, str(tmp_path), test_user, 3, after=3
        )
        journals = [f"{tmp_path}/j{i}" for i in range(3)]
        wait_journals(journals, lambda ev: sum(e["ev"] == "ok" for e in ev) >= 12, "load")
        d1.popen.send_signal(signal.SIGKILL)
        assert d1.popen.wait(10) == -signal.SIGKILL
        acked_at_kill = sum(acked(j) for j in journals)
        # the stale socket is left behind; nothing answers on it
        with socket.socket(socket.AF_UNIX) as s, pytest.raises(ConnectionRefusedError):
            s.connect(sock)
        wait_journals(journals, lambda ev: any(e["ev"] == "lost" for e in ev), "lost")
        # no daemon: the kernel state is final until the restart
        inflight = check_kernel(place, journals, sleepers=True)

        # a cgm started meanwhile waits for the new daemon (up to 2.5 s)
        cgm = place.spawn(
            [CGM, "--socket", sock, "getvalue", "pids", "w0", "pids.max"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert wait_for(lambda: retrying(cgm.pid), timeout=10)
        d2, restart = launch(cgroots, procs, sock)  # replaces the stale socket
        out, err = cgm.popen.communicate(timeout=30)
        if restart < 2.0:  # the restart took ~0.1 s here; cgm waits 2.5 s in all
            assert (cgm.popen.returncode, out, err) == (0, "max\n", ""), (restart, err)
        else:
            note(f"restart took {restart:.2f} s: too slow for cgm's retries to be checked")
        for w in workers:
            assert w.wait(60) == 0, w.popen.stderr.read()
        for j in journals:
            ev = journal(j)
            assert [e["ev"] for e in ev].count("reconnected") == 1
            assert ev[-1] == {"ev": "done", "rounds": 3, "epoch": 1}, ev[-3:]
        check_kernel(place, journals, sleepers=False)
        assert "audit: pid=" in d2.log()  # the new daemon did the later work
        note(
            f"kill -9 under load (3 clients, {acked_at_kill} replies before the kill, "
            f"{inflight} in flight): cgroupfs matched every reply; restart to first call "
            f"{1000 * restart:.0f} ms (first start {1000 * first_start:.0f} ms); clients "
            f"reconnected and went on"
        )
        d2.stop()
    finally:
        shutil.rmtree(os.path.dirname(sock), ignore_errors=True)


# ------------------------------------------------------------------------- SIGTERM under load


def test_sigterm_under_load_shuts_down_cleanly(cgroots, procs, place, test_user, tmp_path):
    """Exit status 0 within SHUTDOWN_BOUND, the socket removed, nothing in cgroupfs but what
    clients were told, and every client -- busy, idle or half-open -- gets a reply or EOF."""
    sock = os.path.join(socket_dir(), "sock")
    try:
        d, _ = launch(cgroots, procs, sock)
        workers = start_workers(
            replace(place, daemon=d), d.address, str(tmp_path), test_user, 3, after=0
        )
        journals = [f"{tmp_path}/j{i}" for i in range(3)]
        held = rc.open_idle(sock, 3)
        wait_journals(journals, lambda ev: sum(e["ev"] == "ok" for e in ev) >= 12, "load")
        t0 = time.monotonic()
        d.popen.send_signal(signal.SIGTERM)
        status = d.popen.wait(SHUTDOWN_BOUND * 3)
        took = time.monotonic() - t0
        assert status == 0 and took < SHUTDOWN_BOUND, (status, took, d.log()[-2000:])
        assert not os.path.exists(sock)
        for w in workers:
            assert w.wait(SHUTDOWN_BOUND) == 0, w.popen.stderr.read()
        for j in journals:
            last = journal(j)[-1]
            # the call in flight got its reply or EOF -- never a timeout
            assert last["ev"] == "lost" and rc.DISCONNECTED in last["error"], last
        assert rc.idle_status(held) == dict.fromkeys(rc.KINDS, 3)  # all saw EOF
        for socks in held.values():
            for s in socks:
                s.close()
        inflight = check_kernel(place, journals, sleepers=False)
        note(
            f"SIGTERM under load (3 busy clients, {inflight} in flight, 12 idle/half-open): "
            f"exit 0 in {1000 * took:.0f} ms, socket removed, cgroupfs as clients were told"
        )
    finally:
        shutil.rmtree(os.path.dirname(sock), ignore_errors=True)


# ------------------------------------------------------------------- cgm waits for a restart

NOT_RUNNING = (
    "Failed opening dbus connection: org.freedesktop.DBus.Error.{name}: Failed to connect to "
    "socket {sock}: {strerror}\ncgm: cgmanager is not running (nothing listens on {sock}, "
    "from --socket); use --socket PATH or CGM_SOCKET to reach a cgmanager listening elsewhere\n"
)


def retrying(pid: int) -> bool:
    """The process sleeps in clock_nanosleep: cgm between two connection attempts."""
    try:
        with open(f"/proc/{pid}/syscall") as f:
            syscall = f.read().split()[0]
        with open(f"/proc/{pid}/wchan") as f:
            wchan = f.read()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return syscall == "230" or "nanosleep" in wchan


def stale_socket(path: str) -> None:
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(path)  # closed without listening: connect() gives ECONNREFUSED


@pytest.mark.parametrize("before", ["absent", "stale"])
def test_cgm_waits_for_a_restarting_daemon(daemon, procs, before):
    """While nothing listens (socket gone after SIGTERM, or stale after kill -9) cgm retries;
    once a listening socket appears at the path (atomically, as the daemon's own rename makes
    it) the command runs."""
    d = socket_dir()
    try:
        sock = f"{d}/sock"
        if before == "stale":
            stale_socket(sock)
        cgm = procs.spawn(
            [CGM, "--socket", sock, "ping"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert wait_for(lambda: retrying(cgm.pid), timeout=10)  # its first attempt failed
        assert cgm.alive()
        os.link(daemon.socket, f"{d}/.new")
        os.rename(f"{d}/.new", sock)
        out, err = cgm.popen.communicate(timeout=30)
        assert (cgm.popen.returncode, out, err) == (0, "", "")
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("before", ["absent", "stale"])
def test_cgm_without_a_daemon_fails_as_before_after_its_bound(before):
    d = socket_dir()
    try:
        sock = f"{d}/sock"
        if before == "stale":
            stale_socket(sock)
        t0 = time.monotonic()
        cp = subprocess.run(
            [CGM, "--socket", sock, "ping"], capture_output=True, text=True, timeout=30
        )
        took = time.monotonic() - t0
        name, strerror = (
            ("FileNotFound", "No such file or directory")
            if before == "absent"
            else ("NoServer", "Connection refused")
        )
        assert (cp.returncode, cp.stdout, cp.stderr) == (
            1,
            "",
            NOT_RUNNING.format(name=name, sock=sock, strerror=strerror),
        )
        assert took >= 2.5  # it did wait (monotonic sleeps: no flakiness) ...
    finally:
        shutil.rmtree(d, ignore_errors=True)
    # ... but not where no daemon can be restarting: the socket's directory does not exist
    t0 = time.monotonic()
    cp = subprocess.run(
        [CGM, "--socket", f"{d}/sock", "ping"], capture_output=True, text=True, timeout=30
    )
    assert cp.returncode == 1 and "No such file or directory" in cp.stderr
    note(
        f"cgm with no daemon fails after {took:.2f} s ({before} socket); "
        f"{time.monotonic() - t0:.3f} s without a socket directory"
    )


def test_cgm_never_sends_a_request_twice(procs):
    """A daemon that dies after reading the request (here: a fake that closes the connection
    then) leaves cgm with an error: it does not reconnect and send the request again."""
    d = socket_dir()
    try:
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(f"{d}/sock")
        listener.listen(8)
        listener.settimeout(10)
        cgm = procs.spawn(
            [CGM, "--socket", f"{d}/sock", "create", "pids", "once"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(10)
            got = b""
            while b"BEGIN\r\n" not in got:
                got += conn.recv(4096)
            conn.sendall(b"DATA\r\nOK " + b"0" * 32 + b"\r\nAGREE_UNIX_FD\r\n")
            after = got.split(b"BEGIN\r\n", 1)[1]
            while b"Create" not in after:
                after += conn.recv(4096)
        out, err = cgm.popen.communicate(timeout=30)
        assert cgm.popen.returncode == 1 and "call to cgmanager_create_sync failed" in err, err
        listener.settimeout(0)
        with pytest.raises(BlockingIOError):
            listener.accept()  # no second connection
        listener.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)
