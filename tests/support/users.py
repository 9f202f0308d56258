"""Real unprivileged test users (`useradd -m cgtu<random>`).

useradd fills /etc/subuid and /etc/subgid for the new user, which the user-namespace
tests need. The GECOS field carries the owner mark of the run that created the user,
so a later run can remove users of dead runs (never by name alone).
"""

from __future__ import annotations

import os
import pwd
import secrets
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import marks

PREFIX = "cgtu"
GECOS_PREFIX = "cgtest owner "
_SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class TestUser:
    """An unprivileged user created for this run."""

    __test__ = False  # not a pytest test class

    name: str
    uid: int
    gid: int
    home: str
    groups: list[int] = field(default_factory=list)

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment for a process of this user: `base` (default: ours) with HOME/USER/LOGNAME."""
        env = dict(os.environ if base is None else base)
        env.update(HOME=self.home, USER=self.name, LOGNAME=self.name)
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        return env

    def popen_kwargs(self) -> dict[str, Any]:
        """subprocess keywords that run a child as this user (ids changed in C: thread-safe)."""
        return {"user": self.uid, "group": self.gid, "extra_groups": list(self.groups)}

    def run(self, argv: Sequence[str], **kw: Any) -> subprocess.CompletedProcess:
        """subprocess.run(argv) as this user (cwd: its home, env: see `env`)."""
        kw.setdefault("cwd", self.home)
        kw["env"] = self.env(kw.get("env"))
        kw.setdefault("timeout", 60)
        check = kw.pop("check", False)
        return subprocess.run(list(argv), check=check, **self.popen_kwargs(), **kw)

    def __str__(self) -> str:
        return f"{self.name}({self.uid}:{self.gid})"


def _run_tool(argv: list[str], attempts: int = 20) -> subprocess.CompletedProcess:
    """Run useradd/userdel, retrying while another run holds the passwd lock (exit 10)."""
    env = dict(os.environ, PATH=_SBIN_PATH)
    for i in range(attempts):
        cp = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, check=False)
        if cp.returncode != 10 or "lock" not in cp.stderr:
            return cp
        time.sleep(0.05 * (i + 1))
    return cp


def create_user(mark: str) -> TestUser:
    """useradd -m cgtu<random>, owned by `mark` (recorded in the GECOS field)."""
    name = PREFIX + secrets.token_hex(4)
    # ':' separates passwd fields, so the mark is stored as "<pid>.<starttime>"
    gecos = GECOS_PREFIX + mark.replace(":", ".")
    cp = _run_tool(["useradd", "-m", "-s", "/bin/sh", "-c", gecos, name])
    if cp.returncode != 0:
        raise RuntimeError(f"useradd {name} failed ({cp.returncode}): {cp.stderr.strip()}")
    pw = pwd.getpwnam(name)
    return TestUser(
        name=name,
        uid=pw.pw_uid,
        gid=pw.pw_gid,
        home=pw.pw_dir,
        groups=os.getgrouplist(name, pw.pw_gid),
    )


def pids_of_uid(uid: int, *, zombies: bool = False) -> list[int]:
    """Processes with `uid` as real, effective, saved or filesystem uid."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _has_uid(int(entry), uid, zombies):
            out.append(int(entry))
    return out


def _has_uid(pid: int, uid: int, zombies: bool = False) -> bool:
    state, uids = "", []
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("State:"):
                    state = line.split()[1]
                elif line.startswith("Uid:"):
                    uids = line.split()[1:]
                    break
    except OSError:
        return False
    return str(uid) in uids and (zombies or state not in ("Z", "X"))


def _reap_our_zombies(uid: int) -> None:
    """userdel refuses while even a zombie runs as the user: reap those that are ours."""
    for pid in pids_of_uid(uid, zombies=True):
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass


def kill_uid(uid: int, timeout: float = 5.0) -> list[int]:
    """SIGKILL, by pidfd, every process running as `uid` (a uid this harness created and
    nobody else uses). Returns the pids that were still there at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        pids = pids_of_uid(uid)
        if not pids or time.monotonic() > deadline:
            return pids
        for pid in pids:
            try:
                fd = os.pidfd_open(pid)
            except ProcessLookupError:
                continue
            try:
                if _has_uid(pid, uid):  # re-check once the process is pinned
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
            except ProcessLookupError:
                pass
            finally:
                os.close(fd)
        time.sleep(0.01)


def subid_lines(name: str) -> list[str]:
    """Lines of /etc/subuid and /etc/subgid naming `name`."""
    out = []
    for path in ("/etc/subuid", "/etc/subgid"):
        try:
            with open(path) as f:
                out += [f"{path}: {ln.strip()}" for ln in f if ln.split(":", 1)[0] == name]
        except FileNotFoundError:
            pass
    return out


def remove_user(user: TestUser) -> list[str]:
    """Kill the user's processes (by pidfd), userdel -r, and check it is all gone."""
    problems = []
    survivors = kill_uid(user.uid)
    if survivors:
        problems.append(f"user {user.name}: processes would not die: {survivors}")
    _reap_our_zombies(user.uid)
    cp = _run_tool(["userdel", "-r", user.name])
    # 6 = no such user (already gone); 12 = home/mail spool warnings (checked below)
    if cp.returncode not in (0, 6, 12):
        problems.append(f"userdel -r {user.name} failed ({cp.returncode}): {cp.stderr.strip()}")
    problems += user_leftovers(user)
    return problems


def user_leftovers(user: TestUser) -> list[str]:
    """What is left of a removed user: passwd entry, home, subordinate id ranges."""
    left = []
    try:
        pwd.getpwnam(user.name)
        left.append(f"user {user.name} still in /etc/passwd")
    except KeyError:
        pass
    if os.path.exists(user.home):
        left.append(f"home {user.home} of {user.name} still exists")
    left += subid_lines(user.name)
    return left


def sweep_users() -> tuple[list[str], list[str]]:
    """Remove `cgtu*` users whose creating run (mark in GECOS) is dead. -> (removed, problems)"""
    removed: list[str] = []
    problems: list[str] = []
    for pw in pwd.getpwall():
        if not pw.pw_name.startswith(PREFIX) or not pw.pw_gecos.startswith(GECOS_PREFIX):
            continue
        owner = pw.pw_gecos[len(GECOS_PREFIX) :].split(",")[0].replace(".", ":")
        if marks.mark_alive(owner):
            continue
        user = TestUser(pw.pw_name, pw.pw_uid, pw.pw_gid, pw.pw_dir)
        p = remove_user(user)
        if p:
            problems += p
        else:
            removed.append(f"user {pw.pw_name} (owner {owner})")
    return removed, problems
