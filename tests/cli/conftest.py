"""cgm against a live daemon: the daemon fixtures of tests/daemon, and ways to run cgm.

Every cgm process runs through ``place.run``: inside the test's own cgroups (the daemon
resolves relative paths below the client's cgroup), with ``CGM_SOCKET`` naming the daemon's
private socket.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator

import pytest

# the live daemon and the per-test cgroups (fixtures shared with tests/daemon)
from daemon.conftest import daemon, place, start_daemon  # noqa: F401

from cgmanager.cli import launcher

VENV_BIN = os.path.dirname(sys.executable)
#: the console script pip generated for the declared entry point
CGM = os.path.join(VENV_BIN, "cgm")


@pytest.fixture(scope="session")
def fast_cgm() -> Iterator[str]:
    """The fast launcher (python -I -S), in a directory every user can read."""
    d = tempfile.mkdtemp(prefix="cgm-launcher-")
    os.chmod(d, 0o755)
    path = os.path.join(d, "cgm")
    launcher.write(path, sys.executable)
    yield path
    shutil.rmtree(d, ignore_errors=True)


class Cgm:
    """Runs cgm inside the test's place; ``cgm(*args, user=None)`` -> CompletedProcess."""

    def __init__(self, where, binary: str = CGM) -> None:
        self.place = where
        self.binary = binary
        where.extra_env["CGM_SOCKET"] = where.daemon.socket
        where.extra_env.pop("CGM_DEBUG", None)

    def __call__(
        self, *args: str, user=None, env: dict[str, str] | None = None, binary: str | None = None
    ) -> subprocess.CompletedProcess:
        saved = dict(self.place.extra_env)
        if env:
            self.place.extra_env.update(env)
        try:
            cp = self.place.run([binary or self.binary, *args], user=user)
        finally:
            self.place.extra_env.clear()
            self.place.extra_env.update(saved)
        assert "Traceback" not in cp.stderr, cp.stderr
        return cp

    def ok(self, *args: str, user=None) -> str:
        cp = self(*args, user=user)
        assert cp.returncode == 0, (
            f"cgm {' '.join(args)}: rc={cp.returncode}\n{cp.stdout}{cp.stderr}"
        )
        assert cp.stderr == "", cp.stderr
        return cp.stdout


@pytest.fixture
def cgm(place) -> Cgm:  # noqa: F811
    return Cgm(place)
