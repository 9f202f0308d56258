"""The Debian package, installed and used as an administrator would (tier t4).

`scripts/build-deb` (dh + pybuild) builds the package once per source state (package.py); a
fresh systemd 252 container (an overlay of this Debian 12 machine, no network) installs it from
the local file with apt, and then:

* the daemon comes up as the shipped Type=notify, Delegate=yes service; cgproxy.service is
  enabled but skipped (no host socket directory is bind-mounted here);
* `systemd-analyze verify` is clean for both units as installed;
* the installed `cgm`, with no options, finds the daemon (/run/cgmanager/sock: the container's
  /sys/fs/cgroup is cgroup2) and creates cgroups and moves processes;
* a user's session uses it: root (in the service's delegated subtree) makes a cgroup for the
  user, hands it over and moves the session's shell in, as pam_cgm did; the user then makes
  and limits its own cgroups and is refused what is not hers;
* the journal has every line with its priority, the audit lines (notice) naming the
  requestor's kernel-given pid and uid;
* restart and stop behave (workloads survive, the socket goes, exit status 0);
* the sysvinit scripts (start/status/stop/restart, LSB exit codes, the program missing) and
  the OpenRC scripts under the real openrc-run (Debian's openrc, unpacked in the container);
* `apt purge` leaves no file, socket, pidfile, enablement or cgroup behind.

The tests of this module share one container and run in file order.  Everything is observed
from the host through the kernel where it can be (the container's cgroups).
"""

from __future__ import annotations

import glob
import json
import os
import shlex
import shutil
import signal
from collections.abc import Iterator

import pytest
from support import nspawn

from . import package
from .conftest import booted, need
from .helpers import REPO, VENV_PYTHON, procs, wait_for

pytestmark = pytest.mark.t4

HERE = os.path.dirname(os.path.abspath(__file__))
ATTACH = os.path.join(HERE, "attach_exec.py")
UNIT = "cgmanager.service"
SOCK = "/run/cgmanager/sock"  # the container's /sys/fs/cgroup is cgroup2
OPENRC_DEBS = os.path.join(
    os.environ.get("CGTEST_DEB_CACHE", "/var/cache/cgmanager-tests/debs"), "openrc"
)
SYSV_ENV = {"SYSTEMCTL_SKIP_REDIRECT": "1"}  # run the script itself, not systemctl


@pytest.fixture(scope="module")
def pkg(cgroots, deb) -> Iterator[package.Installed]:
    with booted(cgroots, note=" (package)") as c:
        inst = package.Installed(c, deb)
        inst.install()
        yield inst


def in_unit(c: nspawn.Container, script: str, *, sub: str = "", check: bool = True):
    """`sh -ec script` inside cgmanager.service's cgroup (a client in its delegated subtree)."""
    return c.run(
        [VENV_PYTHON, "-I", ATTACH, UNIT, sub, "/bin/sh", "-ec", script],
        check=check,
        timeout=60,
    )


def wait_started(c: nspawn.Container, unit: str, timeout: float = 30.0) -> None:
    """Wait until the package's postinst has brought *unit* up (or it failed for good)."""
    try:
        wait_for(
            lambda: c.show(unit, "ActiveState")["ActiveState"] in ("active", "failed"),
            timeout,
            f"{unit} to start",
        )
    except AssertionError as e:
        status = c.run(["systemctl", "--no-pager", "status", unit], check=False).stdout
        log = c.run(["journalctl", "--no-pager", "-n", "40"], check=False).stdout
        raise AssertionError(f"{e}\n{status}\n{log}") from None


def host_cg(c: nspawn.Container, rel: str = "") -> str:
    """Host path of a cgroup below the service's delegation point."""
    return c.host_cgroup(f"/system.slice/{UNIT}/{rel}".rstrip("/"))


def journal(c: nspawn.Container, *args: str) -> list[dict]:
    out = c.run(["journalctl", "--no-pager", "-o", "json", *args], check=False).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


