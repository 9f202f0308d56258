"""A container's set-up: one ``Setup`` call against the same work as separate calls and
against doing it directly on cgroupfs (the floor), in the same run.

The set-up, in ``pids`` and the v2 tree: create ``bs``, hand it to an unused uid (the
directory plus the kernel's delegation files), write ``pids.max``, ``cgroup.max.descendants``
and ``cgroup.max.depth``, move a sleeping process of that uid in.  Variants, interleaved
(A B C, then reversed), each iteration followed by an untimed reset (the process moved back,
``bs`` removed):

* **floor**: the bench process does the writes itself (mkdir, chown, write);
* **separate**: Create, Chown, three SetValue, MovePid on one persistent connection (6 calls);
* **Setup**: one ``org.linuxcontainers.cgmanager1.Setup`` call.

Daemon and client pinned to CPU 0 as in the core run; wall time per iteration and the
daemon's CPU (schedstat) per iteration.
"""

from __future__ import annotations

import argparse
import os
import pwd
from collections.abc import Callable
from typing import Any

from cgmanager.cgroupfs import read_delegate_files

from .harness import OBJ, BenchError, Harness, cpu_ns, expect, write_file
from .stats import median, summary_us, timed

IFACE1 = "org.linuxcontainers.cgmanager1"
REL, SLEEPERS, NEW = "batch", "batch/sl", "bs"
VALUES = {
    "pids.max": "100",
    "unified:cgroup.max.descendants": "50",
    "unified:cgroup.max.depth": "3",
}


def unused_id(start: int = 61112) -> int:
    for uid in range(start, start + 100):
        try:
            pwd.getpwuid(uid)
        except KeyError:
            if not any(_owned_by(uid, p) for p in os.listdir("/proc") if p.isdigit()):
                return uid
    raise BenchError("no unused uid found for the set-up's owner")


def _owned_by(uid: int, pid: str) -> bool:
    try:
        return os.stat(f"/proc/{pid}").st_uid == uid
    except OSError:
        return False


def run(h: Harness, a: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    uid = unused_id()
    h.mkdir(REL)
    h.mkdir(SLEEPERS)
    daemon = h.start_daemon(label="batch")
    h.enter()
    kid = h.spawn(["sleep", "3600"], user=uid, group=uid)
    for key in ("pids", "unified"):
        write_file(h.path(key, f"{SLEEPERS}/cgroup.procs"), str(kid.pid))
    # relative paths resolve below the client's cgroup: the bench process sits in the run root
    base = f"{REL}/{NEW}"
    v2_delegate = [
        f for f in read_delegate_files() if os.path.exists(h.path("unified", f"{SLEEPERS}/{f}"))
    ]
    conn = daemon.connect()

    def call(iface: str, member: str, sig: str, *args: Any) -> Any:
        return conn.call(OBJ, iface, member, sig, args)

    def floor(i: int) -> None:
        for key, files in (("pids", ("tasks", "cgroup.procs")), ("unified", v2_delegate)):
            d = h.path(key, base)
            os.mkdir(d)
            os.chown(d, uid, uid)
            for f in files:
                os.chown(f"{d}/{f}", uid, uid)
        write_file(h.path("pids", f"{base}/pids.max"), "100")
        write_file(h.path("unified", f"{base}/cgroup.max.descendants"), "50")
        write_file(h.path("unified", f"{base}/cgroup.max.depth"), "3")
        for key in ("pids", "unified"):
            write_file(h.path(key, f"{base}/cgroup.procs"), str(kid.pid))

    def separate(i: int) -> None:
        call("org.linuxcontainers.cgmanager0_0", "Create", "ss", "pids,unified", base)
        call("org.linuxcontainers.cgmanager0_0", "Chown", "ssii", "pids,unified", base, uid, uid)
        for spec, value in VALUES.items():
            ctrl, _, key = spec.rpartition(":")
            call(
                "org.linuxcontainers.cgmanager0_0",
                "SetValue",
                "ssss",
                ctrl or "pids",
                base,
                key,
                value,
            )
        call("org.linuxcontainers.cgmanager0_0", "MovePid", "ssi", "pids,unified", base, kid.pid)

    def setup(i: int) -> None:
        call(IFACE1, "Setup", "ssiia{ss}ai", "pids,unified", base, uid, uid, VALUES, [kid.pid])

    def reset() -> None:
        for key in ("pids", "unified"):
            write_file(h.path(key, f"{SLEEPERS}/cgroup.procs"), str(kid.pid))
            os.rmdir(h.path(key, base))

    def read(key: str, name: str) -> str:
        with open(h.path(key, f"{base}/{name}")) as f:
            return f.read()

    def check() -> None:
        for key in ("pids", "unified"):
            expect(os.stat(h.path(key, base)).st_uid == uid, f"{key}/{base} owned by {uid}")
            expect(str(kid.pid) in read(key, "cgroup.procs").split(), f"the sleeper in {key}")
        expect(read("pids", "pids.max").strip() == "100", "pids.max")
        expect(read("unified", "cgroup.max.depth").strip() == "3", "cgroup.max.depth")

    variants = {
        "floor (direct writes)": floor,
        "separate calls (6)": separate,
        "Setup (1 call)": setup,
    }
    for fn in variants.values():  # warm-up, and the work checked once per variant
        fn(0)
        check()
        reset()
    n = a.batch_calls
    lat: dict[str, list[int]] = {k: [] for k in variants}
    dcpu: dict[str, list[float]] = {k: [] for k in variants}
    for r in range(a.batch_rounds):
        order = list(variants) if r % 2 == 0 else list(variants)[::-1]
        for name in order:
            fn = variants[name]
            spent = 0
            for i in range(n):
                d0 = cpu_ns(daemon.pid)
                lat[name] += timed(fn, 1, i)
                spent += cpu_ns(daemon.pid) - d0
                reset()
            dcpu[name].append(spent / n / 1000)
        log(f"batch: round {r + 1}/{a.batch_rounds} done")
    conn.close()
    daemon.check_alive()
    h.stop_daemon(daemon)
    kid.stop()
    results = {
        name: {**summary_us(lat[name]), "daemon_cpu_us": median(dcpu[name])} for name in variants
    }
    fl = results["floor (direct writes)"]["median"]
    sep = results["separate calls (6)"]["median"]
    st = results["Setup (1 call)"]["median"]
    return {
        "what": "create in pids+unified, chown to an unused uid, 3 values, move 1 pid",
        "calls_per_batch": n,
        "rounds": a.batch_rounds,
        "results": results,
        "setup_over_floor": st / fl,
        "separate_over_floor": sep / fl,
        "setup_over_separate": st / sep,
        "target_setup_over_floor": 2.0,
    }


def print_summary(doc: dict[str, Any]) -> None:
    print(
        f"Container set-up ({doc['what']}); daemon and client on CPU 0, "
        f"{doc['rounds']} rounds × {doc['calls_per_batch']}; µs per set-up"
    )
    print(f"  {'variant':<24}{'median':>9}{'p90':>9}{'p99':>9}{'daemon CPU':>12}")
    for name, r in doc["results"].items():
        print(
            f"  {name:<24}{r['median']:9.1f}{r['p90']:9.1f}{r['p99']:9.1f}"
            f"{r['daemon_cpu_us']:12.1f}"
        )
    print(
        f"  Setup ÷ floor {doc['setup_over_floor']:.2f} (target ≤ "
        f"{doc['target_setup_over_floor']:.0f}); separate ÷ floor "
        f"{doc['separate_over_floor']:.2f}; Setup ÷ separate {doc['setup_over_separate']:.2f}"
    )
