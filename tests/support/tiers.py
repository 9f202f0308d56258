"""Test tiers t0..t5: a capability probe per tier, CI enforcement, per-tier counts.

A tier whose capability is missing skips its tests with the probe's reason -- except in
CI (CI=true), where a missing t0..t3 makes those tests fail: on these machines every
tier must actually run. Tiers in CI_MAY_SKIP are exempt until they are implemented.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

TIERS = ("t0", "t1", "t2", "t3", "t4", "t5")

# Tiers allowed to skip even when CI=true. Remove a tier from this set as soon as its
# infrastructure exists, so that CI fails loudly if it silently stops running.
CI_MAY_SKIP: frozenset[str] = frozenset()

_SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def in_ci() -> bool:
    return os.environ.get("CI") == "true"


def must_run(tier: str) -> bool:
    """Whether a missing capability for `tier` is an error (CI) rather than a skip."""
    return in_ci() and tier not in CI_MAY_SKIP


def _probe_t0() -> str | None:
    return None


def _need_root() -> str | None:
    return None if os.geteuid() == 0 else f"needs root (euid {os.geteuid()})"


def _probe_roots(names: Iterable[str]) -> str | None:
    if (why := _need_root()) is not None:
        return why
    from . import run

    r = run.current()
    if r is None:
        return "no test run registry (harness not configured)"
    try:
        roots = r.roots()
    except Exception as e:  # noqa: BLE001 - any failure is the reason to report
        return f"cannot create the run's cgroup roots: {e}"
    missing = [n for n in names if n not in roots.available()]
    if missing:
        reasons = "; ".join(f"{k}: {v}" for k, v in sorted(roots.unavailable.items()))
        return f"no writable cgroup hierarchy for {missing} ({reasons or 'not mounted'})"
    return None


def _probe_t1() -> str | None:
    return _probe_roots(["unified"])


def _probe_t2() -> str | None:
    return _probe_roots(["pids", "freezer", "cpu", "cpuset"])


def _probe_t3() -> str | None:
    if (why := _need_root()) is not None:
        return why
    missing = [
        t
        for t in ("newuidmap", "newgidmap", "useradd", "userdel")
        if shutil.which(t, path=_SBIN_PATH) is None
    ]
    if missing:
        return f"missing tools {missing} (run scripts/install-test-deps)"
    from . import ns

    try:
        uid = ns.run_in_ns(os.getuid, userns=True, timeout=5)
    except Exception as e:  # noqa: BLE001
        return f"user namespaces do not work: {e!r}"
    if uid != 0:
        return f"uid inside a new user namespace is {uid}, expected 0"
    return None


def _probe_t5() -> str | None:
    """qemu, a static busybox and the cached Debian kernel (KVM is not needed: TCG)."""
    from . import qemu

    return qemu.probe()


def _probe_t4() -> str | None:
    """A throw-away systemd container: root, systemd + systemd-nspawn + nsenter, overlayfs,
    and a run root in the v2 tree to boot it in (see support/nspawn.py)."""
    from . import nspawn

    return nspawn.probe() or _probe_roots(["unified"])


def _not_yet(what: str) -> Callable[[], str | None]:
    return lambda: f"not implemented yet ({what})"


PROBES: dict[str, Callable[[], str | None]] = {
    "t0": _probe_t0,
    "t1": _probe_t1,
    "t2": _probe_t2,
    "t3": _probe_t3,
    "t4": _probe_t4,
    "t5": _probe_t5,
}

# For the harness's own tests: CGTEST_PRETEND_MISSING="t1,t2" makes those probes fail.
PRETEND_ENV = "CGTEST_PRETEND_MISSING"


def _pretend_missing(tier: str) -> str | None:
    wanted = {t.strip() for t in os.environ.get(PRETEND_ENV, "").split(",") if t.strip()}
    return f"pretended missing via {PRETEND_ENV}" if tier in wanted else None


class Prober:
    """Runs each tier's probe at most once per run."""

    def __init__(self, probes: dict[str, Callable[[], str | None]] | None = None):
        self._probes = PROBES if probes is None else probes
        self._cache: dict[str, str | None] = {}

    def reason(self, tier: str) -> str | None:
        """Why `tier` cannot run here, or None if it can."""
        if tier not in self._cache:
            self._cache[tier] = _pretend_missing(tier) or self._probes[tier]()
        return self._cache[tier]

    def results(self) -> dict[str, str | None]:
        return dict(self._cache)


@dataclass
class TierStats:
    """Per-test outcome (failed > skipped > passed over its phases), counted per tier."""

    outcomes: dict[str, tuple[tuple[str, ...], str]] = field(default_factory=dict)

    def record(
        self, nodeid: str, tiers: tuple[str, ...], when: str, outcome: str, xfail: bool = False
    ) -> None:
        if xfail:
            outcome = "xfailed" if outcome == "skipped" else "passed"
        if when != "call" and outcome == "passed":
            outcome = "pending"  # setup/teardown passing says nothing yet
        prev = self.outcomes.get(nodeid, (tiers, "pending"))[1]
        rank = {"pending": 0, "passed": 1, "xfailed": 2, "skipped": 2, "failed": 3}
        if rank[outcome] >= rank[prev]:
            self.outcomes[nodeid] = (tiers, outcome)

    def counts(self) -> dict[str, dict[str, int]]:
        zero = {"passed": 0, "failed": 0, "skipped": 0, "xfailed": 0}
        out = {t: dict(zero) for t in TIERS}
        for tiers, outcome in self.outcomes.values():
            if outcome == "pending":
                continue
            for t in tiers or ("untiered",):
                out.setdefault(t, dict(zero))[outcome] += 1
        return out

    def lines(self) -> list[str]:
        out = []
        for t, c in self.counts().items():
            if t == "untiered" and not any(c.values()):
                continue
            label = f"tier {t}" if t in TIERS else "no tier"
            line = f"{label}: {c['passed']} passed, {c['failed']} failed, {c['skipped']} skipped"
            if c["xfailed"]:  # expected failures: known gaps, tracked by strict xfails
                line += f", {c['xfailed']} xfailed"
            out.append(line)
        return out
