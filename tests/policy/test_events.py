"""T1/T2/T3: event signals on the subscriber's own connection — populated/empty and
frozen/thawed on v2 (EPOLLPRI) and v1 (polled), PSI triggers on the v2 tree; hostile
subscribers: caps, a subscriber that never reads, bad triggers, cgroups out of reach."""

from __future__ import annotations

import os
import socket
import time

import pytest

from cgmanager.contract import INTERFACE, INTERFACE1, OBJECT_PATH
from cgmanager.daemon import events as ev
from cgmanager.dbus.client import Connection
from cgmanager.dbus.errors import DBusError

from .conftest import rel

WAIT = 20.0  # completion bound, never a timing assertion


def subscribe(c: Connection, controller: str, cgroup: str) -> int:
    return c.call(OBJECT_PATH, INTERFACE1, "Subscribe", "ss", (controller, cgroup))[0]


def next_event(c: Connection, want=lambda body: True, timeout: float = WAIT):
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        msg = c.receive(max(left, 0.001))
        if msg is None:
            raise AssertionError("no matching signal arrived")
        assert msg.member == "CgroupEvent" and msg.interface == INTERFACE1
        if want(msg.body):
            return msg.body


def absolute(cgroots, path, name):
    return "/" + rel(cgroots, path, name)


@pytest.mark.t1
def test_v2_populated_and_frozen(daemon, cgdir, cgroots, procs):
    d = cgdir("unified")
    with daemon.connect() as c:
        sid = subscribe(c, "unified", absolute(cgroots, d, "unified"))
        p = procs.spawn(["sleep", "60"], cgroup=d)
        body = next_event(c)
        assert body[:4] == (sid, "unified", absolute(cgroots, d, "unified"), "populated")
        assert body[4] == {"populated": 1} and body[5] == 0
        with open(os.path.join(d, "cgroup.freeze"), "w") as f:
            f.write("1")
        assert next_event(c)[3:5] == ("frozen", {"frozen": 1})
        with open(os.path.join(d, "cgroup.freeze"), "w") as f:
            f.write("0")
        assert next_event(c)[3:5] == ("frozen", {"frozen": 0})
        p.kill()
        assert next_event(c)[3:5] == ("populated", {"populated": 0})
        # unsubscribed: nothing more for it
        c.call(OBJECT_PATH, INTERFACE1, "Unsubscribe", "u", (sid,))
        procs.spawn(["true"], cgroup=d).wait(10)
        assert c.receive(0.3) is None
        with pytest.raises(DBusError, match="not found on this connection"):
            c.call(OBJECT_PATH, INTERFACE1, "Unsubscribe", "u", (sid,))


@pytest.mark.t2
@pytest.mark.parametrize("name", ["pids", "freezer"])
def test_v1_populated_polled(daemon, cgdir, cgroots, procs, name):
    d = cgdir(name)
    with daemon.connect() as c:
        subscribe(c, name, absolute(cgroots, d, name))
        p = procs.spawn(["sleep", "60"], cgroup=d)
        assert next_event(c)[3:5] == ("populated", {"populated": 1})
        if name == "freezer":
            with open(os.path.join(d, "freezer.state"), "w") as f:
                f.write("FROZEN")
            assert next_event(c, lambda b: b[3] == "frozen")[4] == {"frozen": 1}
            with open(os.path.join(d, "freezer.state"), "w") as f:
                f.write("THAWED")
            assert next_event(c, lambda b: b[3] == "frozen")[4] == {"frozen": 0}
        p.kill()
        assert next_event(c, lambda b: b[3] == "populated")[4] == {"populated": 0}


@pytest.mark.t1
def test_removed_cgroup_ends_its_subscription(daemon, cgdir, cgroots):
    d = cgdir("unified")
    sub = os.path.join(d, "gone")
    os.mkdir(sub)
    with daemon.connect() as c:
        sid = subscribe(c, "unified", absolute(cgroots, sub, "unified"))
        os.rmdir(sub)
        # kernfs wakes pollers of a removed file; the subscription ends with "removed"
        body = next_event(c)
        assert body[0] == sid and body[3] == "removed"