# ------------------------------------------------------------------------------ contents
def test_package_contents(deb):
    files = package.deb_contents(deb)
    executables = ["/usr/sbin/cgmanager", "/usr/sbin/cgproxy", "/usr/bin/cgm"]
    for f in executables:
        assert files.get(f, "").startswith("-rwxr-xr-x"), (f, files.get(f))
    for f in (
        "/lib/systemd/system/cgmanager.service",
        "/lib/systemd/system/cgproxy.service",
        "/etc/init.d/cgmanager",
        "/etc/init.d/cgproxy",
        "/etc/default/cgmanager",
        "/etc/default/cgproxy",
        "/usr/share/man/man1/cgm.1.gz",
        "/usr/share/man/man8/cgmanager.8.gz",
        "/usr/share/man/man8/cgproxy.8.gz",
        "/usr/share/bash-completion/completions/cgm",
        "/usr/lib/python3/dist-packages/cgmanager/contract.py",
        "/usr/lib/python3/dist-packages/cgmanager/daemon/main.py",
        "/usr/share/doc/cgmanager/copyright",
        "/usr/share/doc/cgmanager/examples/cgconfig.conf",
        "/usr/share/doc/cgmanager/examples/cgrules.conf",
        "/usr/share/doc/cgmanager/examples/pam-cgm",
        "/etc/cgmanager/cgconfig.d",
    ):
        assert f in files, f
    # the daemon and the proxy only where the init files look
    assert "/usr/bin/cgmanager" not in files and "/usr/bin/cgproxy" not in files
    # nothing at run-time places, no compiled files (py3compile makes them on the machine)
    assert not [f for f in files if f.startswith(("/run", "/var", "/sys", "/tmp"))]
    assert not [f for f in files if f.endswith(".pyc")]
    depends = package.deb_field(deb, "Depends")
    assert "python3-setproctitle" in depends
    assert package.deb_field(deb, "Architecture") == "all"
    assert package.deb_field(deb, "Version") == _pyproject_version()


def _pyproject_version() -> str:
    import tomllib

    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["project"]["version"]


def test_launchers_start_python_isolated(pkg):
    c = pkg.c
    for path, module in (
        ("/usr/sbin/cgmanager", "cgmanager.daemon.main"),
        ("/usr/sbin/cgproxy", "cgmanager.proxy.main"),
        ("/usr/bin/cgm", "cgmanager.cli.main"),
    ):
        text = c.read_file(path)
        assert text.startswith("#!/usr/bin/python3 -IS\n"), text
        assert f"from {module} import main" in text
    # -I ignores the environment: PYTHONPATH cannot redirect the root daemon's imports
    bogus = "/var/tmp/bogus"
    c.run(["mkdir", "-p", f"{bogus}/cgmanager"])
    c.write_file(f"{bogus}/cgmanager/__init__.py", "raise SystemExit('imported from PYTHONPATH')")
    cp = c.run(["/usr/sbin/cgmanager", "--version"], env={"PYTHONPATH": bogus})
    assert cp.stdout.strip() == _pyproject_version()
    # the installed units are the repository's, unchanged
    for unit in ("cgmanager.service", "cgproxy.service"):
        with open(os.path.join(REPO, "init", "systemd", unit)) as f:
            assert c.read_file(f"/lib/systemd/system/{unit}") == f.read()


# ------------------------------------------------------------------------------ install
def test_install_enables_and_starts_the_daemon(pkg):
    c = pkg.c
    assert pkg.status() == "installed"
    assert c.systemctl("is-enabled", UNIT) == "enabled"
    assert c.systemctl("is-enabled", "cgproxy.service") == "enabled"
    wait_started(c, UNIT)
    state = c.show(UNIT, "ActiveState", "SubState", "Type", "Delegate", "MainPID", "KillMode")
    assert state["ActiveState"] == "active", c.run(["journalctl", "-u", UNIT], check=False).stdout
    assert state["SubState"] == "running"
    assert (state["Type"], state["Delegate"], state["KillMode"]) == ("notify", "yes", "process")
    pid = int(state["MainPID"])
    assert c.run(["cat", f"/proc/{pid}/comm"]).stdout.strip() == "cgmanager"
    assert c.run(["pidof", "cgmanager"]).stdout.split() == [str(pid)]
    # it moved into its leaf before it reported ready (Type=notify: active means ready)
    assert procs(host_cg(c, "cgmanager")) != []
    assert c.run(["test", "-S", SOCK], check=False).returncode == 0
    # no host socket directory is bind-mounted here: cgproxy is skipped, not failed
    proxy = c.show("cgproxy.service", "ActiveState", "Result", "ConditionResult")
    assert proxy["ActiveState"] == "inactive", proxy
    assert proxy["Result"] in ("exec-condition", "success"), proxy


