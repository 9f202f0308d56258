"""cgmanager as a systemd service in a t4 container: install, start, clients, observation.

The service is the shipped unit (`init/systemd/cgmanager.service`) copied unchanged into the
container, plus one drop-in that only swaps `/usr/sbin/cgmanager` for this checkout's venv and
wraps the start in a gate (a `sh` that waits for `/run/cgtest-gate`, then execs the daemon with
the same pid): the test starts watching the delegation point with inotify *before* the daemon
runs, so even a write at start-up is seen.

Everything is observed from the host through the kernel (cgroupfs of the container's cgroup,
inotify), never through the daemon under test.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import re
import shlex
import struct
import sys
import time
from dataclasses import dataclass, field

from support.nspawn import Container, ContainerError, nspid

from cgmanager.contract import RUN_SOCKET

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNIT_FILE = os.path.join(REPO, "init", "systemd", "cgmanager.service")
UNIT = "cgmanager.service"
SHIPPED_BINARY = "/usr/sbin/cgmanager"
#: the checkout's daemon (the venv's interpreter is Debian's /usr/bin/python3: the same path
#: works inside the container, whose root is an overlay of the host's)
VENV_BINARY = os.path.join(os.path.dirname(sys.executable), "cgmanager")
#: CGTEST_T4_DAEMON="<command>" runs the tier against another daemon build (a shell-quoted
#: command line that replaces the binary; it must be reachable inside the container, whose
#: /tmp is a fresh tmpfs: use e.g. /var/tmp)
DAEMON_ENV = "CGTEST_T4_DAEMON"
VENV_PYTHON = sys.executable
CLIENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "incontainer_client.py")
GATE = "/run/cgtest-gate"
CGMANAGER_ERROR = "org.linuxcontainers.cgmanager.Error."

#: cgroup v2 core files whose *values* are the cgroup's attributes (what the delegatee must
#: leave alone on the delegation point, and what systemd must leave alone below it)
ATTRIBUTE_FILES = (
    "cgroup.max.descendants",
    "cgroup.max.depth",
    "cgroup.freeze",
    "cgroup.subtree_control",
    "cgroup.type",
    "cgroup.pressure",
)
#: files whose modification on the delegation point is not an attribute change: the kernel's
#: own notifications, and process moves (systemd attaching the main process or our clients)
BENIGN_MODIFIED = frozenset({"cgroup.events", "cgroup.procs"})


# ------------------------------------------------------------------------------ inotify
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
IN_MODIFY, IN_ATTRIB, IN_CREATE, IN_DELETE = 0x2, 0x4, 0x100, 0x200
IN_ISDIR = 0x40000000
_EVENT = struct.Struct("iIII")


class CgroupWatch:
    """inotify on one cgroup directory: writes (IN_MODIFY) and chmod/chown (IN_ATTRIB) of its
    files, children created/removed.  A write through any mount of the hierarchy (the daemon's
    private bind mount included) fires on the same kernfs inode."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = _libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            e = ctypes.get_errno()
            raise OSError(e, f"inotify_init1: {os.strerror(e)}")
        mask = IN_MODIFY | IN_ATTRIB | IN_CREATE | IN_DELETE
        if _libc.inotify_add_watch(self.fd, path.encode(), mask) < 0:
            e = ctypes.get_errno()
            os.close(self.fd)
            raise OSError(e, f"inotify_add_watch {path}: {os.strerror(e)}")
        self.seen: list[tuple[str, str]] = []

    def drain(self) -> list[tuple[str, str]]:
        """New events since the last drain, as (kind, name); also appended to `seen`."""
        new: list[tuple[str, str]] = []
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            i = 0
            while i < len(data):
                _wd, mask, _cookie, ln = _EVENT.unpack_from(data, i)
                name = data[i + 16 : i + 16 + ln].rstrip(b"\0").decode(errors="replace")
                i += 16 + ln
                for bit, kind in (
                    (IN_MODIFY, "modify"),
                    (IN_ATTRIB, "attrib"),
                    (IN_CREATE, "create"),
                    (IN_DELETE, "delete"),
                ):
                    if mask & bit:
                        new.append((kind, name or "."))
        self.seen += new
        return new

    def attribute_changes(self, events: list[tuple[str, str]] | None = None) -> list[str]:
        """Writes/chmods/chowns of the directory's own attributes among `events`."""
        evs = self.seen if events is None else events
        return [
            f"{kind} {name}"
            for kind, name in evs
            if kind == "attrib" or (kind == "modify" and name not in BENIGN_MODIFIED)
        ]

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


# ------------------------------------------------------------------------------ cgroupfs
def read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def attributes(cg: str) -> dict[str, str]:
    out = {}
    for name in ATTRIBUTE_FILES:
        try:
            out[name] = read(os.path.join(cg, name))
        except OSError as e:
            out[name] = f"<{e.strerror}>"
    try:
        st = os.stat(cg)
        out["owner"] = f"{st.st_uid}:{st.st_gid} {st.st_mode & 0o7777:o}"
    except OSError as e:
        out["owner"] = f"<{e.strerror}>"
    return out


