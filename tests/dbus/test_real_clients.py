"""dbus-send, gdbus and busctl against the toy server (each client as a subprocess)."""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

from .toy import IFACE, PATH

DEST = "org.example.x"


def run(*args: str, stdin=None, check: bool = True) -> subprocess.CompletedProcess:
    if shutil.which(args[0]) is None:
        pytest.skip(f"{args[0]} not installed")
    proc = subprocess.run(args, capture_output=True, text=True, timeout=20, stdin=stdin)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed: {proc.stdout}{proc.stderr}")
    return proc


# ------------------------------------------------------------------------------------------
# dbus-send (does not send Hello)


def test_dbus_send_int(toy):
    out = run(
        "dbus-send",
        f"--address={toy.address}",
        "--print-reply",
        f"--dest={DEST}",
        PATH,
        f"{IFACE}.EchoI",
        "int32:41",
    ).stdout
    assert "int32 41" in out


def test_dbus_send_string_array(toy):
    out = run(
        "dbus-send",
        f"--address={toy.address}",
        "--print-reply",
        f"--dest={DEST}",
        PATH,
        f"{IFACE}.EchoAS",
        "array:string:a,bb,ccc",
    ).stdout
    assert '"a"' in out and '"ccc"' in out


def test_dbus_send_int_array(toy):
    out = run(
        "dbus-send",
        f"--address={toy.address}",
        "--print-reply",
        f"--dest={DEST}",
        PATH,
        f"{IFACE}.EchoAI",
        "array:int32:1,2,-3",
    ).stdout
    assert "int32 -3" in out


def test_dbus_send_wrong_signature(toy):
    proc = run(
        "dbus-send",
        f"--address={toy.address}",
        "--print-reply",
        f"--dest={DEST}",
        PATH,
        f"{IFACE}.EchoI",
        "string:x",
        check=False,
    )
    assert proc.returncode != 0
    assert (
        "org.freedesktop.DBus.Error.InvalidArgs: Invalid arguments to EchoI method" in proc.stderr
    )


def test_dbus_send_error_reply(toy):
    proc = run(
        "dbus-send",
        f"--address={toy.address}",
        "--print-reply",
        f"--dest={DEST}",
        PATH,
        f"{IFACE}.Fail",
        check=False,
    )
    assert "org.example.Error.Nope: nope" in proc.stderr


def test_dbus_send_properties(toy):
    out = run(
        "dbus-send",
        f"--address={toy.address}",
        "--print-reply",
        f"--dest={DEST}",
        PATH,
        "org.freedesktop.DBus.Properties.Get",
        f"string:{IFACE}",
        "string:api_version",
    ).stdout
    assert "variant       int32 10" in out
    proc = run(
        "dbus-send",
        f"--address={toy.address}",
        "--print-reply",
        f"--dest={DEST}",
        PATH,
        "org.freedesktop.DBus.Properties.Set",
        f"string:{IFACE}",
        "string:api_version",
        "variant:int32:3",
        check=False,
    )
    assert "org.freedesktop.DBus.Error.PropertyReadOnly" in proc.stderr


def test_dbus_send_no_reply_expected(toy):
    # without --print-reply dbus-send sets NO_REPLY_EXPECTED; the server must not choke on it
    run(
        "dbus-send", f"--address={toy.address}", f"--dest={DEST}", PATH, f"{IFACE}.EchoI", "int32:1"
    )
    out = run(
        "dbus-send",
        f"--address={toy.address}",
        "--print-reply",
        f"--dest={DEST}",
        PATH,
        f"{IFACE}.EchoI",
        "int32:2",
    ).stdout
    assert "int32 2" in out


# ------------------------------------------------------------------------------------------
# gdbus (sends Hello first)


def gdbus_call(
    toy, method: str, *args: str, path: str = PATH, stdin=None, check: bool = True
) -> subprocess.CompletedProcess:
    return run(
        "gdbus",
        "call",
        "--address",
        toy.address,
        "--dest",
        DEST,
        "--object-path",
        path,
        "--method",
        method,
        *args,
        stdin=stdin,
        check=check,
    )


def test_gdbus_call(toy):
    assert gdbus_call(toy, f"{IFACE}.EchoS", "héllo").stdout.strip() == "('héllo',)"
    assert (
        gdbus_call(toy, f"{IFACE}.EchoKeys", "[('tasks', 0, 0, 33188)]").stdout.strip()
        == "([('tasks', uint32 0, uint32 0, uint32 33188)],)"
    )


