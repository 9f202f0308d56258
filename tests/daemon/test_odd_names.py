"""Issue 12, finding 4: names a delegatee made directly on cgroupfs that the API could not have
made (bytes that are not UTF-8, line separators, bidi overrides, U+FFFD) are listed in their
one escaped form (U+FFFD and two hex digits per byte), never fail a listing, never reach a
client raw, and can still be removed by that form."""

from __future__ import annotations

import json
import os
import sys

import pytest

from .hostile_helpers import kernel_state
from .replies import ok

pytestmark = pytest.mark.t3

ERR = "org.linuxcontainers.cgmanager.Error."
#: raw names (bytes) a delegatee can make with mkdir, and how every listing must show them
ODD = {
    b"\xff\xfe": "\ufffdff\ufffdfe",
    b"x\xe2\x80\xa88:pids:": "x\ufffde2\ufffd80\ufffda88:pids:",
    b"rtl\xe2\x80\xaegnp.exe": "rtl\ufffde2\ufffd80\ufffdaegnp.exe",
    b"\xef\xbf\xbd": "\ufffdef\ufffdbf\ufffdbd",
    b"tab\there": "tab\ufffd09here",
    b"L" * 1000: "L" * 1000,  # cgroupfs takes names far beyond NAME_MAX
}

CLIENT = r"""
import json, os, sys
from cgmanager.dbus.client import connect
from cgmanager.dbus.errors import DBusError
from cgmanager import scm_client
O, I = '/org/linuxcontainers/cgmanager', 'org.linuxcontainers.cgmanager0_0'
addr, key, calls = json.loads(sys.argv[1])
c = connect(addr)
out = []
for method, sig, args in calls:
    try:
        if method.endswith('Scm'):
            out.append(['ok', scm_client.call(c, method, tuple(args), (os.getpid(), os.getuid(), os.getgid()))])
        else:
            out.append(['ok', c.call(O, I, method, sig, tuple(args))])
    except DBusError as e:
        out.append([e.name, e.message])
print(json.dumps(out))
"""


def _calls(place, calls, user=None):
    cp = place.run(
        [sys.executable, "-c", CLIENT, json.dumps([place.daemon.address, None, calls])], user=user
    )
    assert cp.returncode == 0, cp.stderr
    return json.loads(cp.stdout)


@pytest.mark.parametrize("key", ["pids", "unified"])
def test_names_made_on_cgroupfs_are_listed_escaped_and_removable(place, test_user, key):
    ok(place.py("Create", "ss", key, "d/ok"))
    ok(place.py("Chown", "ssii", key, "d", test_user.uid, test_user.gid))
    d = os.path.join(place.path(key), "d").encode()
    # the delegatee makes them directly, as the kernel lets it; one holds a sleeper of its own
    for raw in ODD:
        cp = test_user.run(["mkdir", (d + b"/" + raw).decode("utf-8", "surrogateescape")])
        assert cp.returncode == 0, cp.stderr
    sleeper = place.spawn(["sleep", "100"], user=test_user)  # its owner moves it there
    with open(d + b"/\xff\xfe/cgroup.procs", "w") as f:
        f.write(str(sleeper.pid))
    shown = sorted(["ok", *ODD.values()])
    for user in (None, test_user):
        out = _calls(
            place,
            [
                ["ListChildren", "ss", [key, "d"]],
                ["GetTasksRecursive", "ss", [key, "d"]],
                ["ListChildrenScm", "", [key, "d"]],
                ["GetTasks", "ss", [key, "d/\ufffdff\ufffdfe"]],
                ["ListKeys", "ss", [key, "d/\ufffdff\ufffdfe"]],
                ["GetPidCgroup", "si", [key, sleeper.pid]],
            ],
            user=user,
        )
        assert out[0][0] == "ok" and sorted(out[0][1][0]) == shown, out[0]
        assert out[1] == ["ok", [[sleeper.pid]]], out[1]
        assert out[2][0] == "ok" and sorted(out[2][1]) == shown, out[2]
        assert out[3] == ["ok", [[sleeper.pid]]], out[3]
        assert out[4][0] == "ok" and any(k[0] == "cgroup.procs" for k in out[4][1][0]), out[4]
        assert out[5][0] == "ok" and out[5][1][0].endswith("d/\ufffdff\ufffdfe"), out[5]
    # no spelling of the escape creates a name the API refuses; a wrong one is refused
    before = kernel_state(place.path(key))
    out = _calls(
        place,
        [
            ["Create", "ss", [key, "d/new\ufffde2\ufffd80\ufffda8"]],
            ["Create", "ss", [key, "d/\ufffd61"]],
            ["Remove", "ssi", [key, "d/\ufffdFF\ufffdfe", 1]],
            ["Create", "ss", [key, "d/\ufffdff\ufffdfe"]],  # exists: reported, not made
            ["Create", "ss", [key, "d/" + "M" * 256]],  # new names: at most NAME_MAX
        ],
        user=test_user,
    )
    assert [o[0] for o in out[:3]] == [ERR + "InvalidArgument"] * 3, out
    assert out[3] == ["ok", [1]], out
    assert out[4][0] == ERR + "InvalidArgument" and "255 bytes" in out[4][1], out
    assert kernel_state(place.path(key)) == before
    # ... and the delegatee removes each by its escaped form
    sleeper.kill()
    out = _calls(
        place, [["Remove", "ssi", [key, f"d/{s}", 0]] for s in ODD.values()], user=test_user
    )
    assert out == [["ok", [1]]] * len(ODD), out
    assert [e.name for e in os.scandir(d) if e.is_dir(follow_symlinks=False)] == [b"ok"]
