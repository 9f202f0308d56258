"""Every kind of real client talks to the daemon: dbus-send, gdbus, busctl, our Python client."""

import ast
import os
import re
import xml.etree.ElementTree as ET

import pytest

from cgmanager.contract import API_VERSION, INTERFACE, OBJECT_PATH, methods_of
from cgmanager.operations.context import INLINE_CHILDREN
from cgmanager.scm import SCM_METHODS

pytestmark = pytest.mark.t3


def ok(cp):
    assert cp.returncode == 0, f"rc={cp.returncode}\n{cp.stdout}\n{cp.stderr}"
    return cp.stdout


def test_dbus_send_round_trip(place):
    ok(place.dbus_send("Ping", "int32:0"))
    out = ok(place.dbus_send("Create", "string:pids", "string:ds/a"))
    assert "int32 -1" in out
    out = ok(place.dbus_send("ListChildren", "string:pids", "string:ds"))
    assert 'string "a"' in out
    out = ok(place.dbus_send("ListKeys", "string:pids", "string:ds/a"))
    assert 'string "pids.max"' in out and "uint32" in out
    ok(place.dbus_send("SetValue", "string:pids", "string:ds/a", "string:pids.max", "string:42"))
    out = ok(place.dbus_send("GetValue", "string:pids", "string:ds/a", "string:pids.max"))
    assert 'string "42"' in out
    out = ok(place.dbus_send("Remove", "string:pids", "string:ds", "int32:1"))
    assert "int32 1" in out


def test_gdbus_sends_hello_first_and_works(place):
    assert ok(place.gdbus("Create", "pids", "gd")).strip() == "(-1,)"
    assert ok(place.gdbus("GetValue", "pids", "gd", "pids.max")).strip() == "('max',)"
    out = ok(place.gdbus("ListControllers"))
    assert "'pids'" in out
    err = place.gdbus("GetValue", "pids", "gd", "../x")
    assert (
        err.returncode != 0 and "org.linuxcontainers.cgmanager.Error.InvalidArgument" in err.stderr
    )


def test_busctl_needs_hello_as_first_message_and_works(place):
    assert ok(place.busctl("Create", "ss", "pids", "bc")).strip() == "i -1"
    assert ok(place.busctl("GetValue", "sss", "pids", "bc", "pids.max")).strip() == 's "max"'
    out = ok(place.busctl("GetTasks", "ss", "pids", "bc"))
    assert out.strip() == "ai 0"
    out = ok(
        place.run(
            [
                "busctl",
                f"--address={place.daemon.address}",
                "get-property",
                "org.linuxcontainers.cgmanager",
                OBJECT_PATH,
                INTERFACE,
                "api_version",
            ]
        )
    )
    assert out.strip() == f"i {API_VERSION}"


def test_python_client(place):
    assert ast.literal_eval(ok(place.py("Create", "ss", "freezer", "pyc")).strip()) == (-1,)
    state = ast.literal_eval(
        ok(place.py("GetValue", "sss", "freezer", "pyc", "freezer.state")).strip()
    )
    assert state == ("THAWED",)


def test_introspection_lists_every_method_as_the_original(place):
    xml = (
        ok(place.gdbus_introspect())
        if hasattr(place, "gdbus_introspect")
        else ok(
            place.run(
                [
                    "dbus-send",
                    f"--address={place.daemon.address}",
                    "--print-reply=literal",
                    "--type=method_call",
                    OBJECT_PATH,
                    "org.freedesktop.DBus.Introspectable.Introspect",
                ]
            )
        )
    )
    xml = xml[xml.index("<") :]
    root = ET.fromstring(re.sub(r"<!DOCTYPE[^>]*>", "", xml))
    [iface] = [i for i in root.findall("interface") if i.get("name") == INTERFACE]
    got = {
        m.get("name"): [
            (a.get("name"), a.get("type"), a.get("direction") or "in") for a in m.findall("arg")
        ]
        for m in iface.findall("method")
    }
    want = {
        s.name: [(n, t, "in") for n, t in s.in_args] + [(n, t, "out") for n, t in s.out_args]
        for s in methods_of(INTERFACE)
    }
    want.update({m.name: [(n, t, "in") for n, t in m.in_args] for m in SCM_METHODS})
    assert len(want) == 34  # 18 plain methods, 16 Scm twins, as in 0.42's XML
    assert got == want
    [prop] = iface.findall("property")
    assert (prop.get("name"), prop.get("type"), prop.get("access")) == ("api_version", "i", "read")
    names = {i.get("name") for i in root.findall("interface")}
    assert {
        "org.freedesktop.DBus.Introspectable",
        "org.freedesktop.DBus.Properties",
        "org.freedesktop.DBus.Peer",
    } <= names


