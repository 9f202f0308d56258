"""Where the daemon's time goes, for a few operations (``python -m bench --profile``).

Two views per operation, each on a fresh daemon pinned to CPU 0 as in the timing run, but with
the client (and py-spy) on CPU 1 (see :func:`client_cpu`):

* **py-spy** (sampling, if a ``py-spy`` binary is found: ``--py-spy``, PATH, /tmp/pyspy/bin;
  ``pip install --target /tmp/pyspy py-spy``): ``record --nonblocking`` at 1 kHz on the daemon
  while the client makes the calls (it does not stop the daemon, so the shares are
  undistorted).  Samples are classified by their innermost frame (self time, including the C
  calls a Python function makes) and by stage (inclusive: share of samples with that stage on
  the stack).  Shares become µs with the daemon CPU/request measured just before, unprofiled.
  ``--profile-native`` samples native frames too (libc calls by name), but py-spy must stop
  the daemon for each sample then, which slows it 10-50× and skews the shares.
* **cProfile** (deterministic, always): the daemon runs under ``python -m cProfile``; gives
  the calls per request of every function and built-in (system calls included).  Its
  per-call overhead inflates Python-heavy code, so use it for counts, py-spy for shares.
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from . import daemon_runs
from .harness import CPU, Daemon, Fixture, Harness, cpu_ns
from .report import RESULTS, machine, source
from .stats import Op

#: innermost-frame file → category (first match wins); native libc frames are "libc"
CATEGORIES: tuple[tuple[str, str], ...] = (
    ("cgmanager/dbus/message.py", "D-Bus codec (parse/serialise)"),
    ("cgmanager/dbus/unmarshal.py", "D-Bus codec (parse/serialise)"),
    ("cgmanager/dbus/marshal.py", "D-Bus codec (parse/serialise)"),
    ("cgmanager/dbus/signature.py", "D-Bus codec (parse/serialise)"),
    ("cgmanager/dbus/", "D-Bus connection/dispatch"),
    ("asyncio/", "event loop (asyncio, selectors)"),
    ("selectors.py", "event loop (asyncio, selectors)"),
    ("cgmanager/procfs.py", "/proc reads (who asks, victim)"),
    ("cgmanager/requestor.py", "/proc reads (who asks, victim)"),
    ("cgmanager/victim.py", "/proc reads (who asks, victim)"),
    ("cgmanager/permission.py", "permission checks and names"),
    ("cgmanager/names.py", "permission checks and names"),
    ("cgmanager/cgroupfs/", "cgroupfs layer (Python side)"),
    ("cgmanager/_linux.py", "cgroupfs layer (Python side)"),
    ("cgmanager/operations/", "operations, facade, audit"),
    ("cgmanager/daemon/", "operations, facade, audit"),
    ("cgmanager/hierarchy.py", "operations, facade, audit"),
    ("logging/", "logging"),
)
#: stage → function names (py-spy frame names) whose presence on the stack puts a sample there
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("parse request (codec)", ("parse_message ",)),
    ("identify requestor (/proc/<pid>/…)", ("Service.requestor ", "identify ")),
    ("operation proper (names, permission, cgroupfs)", ("Manager.",)),
    ("audit log line", ("_audit ",)),
    ("serialise + send reply", ("Connection._send ", "serialise_message ")),
    ("wait/poll: add_reader/remove_reader, futures", ("Connection._readable ",)),
    ("receive (recvmsg)", ("Connection._recv ",)),
)


def find_pyspy(explicit: str | None) -> str | None:
    for cand in (explicit, shutil.which("py-spy"), "/tmp/pyspy/bin/py-spy"):
        if cand and os.access(cand, os.X_OK):
            return cand
    return None


def _category(frame: str) -> str:
    if "(libc.so" in frame:
        return "libc: system calls (and malloc, memcpy)"
    if "(_ctypes." in frame or "(libffi" in frame:
        return "ctypes/libffi (the openat2 calls)"
    if ".py:" not in frame:
        return "other native code (_asyncio, interpreter)"
    loc = frame.rsplit("(", 1)[-1]
    for prefix, cat in CATEGORIES:
        if prefix in loc:
            return cat
    return "other Python (stdlib)"


def classify(raw: str) -> dict[str, Any]:
    """Summarise py-spy ``--format raw`` output (``frame;frame;… count`` per line)."""
    self_cat: Counter[str] = Counter()
    stage: Counter[str] = Counter()
    leaf_fn: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        n = int(count_s)
        frames = stack.split(";")
        if not any("Connection." in f or "Dispatcher." in f for f in frames):
            continue  # start-up, shutdown: not request handling
        total += n
        self_cat[_category(frames[-1])] += n
        py_leaf = next((f for f in reversed(frames) if not f.startswith("0x")), frames[-1])
        leaf_fn[py_leaf.split(" (")[0] + " (" + py_leaf.rsplit("/", 1)[-1]] += n
        for name, markers in STAGES:
            if any(f.startswith(m) for f in frames for m in markers):
                stage[name] += n
                break  # stages are listed outermost-first where they nest
        else:
            stage["other (dispatch, handler wrapping, loop plumbing)"] += n
    share = (lambda c: {k: v / total for k, v in c.most_common()}) if total else (lambda c: {})
    return {
        "samples": total,
        "self": share(self_cat),
        "stages": share(stage),
        "top_python_leaf": dict(list(share(leaf_fn).items())[:15]),
    }


def _unprofiled_cpu(daemon: Daemon, op: Op, n: int) -> float:
    for i in range(min(200, n)):
        op(i)
    c0 = cpu_ns(daemon.pid)
    for i in range(n):
        op(i)
    return (cpu_ns(daemon.pid) - c0) / n / 1000


def pyspy_profile(
    h: Harness, fx: Fixture, name: str, calls: int, pyspy: str, native: bool
) -> dict[str, Any]:
    daemon = h.start_daemon(label="spy")
    out = os.path.join(h.tmp, f"pyspy-{len(h.started)}.txt")
    with daemon.connect() as conn:
        op = daemon_runs.daemon_ops(conn, fx)[name]
        cpu = _unprofiled_cpu(daemon, op, min(calls, 2000))
        other = sorted(os.sched_getaffinity(0) ^ set(range(os.cpu_count() or 1))) or [0]
        mode = ["--native", "--rate", "250"] if native else ["--nonblocking", "--rate", "1000"]
        spy = h.spawn(
            [
                "taskset",
                "-c",
                str(other[0]),
                pyspy,
                "record",
                "--pid",
                str(daemon.pid),
                *mode,
                "--format",
                "raw",
                "--output",
                out,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)  # attached
        for i in range(calls):
            op(i)
        spy.stop(signal.SIGINT, timeout=30)
        h.children.remove(spy)
    h.stop_daemon(daemon)
    with open(out) as f:
        summary = classify(f.read())
    summary["daemon_cpu_us_unprofiled"] = cpu
    return summary


#: cProfile built-ins that are (mostly) one system call each
SYSCALLS = (
    "posix.",
    "_socket.socket",
    "select.epoll",
    "_io.open",
    "_io.FileIO",
    "method 'read' of '_io",
    "method 'readall'",
    "method 'write' of '_io",
    "io.open",
)


def cprofile(h: Harness, fx: Fixture, name: str, calls: int) -> dict[str, Any]:
    out = os.path.join(h.tmp, f"cprofile-{len(h.started)}.pstats")
    daemon = h.start_daemon((sys.executable, "-m", "cProfile", "-o", out, "-m"), label="cprof")
    with daemon.connect() as conn:
        op = daemon_runs.daemon_ops(conn, fx)[name]
        for i in range(calls):
            op(i)
    h.stop_daemon(daemon)  # SIGTERM: a clean exit, cProfile writes its file
    st = pstats.Stats(out)
    rows = []
    sys_calls: Counter[str] = Counter()
    for (file, line, fn), (_cc, nc, tt, ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
        if fn == "<method 'poll' of 'select.epoll' objects>":
            sys_calls[fn] += nc
            continue  # waiting for the next request: idle, not work
        where = fn if file == "~" else f"{fn} ({file.rsplit('/', 1)[-1]}:{line})"
        rows.append((tt, ct, nc, where))
        if file == "~" and any(s in fn for s in SYSCALLS) and nc >= calls:
            sys_calls[fn] += nc
    rows.sort(reverse=True)
    total_tt = sum(r[0] for r in rows) or 1.0
    return {
        "calls": calls,
        "top_self": [
            {"fn": w, "self_share": tt / total_tt, "calls_per_request": nc / calls}
            for tt, _ct, nc, w in rows[:20]
        ],
        "syscall_builtins_per_request": {k: v / calls for k, v in sys_calls.most_common()},
        "python_calls_per_request": sum(r[2] for r in rows) / calls,
    }


def costliest(n: int = 2) -> list[str]:
    """The *n* operations with the most daemon CPU per request in the latest full run."""
    try:
        with open(os.path.join(RESULTS, "latest.json")) as f:
            ops = json.load(f)["operations"]
        return [o["op"] for o in sorted(ops, key=lambda o: -o["daemon_cpu_us"])[:n]]
    except (OSError, ValueError, KeyError):
        return ["Create+Remove", "MovePid"][:n]


def client_cpu() -> int:
    """The CPU the client (and py-spy) use in profile runs: not the daemon's, if there is
    another.  Pinned to the daemon's CPU, the daemon is preempted inside send() when it wakes
    the client, and a sampler counts that runnable-but-waiting time as the daemon's."""
    return 1 if (os.cpu_count() or 1) > 1 else CPU


