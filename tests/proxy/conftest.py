"""Fixtures for cgproxy tests: a host cgmanager whose socket directory can be bind-mounted into
containers (and restarted on the same path), and containers running cgproxy.

The daemon serves exactly the hierarchies the harness made cgtest roots in (never memory).
Each container is placed, before it unshares its cgroup namespace, in a fresh per-test cgroup
of every served hierarchy, which host root first hands to uid/gid 100000 (the container's
root) with the daemon's Chown — as LXC did.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from daemon.conftest import served_and_skipped
from support import run as _run
from support.procs import Proc, ProcTracker

from cgmanager.dbus.client import Connection, connect
from cgmanager.hierarchy import discover_host
from proxy import container as ct

CONTAINER_ROOT = 100000


@dataclass
class HostDaemon:
    """A cgmanager on ``<dir>/sock``, restartable on the same path."""

    dir: str
    served: list[str]
    skipped: list[str]
    tracker: ProcTracker
    proc: Proc | None = None
    starts: int = 0
    logs: list[str] = field(default_factory=list)

    @property
    def socket(self) -> str:
        return f"{self.dir}/sock"

    @property
    def address(self) -> str:
        return f"unix:path={self.socket}"

    def start(self) -> None:
        self.starts += 1
        log = f"{self.dir}.daemon{self.starts}.log"
        self.logs.append(log)
        argv = [
            f"{ct.VENV_BIN}/cgmanager",
            "--socket",
            self.socket,
            "--fs-dir",
            f"{self.dir}.fs",
            "--log-level",
            "info",
        ]
        if self.skipped:
            argv += ["--skip", ",".join(self.skipped)]
        with open(log, "w") as f:
            self.proc = self.tracker.spawn(argv, stdout=f, stderr=f)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if not self.proc.alive():
                raise RuntimeError(f"cgmanager exited:\n{self.log()}")
            try:
                connect(self.address, timeout=5).close()
                return
            except Exception:  # noqa: BLE001
                time.sleep(0.02)
        raise RuntimeError(f"cgmanager did not come up:\n{self.log()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.alive():
            self.proc.signal(signal.SIGTERM)
            if self.proc.wait(10) is None:
                self.proc.kill()
        self.proc = None

    def log(self) -> str:
        out = []
        for path in self.logs:
            with open(path, errors="replace") as f:
                out.append(f.read())
        return "\n".join(out)

    def connect(self) -> Connection:
        return connect(self.address, timeout=10)

    def call(self, method: str, signature: str = "", args: tuple = ()) -> tuple:
        with self.connect() as c:
            return c.call(ct.OBJ, ct.IFACE, method, signature, args)


def _new_daemon(cgroots, tracker: ProcTracker) -> HostDaemon:
    # the socket's directory must be searchable by the containers' uids
    base = tempfile.mkdtemp(prefix="cgproxy-test-")
    os.chmod(base, 0o755)
    d = f"{base}/cgmanager"
    os.mkdir(d, 0o755)
    served, skipped = served_and_skipped(cgroots)
    daemon = HostDaemon(d, served, skipped, tracker)
    try:
        daemon.start()
    except BaseException:
        daemon.stop()
        shutil.rmtree(base, ignore_errors=True)
        raise
    return daemon


def _tracker() -> ProcTracker:
    r = _run.current()
    assert r is not None
    return ProcTracker(on_spawn=r.track_process, on_stuck=r.thaw_if_ours)


@pytest.fixture(scope="session")
def host_daemon(cgroots) -> Iterator[HostDaemon]:
    tracker = _tracker()
    daemon = _new_daemon(cgroots, tracker)
    yield daemon
    daemon.stop()
    tracker.cleanup()
    shutil.rmtree(os.path.dirname(daemon.dir), ignore_errors=True)


@pytest.fixture
def private_daemon(cgroots) -> Iterator[HostDaemon]:
    """A daemon of this test alone: stop it, restart it on the same socket path."""
    tracker = _tracker()
    daemon = _new_daemon(cgroots, tracker)
    yield daemon
    daemon.stop()
    tracker.cleanup()
    shutil.rmtree(os.path.dirname(daemon.dir), ignore_errors=True)


def controller_arg(key: str) -> str:
    """A hierarchy key as a controller argument (``cpu,cpuacct`` → ``cpu``)."""
    return key.split(",")[0]


@dataclass
class Containers:
    """Factory: ``containers.new(daemon=None, proxy=True, proxy_args=(), setup=…)`` → a
    running container (``setup(host socket dir)`` runs inside first)."""

    host_daemon: HostDaemon
    cgroots: object
    cgdir: Callable[..., str]
    made: list[ct.Container] = field(default_factory=list)

    def new(
        self,
        daemon: HostDaemon | None = None,
        *,
        proxy: bool = True,
        proxy_args: tuple = (),
        setup: Callable[[str], None] = ct.setup_cgroup_dir,
    ) -> ct.Container:
        daemon = daemon or self.host_daemon
        layout = discover_host()
        dirs: dict[str, str] = {}
        for key in daemon.served:
            h = layout.lookup(key)
            name = next(n for n in h.names if n in self.cgroots.available())
            path = self.cgdir(name)
            dirs[key] = path
            rel = os.path.relpath(path, self.cgroots.mount(name))
            # host root hands the container its cgroups, as LXC did
            daemon.call(
                "Chown",
                "ssii",
                (controller_arg(key), rel, CONTAINER_ROOT, CONTAINER_ROOT),
            )
        files = [os.path.join(p, "cgroup.procs") for p in dirs.values()]

        def place(pid: int) -> None:
            for f in files:
                with open(f, "w") as fh:
                    fh.write(str(pid))

        c = ct.spawn_container(setup, (daemon.dir,), before=place, dirs=dirs)
        self.made.append(c)
        if proxy:
            c(ct.start_proxy, *proxy_args)
        return c

    def close(self) -> None:
        for c in reversed(self.made):
            c.close()
        self.made.clear()


@pytest.fixture
def containers(host_daemon, cgroots, cgdir) -> Iterator[Containers]:
    f = Containers(host_daemon, cgroots, cgdir)
    yield f
    f.close()


@pytest.fixture
def box(containers) -> ct.Container:
    """One container with a running cgproxy, on the session's host daemon."""
    return containers.new()
