"""One process per call: ``dbus-send … Ping`` and a one-shot Python client Ping, against the
fork+exec floors ``/bin/true`` and a bare interpreter.  Variants are interleaved (one of each
per iteration); each figure is the median wall time of spawn → exit, in ms."""

from __future__ import annotations

import os
import sys
import time

from .harness import IFACE, OBJ, BenchError, Daemon
from .stats import median

PY = sys.executable


def variants(daemon: Daemon) -> dict[str, list[str]]:
    client = (
        "from cgmanager.dbus.client import connect\n"
        f"connect({daemon.address!r}).call({OBJ!r}, {IFACE!r}, 'Ping', 'i', (0,))\n"
    )
    return {
        "/bin/true": ["/bin/true"],
        "python -I -S -c pass": [PY, "-I", "-S", "-c", "pass"],
        "python -c pass": [PY, "-c", "pass"],
        "dbus-send Ping": [
            "dbus-send",
            f"--address={daemon.address}",
            "--print-reply",
            "--type=method_call",
            OBJ,
            f"{IFACE}.Ping",
            "int32:0",
        ],
        "python client Ping": [PY, "-c", client],
    }


def _run(argv: list[str]) -> int:
    """Spawn, wait; wall time in ns.  A non-zero exit fails the run."""
    devnull = [(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)]
    t0 = time.perf_counter_ns()
    pid = os.posix_spawnp(argv[0], argv, os.environ, file_actions=devnull)
    try:
        _, status = os.waitpid(pid, 0)
    except BaseException:  # SIGTERM/Ctrl-C: never leave our child behind
        os.waitpid(pid, 0)
        raise
    dt = time.perf_counter_ns() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise BenchError(f"{' '.join(argv[:3])}… exited {os.waitstatus_to_exitcode(status)}")
    return dt


def client_bytecode_cached() -> bool:
    """Whether the client's modules have .pyc files (else every one-shot client compiles
    them: +~10 ms; PYTHONDONTWRITEBYTECODE=1 keeps Python from writing them)."""
    import importlib.util

    import cgmanager.dbus.message as message

    return os.path.exists(importlib.util.cache_from_source(message.__file__))


def run(daemon: Daemon, repeats: int) -> dict[str, dict[str, float]]:
    """{variant: {"median_ms", "min_ms", "n"}}; the daemon must survive it."""
    vs = variants(daemon)
    samples: dict[str, list[int]] = {k: [] for k in vs}
    for argv in vs.values():  # warm the page cache
        _run(argv)
    for _ in range(repeats):
        for name, argv in vs.items():
            samples[name].append(_run(argv))
    daemon.check_alive()
    return {
        k: {"median_ms": median(v) / 1e6, "min_ms": min(v) / 1e6, "n": len(v)}
        for k, v in samples.items()
    }
