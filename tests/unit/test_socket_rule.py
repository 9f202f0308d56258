"""One socket everyone finds (contract.daemon_socket / client_socket): 0.42's
/sys/fs/cgroup/cgmanager/sock where /sys/fs/cgroup is not cgroup2, /run/cgmanager/sock where
it is; clients try 0.42's, then /run's, else the daemon's rule.

t0 over directories of the test's own; t1 on this host's real mounts; t3 in private mount
namespaces that show the two host kinds (a pure v2 /sys/fs/cgroup: the host's cgroup2
bind-mounted over it; a legacy one: a tmpfs), with a tmpfs over /run for the sockets."""

from __future__ import annotations

import os
import socket
import subprocess

import pytest
from support import ns

from cgmanager import contract
from cgmanager.contract import DEFAULT_SOCKET, RUN_SOCKET, client_socket, daemon_socket

MS_BIND = 4096


def fstype(path: str) -> str:
    return subprocess.run(
        ["stat", "-f", "-c", "%T", path], capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.mark.t0
def test_rule_over_plain_directories(tmp_path):
    assert daemon_socket(str(tmp_path)) == DEFAULT_SOCKET
    (tmp_path / "cgroup.controllers").write_text("")
    assert daemon_socket(str(tmp_path)) == RUN_SOCKET


@pytest.mark.t0
def test_contract_stays_import_free():
    """cgm imports it at every start: no module-level import (the one lazy `posix` is built
    in and already loaded)."""
    with open(contract.__file__) as f:
        top = [ln for ln in f if ln.startswith(("import ", "from "))]
    assert top == []


@pytest.mark.t1
def test_rule_on_this_hosts_mounts():
    for path in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
        if not os.path.isdir(path):
            continue
        want = RUN_SOCKET if fstype(path) == "cgroup2fs" else DEFAULT_SOCKET
        assert daemon_socket(path) == want, path


def _listen(path: str) -> socket.socket:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    return s


def _pure_v2_view() -> list[str]:
    v2 = next(
        line.split()[4]
        for line in open("/proc/self/mountinfo")
        if line.split(" - ")[1].startswith("cgroup2 ")
    )
    ns.mount(v2, "/sys/fs/cgroup", None, MS_BIND)
    ns.mount("cgtest-run", "/run", "tmpfs")
    seen = [daemon_socket(), client_socket()]
    _listen(RUN_SOCKET)
    seen.append(client_socket())
    return seen


def _legacy_view() -> list[str]:
    ns.mount("cgtest-cg", "/sys/fs/cgroup", "tmpfs")
    ns.mount("cgtest-run", "/run", "tmpfs")
    seen = [daemon_socket(), client_socket()]
    _listen(RUN_SOCKET)  # a daemon told --socket /run/cgmanager/sock
    seen.append(client_socket())
    _listen(DEFAULT_SOCKET)  # and one on 0.42's: that one first
    seen.append(client_socket())
    return seen


@pytest.mark.t3
def test_pure_v2_host_uses_run():
    assert ns.run_in_ns(_pure_v2_view, mountns=True) == [RUN_SOCKET] * 3


@pytest.mark.t3
def test_legacy_host_uses_042s_socket_and_finds_run_too():
    assert ns.run_in_ns(_legacy_view, mountns=True) == [
        DEFAULT_SOCKET,
        DEFAULT_SOCKET,  # nothing there yet: where this host's daemon would be
        RUN_SOCKET,
        DEFAULT_SOCKET,
    ]