def test_systemd_analyze_verify_is_clean(pkg):
    cp = pkg.c.run(
        ["systemd-analyze", "verify", "cgmanager.service", "cgproxy.service"], check=False
    )
    assert (cp.returncode, cp.stdout, cp.stderr) == (0, "", "")


# ------------------------------------------------------------------------------ clients
def test_cgm_without_options_creates_and_moves(pkg):
    c = pkg.c
    assert c.run(["cgm", "ping"]).returncode == 0  # from outside the subtree too
    # in at the delegation point (AttachProcessesToUnit), then into a cgroup of our own
    out = in_unit(
        c,
        "cgm create all clients\n"
        "cgm movepid all clients $$\n"
        "cgm create all pkgdemo\n"
        "sleep 600 </dev/null >/dev/null 2>&1 &\n"
        "cgm movepid all pkgdemo $!\n"
        "echo $!\n"
        "cgm getpidcgroup unified $!\n"
        "cgm listchildren unified ''\n",
        sub="",
    ).stdout.split()
    inner_pid, cgroup, children = int(out[0]), out[1], out[2:]
    assert cgroup == "pkgdemo"  # relative to the caller's cgroup, as 0.42 printed it
    assert "pkgdemo" in children
    # the kernel agrees: the sleeper is in <delegation point>/clients/pkgdemo
    members = procs(host_cg(c, "clients/pkgdemo"))
    assert [p for p in members if nspawn.nspid(p)[-1:] == [inner_pid]], members


def test_a_user_session_uses_it(pkg):
    """pam_cgm's steps, by root inside the subtree: a cgroup for the user, handed over, the
    session's shell moved in; then the user, unprivileged, makes and limits its own cgroups."""
    c = pkg.c
    c.run(["useradd", "--create-home", "--shell", "/bin/sh", "cgpkguser"])
    uid = int(c.run(["id", "-u", "cgpkguser"]).stdout)
    gid = int(c.run(["id", "-g", "cgpkguser"]).stdout)
    user_script = (
        "cgm create all job\n"
        "cgm setvalue unified job cgroup.max.descendants 2\n"
        "cgm getvalue unified job cgroup.max.descendants\n"
        # not hers: the limits of the cgroup she was given ('': her own) stay root's
        "cgm setvalue unified '' cgroup.max.descendants 100 2>&1 && echo UNEXPECTED || true\n"
        "cgm movepid all job $$\n"
        "grep ^0:: /proc/self/cgroup\n"
        "id -u\n"
    )
    # the session's shell starts as the user and waits; root places it (a process of the
    # user, into the user's cgroup: allowed), then lets it go on
    session = f"echo $$ > $D/pid; read go < $D/go\n{user_script}"
    out = in_unit(
        c,
        "cgm create all users/cgpkguser\n"
        f"cgm chown all users/cgpkguser {uid} {gid}\n"
        "D=$(mktemp -d) && mkfifo $D/pid $D/go && chown -R "
        f"{uid}:{gid} $D && export D\n"
        f"setpriv --reuid={uid} --regid={gid} --init-groups "
        f"env HOME=/home/cgpkguser sh -ec {shlex.quote(session)} &\n"
        "read pid < $D/pid\n"
        "cgm movepid all users/cgpkguser $pid\n"
        "echo go > $D/go\n"
        "wait $!\n"
        "rm -r $D\n",
        sub="/clients",
    ).stdout.splitlines()
    assert out[0] == "2", out
    assert out[1].startswith("call to cgmanager_set_value_sync failed: not permitted"), out
    assert out[2] == f"0::/system.slice/{UNIT}/clients/users/cgpkguser/job"
    assert out[3:] == [str(uid)]
    user_cg = host_cg(c, "clients/users/cgpkguser")
    st = os.stat(user_cg)
    assert (st.st_uid, st.st_gid) == (uid, gid)
    assert os.stat(os.path.join(user_cg, "job")).st_uid == uid
    with open(os.path.join(user_cg, "job", "cgroup.max.descendants")) as f:
        assert f.read().strip() == "2"