def test_properties_getall_and_read_only(place):
    out = (
        ok(place.gdbus_raw("org.freedesktop.DBus.Properties.GetAll", INTERFACE))
        if hasattr(place, "gdbus_raw")
        else ok(
            place.run(
                [
                    "gdbus",
                    "call",
                    "--address",
                    place.daemon.address,
                    "--dest",
                    "org.x.y",
                    "--object-path",
                    OBJECT_PATH,
                    "--method",
                    "org.freedesktop.DBus.Properties.GetAll",
                    INTERFACE,
                ]
            )
        )
    )
    assert "'api_version': <10>" in out
    cp = place.run(
        [
            "gdbus",
            "call",
            "--address",
            place.daemon.address,
            "--dest",
            "org.x.y",
            "--object-path",
            OBJECT_PATH,
            "--method",
            "org.freedesktop.DBus.Properties.Set",
            INTERFACE,
            "api_version",
            "<11>",
        ]
    )
    assert cp.returncode != 0 and "PropertyReadOnly" in cp.stderr


def test_peer_ping(place):
    ok(
        place.run(
            [
                "dbus-send",
                f"--address={place.daemon.address}",
                "--print-reply",
                "--type=method_call",
                OBJECT_PATH,
                "org.freedesktop.DBus.Peer.Ping",
            ]
        )
    )


def test_gdbus_introspection_shows_the_event_signal(place):
    """CgroupEvent is declared on cgmanager1, so gdbus/busctl users see what they subscribe
    to (gdbus parses the XML: a malformed <signal> would fail the call)."""
    out = ok(
        place.run(
            [
                "gdbus",
                "introspect",
                "--address",
                place.daemon.address,
                "--dest",
                "org.linuxcontainers.cgmanager",
                "--object-path",
                OBJECT_PATH,
            ]
        )
    )
    sig = out[out.index("CgroupEvent") :].split(";")[0]
    for arg in ("subscription", "controller", "cgroup", "kind", "values", "lost"):
        assert arg in sig, sig


def test_a_big_listing_reaches_every_client_intact(place):
    """A directory with more children than the loop lists inline goes to a worker, which
    also marshals the reply: every kind of client reads the same names as the kernel shows."""
    big = os.path.join(place.path("pids"), "big")
    os.mkdir(big)
    made = [f"c{i}" for i in range(INLINE_CHILDREN + 88)]
    try:
        for name in made:
            os.mkdir(os.path.join(big, name))
        sleeper = place.spawn(["sleep", "1000"])
        with open(os.path.join(big, "c7", "cgroup.procs"), "w") as f:
            f.write(str(sleeper.pid))
        want = sorted(made)
        out = ok(place.dbus_send("ListChildren", "string:pids", "string:big"))
        assert sorted(re.findall(r'string "([^"]*)"', out)) == want
        (got,) = ast.literal_eval(ok(place.gdbus("ListChildren", "pids", "big")).strip())
        assert sorted(got) == want
        out = ok(place.busctl("ListChildren", "ss", "pids", "big")).split()
        assert out[:2] == ["as", str(len(want))]
        assert sorted(w.strip('"') for w in out[2:]) == want
        (got,) = ast.literal_eval(ok(place.py("ListChildren", "ss", "pids", "big")).strip())
        assert sorted(got) == want
        tasks = ast.literal_eval(ok(place.py("GetTasksRecursive", "ss", "pids", "big")).strip())
        assert tasks == ([sleeper.pid],)
        sleeper.kill()
    finally:
        for name in made:
            if os.path.isdir(os.path.join(big, name)):
                os.rmdir(os.path.join(big, name))
        os.rmdir(big)