def components(fx: Fixture, n: int = 2000) -> dict[str, float]:
    """The daemon's own building blocks run in this process (pinned, no daemon running):
    median µs per call.  A direct measure of the fixed costs the profiles point at."""
    from cgmanager.dbus.codec import (
        METHOD_CALL,
        METHOD_RETURN,
        Message,
        parse_message,
        serialise_message,
    )
    from cgmanager.hierarchy import discover_host
    from cgmanager.names import split
    from cgmanager.permission import Credentials
    from cgmanager.requestor import Namespaces, identify
    from cgmanager.victim import Victim

    from .harness import IFACE, OBJ, SKIP
    from .stats import summary_us, timed

    layout, ns = discover_host(skip=SKIP.split(",")), Namespaces.of_self()
    cred = Credentials(os.getpid(), os.getuid(), os.getgid())
    pidfd = os.pidfd_open(os.getpid())
    gv = fx.hpath("gv")
    call, _ = serialise_message(
        Message(
            METHOD_CALL,
            path=OBJ,
            interface=IFACE,
            member="GetValue",
            signature="sss",
            body=("pids", gv, "pids.max"),
        ),
        7,
    )
    reply = Message(METHOD_RETURN, reply_serial=7, signature="s", body=("max",))

    def victim(i: int) -> None:
        Victim.open(fx.mover.pid, layout).close()

    ops: dict[str, Op] = {
        "identify the requestor (/proc/<pid>: cgroup, uid_map, gid_map, 2 ns stats)": lambda i: (
            identify(cred, layout, ns, pidfd)
        ),
        "victim facts (pidfd_open, /proc/<pid>: status, cgroup)": victim,
        "codec: parse a GetValue call + serialise its reply": lambda i: (
            parse_message(call),
            serialise_message(reply, i + 1),
        ),
        "names.split of a cgroup path (done ~4x per request)": lambda i: split(gv),
    }
    try:
        return {k: summary_us(timed(op, n))["median"] for k, op in ops.items()}
    finally:
        os.close(pidfd)


