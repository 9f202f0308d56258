"""``cgm exec``: a command run in a cgroup (made for it with --create, in one Setup request),
no shell in between, its exit status cgm's; --remove-on-exit; root and a delegated user."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess

import pytest
from kernel.helpers import wait_for

from .test_commands import cgroup_of

pytestmark = pytest.mark.t3

WHERE = "cat /proc/self/cgroup; echo pid=$$"


def lines_of(out):
    """{hierarchy key: path} and the pid the command printed."""
    where, pid = {}, None
    for line in out.splitlines():
        if line.startswith("pid="):
            pid = int(line[4:])
            continue
        hid, ctrls, path = line.split(":", 2)
        where["unified" if hid == "0" else ctrls] = path
    return where, pid


def test_create_sets_limits_with_units_and_execs_in_place(cgm, place):
    cp = cgm(
        "exec",
        "--create",
        "pids,unified",
        "job",
        "pids.max=1K",
        "unified:cgroup.max.depth=2",
        "--",
        "sh",
        "-c",
        f"{WHERE}; exit 7",
    )
    assert cp.returncode == 7, cp.stderr
    assert cp.stderr == ""
    where, _ = lines_of(cp.stdout)
    assert where["pids"] == place.hp("pids") + "/job"
    assert where["unified"] == place.hp("unified") + "/job"
    assert open(place.path("pids") + "/job/pids.max").read() == "1000\n"
    assert open(place.path("unified") + "/job/cgroup.max.depth").read() == "2\n"


def test_no_shell_in_between_the_command_is_cgm(cgm, place):
    """cgm becomes the command: the pid the command sees is the pid cgm was started with."""
    cgm.ok("create", "pids", "same")
    popen = subprocess.Popen(
        [cgm.binary, "exec", "pids", "same", "sh", "-c", "echo pid=$$"],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=place.preexec(),
        env={**os.environ, **place.extra_env},
    )
    out, _ = popen.communicate(timeout=60)
    assert popen.returncode == 0 and out == f"pid={popen.pid}\n"


def test_into_an_existing_cgroup_with_values(cgm, place):
    cgm.ok("create", "pids", "there")
    cp = cgm("exec", "pids", "there", "pids.max=2.5K", "sh", "-c", WHERE)
    assert cp.returncode == 0, cp.stderr
    assert lines_of(cp.stdout)[0]["pids"] == place.hp("pids") + "/there"
    assert open(place.path("pids") + "/there/pids.max").read() == "2500\n"
    # an absolute path: MovePidAbs
    cp = cgm("exec", "pids", place.hp("pids") + "/there", "sh", "-c", WHERE)
    assert cp.returncode == 0 and lines_of(cp.stdout)[0]["pids"] == place.hp("pids") + "/there"


def test_the_command_keeps_its_own_options(cgm, place):
    cgm.ok("create", "pids", "opts")
    assert cgm.ok("exec", "pids", "opts", "echo", "--json", "--help", "-h", "x=1") == (
        "--json --help -h x=1\n"
    )
    assert cgm.ok("exec", "pids", "opts", "--", "echo", "pids.max=3") == "pids.max=3\n"
    assert open(place.path("pids") + "/opts/pids.max").read() == "max\n"


@pytest.mark.parametrize(
    "args,status,err",
    [
        (
            ["--create", "pids", "dup", "true"],
            125,
            "pids:dup: already exists",
        ),
        (["pids", "ghost", "true"], 125, "call to cgmanager_move_pid_main_sync failed: "),
        (
            ["--create", "pids", "nf", "no-such-command-here"],
            127,
            "cgm: exec: no-such-command-here: command not found\n",
        ),
        (
            ["--create", "pids", "nx", "/proc/version"],
            126,
            "cgm: exec: /proc/version: permission denied\n",
        ),
        (["--create", "pids", "bad", "pids.max=1.5", "true"], 125, None),
        (["--remove-on-exit", "pids", "dup", "true"], 125, "use it with --create"),
        (["--create", "pids", "/abs", "true"], 125, "give a relative path"),
        (["pids", "dup"], 125, "cgm: exec takes at least 3 arguments"),
        (["--create", "pids", "nocmd", "--"], 125, "cgm: exec: give the command to run"),
        (["--frobnicate", "pids", "dup", "true"], 125, "cgm: exec: unknown option --frobnicate"),
    ],
)
def test_failures_change_nothing_and_say_why(cgm, place, args, status, err):
    cgm.ok("create", "pids", "dup")
    cp = cgm("exec", *args)
    assert cp.returncode == status, cp.stderr
    assert cp.stdout == ""
    if err is not None:
        assert err in cp.stderr
    for name in ("nf", "nx", "bad", "nocmd", "abs"):
        assert not os.path.exists(place.path("pids") + "/" + name)


def test_no_daemon_is_cgms_own_failure(cgm, place):
    cp = cgm("exec", "pids", "x", "true", env={"CGM_SOCKET": "/nonexistent-dir/sock"})
    assert cp.returncode == 125 and "cgmanager is not running" in cp.stderr


# -- --remove-on-exit --------------------------------------------------------------------------


def test_remove_on_exit(cgm, place):
    cp = cgm(
        "exec",
        "--create",
        "--remove-on-exit",
        "pids,freezer",
        "tmp",
        "sh",
        "-c",
        f"{WHERE}; exit 5",
    )
    assert cp.returncode == 5, cp.stderr
    where, pid = lines_of(cp.stdout)
    assert (
        where["pids"] == place.hp("pids") + "/tmp"
        and where["freezer"] == place.hp("freezer") + "/tmp"
    )
    assert not os.path.exists(place.path("pids") + "/tmp")
    assert not os.path.exists(place.path("freezer") + "/tmp")


@contextlib.contextmanager
def subreaper():
    """This process adopts the orphans of its descendants meanwhile (PR_SET_CHILD_SUBREAPER),
    so a process a command leaves behind is reaped here, not left to pid 1."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(36, 1, 0, 0, 0) != 0:
        pytest.skip("PR_SET_CHILD_SUBREAPER refused")
    try:
        yield
    finally:
        libc.prctl(36, 0, 0, 0, 0)


