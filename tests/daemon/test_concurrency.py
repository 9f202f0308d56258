"""No request waits for another's kernel work; ordering kept; senders that exit at once.

Assertions are on ordering and completion, never on wall time: a heavy request (a recursive
Remove of thousands of cgroups, run on a worker thread) is in flight while another client is
served many times over; requests on overlapping subtrees are answered one after the other;
pipelined requests on one connection are answered in order; fire-and-forget calls (dbus-send
without --print-reply) are served although their sender has already exited.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time

import pytest

from cgmanager.dbus.client import method_call
from cgmanager.hierarchy import discover_host

from .conftest import IFACE, OBJ
from .replies import ok

pytestmark = pytest.mark.t3

#: cgroups in the tree a heavy request works on: enough that its Remove takes far longer than
#: a Ping round trip on this machine (~0.3 s against ~0.2 ms), so the test has room to observe
BIG = 3000


def make_tree(base: str, name: str, n: int = BIG) -> str:
    """*n* cgroups below base/name, 50 per level-1 directory (made directly: fast)."""
    top = os.path.join(base, name)
    os.mkdir(top)
    for i in range(n // 50):
        d = os.path.join(top, f"g{i}")
        os.mkdir(d)
        for j in range(49):
            os.mkdir(os.path.join(d, f"c{j}"))
    return top


def remove_tree(top: str) -> None:
    """Teardown if the test failed half-way (bottom-up rmdir)."""
    if not os.path.isdir(top):
        return
    for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda w: -w[0].count("/")):
        try:
            os.rmdir(dirpath)
        except OSError:
            pass


def _join(cgroup_dir: str) -> None:
    try:
        with open(os.path.join(cgroup_dir, "cgroup.procs"), "w") as f:
            f.write("0")
    except OSError:  # v2 cgroup passing controllers on: processes live in the daemon's leaf
        with open(os.path.join(cgroup_dir, ".cgm_leaf", "cgroup.procs"), "w") as f:
            f.write("0")


@pytest.fixture
def placed(place):
    """This test process inside the place, so that the clients it runs in threads resolve
    relative paths there; moved back to where it was afterwards (before the place goes)."""
    layout = discover_host()
    with open("/proc/self/cgroup") as f:
        was = layout.cgroups_in(f.read())
    for d in place.dirs.values():
        _join(d)
    try:
        yield place
    finally:
        for key in place.dirs:
            _join(
                place.mounts[key] + was[key].rstrip("/") if was[key] != "/" else place.mounts[key]
            )


def test_a_heavy_request_does_not_delay_another_clients_replies(placed):
    """While one client's recursive Remove of 3,000 cgroups runs, another client is answered
    again and again (before the concurrency work it was answered only after the Remove)."""
    place = placed
    top = make_tree(place.path("pids"), "big")
    try:
        heavy, light = place.daemon.connect(), place.daemon.connect()
        done = threading.Event()
        result: dict = {}

        def remove() -> None:
            try:
                result["reply"] = heavy.call(OBJ, IFACE, "Remove", "ssi", ("pids", "big", 1))
            finally:
                done.set()

        t = threading.Thread(target=remove, daemon=True)
        t.start()
        while os.path.isdir(top) and len(os.listdir(top)) >= BIG // 50 and not done.is_set():
            time.sleep(0.001)  # until the Remove is visibly under way
        served_meanwhile = 0
        while not done.is_set():
            light.call(OBJ, IFACE, "GetValue", "sss", ("pids", "", "pids.max"))
            served_meanwhile += 1
        t.join()
        assert result["reply"] == (1,)
        assert not os.path.exists(top)
        assert served_meanwhile >= 10, served_meanwhile
        heavy.close()
        light.close()
    finally:
        remove_tree(top)


def test_requests_on_overlapping_subtrees_are_serialised(placed):
    """A Create inside a tree being removed waits for the Remove, which therefore succeeds
    (nothing appears in the tree behind its back), then makes its whole path afresh: had it
    run meanwhile it would have found ovl/g0 (existed 1) or made the Remove fail (busy)."""
    place = placed
    top = make_tree(place.path("pids"), "ovl")
    try:
        remover, creator = place.daemon.connect(), place.daemon.connect()
        removed: list[tuple[int, ...]] = []

        def remove() -> None:
            removed.append(remover.call(OBJ, IFACE, "Remove", "ssi", ("pids", "ovl", 1)))

        t = threading.Thread(target=remove, daemon=True)
        t.start()
        while os.path.isdir(top) and len(os.listdir(top)) >= BIG // 50:
            time.sleep(0.001)  # the Remove is under way (rmdirs have started)
        assert t.is_alive(), "the Remove ended before the overlapping request could be sent"
        existed = creator.call(OBJ, IFACE, "Create", "ss", ("pids", "ovl/g0/new"))
        t.join()
        assert removed == [(1,)]
        assert existed == (-1,)  # ovl, g0 and new all made by the Create: after the Remove
        left = [f for f in os.listdir(top) if os.path.isdir(os.path.join(top, f))]
        assert left == ["g0"]
        assert os.path.isdir(os.path.join(top, "g0", "new"))
        remover.close()
        creator.close()
    finally:
        remove_tree(top)


def test_disjoint_subtrees_are_not_serialised(placed):
    """A Create beside a tree being removed is answered while the Remove runs."""
    place = placed
    top = make_tree(place.path("pids"), "dis")
    try:
        remover, creator = place.daemon.connect(), place.daemon.connect()
        done = threading.Event()

        def remove() -> None:
            remover.call(OBJ, IFACE, "Remove", "ssi", ("pids", "dis", 1))
            done.set()

        t = threading.Thread(target=remove, daemon=True)
        t.start()
        while os.path.isdir(top) and len(os.listdir(top)) >= BIG // 50:
            time.sleep(0.001)
        assert creator.call(OBJ, IFACE, "Create", "ss", ("pids", "beside")) == (-1,)
        assert not done.is_set(), "the Remove ended first: no concurrency was observed"
        t.join()
        assert os.path.isdir(os.path.join(place.path("pids"), "beside"))
        remover.close()
        creator.close()
    finally:
        remove_tree(top)


def test_pipelined_requests_are_answered_in_order(placed):
    """A heavy request followed, on the same connection, by light ones: the replies come in
    the order of the requests (the light ones wait for the heavy one: the client's order)."""
    place = placed
    top = make_tree(place.path("pids"), "pipe", 1000)
    try:
        c = place.daemon.connect()
        calls = [
            ("Remove", "ssi", ("pids", "pipe", 1)),
            ("Ping", "i", (0,)),
            ("Create", "ss", ("pids", "after")),
            ("ListChildren", "ss", ("pids", "")),
        ]
        serials = [
            c.send(method_call(OBJ, IFACE, m, sig, body, None, False)) for m, sig, body in calls
        ]
        replies = [c.wait_reply(s, 30) for s in serials]
        assert [r.reply_serial for r in replies] == serials
        assert replies[0].body == (1,)
        assert "after" in replies[3].body[0] and "pipe" not in replies[3].body[0]
        c.close()
    finally:
        remove_tree(top)


def _dbus_send(place, method: str, *args: str) -> list[str]:
    return [
        "dbus-send",
        f"--address={place.daemon.address}",
        "--type=method_call",
        OBJ,
        f"{IFACE}.{method}",
        *args,
    ]


def wait_until(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


@pytest.mark.parametrize("key", ["pids", "unified"])
def test_fire_and_forget_dbus_send_is_served(place, key):
    """dbus-send without --print-reply sends with NO_REPLY_EXPECTED and exits at once (0.42
    served it): the daemon judges it by the facts it read while the sender waited for its
    Hello reply — in the sender's own cgroup, never at the root."""
    for i in range(20):  # often enough that some senders are gone before the daemon reads
        cp = place.run(_dbus_send(place, "Create", f"string:{key}", f"string:ff{i}"))
        assert cp.returncode == 0, cp.stderr
    base = place.path(key)
    served = wait_until(lambda: all(os.path.isdir(f"{base}/ff{i}") for i in range(20)))
    missing = [i for i in range(20) if not os.path.isdir(f"{base}/ff{i}")]
    log = [line for line in place.daemon.log().splitlines() if "'ff" in line]
    assert served, (missing, [line for line in log if any(f"'ff{i}'" in line for i in missing)])
    assert not any(n.startswith("ff") for n in os.listdir(place.mounts[key]))


def test_a_client_that_moves_itself_then_exits_is_judged_where_it_moved(placed):
    """A client moves itself into ``sub`` (waiting for that reply) and then sends a Create
    without waiting and exits: the Create is made below ``sub``."""
    place = placed
    ok(place.py("Create", "ss", "pids", "sub"))
    code = (
        "import os\n"
        "from cgmanager.dbus.client import connect\n"
        f"c = connect({place.daemon.address!r})\n"
        f"c.call({OBJ!r}, {IFACE!r}, 'MovePid', 'ssi', ('pids', 'sub', os.getpid()))\n"
        f"c.call({OBJ!r}, {IFACE!r}, 'Create', 'ss', ('pids', 'made-after'), no_reply=True)\n"
        "os._exit(0)\n"
    )
    for _ in range(5):
        shutil.rmtree(os.path.join(place.path("pids"), "sub", "made-after"), ignore_errors=True)
        if os.path.isdir(os.path.join(place.path("pids"), "sub", "made-after")):
            os.rmdir(os.path.join(place.path("pids"), "sub", "made-after"))
        assert place.run([sys.executable, "-c", code]).returncode == 0
        made = os.path.join(place.path("pids"), "sub", "made-after")
        assert wait_until(lambda m=made: os.path.isdir(m)), "not served below sub"
        assert not os.path.exists(os.path.join(place.path("pids"), "made-after"))
        os.rmdir(made)


def test_a_fire_and_forget_sender_of_an_unprivileged_user_is_served(place, test_user):
    """The same for a real unprivileged user in a cgroup delegated to it."""
    ok(place.py("Create", "ss", "pids", "u"))
    ok(place.py("Chown", "ssii", "pids", "u", test_user.uid, test_user.gid))
    d = os.path.join(place.path("pids"), "u")
    argv = [
        "sh",
        "-c",
        f"echo $$ > {d}/cgroup.procs && exec setpriv --reuid={test_user.uid} "
        f'--regid={test_user.gid} --clear-groups "$@"',
        "sh",
        *_dbus_send(place, "Create", "string:pids", "string:mine"),
    ]
    cp = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert cp.returncode == 0, cp.stderr
    assert wait_until(lambda: os.path.isdir(os.path.join(d, "mine")))
    assert os.stat(os.path.join(d, "mine")).st_uid == test_user.uid
