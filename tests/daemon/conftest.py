"""A live cgmanager on a private socket, and clients placed inside this run's cgroups.

The daemon serves exactly the hierarchies the harness made cgtest roots in (never memory),
and every client process is moved into a fresh per-test cgroup in each of them *before* it
execs: the daemon resolves relative paths below the client's cgroup, so no request of a test
can reach outside the run's roots.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from cgmanager.dbus.client import Connection, connect
from cgmanager.hierarchy import discover_host

OBJ = "/org/linuxcontainers/cgmanager"
IFACE = "org.linuxcontainers.cgmanager0_0"
VENV_BIN = os.path.dirname(sys.executable)


@dataclass
class Daemon:
    socket: str
    log_path: str
    popen: subprocess.Popen
    served: list[str]
    pidfd: int = -1

    @property
    def address(self) -> str:
        return f"unix:path={self.socket}"

    def log(self) -> str:
        with open(self.log_path) as f:
            return f.read()

    def connect(self) -> Connection:
        return connect(self.address, timeout=10)

    def stop(self) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            return self.popen.wait(timeout=10)


def served_and_skipped(cgroots) -> tuple[list[str], list[str]]:
    """Serve what the harness has roots in; skip every other hierarchy of this host."""
    available = cgroots.available()
    served, skipped = [], []
    for h in discover_host().hierarchies:
        (served if set(h.names) & available else skipped).append(h.key)
    return served, skipped


@pytest.fixture(scope="session")
def start_daemon(cgroots) -> Iterator[Callable[..., Daemon]]:
    started: list[Daemon] = []

    dirs: list[str] = []

    def start(*extra: str) -> Daemon:
        # the socket's directory must be searchable by the unprivileged test user
        d = tempfile.mkdtemp(prefix="cgmanager-test-")
        os.chmod(d, 0o755)
        dirs.append(d)
        sock, fs, log = f"{d}/sock", f"{d}/fs", f"{d}/daemon.log"
        served, skipped = served_and_skipped(cgroots)
        argv = [f"{VENV_BIN}/cgmanager", "--socket", sock, "--fs-dir", fs, "--log-level", "info"]
        # never the host's /etc/cgmanager policy (a rules file there would move host
        # processes); tests that want policy pass their own --config-dir/--rules after these
        argv += ["--config-dir", "", "--rules", ""]
        if skipped:
            argv += ["--skip", ",".join(skipped)]
        with open(log, "w") as logf:
            popen = subprocess.Popen([*argv, *extra], stdout=logf, stderr=subprocess.STDOUT)
        daemon = Daemon(sock, log, popen, served, os.pidfd_open(popen.pid))
        started.append(daemon)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if popen.poll() is not None:
                raise RuntimeError(f"cgmanager exited {popen.returncode}:\n{daemon.log()}")
            try:
                daemon.connect().close()
                return daemon
            except Exception:
                time.sleep(0.02)
        raise RuntimeError(f"cgmanager did not come up:\n{daemon.log()}")

    yield start
    for daemon in started:
        daemon.stop()
        os.close(daemon.pidfd)
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def daemon(start_daemon) -> Daemon:
    return start_daemon()


@pytest.fixture
def hugetlb(hugetlb_enabled, cgroots) -> Iterator[None]:
    """+hugetlb in this run's v2 root, so the tests' places have it available (asked for
    before the test's cgdirs, it is torn down after them)."""
    root = cgroots.path("unified")
    with open(f"{root}/cgroup.subtree_control", "w") as f:
        f.write("+hugetlb")
    yield
    with open(f"{root}/cgroup.subtree_control", "w") as f:
        f.write("-hugetlb")


@dataclass
class Place:
    """A fresh cgroup per served hierarchy for one test; clients run inside them."""

    daemon: Daemon
    dirs: dict[str, str]  # hierarchy key -> absolute host path
    mounts: dict[str, str]
    procs: Any
    extra_env: dict[str, str] = field(default_factory=dict)

    def path(self, key: str) -> str:
        return self.dirs[key]

    def hp(self, key: str) -> str:
        """This place's cgroup as a hierarchy path (what GetPidCgroupAbs reports)."""
        rel = os.path.relpath(self.dirs[key], self.mounts[key])
        return "/" + rel

    def preexec(self, user=None) -> Callable[[], None]:
        files = [os.path.join(p, "cgroup.procs") for p in self.dirs.values()]

        def join_then_drop() -> None:
            for f in files:
                try:
                    _join(f)
                except OSError as e:
                    if e.errno != errno.EBUSY:
                        raise
                    # the place passes v2 controllers to its children: processes belong in
                    # the daemon's leaf there (cgroup v2's no-internal-process rule)
                    _join(os.path.join(os.path.dirname(f), ".cgm_leaf", "cgroup.procs"))
            if user is not None:
                os.setgroups(list(user.groups))
                os.setresgid(user.gid, user.gid, user.gid)
                os.setresuid(user.uid, user.uid, user.uid)

        return join_then_drop

    def _env(self, user) -> dict[str, str]:
        env = user.env() if user is not None else dict(os.environ)
        env.update(self.extra_env)
        return env

    def run(self, argv: Sequence[str], user=None, **kw: Any) -> subprocess.CompletedProcess:
        kw.setdefault("timeout", 60)
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        return subprocess.run(list(argv), preexec_fn=self.preexec(user), env=self._env(user), **kw)

    def spawn(self, argv: Sequence[str], user=None, **kw: Any):
        """A long-lived process inside this place, tracked by the harness (pidfd, teardown)."""
        return self.procs.spawn(
            list(argv), preexec_fn=self.preexec(user), env=self._env(user), **kw
        )

    # real clients -------------------------------------------------------------------------

    def dbus_send(self, method: str, *args: str, user=None) -> subprocess.CompletedProcess:
        return self.run(
            [
                "dbus-send",
                f"--address={self.daemon.address}",
                "--print-reply",
                "--type=method_call",
                OBJ,
                f"{IFACE}.{method}",
                *args,
            ],
            user=user,
        )

    def gdbus(self, method: str, *args: str, user=None) -> subprocess.CompletedProcess:
        return self.run(
            [
                "gdbus",
                "call",
                "--address",
                self.daemon.address,
                "--dest",
                "org.linuxcontainers.cgmanager",
                "--object-path",
                OBJ,
                "--method",
                f"{IFACE}.{method}",
                "--",
                *args,
            ],
            user=user,
        )

    def busctl(
        self, method: str, signature: str, *args: str, user=None
    ) -> subprocess.CompletedProcess:
        return self.run(
            [
                "busctl",
                f"--address={self.daemon.address}",
                "call",
                "org.linuxcontainers.cgmanager",
                OBJ,
                IFACE,
                method,
                *([signature, *args] if signature else []),
            ],
            user=user,
        )

    def py(
        self, method: str, signature: str = "", *args: Any, user=None, iface: str = IFACE
    ) -> subprocess.CompletedProcess:
        """Our Python client, in a process placed like the others; prints repr(reply) or the
        D-Bus error name and message, exit status 0/1."""
        code = (
            "import sys\n"
            "from cgmanager.dbus.client import connect\n"
            "from cgmanager.dbus.errors import DBusError\n"
            f"c = connect({self.daemon.address!r})\n"
            "try:\n"
            f"    print(repr(c.call({OBJ!r}, {iface!r}, {method!r}, {signature!r}, {tuple(args)!r})))\n"
            "except DBusError as e:\n"
            "    print(e.name); print(e.message); sys.exit(1)\n"
        )
        return self.run([sys.executable, "-c", code], user=user)


def _join(procs_file: str) -> None:
    fd = os.open(procs_file, os.O_WRONLY)
    try:
        os.write(fd, b"0")
    finally:
        os.close(fd)


@pytest.fixture
def place(daemon, cgdir, cgroots, procs) -> Place:
    dirs, mounts = {}, {}
    layout = discover_host()
    for key in daemon.served:
        h = layout.lookup(key)
        name = next(n for n in h.names if n in cgroots.available())
        dirs[key] = cgdir(name)
        mounts[key] = cgroots.mount(name)
    return Place(daemon, dirs, mounts, procs)
