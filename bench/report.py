"""The results table, the machine facts and the JSON files in bench/results/."""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
from typing import Any

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")

#: cgmanager 0.42 (C) on this kind of machine, pinned (shared/docs/performance-reference.md)
C_DAEMON_CPU_US = {
    "Ping": 17.0,
    "GetValue": 64.0,
    "Create+Remove": 218.0,
    "MovePid": 88.0,
    "ListChildren": 62.5,
    "GetTasks": 64.0,
    "ListKeys": 95.0,
}
#: the original with a blocking Python (jeepney) client, median latency µs
C_PY_CLIENT_LATENCY_US = {"Ping": 62.0, "GetValue": 130.0, "Create+Remove": 370.0, "MovePid": 155.0}
#: the reference's floor figures, µs
C_FLOOR_US = {"read": 14.0, "getvalue_by_hand": 64.0, "mkdir_rmdir": 27.0, "write_pid": 17.5}
#: the original's daemon CPU µs per request with a jeepney client, both pinned to one CPU
#: (shared/docs/building-the-original.md): the fallback when no C binary is given
C_JEEPNEY_DAEMON_CPU_US = {
    "Ping": 16.5,
    "GetValue": 64.7,
    "Create+Remove": 222.7,
    "MovePid": 89.5,
    "ListChildren": 63.1,
    "GetTasks": 64.7,
    "ListKeys": 95.8,
}
#: one process per call, ms
C_ONESHOT_MS = {
    "/bin/true": 0.57,
    "dbus-send Ping": 1.44,
    "python -c pass": 9.5,
    "C cgm ping": 1.60,
    "Python + jeepney one-shot Ping": 29.0,
}


def machine() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next(
                (line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), ""
            )
    except OSError:
        pass
    return {
        "kernel": platform.release(),
        "cpu_model": model,
        "nproc": os.cpu_count(),
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "pinned_cpu": 0,
        "loadavg": _loadavg(),
    }


def _loadavg() -> str:
    """Other work on the machine shows up here (sessions share these 2 vCPUs)."""
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return ""


def source() -> dict[str, Any]:
    """Which cgmanager was measured: its path and git revision (a snapshot made with
    ``git archive <rev> src | tar -x -C DIR`` may carry the revision in ``DIR/REVISION``)."""
    import subprocess

    import cgmanager

    pkg = os.path.dirname(os.path.abspath(cgmanager.__file__))
    out: dict[str, Any] = {"package": pkg, "revision": None, "dirty": None}
    marker = os.path.join(pkg, "..", "..", "REVISION")
    if os.path.exists(marker):
        with open(marker) as f:
            out["revision"] = f.read().strip()
        return out
    try:
        rev = subprocess.run(
            ["git", "-C", pkg, "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", pkg, "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        out.update(revision=rev, dirty=bool(dirty))
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def _f(x: float, digits: int = 1) -> str:
    return f"{x:.{digits}f}"


def table(ops: list[dict[str, Any]]) -> str:
    head = (
        "operation",
        "CPU/req µs",
        "rounds min–max",
        "C CPU µs",
        "CPU ×C",
        "lat med µs",
        "p90",
        "p99",
        "floor µs",
        "lat ×floor",
        "C+py lat µs",
        "client CPU µs",
    )
    rows = [head]
    for r in ops:
        ref = C_DAEMON_CPU_US.get(r["op"])
        cref = C_PY_CLIENT_LATENCY_US.get(r["op"])
        lat = r["latency_us"]
        rows.append(
            (
                r["op"],
                _f(r["daemon_cpu_us"]),
                f"{min(r['daemon_cpu_us_rounds']):.0f}–{max(r['daemon_cpu_us_rounds']):.0f}",
                _f(ref) if ref else "–",
                _f(r["daemon_cpu_us"] / ref, 2) if ref else "–",
                _f(lat["median"]),
                _f(lat["p90"]),
                _f(lat["p99"]),
                _f(r["floor_us"]),
                _f(r["latency_over_floor"], 1),
                _f(cref, 0) if cref else "–",
                _f(r["client_cpu_us"]),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def floors_table(ops: list[dict[str, Any]], descriptions: dict[str, str]) -> str:
    seen: dict[str, float] = {}
    for r in ops:
        seen.update(r["floors_us"])
    lines = [
        "floor (same run, µs median)                                                  ours    C ref"
    ]
    for k, v in seen.items():
        ref = C_FLOOR_US.get(k)
        lines.append(f"  {descriptions.get(k, k):<74} {v:6.1f}  {_f(ref) if ref else '–':>6}")
    return "\n".join(lines)


def oneshot_table(one: dict[str, dict[str, float]]) -> str:
    lines = ["one process per call (median ms)      ours     C ref"]
    for k, v in one.items():
        ref = C_ONESHOT_MS.get(k)
        if k == "python client Ping":
            ref = C_ONESHOT_MS["Python + jeepney one-shot Ping"]
        lines.append(f"  {k:<32} {v['median_ms']:7.2f}  {_f(ref, 2) if ref else '–':>8}")
    return "\n".join(lines)


def save(doc: dict[str, Any], latest: bool = True, prefix: str = "") -> str:
    """Write *doc* to ``results/<prefix><stamp>.json`` (and ``<prefix>latest.json`` with
    *latest*); every bench saves through here, so the results folder has one layout."""
    os.makedirs(RESULTS, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%dT%H%M%S")
    path = os.path.join(RESULTS, f"{prefix}{stamp}.json")
    text = json.dumps(doc, indent=2, sort_keys=False) + "\n"
    with open(path, "w") as f:
        f.write(text)
    if latest:
        with open(os.path.join(RESULTS, f"{prefix}latest.json"), "w") as f:
            f.write(text)
    return path
