"""What the policy features cost the daemon: per proc-connector event under a fork storm, and
per event signal.  ``.venv/bin/python -m bench.policy_events [--storm N] [--signals M]``
(root); results in bench/results/policy-<stamp>.json.

Fork storm: a shell on CPU 1 runs a copy of ``/bin/true`` (under a name of its own, so the
moving rule touches nothing else on the host) N times (one exec event each) while the daemon
runs on CPU 0, three ways — no rules (the netlink socket is not even open), rules that match
nothing of the storm (every event read, queued, its process pinned and read from /proc), and a
rule that matches the storm (every process that still lives when its event is handled is
moved).  The daemon's CPU time is divided by the events it handled (its own counters; events
of other processes on the host count too, as they cost the same).  The storm's own CPU time is
the floor: what the kernel and the shell spent per fork+exec.

Signals: one connection holds 64 subscriptions to a v2 cgroup; M short processes run in it
(populated 1 then 0: two signals per subscription each) while a thread reads the signals; the
daemon's CPU time is divided by the signals it sent.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import threading
import time

from bench.harness import Harness, cpu_ns, expect, write_file
from cgmanager.contract import INTERFACE1, OBJECT_PATH


def status(d) -> dict[str, int]:
    with d.connect() as c:
        return dict(c.call(OBJECT_PATH, INTERFACE1, "PolicyStatus")[0])


def storm(n: int, binary: str) -> tuple[float, int]:
    """(seconds, CPU ns of the storm itself)."""
    script = f"i=0; while [ $i -lt {n} ]; do {binary}; i=$((i+1)); done"
    t0 = time.monotonic()
    r = subprocess.run(
        ["taskset", "-c", "1", "sh", "-c", script + "; cat /proc/$$/stat"],
        capture_output=True,
        text=True,
        check=True,
    )
    wall = time.monotonic() - t0
    # the shell's utime+stime+cutime+cstime (its children's too), in clock ticks
    fields = r.stdout.rsplit(")", 1)[1].split()
    ticks = sum(int(x) for x in fields[11:15])
    return wall, ticks * (1_000_000_000 // os.sysconf("SC_CLK_TCK"))


def run_storm(h: Harness, n: int, rules: str | None, label: str, binary: str) -> dict[str, object]:
    opts: tuple[str, ...] = ("--config-dir", "")
    if rules is not None:
        path = os.path.join(h.tmp, f"{label}.rules")
        with open(path, "w") as f:
            f.write(rules)
        opts += ("--rules", path)
    else:
        opts += ("--rules", "")
    d = h.start_daemon(label=label, options=opts)
    time.sleep(0.3)
    before, c0 = status(d), cpu_ns(d.pid)
    wall, floor_ns = storm(n, binary)
    time.sleep(0.5)  # let the queue drain
    after, c1 = status(d), cpu_ns(d.pid)
    d.check_alive()
    handled = after.get("rules_events", 0) - before.get("rules_events", 0)
    out: dict[str, object] = {
        "storm_execs": n,
        "storm_seconds": round(wall, 3),
        "floor_us_per_exec": round(floor_ns / n / 1000, 1),
        "daemon_cpu_ms": round((c1 - c0) / 1e6, 1),
        "events": handled,
    }
    for k in (
        "rules_moved",
        "rules_exited",
        "rules_recycled",
        "rules_coalesced",
        "rules_filtered",
        "rules_unmatched",
        "rules_failed",
        "rules_dropped",
        "rules_overruns",
    ):
        out[k] = after.get(k, 0) - before.get(k, 0)
    if handled:
        out["daemon_us_per_event"] = round((c1 - c0) / handled / 1000, 1)
        work = after.get("rules_handled_ns", 0) - before.get("rules_handled_ns", 0)
        out["handling_us_per_event"] = round(work / handled / 1000, 1)
    out["rules_queued_after"] = after.get("rules_queued", 0)
    expect("Traceback" not in d.log(), f"the daemon logged no failure:\n{d.log()[-3000:]}")
    d.child.stop()
    return out


def run_signals(h: Harness, m: int) -> dict[str, object]:
    d = h.start_daemon(label="sig", options=("--config-dir", "", "--rules", ""))
    h.mkdir("sig", ("unified",))
    cg = h.hpath("sig")
    conn = d.connect()
    for _ in range(64):
        conn.call(OBJECT_PATH, INTERFACE1, "Subscribe", "ss", ("unified", cg))
    got = [0]
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            if conn.receive(0.2) is not None:
                got[0] += 1

    t = threading.Thread(target=reader)
    t.start()
    before, c0 = status(d), cpu_ns(d.pid)
    procs = h.path("unified", "sig/cgroup.procs")
    for _ in range(m):
        p = subprocess.Popen(
            ["sh", "-c", f"echo $$ > {procs}; exec true"], stdin=subprocess.DEVNULL
        )
        p.wait()
        time.sleep(0.012)  # > the kernel's 10 ms per-file notification limit
    time.sleep(1.0)
    after, c1 = status(d), cpu_ns(d.pid)
    stop.set()
    t.join()
    conn.close()
    sent = after["signals_sent"] - before["signals_sent"]
    expect(sent > 0, "signals were sent")
    d.child.stop()
    return {
        "processes": m,
        "signals_sent": sent,
        "signals_dropped": after["signals_dropped"] - before["signals_dropped"],
        "signals_received": got[0],
        "daemon_cpu_ms": round((c1 - c0) / 1e6, 1),
        "daemon_us_per_signal": round((c1 - c0) / sent / 1000, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--storm", type=int, default=2000)
    ap.add_argument("--signals", type=int, default=200)
    a = ap.parse_args()
    results: dict[str, object] = {}
    with Harness() as h:
        h.mkdir("storm", ("pids",))
        root = h.name
        nomatch = "cgtnomatch" + os.urandom(3).hex()
        mover = "cgtstorm" + os.urandom(3).hex()
        binary = os.path.join(h.tmp, mover)
        shutil.copy("/bin/true", binary)
        results["storm_no_rules"] = run_storm(h, a.storm, None, "none", binary)
        results["storm_rules_unmatched"] = run_storm(
            h, a.storm, f"*:{nomatch} pids {root}/storm\n", "unmatched", binary
        )
        # the storm runs a copy of true under a name of its own: a rule naming "true" would
        # move every true run on the host meanwhile
        results["storm_rules_moving"] = run_storm(
            h, a.storm, f"*:{mover} pids {root}/storm\n", "mv", binary
        )
        write_file(h.path("pids", "storm/pids.max"), "max")
        results["signals"] = run_signals(h, a.signals)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    os.makedirs("bench/results", exist_ok=True)
    path = f"bench/results/policy-{stamp}.json"
    with open(path, "w") as f:
        json.dump(results, f, indent=2)
    print(json.dumps(results, indent=2))
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