def test_remove_on_exit_waits_for_what_the_command_left_behind(cgm, place):
    with subreaper():
        cp = cgm(
            "exec",
            "--create",
            "--remove-on-exit",
            "pids",
            "left",
            "sh",
            "-c",
            "sleep 300 >/dev/null 2>&1 & echo $!",
        )
        assert cp.returncode == 0, cp.stderr
        straggler = int(cp.stdout)
        pidfd = os.pidfd_open(straggler)  # (our child now: it cannot be recycled meanwhile)
    try:
        assert cgroup_of(straggler, "pids") == place.hp("pids") + "/left"
        assert os.path.isdir(place.path("pids") + "/left")  # still busy: removed once empty
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        os.waitpid(straggler, 0)
    finally:
        os.close(pidfd)
    assert wait_for(lambda: not os.path.exists(place.path("pids") + "/left"), timeout=30)


def test_remove_on_exit_passes_the_commands_death_on(cgm, place):
    cp = cgm("exec", "--create", "--remove-on-exit", "pids", "sig", "sh", "-c", "kill -TERM $$")
    assert cp.returncode == -signal.SIGTERM
    assert not os.path.exists(place.path("pids") + "/sig")
    cp = cgm("exec", "--create", "--remove-on-exit", "pids", "abrt", "sh", "-c", "kill -ABRT $$")
    assert cp.returncode == 128 + signal.SIGABRT  # no core of cgm's own
    assert not os.path.exists(place.path("pids") + "/abrt")


def test_a_command_that_cannot_be_executed_leaves_nothing(cgm, place, tmp_path):
    """Found and executable, but execve fails (no interpreter): after --create the cgroup
    made for it goes once cgm, the only process in it, has exited."""
    script = tmp_path / "noexec.sh"
    script.write_text("#!/nonexistent/interpreter\n")
    script.chmod(0o755)
    cp = cgm("exec", "--create", "pids", "gone", str(script))
    assert cp.returncode == 127 and f"cgm: exec: {script}: No such file or directory" in cp.stderr
    assert wait_for(lambda: not os.path.exists(place.path("pids") + "/gone"), timeout=30)


def test_remove_on_exit_command_not_executable(cgm, place, tmp_path):
    script = tmp_path / "noexec.sh"
    script.write_text("#!/nonexistent/interpreter\n")
    script.chmod(0o755)
    cp = cgm("exec", "--create", "--remove-on-exit", "pids", "ne", str(script))
    assert cp.returncode == 127 and f"cgm: exec: {script}: No such file or directory" in cp.stderr
    assert not os.path.exists(place.path("pids") + "/ne")


def test_sigterm_to_cgm_reaches_the_command(cgm, place):
    popen = subprocess.Popen(
        [cgm.binary, "exec", "--create", "--remove-on-exit", "pids", "term", "sleep", "300"],
        preexec_fn=place.preexec(),
        env={**os.environ, **place.extra_env},
    )
    assert wait_for(lambda: _tasks(place.path("pids") + "/term"), timeout=30)
    popen.send_signal(signal.SIGTERM)
    assert popen.wait(timeout=60) == -signal.SIGTERM
    assert not os.path.exists(place.path("pids") + "/term")


def _tasks(path):
    try:
        with open(path + "/cgroup.procs") as f:
            return f.read().split()
    except FileNotFoundError:
        return []


# -- an unprivileged user in its delegation ----------------------------------------------------


def test_a_user_runs_commands_in_its_delegation(cgm, place, test_user):
    cgm.ok("create", "pids,unified", "dlg")
    cgm.ok("chown", "pids,unified", "dlg", str(test_user.uid), str(test_user.gid))
    cp = cgm(
        "exec",
        "--create",
        "pids,unified",
        "dlg/job",
        "pids.max=64",
        "sh",
        "-c",
        f"{WHERE}; id -u",
        user=test_user,
    )
    assert cp.returncode == 0, cp.stderr
    where, _ = lines_of(cp.stdout.rsplit("\n", 2)[0])
    assert where["pids"] == place.hp("pids") + "/dlg/job"
    assert cp.stdout.rstrip().endswith(str(test_user.uid))
    assert open(place.path("pids") + "/dlg/job/pids.max").read() == "64\n"
    cp = cgm("exec", "--create", "--remove-on-exit", "pids", "dlg/tmp", "true", user=test_user)
    assert cp.returncode == 0, cp.stderr
    assert not os.path.exists(place.path("pids") + "/dlg/tmp")
    # outside its delegation: refused, nothing run
    cp = cgm("exec", "--create", "pids", "mine", "sh", "-c", "echo ran", user=test_user)
    assert cp.returncode == 125 and cp.stdout == "" and "not permitted" in cp.stderr
    assert not os.path.exists(place.path("pids") + "/mine")
