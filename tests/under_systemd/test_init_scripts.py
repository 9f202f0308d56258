"""The sysvinit and OpenRC scripts in init/: syntax (t0), and the repository's sysvinit script
driving this checkout's daemon (t4).

The sysvinit script runs inside the t4 container, outside /etc/init.d (so neither Debian's
LSB-to-systemctl redirect nor the sysv generator takes it over), inside a transient scope
(`systemd-run --scope`) so the daemon it detaches lives in a cgroup of the container like any
service would.  The installed scripts (sysvinit and OpenRC under the real openrc-run) are
exercised by test_package.py and test_package_proxy.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from .helpers import REPO, VENV_BINARY, Service, call

SYSV = os.path.join(REPO, "init", "sysvinit", "cgmanager")
SCRIPTS = {
    f"{kind}-{name}": os.path.join(REPO, "init", kind, name)
    for kind in ("sysvinit", "openrc")
    for name in ("cgmanager", "cgproxy")
}
SCRIPT = "/usr/local/lib/cgtest/cgmanager-sysv"
SOCK = "/run/cgm-sysv/sock"
PIDFILE = "/run/cgm-sysv.pid"


@pytest.mark.t0
@pytest.mark.parametrize("script", list(SCRIPTS.values()), ids=list(SCRIPTS))
def test_init_script_syntax(script):
    assert os.access(script, os.X_OK)
    subprocess.run(["sh", "-n", script], check=True)
    if shutil.which("dash"):  # Debian's /bin/sh: no bashisms
        subprocess.run(["dash", "-n", script], check=True)
    with open(script) as f:
        text = f.read()
    # where the packages put the programs (make install rewrites these paths)
    name = os.path.basename(script)
    assert f"/usr/sbin/{name}" in text
    if "/sysvinit/" in script:
        assert "### BEGIN INIT INFO" in text and f"# Provides:          {name}" in text


@pytest.mark.t4
def test_sysvinit_script_starts_reports_and_stops_the_daemon(container):
    c = container
    with open(SYSV) as f:
        c.write_file(SCRIPT, f.read(), mode=0o755)
    c.write_file(
        "/etc/default/cgmanager",
        f"DAEMON={VENV_BINARY}\nPIDFILE={PIDFILE}\n"
        f'CGMANAGER_OPTS="--socket {SOCK} --fs-dir /run/cgm-sysv/fs"\n',
    )
    env = {"SYSTEMCTL_SKIP_REDIRECT": "1"}
    try:
        c.run(
            ["systemd-run", "--scope", "--quiet", "--unit=cgtest-sysv", SCRIPT, "start"],
            env=env,
        )
        pid = int(c.read_file(PIDFILE))
        assert os.path.exists(c.path(SOCK))
        assert c.run([SCRIPT, "status"], env=env, check=False).returncode == 0
        assert c.run(["cat", f"/proc/{pid}/cgroup"]).stdout.strip().endswith("/cgtest-sysv.scope")
        probe = Service(c, socket=SOCK)
        assert probe.client([call("Ping", "i", 0)]).ok() == []
        assert c.run([SCRIPT, "start"], env=env).returncode == 0  # already running: fine
        assert int(c.read_file(PIDFILE)) == pid
        c.run([SCRIPT, "stop"], env=env)
        assert not os.path.exists(c.path(PIDFILE))
        assert not os.path.exists(c.path(SOCK))
        assert c.run(["test", "-e", f"/proc/{pid}"], check=False).returncode != 0
        assert c.run([SCRIPT, "status"], env=env, check=False).returncode == 3
    finally:
        c.run([SCRIPT, "stop"], env=env, check=False)
        c.run(["rm", "-f", "/etc/default/cgmanager", SCRIPT], check=False)