def test_journal_has_priorities_and_audit_lines(pkg):
    c = pkg.c
    uid = int(c.run(["id", "-u", "cgpkguser"]).stdout)
    entries = journal(c, "-u", UNIT)
    ours = [e for e in entries if e.get("SYSLOG_IDENTIFIER") == "cgmanager"]
    ready = [e for e in ours if str(e.get("MESSAGE", "")).startswith("ready: serving")]
    assert ready and ready[-1]["PRIORITY"] == "6", ours[-5:]
    assert SOCK in ready[-1]["MESSAGE"]
    audits = [e for e in ours if str(e.get("MESSAGE", "")).startswith("audit: ")]
    assert audits and {e["PRIORITY"] for e in audits} == {"5"}
    # the user's Create: her kernel-given uid, and a pid
    mine = [e for e in audits if f" uid={uid} " in e["MESSAGE"] and "Create(" in e["MESSAGE"]]
    assert mine and "'job'" in mine[0]["MESSAGE"] and mine[0]["MESSAGE"].endswith("-> -1")
    # a refusal is audited too
    refused = [e for e in audits if f" uid={uid} " in e["MESSAGE"] and "refused" in e["MESSAGE"]]
    assert refused, [e["MESSAGE"] for e in audits]
    # no line reached the journal without its priority prefix
    assert not [e for e in ours if str(e.get("MESSAGE", "")).startswith("<")]


# ------------------------------------------------------------------------------ lifecycle
def test_restart_keeps_the_workload_and_serves_again(pkg):
    c = pkg.c
    before = int(c.show(UNIT, "MainPID")["MainPID"])
    sleepers = procs(host_cg(c, "clients/pkgdemo"))
    c.systemctl("restart", UNIT)
    after = c.show(UNIT, "MainPID", "ActiveState", "NRestarts")
    assert after["ActiveState"] == "active"
    assert int(after["MainPID"]) not in (0, before)
    assert procs(host_cg(c, "clients/pkgdemo")) == sleepers  # KillMode=process
    # (systemd prunes the *empty* cgroups of the subtree when the daemon stops: the user's
    # finished session went; populated ones stay, see test_delegated_service)
    out = in_unit(c, "cgm listchildren unified ''", sub="/clients").stdout.split()
    assert "pkgdemo" in out


def test_reload_applies_the_configuration_directory(pkg):
    """`systemctl reload` (SIGHUP) re-reads /etc/cgmanager/cgconfig.d; a bad file changes
    nothing and the daemon keeps serving."""
    c = pkg.c
    pid = int(c.show(UNIT, "MainPID")["MainPID"])
    conf = "/etc/cgmanager/cgconfig.d/cgtest.conf"
    c.write_file(conf, "group fromconf {\n    unified { cgroup.max.depth = 3; }\n}\n")
    try:
        c.systemctl("reload", UNIT)
        wait_for(lambda: os.path.isdir(host_cg(c, "fromconf")), 10, "the configured group")
        with open(host_cg(c, "fromconf") + "/cgroup.max.depth") as f:
            assert f.read().strip() == "3"
        c.write_file(conf, "group fromconf {\n    unified { cgroup.max.depth = 5 }\n")
        c.systemctl("reload", UNIT)
        st = c.show(UNIT, "MainPID", "ActiveState")
        assert st["ActiveState"] == "active" and int(st["MainPID"]) == pid
        with open(host_cg(c, "fromconf") + "/cgroup.max.depth") as f:
            assert f.read().strip() == "3"  # the bad file changed nothing
        assert c.run(["cgm", "ping"]).returncode == 0
    finally:
        c.run(["rm", "-f", conf])
        in_unit(c, "cgm remove unified fromconf", check=False)


