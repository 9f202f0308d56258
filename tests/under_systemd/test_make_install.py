"""`make install` for other distributions, and `make uninstall` (tier t4).

`make install DESTDIR=<stage> PREFIX=/usr/local INIT="systemd sysvinit"` runs on this machine
(pip fetches the build backend and setproctitle from PyPI, as `make venv` does), then the
staged tree is copied into a fresh systemd container's root -- where nothing of cgmanager is
installed -- and used there as installed: the unit, with the paths `make install` wrote into
it, passes `systemd-analyze verify` and starts the daemon from its own venv; the launchers
start `python -I -S` with only the venv's site-packages; `make uninstall` (run in the
container from the read-only checkout) stops it and removes exactly what the manifest lists.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator

import pytest
from support import nspawn

from .conftest import booted
from .helpers import REPO, VENV_PYTHON
from .test_package import ATTACH, journal

pytestmark = pytest.mark.t4

PREFIX = "/usr/local"
LIBDIR = f"{PREFIX}/lib/cgmanager"
UNIT = "cgmanager.service"


def git_status() -> str:
    cp = subprocess.run(
        ["git", "-C", REPO, "status", "--porcelain", "--ignored"], capture_output=True, text=True
    )
    return cp.stdout if cp.returncode == 0 else "(no git)"


@pytest.fixture(scope="module")
def staged() -> Iterator[str]:
    stage = tempfile.mkdtemp(prefix="cgtest-install-")
    before = git_status()
    try:
        cp = subprocess.run(
            [
                "make",
                "-C",
                REPO,
                "install",
                f"DESTDIR={stage}",
                f"PREFIX={PREFIX}",
                "INIT=systemd sysvinit",
                "PYTHON=/usr/bin/python3",
            ],
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert cp.returncode == 0, cp.stdout + cp.stderr
        assert git_status() == before, "make install wrote into the checkout"
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


@pytest.fixture(scope="module")
def installed(cgroots, staged) -> Iterator[nspawn.Container]:
    with booted(cgroots, note=" (make install)") as c:
        shutil.copytree(staged, c.path("/"), symlinks=True, dirs_exist_ok=True)
        c.systemctl("daemon-reload")
        yield c


def manifest(stage: str) -> list[str]:
    with open(f"{stage}{LIBDIR}/installed-files") as f:
        return f.read().splitlines()


def test_staged_tree_has_the_real_paths(staged):
    files = manifest(staged)
    assert sorted(files) == sorted(
        [
            f"{PREFIX}/sbin/cgmanager",
            f"{PREFIX}/sbin/cgproxy",
            f"{PREFIX}/bin/cgm",
            f"{PREFIX}/share/man/man1/cgm.1",
            f"{PREFIX}/share/man/man8/cgmanager.8",
            f"{PREFIX}/share/man/man8/cgproxy.8",
            f"{PREFIX}/share/bash-completion/completions/cgm",
            "/etc/systemd/system/cgmanager.service",
            "/etc/systemd/system/cgproxy.service",
            "/etc/init.d/cgmanager",
            "/etc/init.d/cgproxy",
        ]
    )
    for f in files:
        assert os.path.isfile(staged + f), f
    with open(f"{staged}{PREFIX}/sbin/cgmanager") as f:
        text = f.read()
    assert text.startswith(f"#!{LIBDIR}/bin/python -IS\n")
    assert f"sys.path.append('{LIBDIR}/lib/python3." in text
    with open(f"{staged}/etc/systemd/system/cgmanager.service") as f:
        unit = f.read()
    assert f"ExecStart={PREFIX}/sbin/cgmanager $CGMANAGER_OPTS" in unit
    assert "/usr/sbin/" not in unit
    with open(f"{staged}/etc/init.d/cgproxy") as f:
        assert f"DAEMON={PREFIX}/sbin/cgproxy\n" in f.read()
    # the venv holds the daemon's Python dependencies, not the stage's paths in its launchers
    site = [d for d in os.listdir(f"{staged}{LIBDIR}/lib") if d.startswith("python3.")]
    pkgs = os.listdir(f"{staged}{LIBDIR}/lib/{site[0]}/site-packages")
    assert "cgmanager" in pkgs and "setproctitle" in pkgs
    assert not os.path.exists(f"{staged}{LIBDIR}/bin/cgmanager")  # only the PREFIX launchers


def test_installed_unit_verifies_and_runs_the_daemon(installed):
    c = installed
    cp = c.run(["systemd-analyze", "verify", UNIT, "cgproxy.service"], check=False)
    assert (cp.returncode, cp.stdout, cp.stderr) == (0, "", "")
    assert c.systemctl("is-enabled", UNIT, check=False) == "disabled"  # nothing enabled
    c.systemctl("start", UNIT)
    st = c.show(UNIT, "ActiveState", "MainPID", "ExecStart")
    assert st["ActiveState"] == "active"
    pid = int(st["MainPID"])
    # the venv's setproctitle named it (Debian's is not on the launcher's path)
    assert c.run(["cat", f"/proc/{pid}/comm"]).stdout.strip() == "cgmanager"
    cmdline = c.read_file(f"/proc/{pid}/cmdline")
    assert cmdline.startswith("cgmanager"), cmdline
    assert c.run(["which", "cgm"]).stdout.strip() == f"{PREFIX}/bin/cgm"
    assert c.run(["cgm", "ping"]).returncode == 0
    out = c.run(
        [
            VENV_PYTHON,
            "-I",
            ATTACH,
            UNIT,
            "",
            "/bin/sh",
            "-ec",
            "cgm create all installed && cgm movepid all installed $$ && "
            "grep ^0:: /proc/self/cgroup",
        ]
    ).stdout.strip()
    assert out == f"0::/system.slice/{UNIT}/installed"
    audits = [e["MESSAGE"] for e in journal(c, "-u", UNIT) if "audit: " in str(e.get("MESSAGE"))]
    assert any("Create(" in m and "'installed'" in m for m in audits), audits


def test_make_uninstall_removes_what_it_installed(installed, staged):
    c = installed
    cp = c.run(["make", "-C", REPO, "uninstall", f"PREFIX={PREFIX}"], check=False, timeout=120)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert c.show(UNIT, "LoadState")["LoadState"] == "not-found"
    assert c.run(["pidof", "cgmanager"], check=False).stdout.strip() == ""
    for f in manifest(staged):
        assert not os.path.lexists(c.path(f)), f
    assert not os.path.lexists(c.path(LIBDIR))
    cp = c.run(["make", "-C", REPO, "uninstall", f"PREFIX={PREFIX}"], check=False, timeout=60)
    assert cp.returncode != 0 and "nothing installed" in cp.stdout + cp.stderr
