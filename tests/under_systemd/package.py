"""The Debian package under test: built once per source state, installed into t4 containers.

`built_deb()` runs `scripts/build-deb` (dh + pybuild, Debian's tools) on a copy of this
checkout and keeps the result in `$CGTEST_DEB_CACHE/build/<hash>/` (default
/var/cache/cgmanager-tests/debs), where `<hash>` covers every file the build copies (git's
tracked and untracked-not-ignored files: paths, modes, contents, symlink targets).  A later
run with the same sources reuses it (a build takes ~15 s here); concurrent runs build under a
lock.  The few newest builds are kept.

`Installed` drives the package inside a container: copy the .deb in, `apt-get install` it
from the local file (the container has no network: its one dependency, python3-setproctitle,
is installed on the host by scripts/install-test-deps and so present in the overlay root),
list its files, purge it.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass, field

from support.nspawn import Container

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE = os.path.join(os.environ.get("CGTEST_DEB_CACHE", "/var/cache/cgmanager-tests/debs"), "build")
KEEP = 4
_EXCLUDED_DIRS = {".git", ".venv", "build", "__pycache__", ".pytest_cache", ".mypy_cache"}
_EXCLUDED_DIRS |= {".ruff_cache", ".hypothesis"}
SYS_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def build_deps_missing() -> str | None:
    """Why the package cannot be built here (None: it can)."""
    if shutil.which("dpkg-checkbuilddeps", path=SYS_PATH) is None:
        return "dpkg-checkbuilddeps missing (dpkg-dev; run scripts/install-test-deps)"
    cp = subprocess.run(
        ["dpkg-checkbuilddeps", os.path.join(REPO, "debian", "control")],
        capture_output=True,
        text=True,
        env={"PATH": SYS_PATH, "LC_ALL": "C.UTF-8"},
    )
    if cp.returncode != 0:
        return f"{cp.stderr.strip()} (run scripts/install-test-deps)"
    return None


def source_files() -> list[str]:
    """What scripts/build-deb copies: git's tracked + untracked-not-ignored files, or the tree
    minus build products when this is not a git checkout."""
    try:
        out = subprocess.run(
            ["git", "-C", REPO, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            capture_output=True,
            check=True,
        ).stdout
        return sorted(p for p in out.decode().split("\0") if p)
    except (OSError, subprocess.CalledProcessError):
        pass
    files = []
    for dirpath, dirs, names in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in _EXCLUDED_DIRS and not d.endswith(".egg-info")]
        files += [os.path.relpath(os.path.join(dirpath, n), REPO) for n in names]
    return sorted(files)


def source_hash() -> str:
    h = hashlib.sha256()
    for rel in source_files():
        path = os.path.join(REPO, rel)
        try:
            st = os.lstat(path)
        except FileNotFoundError:  # deleted but still tracked: not copied either
            continue
        h.update(rel.encode() + b"\0" + oct(st.st_mode).encode() + b"\0")
        if os.path.islink(path):
            h.update(os.readlink(path).encode())
        else:
            with open(path, "rb") as f:
                h.update(hashlib.sha256(f.read()).digest())
        h.update(b"\0")
    return h.hexdigest()[:20]


def built_deb() -> str:
    """The .deb of the current sources (built now, or taken from the cache)."""
    os.makedirs(CACHE, exist_ok=True)
    digest = source_hash()
    out = os.path.join(CACHE, digest)
    with open(os.path.join(CACHE, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        debs = (
            sorted(f for f in os.listdir(out) if f.endswith(".deb")) if os.path.isdir(out) else []
        )
        if not debs:
            cp = subprocess.run(
                [os.path.join(REPO, "scripts", "build-deb"), "--out", out],
                capture_output=True,
                text=True,
                timeout=600,
            )
            if cp.returncode != 0:
                raise AssertionError(f"scripts/build-deb failed:\n{cp.stdout}\n{cp.stderr}")
            debs = sorted(f for f in os.listdir(out) if f.endswith(".deb"))
            _prune(keep=digest)
        os.utime(out)  # most recently used
    assert len(debs) == 1, debs
    return os.path.join(out, debs[0])


def _prune(keep: str) -> None:
    entries = [
        os.path.join(CACHE, d)
        for d in os.listdir(CACHE)
        if not d.startswith(".") and os.path.isdir(os.path.join(CACHE, d))
    ]
    entries.sort(key=os.path.getmtime, reverse=True)
    for old in entries[KEEP:]:
        if os.path.basename(old) != keep:
            shutil.rmtree(old, ignore_errors=True)


def deb_field(deb: str, name: str) -> str:
    return subprocess.run(
        ["dpkg-deb", "--field", deb, name], capture_output=True, text=True, check=True
    ).stdout.strip()


def deb_contents(deb: str) -> dict[str, str]:
    """path (without the leading '.') -> dpkg-deb's mode string, for every entry."""
    out = subprocess.run(
        ["dpkg-deb", "--contents", deb], capture_output=True, text=True, check=True
    ).stdout
    entries = {}
    for line in out.splitlines():
        fields = line.split(maxsplit=5)
        path = fields[5].split(" -> ")[0]
        entries[path[1:].rstrip("/") or "/"] = fields[0]
    return entries


@dataclass
class Installed:
    """The package in one container."""

    c: Container
    deb: str
    files: list[str] = field(default_factory=list)

    @property
    def inner_deb(self) -> str:
        return "/var/tmp/" + os.path.basename(self.deb)

    def apt(self, *args: str, timeout: float = 180.0) -> subprocess.CompletedProcess:
        return self.c.run(
            [
                "apt-get",
                "-q",
                "-y",
                "-o",
                "DPkg::Lock::Timeout=120",
                "--no-install-recommends",
                *args,
            ],
            env={"DEBIAN_FRONTEND": "noninteractive"},
            timeout=timeout,
            check=False,
        )

    def install(self) -> subprocess.CompletedProcess:
        # these machines come from a Docker image whose policy-rc.d (exit 101) forbids
        # maintainer scripts to start services; a Debian system has none (the container's
        # root is an overlay in RAM: the machine's own file stays)
        self.c.run(["rm", "-f", "/usr/sbin/policy-rc.d"])
        # the machine's apt timers are enabled, so the container's run too: their apt-get
        # would hold the package lock (and has nothing to fetch without a network)
        self.c.systemctl(
            "stop",
            "apt-daily.timer",
            "apt-daily-upgrade.timer",
            "apt-daily.service",
            "apt-daily-upgrade.service",
            check=False,
        )
        shutil.copyfile(self.deb, self.c.path(self.inner_deb))
        cp = self.apt("install", self.inner_deb)
        if cp.returncode != 0:
            raise AssertionError(f"apt-get install failed:\n{cp.stdout}\n{cp.stderr}")
        self.files = self.c.run(["dpkg-query", "-L", "cgmanager"]).stdout.splitlines()
        return cp

    def purge(self) -> subprocess.CompletedProcess:
        cp = self.apt("purge", "cgmanager")
        if cp.returncode != 0:
            raise AssertionError(f"apt-get purge failed:\n{cp.stdout}\n{cp.stderr}")
        return cp

    def status(self) -> str:
        cp = self.c.run(["dpkg-query", "-W", "-f=${db:Status-Status}", "cgmanager"], check=False)
        return cp.stdout.strip() if cp.returncode == 0 else "not-installed"
