"""Run a nested pytest (for the harness's own end-to-end tests: SIGTERM, CI, leftovers)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

from .procs import Proc, ProcTracker

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def nested_env(extra: Mapping[str, str] | None = None, *, ci: bool | None = None) -> dict[str, str]:
    """Our environment minus what would change pytest's behaviour, plus `extra`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTEST_", "CGTEST_")) or k == "PYTEST_TIMEOUT"
    }
    if ci is True:
        env["CI"] = "true"
    elif ci is False:
        env.pop("CI", None)
    env.update(extra or {})
    return env


def spawn_pytest(
    procs: ProcTracker, args: Sequence[str], env: Mapping[str, str], **popen_kw
) -> Proc:
    """`python -m pytest -q ARGS` in the repo, output captured (text). Without the cache
    (no writes to the tree) and without hypothesis's plugin (half a second of imports)."""
    import subprocess

    argv = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:hypothesispytest",
        *args,
    ]
    return procs.spawn(
        argv,
        cwd=REPO,
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **popen_kw,
    )