def events(cg: str) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in read(os.path.join(cg, "cgroup.events")).splitlines())


def procs(cg: str) -> list[int]:
    try:
        return sorted(int(x) for x in read(os.path.join(cg, "cgroup.procs")).split())
    except FileNotFoundError:
        return []


def walk(top: str) -> list[str]:
    """Cgroup directories below `top` (top included), as paths relative to it ("." = top)."""
    out = []
    for dirpath, _dirs, _files in os.walk(top):
        out.append(os.path.relpath(dirpath, top))
    return sorted(out)


def wait_for(pred, timeout: float = 10.0, what: str = "condition", interval: float = 0.01):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# ------------------------------------------------------------------------------ service
def shipped_unit() -> str:
    with open(UNIT_FILE) as f:
        return f.read()


def shipped_exec_start(text: str | None = None) -> list[str]:
    """The shipped unit's ExecStart= as argv."""
    text = shipped_unit() if text is None else text
    lines = [ln.split("=", 1)[1].strip() for ln in text.splitlines() if ln.startswith("ExecStart=")]
    if len(lines) != 1:
        raise AssertionError(f"expected one ExecStart= in {UNIT_FILE}, found {lines}")
    return shlex.split(lines[0])


def shipped_socket() -> str:
    """The socket the shipped unit's daemon listens on in a t4 container: its last
    --socket/-s, else the daemon's rule (contract.daemon_socket) for the container's pure v2
    /sys/fs/cgroup."""
    argv, sock = shipped_exec_start(), RUN_SOCKET
    for i, a in enumerate(argv):
        if a in ("--socket", "-s") and i + 1 < len(argv):
            sock = argv[i + 1]
        elif a.startswith("--socket="):
            sock = a.split("=", 1)[1]
    return sock


def dropin_exec_start(gate: bool = True, extra: tuple[str, ...] = ()) -> str:
    """The drop-in's ExecStart: the shipped command line with this checkout's binary, behind
    the start gate (same pid: `exec`), `$` escaped for systemd."""
    argv = shipped_exec_start()
    if argv[0] != SHIPPED_BINARY:
        raise AssertionError(f"shipped ExecStart runs {argv[0]}, expected {SHIPPED_BINARY}")
    binary = shlex.split(os.environ.get(DAEMON_ENV, "")) or [VENV_BINARY]
    # `$CGMANAGER_OPTS` (from the optional EnvironmentFile=) stays for systemd to expand
    cmd = " ".join(a if a.startswith("$") else shlex.quote(a) for a in [*binary, *argv[1:], *extra])
    if not gate:
        return cmd
    script = f'until [ -e {GATE} ]; do sleep 0.01; done; exec "$$@"'
    return f"/bin/sh -c {shlex.quote(script)} gate {cmd}"


@dataclass
class ClientResult:
    results: list[dict]

    def ok(self, i: int = 0):
        r = self.results[i]
        if "ok" not in r:
            raise AssertionError(f"op {i} failed: {r}")
        return r["ok"]

    def error(self, i: int = 0) -> str:
        """The failure kind of op i (e.g. "NotPermitted"); AssertionError if it succeeded."""
        r = self.results[i]
        if "error" not in r:
            raise AssertionError(f"op {i} unexpectedly succeeded: {r}")
        name = r["error"]
        return name[len(CGMANAGER_ERROR) :] if name.startswith(CGMANAGER_ERROR) else name


def call(method: str, sig: str, *args) -> list:
    return ["call", method, sig, list(args)]


