"""Throw-away systemd containers for tier t4 (systemd coexistence).

These machines have no systemd as PID 1, but systemd 252 boots as a container payload with
`systemd-nspawn` (Debian package `systemd-container`, installed by scripts/install-test-deps)
in well under a second:

* the launcher (`unshare -m --propagation private` -> `sh` -> `exec systemd-nspawn`, one pid)
  first joins a fresh `nspawn-<hex>` cgroup below this run's roots (v2 and, on hybrid hosts,
  name=systemd), so everything the container does lives inside the run's `cgtest-*` trees;
* in its private mount namespace it puts a tmpfs over `/run` (on these machines `/run` is on
  disk, and nspawn keeps state below `/run/systemd/nspawn`) and mounts an overlay of the host's
  `/` on that tmpfs: the container sees the host's files (the project's venv included, at the
  same paths) and every write goes to RAM.  The mounts vanish with the namespace;
* `systemd-nspawn --boot --private-network --register=no --keep-unit`, with
  `SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1`: a pure cgroup v2 container in its own cgroup namespace,
  no machined registration (so `systemctl -M`/`systemd-run --machine` cannot reach it), no
  scope of its own (none could exist: there is no host systemd).  nspawn mounts cgroup2 inside
  the container's cgroup namespace, where mount options are not applied: the host's v2 mount
  flags stay as they were (checked by the tier).  nspawn creates `payload/` (the container's
  root cgroup) and `supervisor/` (itself) below the launcher's cgroup.  The container has no
  resource controllers: on this host they are bound to v1;
* systemd boots to `basic.target` (the container's own argv is its "kernel command line":
  `systemd.unit=basic.target`), which keeps the host's enabled services (postgres…) out.

Entering: `nsenter --target <leader> --all` (the leader is the container's PID 1, found in
`payload/init.scope`) runs a command in all of the container's namespaces.  nsenter does not
change cgroups, so every entered process first joins our own `enter/` cgroup next to
`payload/` (outside the container's cgroup namespace: it shows as `/../enter`); a process that
must live in a unit asks the container's systemd to move it (AttachProcessesToUnit).
`systemctl` inside talks to `/run/systemd/private` (no D-Bus broker needed).  Files of the
container are reachable from the host as `/proc/<leader>/root/...`.

Teardown (`Container.shutdown`): thaw every frozen cgroup of the container (systemd-shutdown
does not reliably end frozen processes and then waits 90 s for them), SIGRTMIN+4 to the leader
(systemd's "poweroff", ~0.1 s), wait for nspawn to exit, then kill whatever is left through the
container's cgroup (`cgroup.kill`) and remove that cgroup bottom-up — `payload/…`,
`supervisor`, `enter` and our `nspawn-<hex>` itself, never anything else.  The launcher is
registered with the run (tracked process) and its cgroups lie inside the run roots, so a run
killed by SIGTERM still loses the container in the run's final cleanup.

Use: `boot(parents, tracker=..., log_dir=...) -> Container`; `.run(argv)` / `.systemctl(...)` /
`.show(unit, props...)` inside, `.path(p)` / `.write_file` / `.read_file` for its files,
`.host_cgroup("/system.slice/x.service")` for a cgroup's host path, `.shutdown()`.  The
`container` fixture (tests/under_systemd/conftest.py) boots one per run.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from . import cgtree
from .procs import Proc, ProcTracker, pidfd_exited, pidfd_wait_exit

SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SYSTEMD_BINARY = "/lib/systemd/systemd"
#: environment of commands run inside the container (the host's would leak pyenv shims, colours)
INNER_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "HOME": "/root",
    "SYSTEMD_PAGER": "",
    "SYSTEMD_COLORS": "0",
    "TERM": "dumb",
}

# The launcher, after `unshare --mount --propagation=private`: a tmpfs over /run, the overlay
# root on it, then exec its arguments (systemd-nspawn ...) with the same pid.
_LAUNCH = r"""
set -eu
mount -t tmpfs -o mode=0755,size=1g cgtest-nspawn-run /run
mkdir /run/cgtest-nspawn /run/cgtest-nspawn/upper /run/cgtest-nspawn/work \
      /run/cgtest-nspawn/root
