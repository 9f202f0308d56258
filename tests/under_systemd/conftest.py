"""Tier t4 fixtures: one throw-away systemd container per run, cgmanager as a delegated service.

`container` (session): a systemd 252 container booted with systemd-nspawn inside this run's
cgtest roots (see support/nspawn.py); powered off and its cgroups removed at the end.
`service` (module): the shipped unit + a test drop-in, started with the delegation point
watched from before the daemon runs (see helpers.py).
`deb` (session): the Debian package of these sources (built once, cached: package.py).
`booted(cgroots, extra_args)`: a fresh container of one's own, for a `with` block.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator, Sequence

import pytest
from support import nspawn, run, tiers
from support.procs import ProcTracker

from . import package
from .helpers import Service


@contextlib.contextmanager
def booted(cgroots, extra_args: Sequence[str] = (), note: str = "") -> Iterator[nspawn.Container]:
    """A fresh container for the duration of the block (`extra_args` go to systemd-nspawn,
    e.g. `--bind=SRC:DEST`); powered off and its cgroups removed afterwards."""
    r = run.current()
    if r is None:  # pragma: no cover - pytest_configure always starts it
        pytest.fail("cgtest run registry missing")
    parents = {"unified": cgroots.path("unified")}
    if "systemd" in cgroots.available():
        parents["systemd"] = cgroots.path("systemd")
    tracker = ProcTracker(on_spawn=r.track_process, on_stuck=r.thaw_if_ours)
    log_dir = tempfile.mkdtemp(prefix="cgtest-nspawn-")
    c = None
    try:
        c = nspawn.boot(parents, tracker=tracker, log_dir=log_dir, extra_args=extra_args)
        r.notes.append(
            f"t4: systemd {nspawn.systemd_version()} container {c.name}{note} booted in"
            f" {c.boot_seconds:.2f}s"
        )
        yield c
    finally:
        problems = c.shutdown() if c is not None else []
        problems += tracker.cleanup()
        shutil.rmtree(log_dir, ignore_errors=True)
        if problems:
            pytest.fail("container teardown: " + "; ".join(problems), pytrace=False)


@pytest.fixture(scope="session")
def container(cgroots) -> Iterator[nspawn.Container]:
    with booted(cgroots) as c:
        yield c


@pytest.fixture(scope="module")
def service(container: nspawn.Container) -> Iterator[Service]:
    """cgmanager.service (shipped unit, Delegate=yes) running in the container."""
    svc = Service(container)
    svc.install()
    svc.start_watched()
    try:
        yield svc
    finally:
        if container.alive():
            container.systemctl("stop", svc.unit, check=False)
        if svc.watch is not None:
            svc.watch.close()


def need(why: str | None) -> None:
    """Skip for a missing capability -- fail instead where the tier must run (CI)."""
    if why:
        if tiers.must_run("t4"):
            pytest.fail(why, pytrace=False)
        pytest.skip(why)


@pytest.fixture(scope="session")
def deb() -> str:
    """The .deb of these sources (scripts/build-deb, cached by source hash)."""
    need(package.build_deps_missing())
    return package.built_deb()
