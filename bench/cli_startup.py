"""Start-up cost of ``cgm``: one process per call, against the bare interpreter and dbus-send.

    python -m bench.cli_startup [--runs 50] [--smoke] [--no-save]

Interleaved in one run (one of each variant per round), each figure the median wall time
spawn → exit of ``--runs`` rounds, client and daemon pinned to one CPU:

* ``/bin/true`` (fork+exec floor), ``python -I -S -c pass`` and ``python -c pass`` (same
  interpreter as cgm);
* ``cgm ping`` and ``cgm getvalue pids bench pids.max`` through the fast launcher
  (``python -m cgmanager.cli.launcher``: ``python -I -S``) and through the console script pip
  generated (``.venv/bin/cgm``: site + ``import re``);
* ``dbus-send … Ping``.

Ratios against the bare interpreter and dbus-send are printed; results go to
``bench/results/cli-<timestamp>.json``.  The C cgmanager 0.42 figures (``cgm ping`` 1.60 ms,
``cgm getvalue`` 1.70 ms) come from docs/performance-reference.md (same kind of machine, not
this run).

Root only.  Uses bench.harness: the daemon on a private socket serving only pids and the v2
tree (never memory), a marked ``cgtest-<random>`` root the clients run in, all removed at exit
(also on SIGTERM / Ctrl-C).  Timings never fail the run; a client that fails does.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

if __package__ in (None, ""):  # run as a script: make `bench` and `cgmanager` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import report  # noqa: E402
from bench.harness import CPU, IFACE, OBJ, BenchError, Harness  # noqa: E402
from cgmanager.cli import launcher  # noqa: E402

PY = sys.executable
VENV_BIN = os.path.dirname(PY)
#: C cgmanager 0.42 on this kind of machine (docs/performance-reference.md)
C_REFERENCE_MS = {
    "cgm ping": 1.60,
    "cgm getvalue": 1.70,
    "dbus-send Ping": 1.44,
    "python -c pass": 9.5,
}
TARGET_RATIO = 2.0


def log(msg: str) -> None:
    print(f"cli_startup: {msg}", file=sys.stderr, flush=True)


def variants(fast: str, socket: str) -> dict[str, list[str]]:
    pip_cgm = os.path.join(VENV_BIN, "cgm")
    gv = ["getvalue", "pids", "bench", "pids.max"]
    return {
        "/bin/true": ["/bin/true"],
        "python -I -S -c pass": [PY, "-I", "-S", "-c", "pass"],
        "python -c pass": [PY, "-c", "pass"],
        "cgm ping": [fast, "ping"],
        "cgm getvalue": [fast, *gv],
        "cgm ping (pip script)": [pip_cgm, "ping"],
        "cgm getvalue (pip script)": [pip_cgm, *gv],
        "dbus-send Ping": [
            "dbus-send",
            f"--address=unix:path={socket}",
            "--print-reply",
            "--type=method_call",
            OBJ,
            f"{IFACE}.Ping",
            "int32:0",
        ],
    }


def child_env(socket: str) -> dict[str, str]:
    env = dict(os.environ)
    env["CGM_SOCKET"] = socket
    # PYTHONDONTWRITEBYTECODE (set on these machines) would make the pip script recompile
    # cgmanager on every start; an installed package has its bytecode, so measure that case
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def spawn_ns(argv: list[str], env: dict[str, str]) -> int:
    """Spawn, wait; wall time in ns.  A non-zero exit fails the run."""
    devnull = [(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)]
    t0 = time.perf_counter_ns()
    pid = (
        os.posix_spawn(argv[0], argv, env, file_actions=devnull)
        if "/" in argv[0]
        else os.posix_spawnp(argv[0], argv, env, file_actions=devnull)
    )
    try:
        _, status = os.waitpid(pid, 0)
    except BaseException:  # SIGTERM/Ctrl-C: never leave our child behind
        os.waitpid(pid, 0)
        raise
    dt = time.perf_counter_ns() - t0
    rc = os.waitstatus_to_exitcode(status)
    if rc != 0:
        raise BenchError(f"{' '.join(argv[:4])} exited {rc}")
    return dt


def check_outputs(vs: dict[str, list[str]], env: dict[str, str]) -> None:
    """Every cgm variant must really work (and warm the bytecode caches)."""
    for name, argv in vs.items():
        if not name.startswith("cgm"):
            continue
        cp = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
        want = "max\n" if "getvalue" in name else ""
        if cp.returncode != 0 or cp.stdout != want:
            raise BenchError(f"{name}: rc={cp.returncode} out={cp.stdout!r} err={cp.stderr!r}")


def import_breakdown(root: str) -> dict[str, int]:
    """Top-level imports of the fast path under -I -S, cumulative µs (-X importtime)."""
    code = (
        f"import sys; sys.path.insert(0, {root!r}); import cgmanager.cli.main; "
        "import cgmanager.dbus.client"
    )
    cp = subprocess.run(
        [PY, "-I", "-S", "-X", "importtime", "-c", code], capture_output=True, text=True, timeout=30
    )
    out: dict[str, int] = {}
    for line in cp.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line[len("import time:") :].split("|")
        if name.startswith("  ") or not cumulative.strip().isdigit():
            continue  # nested import (counted in its parent's cumulative time)
        out[name.strip()] = int(cumulative)
    return out


def measure(vs: dict[str, list[str]], env: dict[str, str], runs: int) -> dict[str, list[int]]:
    samples: dict[str, list[int]] = {k: [] for k in vs}
    for argv in vs.values():  # warm-up: page cache, bytecode
        for _ in range(3):
            spawn_ns(argv, env)
    for _ in range(runs):
        for name, argv in vs.items():
            samples[name].append(spawn_ns(argv, env))
    return samples


def summarise(samples: dict[str, list[int]]) -> dict[str, dict[str, float]]:
    return {
        k: {"median_ms": statistics.median(v) / 1e6, "min_ms": min(v) / 1e6, "n": len(v)}
        for k, v in samples.items()
    }


def ratios(s: dict[str, dict[str, float]]) -> dict[str, float]:
    m = {k: v["median_ms"] for k, v in s.items()}
    bare = m["python -I -S -c pass"]
    return {
        "cgm ping / python -I -S -c pass": m["cgm ping"] / bare,
        "cgm getvalue / python -I -S -c pass": m["cgm getvalue"] / bare,
        "cgm ping (pip script) / python -I -S -c pass": m["cgm ping (pip script)"] / bare,
        "cgm ping (pip script) / cgm ping": m["cgm ping (pip script)"] / m["cgm ping"],
        "cgm ping / dbus-send Ping": m["cgm ping"] / m["dbus-send Ping"],
        "cgm ping / C cgm ping (reference)": m["cgm ping"] / C_REFERENCE_MS["cgm ping"],
        "cgm getvalue / C cgm getvalue (reference)": m["cgm getvalue"]
        / C_REFERENCE_MS["cgm getvalue"],
    }


def parse(argv: list[str]) -> dict[str, object]:
    a: dict[str, object] = {"runs": 50, "save": True}
    i = 0
    while i < len(argv):
        w = argv[i]
        if w == "--runs" and i + 1 < len(argv) and argv[i + 1].isdigit():
            a["runs"] = max(1, int(argv[i + 1]))
            i += 1
        elif w == "--smoke":
            a["runs"], a["save"] = 3, False
        elif w == "--no-save":
            a["save"] = False
        else:
            sys.exit(__doc__.split("\n\n")[1])
        i += 1
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse(sys.argv[1:] if argv is None else argv)
    old_affinity = os.sched_getaffinity(0)
    with Harness() as h:
        daemon = h.start_daemon()
        h.mkdir("bench", ("pids",))
        h.enter()  # clients resolve "bench" below their own cgroup: the run root
        fast = os.path.join(h.tmp, "cgm")
        launcher.write(fast, PY)
        env = child_env(daemon.socket)
        vs = variants(fast, daemon.socket)
        os.sched_setaffinity(0, {CPU})  # clients on the daemon's CPU
        try:
            check_outputs(vs, env)
            log(f"{len(vs)} variants x {a['runs']} interleaved rounds, pinned to CPU {CPU}")
            samples = measure(vs, env, int(a["runs"]))  # type: ignore[call-overload]
            daemon.check_alive()
            imports = import_breakdown(launcher.package_root())
        finally:
            os.sched_setaffinity(0, old_affinity)
    s = summarise(samples)
    r = ratios(s)
    for k, v in s.items():
        print(f"{k:28} {v['median_ms']:7.2f} ms  (min {v['min_ms']:.2f}, n={v['n']})")
    print()
    for k, v in r.items():
        print(f"{k:45} {v:5.2f}x")
    ok = r["cgm ping / python -I -S -c pass"] <= TARGET_RATIO
    print(
        f"\ntarget: cgm ping within {TARGET_RATIO}x of the bare interpreter: "
        f"{'met' if ok else 'NOT met'}"
    )
    print(
        "imports on the fast path (cumulative µs): "
        + ", ".join(f"{k} {v}" for k, v in imports.items())
    )
    result = {
        "bench": "cli_startup",
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": sys.version.split()[0],
        "interpreter": PY,
        "runs": a["runs"],
        "pinned_cpu": CPU,
        "variants": {k: " ".join(v) for k, v in vs.items()},
        "results_ms": s,
        "ratios": r,
        "target_ratio": TARGET_RATIO,
        "target_met": ok,
        "c_reference_ms": C_REFERENCE_MS,
        "fast_path_imports_us": imports,
    }
    if a["save"]:
        print(f"written: {report.save(result, latest=False, prefix='cli-')}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        log(f"failed: {e}")
        sys.exit(1)
