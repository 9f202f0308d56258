"""Policy tests against a live daemon: the daemon fixtures of tests/daemon, plus a daemon
started with a configuration directory (and rules file) of the test's own."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest

# the live daemon and the per-test cgroups (fixtures shared with tests/daemon)
from daemon.conftest import daemon, place, start_daemon  # noqa: F401

from cgmanager.contract import INTERFACE1, OBJECT_PATH


class PolicyDaemon:
    """A daemon reading ``confdir`` (cgconfig) and ``rules`` (cgrules.conf)."""

    def __init__(self, start, d: str, extra: tuple[str, ...] = ()) -> None:
        self.dir = d
        self.confdir = os.path.join(d, "cgconfig.d")
        self.rules = os.path.join(d, "cgrules.conf")
        os.makedirs(self.confdir, exist_ok=True)
        self._start = start
        self._extra = extra
        self.daemon = None

    def write_rules(self, text: str) -> None:
        with open(self.rules, "w") as f:
            f.write(text)

    def write(self, text: str, name: str = "test.conf") -> str:
        path = os.path.join(self.confdir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def start(self):
        # always both: a missing rules file means no rules, never the host's default file
        argv = ["--config-dir", self.confdir, "--rules", self.rules]
        self.daemon = self._start(*argv, *self._extra)
        return self.daemon

    def call(self, member: str, signature: str = "", body: tuple = ()):
        with self.daemon.connect() as c:
            return c.call(OBJECT_PATH, INTERFACE1, member, signature, body)


@pytest.fixture
def policy_dir() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="cgm-policy-")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def policy_daemon(start_daemon, policy_dir) -> Iterator[PolicyDaemon]:  # noqa: F811
    pd = PolicyDaemon(start_daemon, policy_dir)
    yield pd
    if pd.daemon is not None:  # its rules must not outlive the test
        pd.daemon.stop()


def rel(cgroots, path: str, name: str) -> str:
    """An absolute cgroup directory as a path relative to the hierarchy root (where the test
    daemon lives)."""
    return os.path.relpath(path, cgroots.mount(name))