mount -t overlay cgtest-nspawn-root \
      -o lowerdir=/,upperdir=/run/cgtest-nspawn/upper,workdir=/run/cgtest-nspawn/work \
      /run/cgtest-nspawn/root
exec "$@"
"""


def _which(name: str) -> str | None:
    return shutil.which(name, path=SBIN_PATH)


def probe() -> str | None:
    """Why a systemd container cannot be booted here (None: it can, as far as we can tell)."""
    if os.geteuid() != 0:
        return f"needs root (euid {os.geteuid()})"
    missing = [t for t in ("systemd-nspawn", "nsenter", "unshare") if _which(t) is None]
    if missing:
        return f"missing tools {missing} (run scripts/install-test-deps: systemd-container)"
    if not os.access(SYSTEMD_BINARY, os.X_OK):
        return f"{SYSTEMD_BINARY} missing: systemd is not installed"
    try:
        with open("/proc/filesystems") as f:
            fss = {line.split()[-1] for line in f if line.strip()}
    except OSError as e:
        return f"cannot read /proc/filesystems: {e}"
    if "overlay" not in fss:
        return "overlayfs not available (modprobe overlay)"
    if "cgroup2" not in fss:
        return "cgroup2 not available"
    return None


def systemd_version() -> int | None:
    """The installed systemd's version (the container runs the host's systemd)."""
    try:
        out = subprocess.run(
            [SYSTEMD_BINARY, "--version"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.match(r"systemd (\d+)", out)
    return int(m.group(1)) if m else None


def host_cgroup2_options() -> str:
    """Super options of the host's cgroup2 mount (global: nsdelegate, memory_recursiveprot…)."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fstype, _source, sopts = right.split()[:3]
            if fstype == "cgroup2":
                return sopts
    return ""


