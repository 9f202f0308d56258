"""Tier t5: one boot of the pure cgroup v2 VM per test run, shared by every t5 test.

``vm_run`` boots the VM (tests/support/qemu.py) once, runs ``guest_cases.py`` inside it --
the real daemon, driven through the API -- and hands back what each case observed; the tests
in this directory assert on that.  A case that crashed inside the VM fails its test with the
guest's traceback.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Any

import pytest
from support import qemu, run

GUEST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "guest_cases.py")
#: hard limit for the whole boot (qemu is killed after it); a normal run takes ~30 s
VM_TIMEOUT = float(os.environ.get("CGTEST_VM_TIMEOUT", "300"))
#: pytest-timeout for t5 tests: the first one pays for the boot
TEST_TIMEOUT = VM_TIMEOUT + 60


@dataclasses.dataclass
class GuestRun:
    result: qemu.VmResult
    meta: dict[str, Any]
    cases: dict[str, dict[str, Any]]

    def obs(self, name: str) -> dict[str, Any]:
        """The observations of one guest case; fails the test if the case did not complete."""
        entry = self.cases.get(name)
        if entry is None:
            pytest.fail(f"guest case {name!r} did not run in the VM\n{self.tail()}", pytrace=False)
        if entry.get("error"):
            pytest.fail(
                f"guest case {name!r} crashed in the VM:\n{entry['error']}\n"
                f"observed so far: {entry.get('obs')}",
                pytrace=False,
            )
        assert not entry.get("cleanup_problems"), entry["cleanup_problems"]
        return entry["obs"]

    def daemon_log(self) -> str:
        return self.result.files.get("daemon.log", b"").decode("utf-8", "replace")

    def tail(self) -> str:
        return (
            f"--- guest output ---\n{self.result.output[-3000:]}\n"
            f"--- daemon log ---\n{self.daemon_log()[-3000:]}"
        )


@pytest.fixture(scope="session")
def vm_run() -> GuestRun:
    k = qemu.find_kernel()
    result = qemu.run_in_vm(
        [sys.executable, GUEST], cwd=qemu.REPO, timeout=VM_TIMEOUT, memory="1G", cpus=2
    )
    raw = result.files.get("results.json")
    if raw is None:
        pytest.fail(
            f"the guest wrote no results (exit {result.returncode})\n"
            f"{result.output[-4000:]}\n--- console ---\n{result.console[-3000:]}",
            pytrace=False,
        )
    data = json.loads(raw)
    g = GuestRun(result, data["meta"], data["cases"])
    r = run.current()
    if r is not None and k is not None:
        slow = sorted(((v.get("seconds") or 0, n) for n, v in g.cases.items()), reverse=True)[:3]
        r.notes.append(
            f"t5 VM: linux {k.abi} ({k.version}), TCG; kernel up to command {result.boot_seconds} s, "
            f"daemon start {g.meta.get('daemon_start_seconds')} s, whole boot "
            f"{result.total_seconds:.1f} s; slowest cases: "
            + ", ".join(f"{n} {s:.1f} s" for s, n in slow)
        )
    if result.returncode != 0 or "daemon_failed" in g.meta:
        pytest.fail(
            f"the guest driver failed (exit {result.returncode}, {g.meta})\n{g.tail()}",
            pytrace=False,
        )
    return g
