"""Issue 12: closing the class "a cgroup name forges what the daemon believes".

A fast kernel-level fuzz target (tests/kernel/name_fuzz.py): cgroup names from the whole
Unicode range, raw bytes and forging shapes are made on cgroupfs beneath this run's roots, a
child process is moved in, and the daemon's parser must read its /proc/<pid>/cgroup exactly
as the kernel wrote it; names.py must agree with the kernel about which names exist and how
they are shown.  CI runs a bounded count; ``CGM_FUZZ_SCALE`` scales it (docs/FUZZING.md has
the long run of over a million inputs).
"""

from __future__ import annotations

import json
import os
import time

import pytest
from support import fuzz

from cgmanager.hierarchy import discover_host

from . import name_fuzz

pytestmark = pytest.mark.t2

CI_INPUTS = 3000


def test_fuzz_names_against_the_kernel(cgroots, cgdir, procs):
    layout = discover_host()
    keys = {"unified": "unified", "systemd": "name=systemd", "pids": "pids"}
    roots = {}
    for harness_name, key in keys.items():
        if harness_name in cgroots.available():
            roots[key] = os.fsencode(cgdir(harness_name))
    assert "unified" in roots and len(roots) >= 2
    child = procs.spawn(["sleep", "infinity"])  # (a long run outlives any finite sleep)
    for d in roots.values():
        with open(d + b"/cgroup.procs", "w") as f:
            f.write(str(child.pid))
    n = fuzz.examples(CI_INPUTS)
    seed = int(os.environ.get("CGM_FUZZ_SEED", "0")) or int(time.time())
    stats = name_fuzz.run(n, seed, layout, roots, child.pid)
    assert stats.inputs == n
    # the target is not vacuous: names of every kind were made and checked
    kinds = {k.split(": ")[1] for k in stats.outcomes}
    assert {"API accepts", "escaped"} <= kinds, stats.outcomes
    line = {
        "fuzzer": "names_against_the_kernel",
        "inputs": stats.inputs,
        "seconds": round(stats.seconds, 1),
        "seed": seed,
        "outcomes": dict(stats.outcomes),
    }
    print(json.dumps(line))
    report = os.environ.get("CGM_FUZZ_REPORT")
    if report:
        with open(report, "a") as f:
            f.write(json.dumps(line) + "\n")