def test_stop_removes_the_socket_and_exits_cleanly(pkg):
    c = pkg.c
    sleepers = procs(host_cg(c, "clients/pkgdemo"))
    c.systemctl("stop", UNIT)
    st = c.show(UNIT, "ActiveState", "Result", "ExecMainStatus")
    assert (st["ActiveState"], st["Result"], st["ExecMainStatus"]) == ("inactive", "success", "0")
    assert c.run(["test", "-e", SOCK], check=False).returncode != 0
    assert procs(host_cg(c, "clients/pkgdemo")) == sleepers  # clients' workloads stay
    assert c.run(["pidof", "cgmanager"], check=False).stdout.strip() == ""
    # cgm says what is wrong, without options
    cp = c.run(["cgm", "ping"], check=False)
    assert cp.returncode == 1 and f"nothing listens on {SOCK}" in cp.stderr


# ------------------------------------------------------------------------------ sysvinit
def sysv(c: nspawn.Container, script: str, action: str, scope: str | None = None):
    argv = [script, action]
    if scope:  # a start: the detached daemon lives in a scope, like a service would
        argv = ["systemd-run", "--scope", "--quiet", f"--unit={scope}", *argv]
    return c.run(argv, env=SYSV_ENV, check=False, timeout=60)


def test_sysvinit_script(pkg):
    c = pkg.c
    s = "/etc/init.d/cgmanager"
    assert c.show(UNIT, "ActiveState")["ActiveState"] == "inactive"
    assert sysv(c, s, "status").returncode == 3
    assert sysv(c, s, "stop").returncode == 0  # not running: fine
    cp = sysv(c, s, "start", "cgtest-sysv1")
    assert cp.returncode == 0 and "Starting cgroup manager: cgmanager." in cp.stdout, cp
    pid = int(c.read_file("/run/cgmanager.pid"))
    assert c.run(["pidof", "cgmanager"]).stdout.split() == [str(pid)]
    assert c.run(["test", "-S", SOCK], check=False).returncode == 0  # served once it returned
    assert c.run(["cgm", "ping"]).returncode == 0
    assert sysv(c, s, "status").returncode == 0
    assert sysv(c, s, "start").returncode == 0  # already running
    assert int(c.read_file("/run/cgmanager.pid")) == pid
    assert sysv(c, s, "restart", "cgtest-sysv2").returncode == 0
    pid2 = int(c.read_file("/run/cgmanager.pid"))
    assert pid2 != pid and c.run(["cgm", "ping"]).returncode == 0
    assert sysv(c, s, "reload").returncode == 0  # SIGHUP: the configuration re-read
    assert int(c.read_file("/run/cgmanager.pid")) == pid2 and c.run(["cgm", "ping"]).returncode == 0
    # detached, it logs to syslog (the container's /dev/log is journald's)
    lines = journal(c, "-t", "cgmanager", f"_PID={pid2}")
    ready = [e for e in lines if str(e.get("MESSAGE", "")).startswith("ready: serving")]
    assert ready and ready[0]["PRIORITY"] == "6" and ready[0]["_TRANSPORT"] == "syslog"
    # dead with its pidfile left: 1
    c.run(["kill", "-9", str(pid2)])
    wait_for(lambda: c.run(["test", "-e", f"/proc/{pid2}"], check=False).returncode != 0)
    assert sysv(c, s, "status").returncode == 1
    assert sysv(c, s, "start", "cgtest-sysv3").returncode == 0  # replaces the stale socket
    pid3 = int(c.read_file("/run/cgmanager.pid"))
    assert sysv(c, s, "stop").returncode == 0
    assert c.run(["test", "-e", f"/proc/{pid3}"], check=False).returncode != 0
    for gone in ("/run/cgmanager.pid", SOCK):
        assert c.run(["test", "-e", gone], check=False).returncode != 0, gone
    assert sysv(c, s, "status").returncode == 3
    assert sysv(c, s, "frobnicate").returncode == 3
    # the program missing: start/restart 5, status 4, stop still 0
    c.run(["mv", "/usr/sbin/cgmanager", "/usr/sbin/cgmanager.away"])
    try:
        cp = sysv(c, s, "start")
        assert cp.returncode == 5 and "not installed" in cp.stdout + cp.stderr
        assert sysv(c, s, "restart").returncode == 5
        assert sysv(c, s, "status").returncode == 4
        assert sysv(c, s, "stop").returncode == 0
    finally:
        c.run(["mv", "/usr/sbin/cgmanager.away", "/usr/sbin/cgmanager"])