def test_gdbus_fd_argument(toy, tmp_path):
    # gdbus takes an 'h' argument as one of its own fds: give it the file as fd 3
    f = tmp_path / "data"
    f.write_text("hello-fd\n")
    if shutil.which("gdbus") is None:
        pytest.skip("gdbus not installed")
    proc = subprocess.run(
        f"gdbus call --address {toy.address} --dest {DEST} --object-path {PATH} "
        f"--method {IFACE}.ReadFd 3 3<{f}",
        shell=True,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "('hello-fd\\n',)"


def test_gdbus_error(toy):
    proc = gdbus_call(toy, f"{IFACE}.Fail", check=False)
    assert proc.returncode != 0 and "org.example.Error.Nope: nope" in proc.stderr
    proc = gdbus_call(toy, f"{IFACE}.Crash", check=False)
    assert "org.freedesktop.DBus.Error.Failed" in proc.stderr


def test_gdbus_properties(toy):
    out = gdbus_call(toy, "org.freedesktop.DBus.Properties.GetAll", IFACE).stdout
    assert "'api_version': <10>" in out
    proc = gdbus_call(
        toy, "org.freedesktop.DBus.Properties.Set", IFACE, "api_version", "<3>", check=False
    )
    assert "PropertyReadOnly" in proc.stderr


def test_gdbus_peer(toy):
    out = gdbus_call(toy, "org.freedesktop.DBus.Peer.GetMachineId").stdout
    assert len(out.strip().strip("(),'")) == 32
    gdbus_call(toy, "org.freedesktop.DBus.Peer.Ping", path="/")


def test_gdbus_introspect(toy):
    proc = run(
        "gdbus", "introspect", "--address", toy.address, "--dest", DEST, "--object-path", PATH
    )
    assert "EchoKeys(in  a(suuu) x," in proc.stdout
    assert "readonly i api_version = 10;" in proc.stdout
    assert "readwrite s Label" in proc.stdout
    root = run(
        "gdbus",
        "introspect",
        "--address",
        toy.address,
        "--dest",
        DEST,
        "--object-path",
        "/",
        "--recurse",
    ).stdout
    assert "node /org/linuxcontainers/cgmanager {" in root
    assert "node /org/example/other {" in root


def test_introspection_xml_is_well_formed(toy):
    from cgmanager.dbus.client import connect

    with connect(toy.address) as conn:
        for path, children, ifaces in [
            ("/", ["org"], set()),
            ("/org", ["example", "linuxcontainers"], set()),
            ("/org/linuxcontainers", ["cgmanager"], set()),
            (PATH, [], {IFACE, "org.freedesktop.DBus.Properties"}),
        ]:
            (xml,) = conn.call(path, "org.freedesktop.DBus.Introspectable", "Introspect")
            assert xml.startswith("<!DOCTYPE node PUBLIC")
            node = ET.fromstring(xml.split("\n", 2)[2])
            assert [n.get("name") for n in node.findall("node")] == children
            names = {i.get("name") for i in node.findall("interface")}
            assert ifaces <= names and "org.freedesktop.DBus.Introspectable" in names
        (xml,) = conn.call(PATH, "org.freedesktop.DBus.Introspectable", "Introspect")
        node = ET.fromstring(xml.split("\n", 2)[2])
        iface = next(i for i in node.findall("interface") if i.get("name") == IFACE)
        peer = next(m for m in iface.findall("method") if m.get("name") == "Peer")
        assert [(a.get("type"), a.get("direction")) for a in peer.findall("arg")] == [
            ("i", "out"),
            ("u", "out"),
            ("u", "out"),
            ("b", "out"),
            ("s", "out"),
        ]


# ------------------------------------------------------------------------------------------
# busctl (sd-bus: Hello first, and the Hello reply must be the first message it receives)


def busctl(toy, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run("busctl", f"--address={toy.address}", *args, check=check)


def test_busctl_call(toy):
    assert busctl(toy, "call", DEST, PATH, IFACE, "EchoI", "i", "1").stdout.strip() == "i 1"
    assert (
        busctl(toy, "call", DEST, PATH, IFACE, "EchoAS", "as", "2", "a", "b").stdout.strip()
        == 'as 2 "a" "b"'
    )


def test_busctl_properties(toy):
    assert busctl(toy, "get-property", DEST, PATH, IFACE, "api_version").stdout.strip() == "i 10"
    proc = busctl(toy, "set-property", DEST, PATH, IFACE, "api_version", "i", "3", check=False)
    assert proc.returncode != 0 and "read-only" in proc.stderr.lower()


def test_busctl_writable_property(toy):
    busctl(toy, "set-property", DEST, PATH, IFACE, "Label", "s", "changed")
    assert busctl(toy, "get-property", DEST, PATH, IFACE, "Label").stdout.strip() == 's "changed"'
    busctl(toy, "set-property", DEST, PATH, IFACE, "Label", "s", "initial")


def test_busctl_introspect(toy):
    out = busctl(toy, "introspect", DEST, PATH).stdout
    assert ".EchoKeys" in out and "a(suuu)" in out


def test_busctl_errors(toy):
    proc = busctl(toy, "call", DEST, PATH, IFACE, "Nope", check=False)
    assert proc.returncode != 0
    proc = busctl(toy, "call", DEST, PATH, IFACE, "EchoI", "s", "x", check=False)
    assert "Invalid arguments to EchoI method" in proc.stderr
