"""The bench harness: a marked ``cgtest-<random>`` root in the served hierarchies, the daemon under
test (pinned with ``taskset -c 0``), sleeping children, and a teardown that runs on SIGTERM too.

Safety (docs/TESTING.md): only the ``pids`` hierarchy and the v2 tree are used
(never ``memory``); every cgroup lives below our own marked root; only processes we started are
signalled, by pidfd; the roots of dead bench/test runs are removed only when empty (we never
signal a process we did not start, so a populated stale root is left to the test sweeper).
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from types import FrameType

from cgmanager.dbus.client import Connection, connect
from cgmanager.hierarchy import discover_host

OBJ = "/org/linuxcontainers/cgmanager"
IFACE = "org.linuxcontainers.cgmanager0_0"
PREFIX = "cgtest-"
OWNER_XATTR = "user.cgtest.owner"
#: the hierarchies the bench serves and works in
USED = ("pids", "unified")
#: everything else this kind of host has; ``memory`` belongs to the machine's supervisor
SKIP = "memory,cpuacct,blkio,devices,cpuset,freezer,name=systemd,cpu"
VENV_BIN = os.path.dirname(sys.executable)
CPU = 0


class BenchError(RuntimeError):
    """The daemon or a call failed: the run is invalid (never raised for a timing)."""


def expect(cond: object, what: str) -> None:
    """Fail the run (not only under ``python -O``) when a workload did not do its work."""
    if not cond:
        raise BenchError(f"check failed: {what}")


def cpu_ns(pid: int | str) -> int:
    """CPU time the process has run, in ns: the first field of /proc/<pid>/schedstat, summed
    over its threads (the daemon is single-threaded, so this is /proc/<pid>/schedstat)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", "rb") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def proc_status(pid: int | str, fields: tuple[str, ...] = ("VmRSS", "VmHWM")) -> dict[str, int]:
    """Fields of /proc/<pid>/status in kB (VmRSS: resident now; VmHWM: the peak so far)."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in fields:
                out[key] = int(value.split()[0])
    return out


def starttime(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (None if gone): with the pid, an identity."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return int(data[data.rindex(b")") + 2 :].split()[19])


def my_mark() -> str:
    return f"{os.getpid()}:{starttime(os.getpid())}"


def mark_alive(mark: str) -> bool:
    pid, _, start = mark.partition(":")
    return pid.isdigit() and start.isdigit() and starttime(int(pid)) == int(start)


def write_file(path: str, data: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, data.encode())
    finally:
        os.close(fd)


def rmdir_tree(path: str, timeout: float = 5.0) -> list[str]:
    """rmdir a cgroup subtree bottom-up, retrying EBUSY briefly; returns problems."""
    dirs = [d for d, _, _ in os.walk(path)]
    problems = []
    for d in reversed(dirs):
        deadline = time.monotonic() + timeout
        while True:
            try:
                os.rmdir(d)
                break
            except FileNotFoundError:
                break
            except OSError as e:
                if e.errno != errno.EBUSY or time.monotonic() > deadline:
                    problems.append(f"rmdir {d}: {e.strerror}")
                    break
                time.sleep(0.01)
    return problems


def sweep_stale(mounts: dict[str, str]) -> list[str]:
    """Remove empty ``cgtest-*`` roots whose owner mark names a dead process."""
    removed = []
    for mount in mounts.values():
        for name in os.listdir(mount):
            path = os.path.join(mount, name)
            if not name.startswith(PREFIX) or not os.path.isdir(path):
                continue
            try:
                mark = os.getxattr(path, OWNER_XATTR).decode(errors="replace")
            except OSError:
                continue  # unmarked: maybe another run between mkdir and setxattr
            if mark_alive(mark):
                continue
            if not rmdir_tree(path, timeout=0.2):
                removed.append(path)
    return removed


@dataclass
class Child:
    """A process we started, pinned by a pidfd."""

    popen: subprocess.Popen
    pidfd: int

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self, sig: int = signal.SIGKILL, timeout: float = 10.0) -> int | None:
        if self.popen.poll() is None:
            try:
                signal.pidfd_send_signal(self.pidfd, sig)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
                self.popen.wait(timeout)
        os.close(self.pidfd)
        self.pidfd = -1
        return self.popen.returncode


@dataclass
class Daemon:
    child: Child
    socket: str
    log_path: str

    @property
    def pid(self) -> int:
        return self.child.pid

    @property
    def address(self) -> str:
        return f"unix:path={self.socket}"

    def connect(self) -> Connection:
        return connect(self.address, timeout=10)

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def check_alive(self) -> None:
        if self.child.popen.poll() is not None:
            raise BenchError(f"cgmanager exited {self.child.popen.returncode}:\n{self.log()}")


def _raise_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


@dataclass
class Harness:
    """Use as a context manager: everything it made is undone on exit, SIGTERM and Ctrl-C."""

    mounts: dict[str, str] = field(default_factory=dict)  # hierarchy -> host mount point
    name: str = ""
    tmp: str = ""
    children: list[Child] = field(default_factory=list)
    daemons: list[Daemon] = field(default_factory=list)
    home: dict[str, str] = field(default_factory=dict)  # hierarchy -> our cgroup before the run
    swept: list[str] = field(default_factory=list)
    started: list[tuple[int, int | None]] = field(default_factory=list)  # (pid, starttime)
    entered: bool = False

    def __enter__(self) -> Harness:
        if os.geteuid() != 0:
            raise BenchError("the benchmarks need root (they create cgroups and run cgmanager)")
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, _raise_exit)
        try:
            self._setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _setup(self) -> None:
        layout = discover_host(skip=SKIP.split(","))
        self.mounts = {h.key: h.mountpoint for h in layout.hierarchies if h.key in USED}
        if sorted(self.mounts) != sorted(USED):
            raise BenchError(f"need the pids and v2 hierarchies; found {sorted(self.mounts)}")
        self.swept = sweep_stale(self.mounts)
        self.tmp = tempfile.mkdtemp(prefix="cgmanager-bench-")
        self.name = PREFIX + secrets.token_hex(4)
        mark = my_mark().encode()
        for mount in self.mounts.values():
            path = os.path.join(mount, self.name)
            os.mkdir(path)
            os.setxattr(path, OWNER_XATTR, mark)
        with open("/proc/self/cgroup") as f:
            lines = [line.rstrip("\n").split(":", 2) for line in f]
        for key in self.mounts:
            self.home[key] = next(
                p
                for _, ctrl, p in lines
                if (ctrl == "" if key == "unified" else key in ctrl.split(","))
            )

    # -- cgroups ---------------------------------------------------------------------------------

    def path(self, key: str, rel: str = "") -> str:
        """Host path of ``<root>/<rel>`` in hierarchy *key*."""
        return (
            os.path.join(self.mounts[key], self.name, rel)
            if rel
            else os.path.join(self.mounts[key], self.name)
        )

    def hpath(self, rel: str = "") -> str:
        """The same cgroup as a hierarchy-absolute path (what lookup methods take)."""
        return f"/{self.name}/{rel}" if rel else f"/{self.name}"

    def mkdir(self, rel: str, keys: tuple[str, ...] = USED) -> None:
        for key in keys:
            os.mkdir(self.path(key, rel))

    def enter(self) -> None:
        """Move this process into the run root of every used hierarchy (the daemon resolves
        relative paths below the client's cgroup)."""
        for key in self.mounts:
            write_file(self.path(key, "cgroup.procs"), str(os.getpid()))
        self.entered = True

    def leave(self) -> None:
        self.entered = False
        for key, home in self.home.items():
            target = os.path.join(self.mounts[key], home.lstrip("/"), "cgroup.procs")
            try:
                write_file(target, str(os.getpid()))
            except OSError as e:
                print(f"bench: cannot move back to {target}: {e}", file=sys.stderr)

    # -- processes -------------------------------------------------------------------------------

    def spawn(self, argv: list[str], **kw: object) -> Child:
        popen = subprocess.Popen(argv, **kw)  # type: ignore[call-overload]
        child = Child(popen, os.pidfd_open(popen.pid))
        self.started.append((popen.pid, starttime(popen.pid)))
        self.children.append(child)
        return child

    def sleeper(self, rel: str | None = None) -> Child:
        """A sleeping child, moved into ``<root>/<rel>`` of pids when *rel* is given."""
        child = self.spawn(["sleep", "3600"], stdin=subprocess.DEVNULL)
        if rel is not None:
            write_file(self.path("pids", f"{rel}/cgroup.procs"), str(child.pid))
        return child

    def start_daemon(
        self,
        wrapper: tuple[str, ...] = (),
        label: str = "d",
        options: tuple[str, ...] = (),
        cpus: str = str(CPU),
    ) -> Daemon:
        """Start cgmanager on a private socket, pinned to CPU 0 (taskset execs it: same pid).
        It starts in our original cgroups (as a system daemon would sit at the root), not in
        the run root.  *options* are added to its command line (e.g. connection limits); *cpus*
        is taskset's list (another pinning for suites that compare with threads)."""
        d = os.path.join(self.tmp, f"{label}{len(self.started)}")
        os.mkdir(d)
        sock, log = os.path.join(d, "sock"), os.path.join(d, "daemon.log")
        argv = [
            "taskset",
            "-c",
            cpus,
            *wrapper,
            f"{VENV_BIN}/cgmanager",
            "--socket",
            sock,
            "--fs-dir",
            os.path.join(d, "fs"),
            "--skip",
            SKIP,
            "--log-level",
            "warning",
            # never the host's /etc/cgmanager policy; a bench that wants one passes its own
            "--config-dir",
            "",
            "--rules",
            "",
            *options,
        ]
        if wrapper:  # e.g. python -m cProfile -o F -m: the module, not the script
            argv[argv.index(f"{VENV_BIN}/cgmanager")] = "cgmanager.daemon.main"
        was_in = self.entered
        if was_in:
            self.leave()
        try:
            with open(log, "w") as logf:
                child = self.spawn(
                    argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT
                )
        finally:
            if was_in:
                self.enter()
        daemon = Daemon(child, sock, log)
        self.daemons.append(daemon)
        deadline = time.monotonic() + 20
        while True:
            daemon.check_alive()
            try:
                daemon.connect().close()
                return daemon
            except Exception:
                if time.monotonic() > deadline:
                    raise BenchError(f"cgmanager did not come up:\n{daemon.log()}") from None
                time.sleep(0.02)

    def stop_daemon(self, daemon: Daemon) -> None:
        """SIGTERM (a clean exit: cProfile writes its output), then check the exit status."""
        rc = daemon.child.stop(signal.SIGTERM)
        self.daemons.remove(daemon)
        self.children.remove(daemon.child)
        if rc != 0:
            raise BenchError(f"cgmanager exited {rc}:\n{daemon.log()}")

    # -- teardown --------------------------------------------------------------------------------

    def close(self) -> None:
        old = {
            s: signal.signal(s, signal.SIG_IGN)
            for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        }
        try:
            for child in reversed(self.children):
                if child.pidfd >= 0:
                    child.stop(
                        signal.SIGTERM
                        if child in [d.child for d in self.daemons]
                        else signal.SIGKILL
                    )
            self.children.clear()
            self.daemons.clear()
            if self.name:
                self.leave()
                for key in self.mounts:
                    for problem in rmdir_tree(self.path(key)):
                        print(f"bench: cleanup: {problem}", file=sys.stderr)
            if self.tmp:
                shutil.rmtree(self.tmp, ignore_errors=True)
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    def leftovers(self) -> list[str]:
        """What this run left behind (checked after :meth:`close`)."""
        left = [self.path(k) for k in self.mounts if self.name and os.path.exists(self.path(k))]
        left += [
            f"process {pid} (started by the bench)"
            for pid, start in self.started
            if start is not None and starttime(pid) == start
        ]
        return left


@dataclass
class Fixture:
    """The cgroups (in pids, below the run root) the workloads act on, shared by the daemon
    runs and the floor so both do the same work on the same kernel objects.

    ``gv`` (GetValue, ListKeys), ``m1``/``m2`` and a sleeper (MovePid), ``kids`` with
    ``KIDS`` children (ListChildren), ``sleepers`` with ``TASKS`` sleeping children (GetTasks);
    Create+Remove makes and removes ``cr`` (daemon) and ``crf`` (floor)."""

    h: Harness
    mover: Child
    task_pids: list[int]

    KIDS = 10
    TASKS = 4

    @classmethod
    def make(cls, h: Harness) -> Fixture:
        for rel in ("gv", "m1", "m2", "kids", "sleepers"):
            h.mkdir(rel, ("pids",))
        for i in range(cls.KIDS):
            h.mkdir(f"kids/c{i}", ("pids",))
        mover = h.sleeper("m1")
        tasks = [h.sleeper("sleepers").pid for _ in range(cls.TASKS)]
        return cls(h, mover, tasks)

    def path(self, rel: str) -> str:
        """Host path below the run root in pids."""
        return self.h.path("pids", rel)

    def hpath(self, rel: str) -> str:
        """Hierarchy-absolute path (``/cgtest-…/rel``)."""
        return self.h.hpath(rel)