def test_sysvinit_cgproxy_script_is_not_needed_on_a_host(pkg):
    c = pkg.c
    s = "/etc/init.d/cgproxy"
    cp = sysv(c, s, "start")
    assert cp.returncode == 0 and "not needed" in cp.stdout + cp.stderr
    assert c.run(["pidof", "cgproxy"], check=False).stdout.strip() == ""
    assert sysv(c, s, "status").returncode == 3
    assert sysv(c, s, "stop").returncode == 0


# ------------------------------------------------------------------------------ OpenRC
def openrc(c: nspawn.Container, script: str, action: str, scope: str | None = None):
    argv = [script, action]
    if scope:  # as with sysvinit: the daemon lives in a scope of the container
        argv = ["systemd-run", "--scope", "--quiet", f"--unit={scope}", *argv]
    return c.run(argv, check=False, timeout=60)


def install_openrc(c: nspawn.Container) -> None:
    """Debian's openrc, installed in the container (never on this machine): openrc-run and
    its state directories, as if OpenRC had booted."""
    debs = sorted(glob.glob(os.path.join(OPENRC_DEBS, "*.deb")))
    need(None if debs else f"no OpenRC packages in {OPENRC_DEBS} (run scripts/install-test-deps)")
    c.run(["mkdir", "-p", "/var/tmp/openrc"])
    for d in debs:
        shutil.copyfile(d, c.path(f"/var/tmp/openrc/{os.path.basename(d)}"))
    inner = [f"/var/tmp/openrc/{os.path.basename(d)}" for d in debs]
    cp = c.run(["dpkg", "-i", *inner], env={"DEBIAN_FRONTEND": "noninteractive"}, check=False)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    # what `openrc sysinit` would have made: OpenRC did not boot this system
    state = "started starting stopping inactive wasinactive failed hotplugged daemons options"
    c.run(
        [
            "sh",
            "-ec",
            f"cd /run && mkdir -p openrc && cd openrc && touch softlevel && "
            f"mkdir -p {state} exclusive scheduled tmp",
        ]
    )


def remove_openrc(c: nspawn.Container) -> None:
    c.run(["rm", "-rf", "/run/openrc"], check=False)
    c.run(["dpkg", "--purge", "openrc", "librc1", "libeinfo1", "insserv"], check=False)


