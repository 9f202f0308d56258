"""cgproxy as a service: the package inside a container given the host's socket directory
(tier t4).

The "host" is this machine: a cgmanager from this checkout serving the v2 tree only (every
v1 hierarchy skipped: the container's processes sit at the v1 roots), its socket directory
bind-mounted into a fresh systemd container on /run/cgmanager (`systemd-nspawn --bind=`, the
container's /sys/fs/cgroup being cgroup2), as an administrator would.  Installing the package
there must start cgproxy.service (and not cgmanager.service, which would take the host's
socket path); the container's `cgm`, with no options, then reaches the host's daemon through
cgproxy, which forwards with the callers' credentials: the host daemon audits each forwarded
request as "proxy pid=… for pid=…".  Then the cgproxy unit's restart and stop, the sysvinit
and OpenRC scripts for cgproxy, and `apt purge`, which must leave the host's directory alone.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest
from proxy.conftest import HostDaemon, _tracker
from support import nspawn

from cgmanager.hierarchy import discover_host

from . import package
from .conftest import booted
from .helpers import REPO
from .test_package import SYSV_ENV, install_openrc, openrc, remove_openrc, sysv, wait_started

pytestmark = pytest.mark.t4

PROXY = "cgproxy.service"
SOCK_DIR = "/run/cgmanager"


@pytest.fixture(scope="module")
def host_daemon(cgroots) -> Iterator[HostDaemon]:
    layout = discover_host()
    skipped = [h.key for h in layout.hierarchies if h.version == 1]
    tracker = _tracker()
    base = tempfile.mkdtemp(prefix="cgproxy-pkg-")
    os.chmod(base, 0o755)
    d = os.path.join(base, "cgmanager")
    os.mkdir(d, 0o755)
    daemon = HostDaemon(d, ["unified"], skipped, tracker)
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.stop()
        tracker.cleanup()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def proxied(cgroots, deb, host_daemon) -> Iterator[package.Installed]:
    bind = f"--bind={host_daemon.dir}:{SOCK_DIR}"
    with booted(cgroots, [bind], note=" (cgproxy)") as c:
        inst = package.Installed(c, deb)
        inst.install()
        yield inst


def mounted(c: nspawn.Container, path: str) -> bool:
    return c.run(["mountpoint", "-q", path], check=False).returncode == 0


def test_cgproxy_starts_and_the_daemon_unit_does_not(proxied, host_daemon):
    c = proxied.c
    wait_started(c, PROXY)
    st = c.show(PROXY, "ActiveState", "SubState", "Type", "MainPID")
    assert (st["ActiveState"], st["SubState"], st["Type"]) == ("active", "running", "notify")
    pid = int(st["MainPID"])
    assert c.run(["cat", f"/proc/{pid}/comm"]).stdout.strip() == "cgproxy"
    # the host's directory moved aside, the proxy's socket in its place
    assert mounted(c, f"{SOCK_DIR}.lower") and not mounted(c, SOCK_DIR)
    assert c.run(["test", "-S", f"{SOCK_DIR}/sock"], check=False).returncode == 0
    assert os.path.exists(host_daemon.socket)  # the host's own socket is untouched
    # cgmanager.service saw the host's directory and did not start (skipped, not failed)
    mgr = c.show("cgmanager.service", "ActiveState", "Result")
    assert mgr == {"ActiveState": "inactive", "Result": "exec-condition"}, mgr
    assert c.run(["pidof", "cgmanager"], check=False).stdout.strip() == ""


def test_cgm_in_the_container_reaches_the_host_daemon(proxied, host_daemon):
    c = proxied.c
    assert c.run(["cgm", "ping"]).returncode == 0
    # a delegated transient service of the container: its cgroup is the client's to divide
    out = c.run(
        [
            "systemd-run",
            "--quiet",
            "--wait",
            "--pipe",
            "--unit=cgtest-px",
            "--property=Delegate=yes",
            "/bin/sh",
            "-ec",
            # ($$$$: systemd expands $ in a command line)
            "cgm create all px\n"
            "cgm movepid all px $$$$\n"
            "cgm getpidcgroup unified $$$$\n"
            "grep ^0:: /proc/self/cgroup\n",
        ],
        timeout=60,
    ).stdout.splitlines()
    # (GetPidCgroup is relative to the caller's own cgroup, which is now px: "/")
    assert out == ["/", "0::/system.slice/cgtest-px.service/px"], out
    # the host daemon did it, on the forwarded credentials of the container's client
    creates = [ln for ln in host_daemon.log().splitlines() if "CreateScm(" in ln]
    assert creates and "audit: proxy pid=" in creates[-1] and "'px'" in creates[-1], creates


def test_cgproxy_restart_and_stop(proxied, host_daemon):
    c = proxied.c
    before = int(c.show(PROXY, "MainPID")["MainPID"])
    c.systemctl("restart", PROXY)
    st = c.show(PROXY, "ActiveState", "MainPID")
    assert st["ActiveState"] == "active" and int(st["MainPID"]) not in (0, before)
    assert c.run(["cgm", "ping"]).returncode == 0  # it found the host's, already moved
    c.systemctl("stop", PROXY)
    st = c.show(PROXY, "ActiveState", "Result", "ExecMainStatus")
    assert (st["ActiveState"], st["Result"], st["ExecMainStatus"]) == ("inactive", "success", "0")
    assert c.run(["test", "-e", f"{SOCK_DIR}/sock"], check=False).returncode != 0
    host_daemon.call("Ping", "i", (0,))  # the host's daemon is unharmed


def test_cgproxy_sysvinit_script(proxied):
    c = proxied.c
    s = "/etc/init.d/cgproxy"
    assert sysv(c, s, "status").returncode == 3
    cp = sysv(c, s, "start", "cgtest-sysvpx1")
    assert cp.returncode == 0 and "Starting cgroup manager proxy: cgproxy." in cp.stdout, cp
    pid = int(c.read_file("/run/cgproxy.pid"))
    assert c.run(["cat", f"/proc/{pid}/comm"]).stdout.strip() == "cgproxy"
    assert c.run(["cgm", "ping"]).returncode == 0
    assert sysv(c, s, "status").returncode == 0
    assert sysv(c, s, "restart", "cgtest-sysvpx2").returncode == 0
    assert int(c.read_file("/run/cgproxy.pid")) != pid
    assert c.run(["cgm", "ping"]).returncode == 0
    assert sysv(c, s, "stop").returncode == 0
    assert sysv(c, s, "status").returncode == 3
    # cgmanager's script knows it is not needed here
    cp = sysv(c, "/etc/init.d/cgmanager", "start")
    assert cp.returncode == 0 and "cgproxy serves this container" in cp.stdout + cp.stderr
    assert c.run(["pidof", "cgmanager"], check=False).stdout.strip() == ""
    c.run(["mv", "/usr/sbin/cgproxy", "/usr/sbin/cgproxy.away"], env=SYSV_ENV)
    try:
        assert sysv(c, s, "start").returncode == 5
        assert sysv(c, s, "status").returncode == 4
        assert sysv(c, s, "stop").returncode == 0
    finally:
        c.run(["mv", "/usr/sbin/cgproxy.away", "/usr/sbin/cgproxy"])


def test_cgproxy_openrc_script(proxied):
    c = proxied.c
    install_openrc(c)
    with open(os.path.join(REPO, "init", "openrc", "cgproxy")) as f:
        c.write_file("/etc/init.d/cgpx-openrc", f.read(), mode=0o755)
    s = "/etc/init.d/cgpx-openrc"
    try:
        cp = openrc(c, s, "start", "cgtest-openrcpx")
        assert cp.returncode == 0, cp.stdout + cp.stderr
        pid = int(c.read_file("/run/cgpx-openrc.pid"))
        assert c.run(["cat", f"/proc/{pid}/comm"]).stdout.strip() == "cgproxy"
        assert c.run(["cgm", "ping"]).returncode == 0
        assert openrc(c, s, "status").returncode == 0
        cp = openrc(c, s, "stop")
        assert cp.returncode == 0, cp.stdout + cp.stderr
        assert c.run(["test", "-e", f"/proc/{pid}"], check=False).returncode != 0
        assert openrc(c, s, "status").returncode == 3
    finally:
        openrc(c, s, "stop")
        c.run(["rm", "-f", s], check=False)
        remove_openrc(c)


def test_purge_leaves_the_hosts_directory_alone(proxied, host_daemon):
    c = proxied.c
    c.systemctl("start", PROXY)
    files = [f for f in proxied.files if not os.path.isdir(c.path(f))]
    proxied.purge()
    assert [f for f in files if os.path.lexists(c.path(f))] == []
    assert c.run(["pidof", "cgproxy"], check=False).stdout.strip() == ""
    assert not os.path.lexists(c.path(f"{SOCK_DIR}/sock"))
    assert not os.path.lexists(c.path("/run/cgproxy.pid"))
    # the host's directory (where cgproxy moved it) and socket are as they were
    assert mounted(c, f"{SOCK_DIR}.lower")
    assert c.run(["test", "-S", f"{SOCK_DIR}.lower/sock"], check=False).returncode == 0
    host_daemon.call("Ping", "i", (0,))
    assert not os.path.exists(c.host_cgroup(f"/system.slice/{PROXY}"))
