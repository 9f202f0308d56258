"""What ``cgm top`` costs the daemon at 1 s refreshes over 10,000 cgroups.

    python -m bench.top_cost [--cgroups 10000] [--refreshes 10] [--smoke] [--no-save]

The run root gets ``g00…g99/c00…c99`` (10,100 cgroups, the default) in the pids hierarchy and in
the v2 tree, made directly on cgroupfs; 8 sleepers are spread over them.  Then, with the daemon
pinned to CPU 0 and every client to CPU 1:

* **cgm top, live**: ``cgm top`` in a real terminal (tmux, 200x50), as a user watches it:
  the daemon's CPU time (schedstat) over 10 s of 1 s refreshes, as a share of one CPU — the
  figure asked for.  Pressure is read for the rows on screen only.
* **cgm top --json**: ``cgm top --json --delay 1 --iterations R`` (R+1 snapshots, one per
  second), every figure of every cgroup, pressure included: daemon CPU per refresh, and cgm's
  own (rusage).  Every frame must list every cgroup.  Both run from the run root (the default
  ``--depth 3`` covers all of it).
* **floor**: the same files read directly (scandir walk, open/read/close of each key, the
  same fields kept) in this process, per refresh: what reading them costs without a daemon.
* **one GetValue per file**: one refresh the way a client without Snapshot must read (the
  fallback in cgmanager.cli.readings: ListChildren and GetValue for every cgroup, pipelined
  per level) — why Snapshot exists.  Skipped with ``--smoke``.
* **latency for others**: Ping round trips of another client, every 10 ms, while cgm top
  runs, against the same idle: Snapshot yields to other clients every 128 cgroups.

Results go to ``bench/results/top-<stamp>.json``.  Root only; everything is made below the
bench harness's marked run root and removed at exit (also on SIGTERM / Ctrl-C).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

if __package__ in (None, ""):  # run as a script: make `bench` and `cgmanager` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import report  # noqa: E402
from bench.harness import CPU, OBJ, BenchError, Harness, cpu_ns, expect  # noqa: E402
from bench.stats import summary_us  # noqa: E402
from cgmanager.cli import launcher  # noqa: E402
from cgmanager.dbus.client import connect  # noqa: E402

PY = sys.executable
CLIENT_CPU = 1 if CPU != 1 else 0
IFACE = "org.linuxcontainers.cgmanager0_0"
#: what cgm top reads here (hybrid host: v2 without controllers, v1 pids)
V2_KEYS = ["cpu.stat/usage_usec", "cpu.pressure/some", "memory.pressure/some", "io.pressure/some"]
PIDS_KEYS = ["pids.current"]


def log(msg: str) -> None:
    print(f"top_cost: {msg}", file=sys.stderr, flush=True)


def make_tree(h: Harness, n: int) -> list[str]:
    """n cgroups (groups of 100) below the run root in pids and v2; their relative paths."""
    rels = []
    groups = max(1, (n + 99) // 100)
    for g in range(groups):
        h.mkdir(f"g{g:02d}")
        rels.append(f"g{g:02d}")
        for c in range(min(100, n - g * 100)):
            h.mkdir(f"g{g:02d}/c{c:02d}")
            rels.append(f"g{g:02d}/c{c:02d}")
    return rels


def floor_refresh(h: Harness) -> int:
    """One refresh read directly, with the fewest system calls: each directory opened beneath
    its parent, each file opened, read once and closed, subdirectories listed only where the
    link count says there are some; the same fields kept.  Returns the cgroups read."""
    seen = 0
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
    for key, keys in (("unified", V2_KEYS), ("pids", PIDS_KEYS)):
        files = [(k.partition("/")[0], k.partition("/")[2]) for k in keys]
        stack: list[tuple[int, str]] = [(-1, h.path(key))]
        opened: list[int] = []
        while stack:
            parent, name = stack.pop()
            fd = os.open(name, flags, dir_fd=parent) if parent >= 0 else os.open(name, flags)
            seen += 1
            st = os.fstat(fd)
            for file, field in files:
                try:
                    kfd = os.open(file, os.O_RDONLY | os.O_CLOEXEC, dir_fd=fd)
                except OSError:
                    continue
                try:
                    text = os.read(kfd, 65536).decode()
                finally:
                    os.close(kfd)
                if field:
                    next((ln for ln in text.split("\n") if ln.startswith(field + " ")), None)
            if st.st_nlink != 2:
                with os.scandir(fd) as it:
                    kids = sorted(e.name for e in it if e.is_dir(follow_symlinks=False))
                stack.extend((fd, k) for k in reversed(kids))
                # (the parent stays open for its children: closed when the walk is done)
                opened.append(fd)
            else:
                os.close(fd)
        for fd in opened:
            os.close(fd)
    return seen


class Pinger(threading.Thread):
    """Ping every 10 ms on its own connection; round trips in ns."""

    def __init__(self, address: str) -> None:
        super().__init__(daemon=True)
        self.conn = connect(address)
        self.samples: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            t0 = time.perf_counter_ns()
            self.conn.call(OBJ, IFACE, "Ping", "i", (0,))
            self.samples.append(time.perf_counter_ns() - t0)
            time.sleep(0.01)

    def finish(self) -> dict[str, float]:
        self.stop.set()
        self.join(10)
        self.conn.close()
        return summary_us(self.samples)


def pings_idle(address: str, seconds: float) -> dict[str, float]:
    p = Pinger(address)
    p.start()
    time.sleep(seconds)
    return p.finish()


def run_top(fast: str, env: dict[str, str], refreshes: int) -> list[dict[str, object]]:
    """cgm top as a user runs it (pinned to the client CPU); its frames."""
    argv = ["taskset", "-c", str(CLIENT_CPU), fast, "--json", "top", "--delay", "1"]
    argv += ["--iterations", str(refreshes)]
    p = subprocess.run(argv, env=env, capture_output=True, timeout=60 + 20 * refreshes)
    if p.returncode != 0:
        raise BenchError(f"cgm top exited {p.returncode}: {p.stderr.decode()}")
    return [json.loads(line) for line in p.stdout.decode().splitlines()]


def live_percent(fast: str, daemon: object, env: dict[str, str], seconds: float) -> float:
    """Daemon CPU (% of one CPU) while ``cgm top`` runs live in tmux at its default 1 s."""
    sock = f"cgmbench-{os.getpid()}"
    tmux = ["tmux", "-L", sock]
    cmd = f"taskset -c {CLIENT_CPU} {fast} top"
    subprocess.run([*tmux, "new-session", "-d", "-x", "200", "-y", "50", cmd], env=env, check=True)
    try:
        deadline = time.monotonic() + 60
        while True:  # until a frame with CPU figures is on screen (the second sample)
            screen = subprocess.run(
                [*tmux, "capture-pane", "-p"], capture_output=True, text=True
            ).stdout
            rows = [ln.split() for ln in screen.split("\n")[2:] if ln.strip()]
            if any(len(r) > 2 and r[2] != "-" for r in rows):
                break
            if time.monotonic() > deadline:
                raise BenchError(f"cgm top showed no figures:\n{screen}")
            time.sleep(0.2)
        pid = daemon.pid  # type: ignore[attr-defined]
        c0, t0 = cpu_ns(pid), time.monotonic()
        time.sleep(seconds)
        c1, t1 = cpu_ns(pid), time.monotonic()
        subprocess.run([*tmux, "send-keys", "q"], check=False)
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
    return (c1 - c0) / ((t1 - t0) * 1e9) * 100


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    n, refreshes, save, smoke = 10000, 10, True, False
    while args:
        a = args.pop(0)
        if a == "--cgroups" and args:
            n = int(args.pop(0))
        elif a == "--refreshes" and args:
            refreshes = int(args.pop(0))
        elif a == "--smoke":
            n, refreshes, save, smoke = 200, 2, False, True
        elif a == "--no-save":
            save = False
        else:
            sys.exit(__doc__.split("\n\n")[1])
    with Harness() as h:
        daemon = h.start_daemon()
        log(f"making {n} cgroups in pids and v2")
        rels = make_tree(h, n)
        for i in range(8):
            h.sleeper(rels[(i * 97) % len(rels)])
        h.enter()  # cgm resolves '' to its own cgroup: the run root
        fast = os.path.join(h.tmp, "cgm")
        launcher.write(fast, PY)
        env = dict(os.environ, CGM_SOCKET=daemon.socket)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        os.sched_setaffinity(0, {CLIENT_CPU})
        total = 2 * (len(rels) + 1)

        # warm up (page cache, bytecode) and check that top sees everything
        frames = run_top(fast, env, 1)
        expect(
            len(frames[0]["cgroups"]) == len(rels) + 1 and frames[0]["complete"],  # type: ignore[arg-type]
            f"cgm top listed {len(frames[0]['cgroups'])} of {len(rels) + 1} cgroups",  # type: ignore[arg-type]
        )

        log(f"cgm top --delay 1 --iterations {refreshes}: {total} cgroups read per refresh")
        before_d = cpu_ns(daemon.pid)
        before_c = os.times()
        t0 = time.monotonic()
        frames = run_top(fast, env, refreshes)
        wall = time.monotonic() - t0
        after_c = os.times()
        daemon_ns = cpu_ns(daemon.pid) - before_d
        client_s = (after_c.children_user - before_c.children_user) + (
            after_c.children_system - before_c.children_system
        )
        daemon.check_alive()
        expect(len(frames) == refreshes, f"{len(frames)} frames of {refreshes}")
        for f in frames:
            expect(len(f["cgroups"]) == len(rels) + 1, "a frame lacked cgroups")  # type: ignore[arg-type]
        snapshots = refreshes + 1
        per_refresh_ms = daemon_ns / snapshots / 1e6

        live = live_percent(fast, daemon, env, 3 if smoke else 10)

        log("Ping latency of another client: idle, then while cgm top runs")
        idle = pings_idle(daemon.address, 3 if smoke else 10)
        pinger = Pinger(daemon.address)
        pinger.start()
        run_top(fast, env, 2 if smoke else 5)
        during = pinger.finish()

        log("floor: the same files read directly")
        fl = []
        for _ in range(3 if smoke else 10):
            c0 = time.process_time_ns()
            seen = floor_refresh(h)
            fl.append(time.process_time_ns() - c0)
        expect(seen == total, f"floor read {seen} of {total} cgroups")
        floor_ms = sorted(fl)[len(fl) // 2] / 1e6

        getvalue_ms = None
        if not smoke:
            log("one refresh with one GetValue per file (no Snapshot)")
            from cgmanager.cli.readings import Request, _fallback
            from cgmanager.cli.session import Session

            s = Session("cgm", {"socket": daemon.socket})
            c0 = cpu_ns(daemon.pid)
            for key, keys in (("unified", V2_KEYS), ("pids", PIDS_KEYS)):
                r = _fallback(s, Request(key, "", keys, 3))
                expect(len(r.rows) == len(rels) + 1, f"fallback read {len(r.rows)} rows")
            getvalue_ms = (cpu_ns(daemon.pid) - c0) / 1e6
            s.close()

    result = {
        "bench": "top_cost",
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cgroups_per_hierarchy": len(rels) + 1,
        "hierarchies": ["pids", "unified"],
        "keys": {"unified": V2_KEYS, "pids": PIDS_KEYS},
        "refreshes": refreshes,
        "live_daemon_cpu_percent_at_1s": round(live, 1),
        "wall_s": round(wall, 2),
        "daemon_cpu_ms_per_refresh": round(per_refresh_ms, 1),
        "daemon_cpu_percent_at_1s": round(per_refresh_ms / 10, 1),
        "cgm_cpu_ms_per_refresh": round(client_s * 1000 / snapshots, 1),
        "floor_direct_read_ms_per_refresh": round(floor_ms, 1),
        "daemon_over_floor": round(per_refresh_ms / floor_ms, 2),
        "getvalue_per_file_daemon_cpu_ms_per_refresh": getvalue_ms and round(getvalue_ms, 1),
        "ping_us_idle": idle,
        "ping_us_during_top": during,
    }
    print(f"cgroups read per refresh: {total} ({len(rels) + 1} in each of pids and v2)")
    print(f"live view (tmux, 1 s):    daemon {live:.1f}% of one CPU (pressure of the rows shown)")
    print(
        f"--json, every figure:     daemon {per_refresh_ms:.1f} ms per refresh"
        f" = {per_refresh_ms / 10:.1f}% of one CPU at 1 s"
    )
    print(f"cgm CPU per refresh:      {client_s * 1000 / snapshots:8.1f} ms")
    print(
        f"floor (direct reads):     {floor_ms:8.1f} ms  -> daemon/floor {per_refresh_ms / floor_ms:.2f}x"
    )
    if getvalue_ms is not None:
        print(
            f"GetValue per file:        {getvalue_ms:8.1f} ms daemon CPU for one refresh ({getvalue_ms / per_refresh_ms:.0f}x Snapshot)"
        )
    print(f"Ping idle:   p50 {idle['median']:.0f} µs, p99 {idle['p99']:.0f} µs")
    print(f"Ping during: p50 {during['median']:.0f} µs, p99 {during['p99']:.0f} µs")
    if save:
        print(f"written: {report.save(result, latest=False, prefix='top-')}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        log(f"failed: {e}")
        sys.exit(1)