@dataclass
class Service:
    """The delegated cgmanager service in a container."""

    c: Container
    unit: str = UNIT
    socket: str = field(default_factory=shipped_socket)
    watch: CgroupWatch | None = None
    startup_events: list[tuple[str, str]] = field(default_factory=list)
    attrs_at_start: dict[str, str] = field(default_factory=dict)

    # -------------------------------------------------------------- where things are
    @property
    def control_group(self) -> str:
        """The unit's cgroup as the container sees it (the delegation point)."""
        return self.c.show(self.unit, "ControlGroup")["ControlGroup"]

    @property
    def dp(self) -> str:
        """Host path of the delegation point."""
        return self.c.host_cgroup(f"/system.slice/{self.unit}")

    def main_pid(self) -> int:
        return int(self.c.show(self.unit, "MainPID")["MainPID"])

    def host_pid(self, inner: int) -> int:
        """Host pid of a container pid, found among the container's processes."""
        for rel in walk(self.c.payload):
            for pid in procs(os.path.join(self.c.payload, rel)):
                if nspid(pid)[-1:] == [inner]:
                    return pid
        raise LookupError(f"container pid {inner} not found")

    def inner_cgroup(self, inner_pid: int) -> str:
        """The v2 cgroup of a container process, as the container sees it."""
        text = self.c.run(["cat", f"/proc/{inner_pid}/cgroup"]).stdout
        return next(ln[3:] for ln in text.splitlines() if ln.startswith("0::"))

    # -------------------------------------------------------------- lifecycle
    def install(self, dropin_extra: str = "", extra_args: tuple[str, ...] = ()) -> None:
        """The shipped unit unchanged, plus a drop-in: this checkout's daemon (with
        `extra_args` appended) behind the start gate, and `dropin_extra` [Service] lines."""
        self.c.write_file(f"/etc/systemd/system/{self.unit}", shipped_unit())
        self.c.write_file(
            f"/etc/systemd/system/{self.unit}.d/cgtest.conf",
            "# tests/under_systemd: this checkout's daemon instead of /usr/sbin/cgmanager, behind a\n"
            "# start gate so the test watches the delegation point before the daemon runs\n"
            f"[Service]\nExecStart=\nExecStart={dropin_exec_start(extra=extra_args)}\n"
            f"{dropin_extra}",
        )
        self.c.systemctl("daemon-reload")

    def start_watched(self, timeout: float = 20.0) -> None:
        """Start the unit; watch its cgroup from before the daemon runs until it is ready."""
        try:
            os.unlink(self.c.path(GATE))
        except FileNotFoundError:
            pass
        self.c.systemctl("start", "--no-block", self.unit)
        wait_for(lambda: os.path.isdir(self.dp), timeout, f"{self.dp} to appear")
        self.watch = CgroupWatch(self.dp)
        self.attrs_at_start = attributes(self.dp)
        self.open_gate()
        self.wait_ready(timeout)
        self.startup_events = self.watch.drain()

    def open_gate(self) -> None:
        with open(self.c.path(GATE), "w"):
            pass

    def wait_ready(self, timeout: float = 20.0) -> None:
        """The unit is active (Type=notify: the daemon said READY=1), its socket exists and
        answers a Ping (from inside the container).  The socket alone says nothing: one a
        killed daemon left stays until the next daemon replaces it."""
        sock = self.c.path(self.socket)
        deadline = time.monotonic() + timeout
        while True:
            state = self.c.show(self.unit, "ActiveState")["ActiveState"]
            if state == "active" and os.path.exists(sock):
                break
            if state == "failed" or time.monotonic() > deadline:
                raise ContainerError(f"{self.unit} not ready ({state}):\n{self.journal()}")
            time.sleep(0.01)
        self.client([call("Ping", "i", 0)]).ok()

    def journal(self, lines: int = 60) -> str:
        cp = self.c.run(
            ["journalctl", "--no-pager", "-o", "cat", "-n", str(lines), "-u", self.unit],
            check=False,
        )
        return cp.stdout + cp.stderr

    # -------------------------------------------------------------- clients
    def client(
        self, ops: list, attach: str | None = None, *, timeout: float = 30.0
    ) -> ClientResult:
        """Run incontainer_client.py inside the container: optionally attach to the unit's
        cgroup (`attach` is a path below it, "" = the delegation point), then run `ops`."""
        req = {"attach": attach, "unit": self.unit, "socket": self.socket, "ops": ops}
        cp = self.c.run(
            [VENV_PYTHON, "-I", CLIENT], input=json.dumps(req), timeout=timeout, check=False
        )
        if cp.returncode != 0:
            raise AssertionError(
                f"client exited {cp.returncode}: {cp.stderr.strip()}\njournal:\n{self.journal()}"
            )
        return ClientResult(json.loads(cp.stdout)["results"])

    # -------------------------------------------------------------- observation
    def snapshot(self, exclude_daemon: bool = True) -> dict[str, dict]:
        """Every cgroup of the delegated subtree: attributes, frozen state, member pids (host
        pids; the daemon's own left out when `exclude_daemon`)."""
        skip = set()
        if exclude_daemon:
            try:
                skip.add(self.host_pid(self.main_pid()))
            except (LookupError, ValueError):
                pass
        out = {}
        for rel in walk(self.dp):
            cg = os.path.join(self.dp, rel)
            try:
                out[rel] = {
                    **attributes(cg),
                    "frozen": events(cg).get("frozen"),
                    "procs": [p for p in procs(cg) if p not in skip],
                }
            except FileNotFoundError:
                continue  # removed while we walked
        return out


def strip_unit_noise(paths: list[str]) -> list[str]:
    """Drop cgroups systemd itself may create or remove while we look (unit cgroups of
    transient/short-lived units)."""
    return [p for p in paths if not re.search(r"(^|/)(run-[^/]+|[^/]+\.(mount|socket))(/|$)", p)]