@pytest.mark.t1
def test_pressure_trigger_fires(daemon, cgdir, cgroots, procs):
    d = cgdir("unified")
    if not os.path.exists(os.path.join(d, "cpu.pressure")):
        pytest.skip("PSI is not enabled on this kernel")
    with daemon.connect() as c:
        sid = c.call(
            OBJECT_PATH,
            INTERFACE1,
            "WatchPressure",
            "ssss",
            ("unified", absolute(cgroots, d, "unified"), "cpu", "some 20000 2000000"),
        )[0]
        n = (os.cpu_count() or 2) + 2  # more runnable tasks than CPUs: they stall
        for _ in range(n):
            procs.spawn(["sh", "-c", "while :; do :; done"], cgroup=d)
        body = next_event(c, lambda b: b[3] == "pressure", timeout=30)
        assert body[0] == sid and body[4]["some_total"] > 0


@pytest.mark.t3
@pytest.mark.parametrize(
    "trigger, message",
    [
        ("some 150000", "invalid trigger"),
        ("half 1 1000000", "invalid trigger"),
        ("some 150000 100000", "window must be"),
        ("some 0 1000000", "stall must be above 0"),
        ("some 2000000 1000000", "stall must be above 0 and within"),
        ("some 150000 1000000", "multiples of 2000000"),  # unprivileged rule
    ],
)
def test_bad_triggers_refused(place, test_user, trigger, message):
    r = place.py(
        "WatchPressure", "ssss", "unified", "", "cpu", trigger, user=test_user, iface=INTERFACE1
    )
    assert r.returncode == 1 and message in r.stdout, r.stdout


@pytest.mark.t3
def test_unprivileged_trigger_needs_write_access(place, test_user):
    # the place's own cgroup was made by root: its cpu.pressure is not the user's to write
    r = place.py(
        "WatchPressure",
        "ssss",
        "unified",
        "",
        "cpu",
        "some 150000 2000000",
        user=test_user,
        iface=INTERFACE1,
    )
    assert r.returncode == 1 and "NotPermitted" in r.stdout, r.stdout


@pytest.mark.t3
def test_out_of_reach_is_not_found(place, test_user):
    r = place.py("Subscribe", "ss", "unified", "/", user=test_user, iface=INTERFACE1)
    assert r.returncode == 1 and "NotFound" in r.stdout, r.stdout
    r = place.py("Subscribe", "ss", "unified", "../x", user=test_user, iface=INTERFACE1)
    assert r.returncode == 1 and "InvalidArgument" in r.stdout, r.stdout


@pytest.mark.t1
def test_subscription_cap_per_connection(daemon, cgdir, cgroots):
    d = absolute(cgroots, cgdir("unified"), "unified")
    with daemon.connect() as c:
        for _ in range(ev.MAX_PER_CONNECTION):
            subscribe(c, "unified", d)
        with pytest.raises(DBusError) as e:
            subscribe(c, "unified", d)
        assert e.value.name.endswith("LimitExceeded")
    # the connection's subscriptions ended with it: a new connection may subscribe again
    with daemon.connect() as c:
        subscribe(c, "unified", d)


@pytest.mark.t1
def test_a_subscriber_that_never_reads_loses_signals_not_the_daemon(daemon, cgdir, cgroots, procs):
    d = cgdir("unified")
    path = absolute(cgroots, d, "unified")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # little kernel buffering
    sock.connect(daemon.socket)
    sock.sendall(b"\0AUTH EXTERNAL\r\nDATA\r\nBEGIN\r\n")
    time.sleep(0.1)
    slow = Connection(sock, False)
    slow._buf += sock.recv(4096).split(b"\r\n", 2)[-1]  # the handshake's replies
    for _ in range(ev.MAX_PER_CONNECTION):
        subscribe(slow, "unified", path)
    # each process makes populated 1 then 0: 2 signals per subscription; nobody reads them
    for _ in range(60):
        procs.spawn(["true"], cgroup=d).wait(10)
    with daemon.connect() as other:  # the daemon serves others meanwhile
        other.call(OBJECT_PATH, INTERFACE, "Ping", "i", (0,))
        counters = other.call(OBJECT_PATH, INTERFACE1, "PolicyStatus")[0]
    assert counters["signals_dropped"] > 0
    # the slow subscriber is still connected; once it reads again, new signals say how many
    # it lost
    while slow.receive(1.0) is not None:
        pass
    procs.spawn(["true"], cgroup=d).wait(10)
    msg = slow.receive(WAIT)
    assert msg is not None and msg.body[5] > 0
    slow.call(OBJECT_PATH, INTERFACE, "Ping", "i", (0,))
    slow.close()
