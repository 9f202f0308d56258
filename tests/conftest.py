"""Test harness wiring: fixtures, tiers, SIGTERM-safe teardown and the leftover check.

Fixtures (see tests/support/* for details):
    cgroots           session  the run's `cgtest-<random>` roots (support.cgroots.CgRoots)
    cgdir             function factory cgdir(name="unified", *, parent=None) -> abs path
    procs             function support.procs.ProcTracker: procs.spawn(argv, user=, cgroup=)
    test_user         session  support.users.TestUser (useradd -m cgtu<random>)
    make_test_user    session  factory () -> another TestUser
    hugetlb_enabled   session  `+hugetlb` held in the v2 root's subtree_control -> v2 mount
Namespaces: `from support.ns import run_in_ns, spawn_in_ns`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator

import pytest

_TESTS = os.path.dirname(os.path.abspath(__file__))
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from support import cgroots as _cgroots
from support import leftovers, relocate, run, tiers
from support.procs import ProcTracker
from support.users import TestUser

_prober = tiers.Prober()
_stats = tiers.TierStats()
_end: dict[str, list[str]] = {"problems": [], "leftovers": []}


# ------------------------------------------------------------------------ lifecycle
def pytest_configure(config: pytest.Config) -> None:
    _relocate_if_unreachable(config)
    run.start()


def _relocate_if_unreachable(config: pytest.Config) -> None:
    """A checkout the test users cannot reach (below a 0700 home): run the whole suite from a
    reachable copy instead (support/relocate.py), then end this process with its status."""
    reason = relocate.reason_to_relocate()
    if reason is None:
        return
    capman = config.pluginmanager.getplugin("capturemanager")
    if capman is not None:  # the copy's pytest writes to our terminal
        capman.suspend_global_capture(in_=True)
    try:
        code = relocate.rerun(config.invocation_params.args, relocate.repo_dir(), reason)
    except relocate.RelocateError as e:
        pytest.exit(f"cgtest: {e}", returncode=pytest.ExitCode.USAGE_ERROR)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def pytest_sessionstart(session: pytest.Session) -> None:
    r = run.current()
    if r is not None:
        r.sweep()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip (or, in CI, fail) a test whose tier's capability is missing."""
    for tier in _tiers_of(item):
        reason = _prober.reason(tier)
        if reason is None:
            continue
        if tiers.must_run(tier):
            pytest.fail(f"tier {tier} must run in CI but cannot: {reason}", pytrace=False)
        pytest.skip(f"tier {tier}: {reason}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """A SIGTERM during a test's teardown waits until that teardown is complete."""
    with run.defer_sigterm():
        return (yield)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    marks = tuple(t for t in tiers.TIERS if t in report.keywords)
    _stats.record(
        report.nodeid, marks, report.when, report.outcome, xfail=hasattr(report, "wasxfail")
    )


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> Iterator[None]:
    """Innermost wrapper: pytest tears down all fixtures inside the `yield`; then we clean
    up the run and look for leftovers, before the terminal summary is written."""
    run.ignore_sigterm()
    try:
        return (yield)
    finally:
        r = run.current()
        if r is not None:
            _end["problems"] = r.cleanup()
            _end["leftovers"] = leftovers.find(r)
            if (_end["problems"] or _end["leftovers"]) and session.exitstatus == 0:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    tr = terminalreporter
    r = run.current()
    if r is not None and r.sweep_report is not None:
        rep = r.sweep_report
        if rep.removed or rep.problems:
            tr.write_sep("-", "cgtest sweeper (dead runs)")
            for line in rep.removed:
                tr.write_line(f"removed {line}")
            for line in rep.problems:
                tr.write_line(f"could not remove: {line}", red=True)
    if r is not None and r.notes:
        tr.write_sep("-", "cgtest notes")
        for line in r.notes:
            tr.write_line(line)
    bad = _end["problems"] + _end["leftovers"]
    if bad:
        tr.write_sep("!", "cgtest: this run left things behind", red=True)
        for line in _end["problems"]:
            tr.write_line(f"cleanup problem: {line}", red=True)
        for line in _end["leftovers"]:
            tr.write_line(f"LEFTOVER: {line}", red=True)
        # make pytest's closing line say so too ("... 1 error")
        tr.stats.setdefault("error", []).append(_leftover_report(bad))
    skipped_tiers = {t: why for t, why in _prober.results().items() if why}
    if skipped_tiers:
        tr.write_sep("-", "tiers that could not run here")
        for t, why in sorted(skipped_tiers.items()):
            ci = " (allowed to skip in CI)" if t in tiers.CI_MAY_SKIP else ""
            tr.write_line(f"{t}: {why}{ci}")
    tr.write_sep("-", "per-tier results")
    for line in _stats.lines():
        tr.write_line(line)


def _leftover_report(lines: list[str]) -> pytest.TestReport:
    return pytest.TestReport(
        nodeid="tests/conftest.py::cgtest-leftover-check",
        location=("tests/conftest.py", 0, "cgtest-leftover-check"),
        keywords={},
        outcome="failed",
        longrepr="cgtest leftovers: " + "; ".join(lines),
        when="teardown",
    )


def _tiers_of(item: pytest.Item) -> list[str]:
    return [t for t in tiers.TIERS if item.get_closest_marker(t) is not None]


# ------------------------------------------------------------------------ fixtures
def _run() -> run.Run:
    r = run.current()
    if r is None:  # pragma: no cover - pytest_configure always starts it
        pytest.fail("cgtest run registry missing")
    return r


@pytest.fixture(scope="session")
def cgroots() -> _cgroots.CgRoots:
    """The run's `cgtest-<random>` roots (created on first use; removed at session end)."""
    try:
        return _run().roots()
    except RuntimeError as e:
        pytest.skip(str(e))


@pytest.fixture
def cgdir(
    cgroots: _cgroots.CgRoots, request: pytest.FixtureRequest
) -> Iterator[_cgroots.CgDirFactory]:
    """Factory: cgdir(name="unified", *, parent=None) -> a fresh cgroup (absolute path) in
    the run root of hierarchy `name`; teardown kills what is inside and removes it."""
    factory = _cgroots.CgDirFactory(cgroots, label=_cgroots.safe_name(request.node.name))
    yield factory
    problems = factory.cleanup()
    if problems:
        pytest.fail("cgdir teardown: " + "; ".join(problems), pytrace=False)


@pytest.fixture
def procs() -> Iterator[ProcTracker]:
    """Children tracked by pidfd: procs.spawn(argv, *, user=None, cgroup=None, **popen_kw);
    teardown SIGKILLs survivors through their pidfds and reaps them."""
    r = _run()
    tracker = ProcTracker(on_spawn=r.track_process, on_stuck=r.thaw_if_ours)
    yield tracker
    problems = tracker.cleanup()
    if problems:
        pytest.fail("procs teardown: " + "; ".join(problems), pytrace=False)


@pytest.fixture(scope="session")
def make_test_user() -> Callable[[], TestUser]:
    """Factory for (further) unprivileged test users; all are removed at session end."""
    if os.geteuid() != 0:
        pytest.skip("creating test users needs root")
    return _run().new_user


@pytest.fixture(scope="session")
def test_user(make_test_user: Callable[[], TestUser]) -> TestUser:
    """A real unprivileged user (useradd -m cgtu<random>; /etc/subuid+subgid filled)."""
    return make_test_user()


@pytest.fixture(scope="session")
def hugetlb_enabled(cgroots: _cgroots.CgRoots) -> str:
    """Hold `+hugetlb` in the v2 root's cgroup.subtree_control; returns the v2 mount point."""
    try:
        return _run().hugetlb_acquire()
    except (RuntimeError, KeyError) as e:
        pytest.skip(f"hugetlb toggle unavailable: {e}")
