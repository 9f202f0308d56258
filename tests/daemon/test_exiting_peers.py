"""A client found exiting while the daemon reads its facts: the kernel refuses even root
access to parts of /proc/<pid> while it tears a task down (EACCES on ns/*), which must read as
"exiting" — judged by facts read while it lived, or refused — never an internal error."""

from __future__ import annotations

import os

import pytest

from cgmanager.daemon.peers import ConnectionPeer
from cgmanager.errors import NotFound
from cgmanager.hierarchy import discover_host
from cgmanager.permission import Credentials
from cgmanager.requestor import Namespaces, identify

pytestmark = pytest.mark.t3


class _Refusing:
    """os.stat as the kernel answers it for a task being torn down: EACCES on ns/*."""

    def __init__(self, real):
        self.real, self.on = real, False

    def __call__(self, path, *a, **kw):
        if self.on and str(path).startswith("ns/"):
            raise PermissionError(13, "Permission denied", path)
        return self.real(path, *a, **kw)


@pytest.fixture
def refusing(monkeypatch):
    from cgmanager import procfs

    stat = _Refusing(os.stat)
    monkeypatch.setattr(procfs.os, "stat", stat)
    return stat


def test_remembered_facts_judge_a_peer_whose_proc_refuses(refusing):
    layout, ns = discover_host(), Namespaces.of_self()
    pid = os.getpid()
    pidfd = os.pidfd_open(pid)
    try:
        peer = ConnectionPeer(Credentials(pid, 0, 0), layout, ns, pidfd)
        first = peer.party()
        refusing.on = True
        assert peer.party() is first  # read while it lived, < 1 s ago
        peer._at -= 10  # those facts are now old: refused, as "exiting"
        with pytest.raises(NotFound, match="exiting"):
            peer.party()
        peer.close()
        with pytest.raises(NotFound, match="exiting"):
            ConnectionPeer(Credentials(pid, 0, 0), layout, ns, pidfd)
        with pytest.raises(NotFound, match="exiting"):
            identify(Credentials(pid, 0, 0), layout, ns, pidfd)
    finally:
        os.close(pidfd)