def test_openrc_script_under_openrc_run(pkg):
    """init/openrc/cgmanager run by the real openrc-run (Debian's openrc 0.45)."""
    c = pkg.c
    install_openrc(c)
    with open(os.path.join(REPO, "init", "openrc", "cgmanager")) as f:
        c.write_file("/etc/init.d/cgm-openrc", f.read(), mode=0o755)
    s = "/etc/init.d/cgm-openrc"
    try:
        assert openrc(c, s, "status").returncode == 3  # stopped
        cp = openrc(c, s, "start", "cgtest-openrc1")
        assert cp.returncode == 0, cp.stdout + cp.stderr
        pid = int(c.read_file("/run/cgm-openrc.pid"))
        assert c.run(["cat", f"/proc/{pid}/comm"]).stdout.strip() == "cgmanager"
        assert c.run(["cgm", "ping"]).returncode == 0
        assert openrc(c, s, "status").returncode == 0  # started
        cp = openrc(c, s, "restart", "cgtest-openrc2")
        assert cp.returncode == 0, cp.stdout + cp.stderr
        pid2 = int(c.read_file("/run/cgm-openrc.pid"))
        assert pid2 != pid and c.run(["cgm", "ping"]).returncode == 0
        cp = openrc(c, s, "reload")  # SIGHUP: the configuration re-read, same process
        assert cp.returncode == 0, cp.stdout + cp.stderr
        assert int(c.read_file("/run/cgm-openrc.pid")) == pid2
        assert c.run(["cgm", "ping"]).returncode == 0
        cp = openrc(c, s, "stop")
        assert cp.returncode == 0, cp.stdout + cp.stderr
        assert c.run(["test", "-e", f"/proc/{pid2}"], check=False).returncode != 0
        assert not os.path.lexists(c.path(SOCK))
        assert not os.path.lexists(c.path("/run/cgm-openrc.pid"))
        assert openrc(c, s, "status").returncode == 3
        # a start that fails says why (the daemon's error reaches the caller's stderr)
        cp = openrc(c, s, "start")  # from outside the container's cgroup tree: unusable
        assert cp.returncode != 0 and "cgmanager: ERROR:" in cp.stderr, cp
        # the program missing: start fails and says so
        c.run(["mv", "/usr/sbin/cgmanager", "/usr/sbin/cgmanager.away"])
        try:
            cp = openrc(c, s, "start", "cgtest-openrc3")
            assert cp.returncode != 0 and "not installed" in cp.stdout + cp.stderr
        finally:
            c.run(["mv", "/usr/sbin/cgmanager.away", "/usr/sbin/cgmanager"])
    finally:
        openrc(c, s, "stop")
        c.run(["rm", "-f", s], check=False)
        remove_openrc(c)


# ------------------------------------------------------------------------------ purge
def test_purge_leaves_nothing_behind(pkg):
    c = pkg.c
    c.systemctl("start", UNIT)
    # the demo workload goes first (it is the clients', not the package's): our sleeper
    for pid in procs(host_cg(c, "clients/pkgdemo")):
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            signal.pidfd_send_signal(fd, signal.SIGKILL)
        finally:
            os.close(fd)
    wait_for(lambda: procs(host_cg(c, "clients/pkgdemo")) == [], 10, "the demo sleeper to exit")
    in_unit(c, "cgm remove all pkgdemo && cgm remove all users", sub="/clients")
    files = [f for f in pkg.files if not os.path.isdir(c.path(f))]
    assert "/usr/sbin/cgmanager" in files
    pkg.purge()
    assert pkg.status() == "not-installed"
    left = [f for f in files if os.path.lexists(c.path(f))]
    assert left == []
    for path in (
        "/usr/lib/python3/dist-packages/cgmanager",  # the byte-compiled files too
        "/etc/default/cgmanager",
        "/etc/default/cgproxy",
        "/etc/systemd/system/multi-user.target.wants/cgmanager.service",
        "/etc/systemd/system/multi-user.target.wants/cgproxy.service",
        "/etc/rc2.d/S01cgmanager",
        "/run/cgmanager",
        "/run/cgmanager.pid",
        "/var/lib/systemd/deb-systemd-helper-enabled/cgmanager.service.dsh-also",
    ):
        assert not os.path.lexists(c.path(path)), path
    assert not glob.glob(c.path("/etc/rc?.d/*cgmanager")) + glob.glob(c.path("/etc/rc?.d/*cgproxy"))
    assert c.run(["pidof", "cgmanager", "cgproxy"], check=False).stdout.strip() == ""
    # no cgroup left: systemd removed the service's (the daemon's leaf included)
    wait_for(lambda: not os.path.exists(host_cg(c)), 10, "the service's cgroup to go")
    assert not os.path.exists(c.host_cgroup("/system.slice/cgproxy.service"))
    assert c.systemctl("show", UNIT, "--property=LoadState") == "LoadState=not-found"