def nspid(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return [int(x) for x in line.split()[1:]]
    except OSError:
        pass
    return []


class ContainerError(RuntimeError):
    pass


@dataclass
class Container:
    """A booted container.  `cgroups` maps hierarchy label ("unified", "systemd") to the host
    path of our `nspawn-<hex>` cgroup (the launcher's); the container's own root cgroup is
    `payload/` below it."""

    name: str
    launcher: Proc
    cgroups: dict[str, str]
    log_path: str
    leader: int = 0
    leader_pidfd: int = -1
    boot_seconds: float = 0.0
    host_cgroup2_options: str = ""  # before the boot
    _enter_files: list[str] = field(default_factory=list)

    # ------------------------------------------------------------ paths
    @property
    def payload(self) -> str:
        """Host path of the container's root cgroup (v2)."""
        return os.path.join(self.cgroups["unified"], "payload")

    def host_cgroup(self, inner: str) -> str:
        """Host path (v2) of a cgroup path as the container sees it ("/system.slice/x")."""
        return os.path.join(self.payload, inner.lstrip("/"))

    def path(self, inner: str) -> str:
        """A file of the container, reached from the host through /proc/<leader>/root."""
        self._require_alive()
        return f"/proc/{self.leader}/root/{inner.lstrip('/')}"

    def write_file(self, inner: str, text: str, mode: int = 0o644) -> None:
        p = self.path(inner)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(text)
        os.chmod(p, mode)

    def read_file(self, inner: str) -> str:
        with open(self.path(inner)) as f:
            return f.read()

    def log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError as e:
            return f"(no log: {e})"

    def alive(self) -> bool:
        return self.leader_pidfd >= 0 and not pidfd_exited(self.leader_pidfd)

    def _require_alive(self) -> None:
        if not self.alive():
            raise ContainerError(f"container {self.name} is not running:\n{self.log()[-3000:]}")

    # ------------------------------------------------------------ entering
    def _enter_argv(self, argv: Sequence[str]) -> list[str]:
        return [
            _which("nsenter") or "nsenter",
            f"--target={self.leader}",
            "--all",
            "--root",
            "--wd",
            "--",
            *argv,
        ]

    def _preexec(self) -> Callable[[], None]:
        files = list(self._enter_files)

        def join() -> None:
            for p in files:
                fd = os.open(p, os.O_WRONLY)
                try:
                    os.write(fd, b"0")
                finally:
                    os.close(fd)

        return join

    def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        timeout: float = 30.0,
        check: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess:
        """Run argv inside the container (all its namespaces, from our `enter/` cgroup)."""
        self._require_alive()
        full_env = {**INNER_ENV, **(env or {})}
        try:
            cp = subprocess.run(
                self._enter_argv(argv),
                input=input,
                stdin=None if input is not None else subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=full_env,
                preexec_fn=self._preexec(),  # noqa: PLW1509
            )
        except subprocess.TimeoutExpired as e:
            raise ContainerError(f"{list(argv)} timed out after {timeout}s in {self.name}") from e
        if check and cp.returncode != 0:
            raise ContainerError(
                f"{list(argv)} exited {cp.returncode} in {self.name}:\n"
                f"stdout: {cp.stdout}\nstderr: {cp.stderr}"
            )
        return cp

    def systemctl(self, *args: str, check: bool = True, timeout: float = 30.0) -> str:
        cp = self.run(["systemctl", "--no-pager", *args], check=check, timeout=timeout)
        return cp.stdout.strip()

    def show(self, unit: str, *props: str) -> dict[str, str]:
        """`systemctl show -p A -p B unit` as a dict."""
        out = self.systemctl("show", unit, *(f"--property={p}" for p in props))
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def wait_running(self, timeout: float = 30.0) -> str:
        """Wait until `systemctl is-system-running` settles on running or degraded."""
        deadline = time.monotonic() + timeout
        state = "?"
        while time.monotonic() < deadline:
            cp = self.run(
                ["systemctl", "is-system-running", "--wait"],
                check=False,
                timeout=max(1.0, deadline - time.monotonic()),
            )
            state = cp.stdout.strip() or cp.stderr.strip()
            if state in ("running", "degraded"):
                return state
            if state in ("maintenance", "stopping"):
                break
            time.sleep(0.02)  # "offline": systemd's private bus is not up yet
        raise ContainerError(
            f"container {self.name} did not settle (last: {state!r}):\n{self.log()[-3000:]}"
        )

    # ------------------------------------------------------------ teardown
    def thaw_all(self) -> None:
        """Thaw every frozen cgroup of the container: systemd-shutdown's final SIGTERM/SIGKILL
        round does not reliably end frozen processes and then waits its full 90 s."""
        for dirpath, _dirs, _files in os.walk(self.payload):
            f = os.path.join(dirpath, "cgroup.freeze")
            try:
                with open(f) as fh:
                    if fh.read().strip() != "1":
                        continue
                with open(f, "w") as fh:
                    fh.write("0")
            except OSError:
                continue

    def _diagnose(self) -> str:
        try:
            cp = subprocess.run(
                self._enter_argv(["ps", "-eo", "pid,stat,cgroup:60,args"]),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=10,
                env=INNER_ENV,
                preexec_fn=self._preexec(),  # noqa: PLW1509
            )
            return cp.stdout + cp.stderr
        except (OSError, subprocess.SubprocessError) as e:
            return f"(ps failed: {e!r})"

    def shutdown(self, timeout: float = 10.0) -> list[str]:
        """Power off, then kill and remove whatever is left of this container's cgroups.
        Returns problems (empty: all gone).  Idempotent."""
        problems: list[str] = []
        if self.alive():
            self.thaw_all()
            try:
                signal.pidfd_send_signal(self.leader_pidfd, signal.SIGRTMIN + 4)  # poweroff
            except ProcessLookupError:
                pass
        if self.launcher.wait(timeout) is None:
            problems.append(
                f"{self.name}: nspawn did not exit within {timeout}s of poweroff; processes:\n"
                f"{self._diagnose()}\nconsole:\n{self.log()[-3000:]}"
            )
            self.launcher.kill(5.0)
        if self.leader_pidfd >= 0:
            if not pidfd_wait_exit(self.leader_pidfd, 2.0):
                problems.append(f"{self.name}: container init survived nspawn")
            os.close(self.leader_pidfd)
            self.leader_pidfd = -1
        # v2 first: cgroup.kill takes everything left (entered processes included)
        for label in sorted(self.cgroups, key=lambda k: k != "unified"):
            path = self.cgroups[label]
            if os.path.isdir(path):
                problems += cgtree.destroy_tree(path, 2 if label == "unified" else 1)
        self.launcher.close()
        return problems


def _checkout_dirs() -> list[str]:
    """The repository and the interpreter's venv (when outside it), for read-only binds."""
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    venv = os.path.dirname(os.path.dirname(os.path.abspath(sys.executable)))
    dirs = [repo]
    if not (venv + "/").startswith(repo + "/") and venv != "/usr":
        dirs.append(venv)
    return dirs


def boot(
    parents: Mapping[str, str],
    *,
    tracker: ProcTracker,
    log_dir: str,
    timeout: float = 30.0,
    unit: str = "basic.target",
    extra_args: Sequence[str] = (),
) -> Container:
    """Boot a container whose cgroups go below `parents` ({"unified": <v2 dir>, optionally
    "systemd": <name=systemd dir>}, both inside this run's roots).  `tracker` spawns (and on
    failure kills) the launcher.  Returns once systemd says running/degraded."""
    why = probe()
    if why:
        raise ContainerError(why)
    if "unified" not in parents:
        raise ContainerError("a cgroup v2 parent is required")
    name = "cgtest-" + secrets.token_hex(4)
    cgroups: dict[str, str] = {}
    for label, parent in parents.items():
        path = os.path.join(parent, f"nspawn-{name[7:]}")
        os.mkdir(path)
        cgroups[label] = path
    enter_files = []
    for path in cgroups.values():
        os.mkdir(os.path.join(path, "enter"))
        enter_files.append(os.path.join(path, "enter", "cgroup.procs"))
    launcher_files = [os.path.join(p, "cgroup.procs") for p in cgroups.values()]

    def join_launcher_cgroups() -> None:
        for p in launcher_files:
            fd = os.open(p, os.O_WRONLY)
            try:
                os.write(fd, b"0")
            finally:
                os.close(fd)

    log_path = os.path.join(log_dir, f"{name}.log")
    argv = [
        _which("unshare") or "unshare",
        "--mount",
        "--propagation=private",
        "/bin/sh",
        "-c",
        _LAUNCH,
        "cgtest-nspawn-launch",
        _which("systemd-nspawn") or "systemd-nspawn",
        "--quiet",
        "--directory=/run/cgtest-nspawn/root",
        f"--machine={name}",
        "--boot",
        "--private-network",
        "--register=no",
        "--keep-unit",
        "--link-journal=no",
        "--resolv-conf=off",
        "--timezone=off",
        "--console=read-only",
        # the checkout (and its venv) at its own path: nspawn mounts a tmpfs over /tmp, which
        # would hide a checkout living there (as CI's clone may)
        *[f"--bind-ro={d}" for d in _checkout_dirs()],
        *extra_args,
        f"systemd.unit={unit}",
    ]
    env = {
        "PATH": SBIN_PATH,
        "LANG": "C.UTF-8",
        "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1",
        "SYSTEMD_LOG_COLOR": "0",
        "SYSTEMD_COLORS": "0",
    }
    host_opts = host_cgroup2_options()
    t0 = time.monotonic()
    with open(log_path, "w") as logf:
        launcher = tracker.spawn(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=join_launcher_cgroups,
        )
    c = Container(
        name, launcher, cgroups, log_path, host_cgroup2_options=host_opts, _enter_files=enter_files
    )
    try:
        deadline = t0 + timeout
        c.leader = _wait_leader(c, deadline)
        c.leader_pidfd = os.pidfd_open(c.leader)
        if nspid(c.leader)[-1:] != [1]:  # re-check after pinning (pid reuse)
            raise ContainerError(f"pid {c.leader} is no longer the container's init")
        c.wait_running(max(1.0, deadline - time.monotonic()))
        c.boot_seconds = time.monotonic() - t0
    except BaseException:
        c.shutdown(timeout=5.0)
        raise
    return c


def _wait_leader(c: Container, deadline: float) -> int:
    """The container's PID 1 (host pid): the process of payload/ or payload/init.scope whose
    innermost pid is 1."""
    while time.monotonic() < deadline:
        if not c.launcher.alive():
            raise ContainerError(f"systemd-nspawn exited {c.launcher.wait(1)}:\n{c.log()[-3000:]}")
        for cg in (c.payload, os.path.join(c.payload, "init.scope")):
            for pid in cgtree.members(cg) if os.path.isdir(cg) else []:
                if nspid(pid)[-1:] == [1] and len(nspid(pid)) > 1:
                    return pid
        time.sleep(0.005)
    raise ContainerError(f"no container init appeared:\n{c.log()[-3000:]}")