def run(h: Harness, a: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    h.enter()
    fx = Fixture.make(h)
    comps = components(fx)  # pinned to the daemon's CPU, like the timing run
    os.sched_setaffinity(0, {client_cpu()})
    names = costliest() if a.profile_ops == "auto" else [n for n in a.profile_ops.split(",") if n]
    pyspy = find_pyspy(a.py_spy)
    if pyspy is None:
        log("py-spy not found (pip install --target /tmp/pyspy py-spy): cProfile only")
    doc: dict[str, Any] = {
        "kind": "profile",
        "machine": machine(),
        "source": source(),
        "components_us": comps,
        "operations": {},
    }
    for name in names:
        entry: dict[str, Any] = {}
        if pyspy:
            log(f"py-spy on {name} ({a.profile_calls} calls)")
            entry["pyspy"] = pyspy_profile(h, fx, name, a.profile_calls, pyspy, a.profile_native)
            entry["pyspy"]["mode"] = (
                "native, blocking, 250 Hz" if a.profile_native else "nonblocking, 1 kHz"
            )
        log(f"cProfile on {name} ({a.profile_calls} calls)")
        entry["cprofile"] = cprofile(h, fx, name, a.profile_calls)
        doc["operations"][name] = entry
    return doc


def print_summary(doc: dict[str, Any]) -> None:
    print("== the daemon's building blocks, in-process, pinned (median µs per call)")
    for k, v in doc["components_us"].items():
        print(f"    {k:<76} {v:6.1f}")
    print()
    for name, entry in doc["operations"].items():
        print(f"== {name}")
        spy = entry.get("pyspy")
        if spy:
            cpu = spy["daemon_cpu_us_unprofiled"]
            print(f"  py-spy: {spy['samples']} samples; daemon CPU/request unprofiled {cpu:.1f} µs")
            print("  by stage (inclusive):")
            for k, v in spy["stages"].items():
                print(f"    {k:<48} {100 * v:5.1f} %  {v * cpu:6.1f} µs")
            print("  by innermost frame (self):")
            for k, v in spy["self"].items():
                print(f"    {k:<48} {100 * v:5.1f} %  {v * cpu:6.1f} µs")
            print("  hottest Python functions (self, incl. the C calls they make):")
            for k, v in list(spy["top_python_leaf"].items())[:10]:
                print(f"    {k:<60} {100 * v:5.1f} %")
        cp = entry["cprofile"]
        print(
            f"  cProfile: {cp['python_calls_per_request']:.0f} function calls per request; "
            "built-ins doing system calls, per request:"
        )
        for k, v in cp["syscall_builtins_per_request"].items():
            print(f"    {k:<60} {v:5.1f}")
        print("  top self time under cProfile:")
        for r in cp["top_self"][:12]:
            print(
                f"    {r['fn']:<64} {100 * r['self_share']:5.1f} %  ×{r['calls_per_request']:.1f}"
            )
        print()
