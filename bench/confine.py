"""Both daemons confined alike, for like-for-like comparisons with the C original.

The original (0.42) changes global state when started plainly (it mounts hierarchies, writes
``release_agent`` and ``cgroup.clone_children`` on hierarchy roots, moves itself to every root).
Following shared/docs/building-the-original.md, it is started only here: in ``<run root>/conf``
(``pids`` and the v2 tree), inside a new cgroup and mount namespace (``unshare --mount --cgroup
--propagation private``) where every hierarchy's root *is* that cgroup, with a private ``/run``
and a ``/sys/fs/cgroup`` holding only namespace views of ``pids`` and the v2 tree (it is told to
skip every other controller, so ``memory`` is never touched).  The project's daemon runs in the
same place the same way, so both see their clients at ``/`` and resolve the same relative paths.

The process inside (``python -m bench.confine CONFIG``) runs a function named in CONFIG and
writes its JSON result; everything it started lives in ``conf``, which the parent empties with
``cgroup.kill`` (only our processes can be there) before the harness removes the tree.
"""

from __future__ import annotations

import ctypes
import importlib
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

from .harness import SKIP, VENV_BIN, BenchError, Harness, write_file

CONF = "conf"
#: the original's skip list: every controller this kind of host has except pids
C_SKIP = (
    "memory,net_cls,perf_event,net_prio,hugetlb,cpu,cpuacct,cpuset,devices,freezer,blkio,"
    "name=systemd,rdma,misc"
)
C_SOCKET = "/sys/fs/cgroup/cgmanager/sock"
OURS_SOCKET = "/run/cgm-ours/sock"
_PR_SET_PDEATHSIG = 1


def run_confined(
    h: Harness, func: str, config: dict[str, Any], timeout: float = 3600
) -> dict[str, Any]:
    """Run ``func`` ("module:function", called with *config*) inside the confinement and return
    its result.  The parent stays where it is."""
    for key in h.mounts:
        os.mkdir(h.path(key, CONF))
    procs = [h.path(key, f"{CONF}/cgroup.procs") for key in h.mounts]
    cfg_path = os.path.join(h.tmp, "confine.json")
    out_path = os.path.join(h.tmp, "confine-result.json")
    with open(cfg_path, "w") as f:
        json.dump({"func": func, "config": config, "out": out_path}, f)

    def enter() -> None:  # in the child, before exec: the namespace roots are taken here
        for p in procs:
            write_file(p, str(os.getpid()))

    argv = ["unshare", "--mount", "--cgroup", "--propagation", "private"]
    argv += [sys.executable, "-m", "bench.confine", cfg_path]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    child = h.spawn(argv, preexec_fn=enter, stdin=subprocess.DEVNULL, env=env)
    try:
        rc = child.popen.wait(timeout)
    finally:
        empty(h)
    if rc != 0 or not os.path.exists(out_path):
        raise BenchError(f"the confined run failed (exit {rc})")
    with open(out_path) as f:
        result: dict[str, Any] = json.load(f)
    return result


def empty(h: Harness) -> None:
    """Kill whatever still runs in ``conf`` (every process there is one we started)."""
    kill = h.path("unified", f"{CONF}/cgroup.kill")
    if not os.path.exists(kill):
        return
    write_file(kill, "1")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open(h.path("unified", f"{CONF}/cgroup.events")) as f:
            if "populated 0" in f.read():
                return
        time.sleep(0.01)


# -- inside ------------------------------------------------------------------------------------


def _sh(*argv: str) -> None:
    subprocess.run(argv, check=True)


def make_mounts() -> None:
    """A private /run and a /sys/fs/cgroup of namespace views (pids, v2) — in our mount
    namespace only (propagation private)."""
    _sh("umount", "-R", "-l", "/sys/fs/cgroup")
    _sh("mount", "-t", "tmpfs", "-o", "mode=755", "cgroup", "/sys/fs/cgroup")
    for d in ("pids", "unified", "cgmanager"):
        os.mkdir(f"/sys/fs/cgroup/{d}")
    _sh("mount", "-t", "cgroup", "-o", "pids", "cgroup", "/sys/fs/cgroup/pids")
    # a cgroup2 mount in a non-initial cgroup namespace changes no global flag
    _sh("mount", "-t", "cgroup2", "cgroup2", "/sys/fs/cgroup/unified")
    _sh("mount", "-t", "tmpfs", "tmpfs", "/run")


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def start(argv: list[str], socket_path: str, log_path: str) -> subprocess.Popen[bytes]:
    """Start a daemon (pinned by the caller's argv) and wait until its socket answers."""
    import socket

    with open(log_path, "w") as log:
        p = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
    deadline = time.monotonic() + 20
    while True:
        if p.poll() is not None:
            with open(log_path, errors="replace") as f:
                raise BenchError(f"{argv[3]} exited {p.returncode}:\n{f.read()}")
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(socket_path)
            return p
        except OSError:
            if time.monotonic() > deadline:
                raise BenchError(f"{argv[3]} did not come up") from None
            time.sleep(0.02)
        finally:
            s.close()


def start_ours(tmp: str, cpu: int) -> subprocess.Popen[bytes]:
    os.makedirs(os.path.dirname(OURS_SOCKET), exist_ok=True)
    argv = ["taskset", "-c", str(cpu), f"{VENV_BIN}/cgmanager", "--socket", OURS_SOCKET]
    argv += ["--fs-dir", "/run/cgm-ours/fs", "--skip", SKIP, "--log-level", "warning"]
    argv += ["--config-dir", "", "--rules", ""]  # never the host's policy
    return start(argv, OURS_SOCKET, os.path.join(tmp, "ours.log"))


def start_c(binary: str, tmp: str, cpu: int) -> subprocess.Popen[bytes]:
    argv = ["taskset", "-c", str(cpu), binary, "-M", C_SKIP]
    return start(argv, C_SOCKET, os.path.join(tmp, "c.log"))


def stop(p: subprocess.Popen[bytes]) -> None:
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def main() -> int:
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    _die_with_parent()
    make_mounts()
    module, _, name = spec["func"].partition(":")
    result = getattr(importlib.import_module(module), name)(spec["config"])
    with open(spec["out"], "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
