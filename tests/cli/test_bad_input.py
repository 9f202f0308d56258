"""Bad input and no daemon: usage text or a clear message, a non-zero exit, never a traceback.

These need no daemon: argument errors are found before cgm connects (0.42 connected first),
so every test here points cgm at a socket that does not exist.
"""

from __future__ import annotations

import os
import socket
import subprocess

import pytest

from cgmanager import __version__
from cgmanager.cli import help as cli_help
from cgmanager.cli.commands import COMMANDS, usage
from cgmanager.cli.main import parse, prog_name
from cgmanager.contract import DEFAULT_SOCKET

from .conftest import CGM

pytestmark = pytest.mark.t0

NOSOCK = "/nonexistent-cgm-test/sock"
USAGE_TEXT = usage("cgm")


def run(*args, env=None, binary=CGM):
    e = {k: v for k, v in os.environ.items() if k not in ("CGM_SOCKET", "CGM_DEBUG")}
    e["CGM_SOCKET"] = NOSOCK
    e.update(env or {})
    cp = subprocess.run([binary, *args], capture_output=True, text=True, env=e, timeout=30)
    assert "Traceback" not in cp.stderr, cp.stderr
    return cp


def triple(cp):
    return cp.returncode, cp.stdout, cp.stderr


# -- usage, help, version --------------------------------------------------------------------------


@pytest.mark.parametrize("args", [(), ("-h",), ("--help",)])
def test_usage_on_stdout_exit_1(args):
    assert triple(run(*args)) == (1, USAGE_TEXT, "")


def test_usage_lists_every_0_42_form():
    for form in [
        "cgm ping",
        "cgm create <controller> <cgroup>",
        "cgm chown <controller> <cgroup> uid gid",
        "cgm chmod <controller> <cgroup> mode",
        "cgm chmodfile <controller> <cgroup> file mode",
        "cgm remove <controller> <cgroup> [0|1]",
        "cgm getpidcgroup <controller> pid",
        "cgm getpidcgroupabs <controller> pid",
        "cgm movepid <controller> <cgroup> pid",
        "cgm movepidabs <controller> <cgroup> pid",
        "cgm getvalue <controller> <cgroup> file",
        "cgm setvalue <controller> <cgroup> file value",
        "cgm gettasks <controller> [cgroup]",
        "cgm listchildren <controller> [cgroup]",
        "cgm removeonempty <controller> <cgroup>",
        "cgm apiversion",
        "cgm gettasksrecursive <controller> [cgroup]",
        "cgm prune <controller> [cgroup]",
        "cgm listcontrollers",
        "cgm listkeys <controller> [cgroup]",
    ]:
        assert f"\n{form}\n\n" in USAGE_TEXT, form


def test_version_without_newline():
    assert triple(run("--version")) == (0, __version__ + "\n", "")


def test_program_name_in_usage_follows_argv0(tmp_path):
    link = tmp_path / "lt-mycgm"
    link.symlink_to(CGM)
    cp = run(binary=str(link))
    assert cp.stdout == usage("mycgm")
    assert prog_name("/usr/bin/lt-cgm") == "cgm" and prog_name("lt-") == "lt-"


def test_help_without_subcommand_is_usage_exit_0():
    assert triple(run("help")) == (0, USAGE_TEXT, "")


@pytest.mark.parametrize("sub", sorted(COMMANDS))
def test_help_for_every_subcommand(sub):
    text = cli_help.text(sub, "cgm")
    assert text.startswith(f"Usage: cgm {sub}") and "\n\nExamples:\n  " in text
    assert triple(run("help", sub)) == (0, text, "")
    assert triple(run(sub, "--help")) == (0, text, "")
    if not COMMANDS[sub].human:
        assert triple(run(sub, "-h")) == (0, text, "")


NO_SUCH = "cgm: unknown subcommand 'frobnicate'\nRun 'cgm help' for the list of subcommands.\n"


def test_help_unknown_subcommand():
    assert triple(run("help", "frobnicate")) == (1, "", NO_SUCH)


# -- unknown subcommands and argument counts -------------------------------------------------------


def test_unknown_subcommand():
    """0.42 printed the whole usage on stdout; the short hint goes to stderr now."""
    assert triple(run("frobnicate", "x")) == (1, "", NO_SUCH)


def test_unknown_subcommand_suggests():
    cp = run("getvalu", "pids", "x", "pids.max")
    assert triple(cp) == (
        1,
        "",
        "cgm: unknown subcommand 'getvalu'; did you mean getvalue or setvalue or get?\n"
        "Run 'cgm help' for the list of subcommands.\n",
    )


@pytest.mark.parametrize(
    "word,meant",
    [("run", "exec"), ("cgexec", "exec"), ("cgtop", "top"), ("cgls", "tree"), ("cgget", "get")],
)
def test_words_from_systemd_and_libcgroup_are_pointed_to_their_subcommand(word, meant):
    assert run(word, "x").stderr.startswith(
        f"cgm: unknown subcommand {word!r}; did you mean {meant}?\n"
    )


@pytest.mark.parametrize("word", ["prun", "run", "remov", "kil", "freez", "removeonemty", "prunee"])
def test_suggestions_never_propose_a_destructive_subcommand(word):
    err = run(word).stderr
    for destructive in ("prune", "remove", "removeonempty", "kill", "freeze"):
        assert f" {destructive}?" not in err and f" {destructive} " not in err, err


COUNTS = [
    ("create", ["pids"], "2", "<controller> <cgroup>"),
    ("create", ["pids", "a", "b"], "2", "<controller> <cgroup>"),
    ("chown", ["pids", "a", "1"], "4", "<controller> <cgroup> uid gid"),
    ("chmod", ["pids", "a"], "3", "<controller> <cgroup> mode"),
    ("chmodfile", ["pids", "a", "tasks"], "4", "<controller> <cgroup> file mode"),
    ("remove", ["pids"], "2 or 3", "<controller> <cgroup> [0|1]"),
    ("remove", ["pids", "a", "0", "1"], "2 or 3", "<controller> <cgroup> [0|1]"),
    ("getpidcgroup", ["pids"], "2", "<controller> pid"),
    ("getpidcgroupabs", [], "2", "<controller> pid"),
    ("movepid", ["pids", "a"], "3", "<controller> <cgroup> pid"),
    ("movepidabs", ["pids", "a", "1", "2"], "3", "<controller> <cgroup> pid"),
    ("getvalue", ["pids", "a"], "3", "<controller> <cgroup> file"),
    ("setvalue", ["pids", "a", "pids.max"], "4", "<controller> <cgroup> file value"),
    ("gettasks", [], "1 or 2", "<controller> [cgroup]"),
    ("gettasksrecursive", ["a", "b", "c"], "1 or 2", "<controller> [cgroup]"),
    ("listchildren", [], "1 or 2", "<controller> [cgroup]"),
    ("removeonempty", ["pids"], "2", "<controller> <cgroup>"),
    ("prune", [], "1 or 2", "<controller> [cgroup]"),
    ("listkeys", ["a", "b", "c"], "1 or 2", "<controller> [cgroup]"),
    ("tree", ["a", "b", "c"], "0 to 2", "[controller] [cgroup]"),
    ("freeze", ["unified"], "2", "<controller> <cgroup>"),
    ("thaw", ["a", "b", "c"], "2", "<controller> <cgroup>"),
    ("kill", [], "2", "<controller> <cgroup>"),
    ("events", [], "1 or 2", "<controller> [cgroup] [--follow]"),
    ("config", [], "at least 1", "check FILE... | diff [FILE]"),
    ("reload", ["x"], "0", ""),
    ("classify", [], "at least 1", "pid..."),
    ("monitor", [], "at least 1", "<controller> [cgroup] [psi=resource:some|full:stall:window]..."),
    ("stat", ["a", "b", "c"], "1 or 2", "<controller> [cgroup]"),
    ("help", ["a", "b"], "0 or 1", "[subcommand]"),
    ("get", ["cg"], "at least 2", "<cgroup> <file>|<controller>:<file>..."),
    ("dump", [], "1 or 2", "<controller> [cgroup]"),
    ("top", ["a", "b", "c"], "0 to 2", "[controller] [cgroup]"),
    (
        "exec",
        ["pids", "x"],
        "at least 3",
        "[--create] [--remove-on-exit] <controller> <cgroup> [owner=uid:gid] [file=value]..."
        " [--] command [arg]...",
    ),
    (
        "setup",
        ["pids"],
        "at least 2",
        "<controller> <cgroup> [owner=uid:gid] [file=value]... [pid=pid]...",
    ),
]


@pytest.mark.parametrize("sub,args,want,synopsis", COUNTS, ids=lambda v: str(v))
def test_wrong_argument_count(sub, args, want, synopsis):
    """The subcommand's own short usage on stderr (0.42 printed the whole list on stdout)."""
    assert triple(run(sub, *args)) == (
        COMMANDS[sub].status,
        "",
        f"cgm: {sub} takes {want} arguments ({synopsis}), got {len(args)}\n"
        f"Usage: cgm {sub}{' ' + synopsis if synopsis else ''}\n"
        f"Try 'cgm help {sub}' for details and examples.\n",
    )


def test_every_subcommand_has_a_count_test():
    checked = {c[0] for c in COUNTS}
    assert checked | {"ping", "listcontrollers", "apiversion", "pamsession"} == set(COMMANDS)


# -- numbers -----------------------------------------------------------------------------------------


def _bad(sub, line):
    return (
        1,
        "",
        f"{line}\nUsage: cgm {sub} {COMMANDS[sub].synopsis}\n"
        f"Try 'cgm help {sub}' for details and examples.\n",
    )


@pytest.mark.parametrize(
    "uid,gid,bad",
    [
        ("abc", "0", "abc"),
        ("0", "x1", "x1"),
        ("-1", "0", "-1"),
        ("0", "2147483647", "2147483647"),
        ("1.5", "0", "1.5"),
        ("", "0", ""),
        ("٣", "0", "٣"),
        ("0x10", "0", "0x10"),
    ],
)
def test_bad_uid_or_gid(uid, gid, bad):
    assert triple(run("chown", "pids", "a", uid, gid)) == _bad(
        "chown", f"Bad uid or gid: {bad!r} is not a number from 0 to 2147483646"
    )


@pytest.mark.parametrize("mode", ["abc", "0789", "-1", "", "0o755", "77777777777", "rwx"])
def test_bad_mode(mode):
    assert triple(run("chmod", "pids", "a", mode)) == _bad(
        "chmod", f"Bad mode: {mode!r} is not an octal number such as 0755"
    )
    assert triple(run("chmodfile", "pids", "a", "tasks", mode)) == _bad(
        "chmodfile", f"Bad mode: {mode!r} is not an octal number such as 0755"
    )


@pytest.mark.parametrize("flag", ["2", "-1", "yes", "", "00", "recursive"])
def test_remove_takes_only_0_or_1(flag):
    """0.42 removed recursively for any value but 0: a typo there removes a whole subtree."""
    assert triple(run("remove", "pids", "a", flag)) == _bad(
        "remove",
        f"Bad recursive flag: {flag!r}; give 0 (only an empty cgroup without children)"
        " or 1 (with its descendants, the default)",
    )


@pytest.mark.parametrize(
    "sub,args",
    [
        ("getpidcgroup", ["pids"]),
        ("getpidcgroupabs", ["pids"]),
        ("movepid", ["pids", "a"]),
        ("movepidabs", ["pids", "/"]),
    ],
)
@pytest.mark.parametrize("pid", ["abc", "-5", "2147483648", "12 ", "$$", ""])
def test_bad_pid(sub, args, pid):
    assert triple(run(sub, *args, pid)) == _bad(sub, f"Bad pid: {pid!r} is not a process id")


# -- no daemon -----------------------------------------------------------------------------------------


def test_daemon_not_running_names_the_socket():
    assert triple(run("ping")) == (
        1,
        "",
        "Failed opening dbus connection: org.freedesktop.DBus.Error.FileNotFound: Failed to "
        f"connect to socket {NOSOCK}: No such file or directory\n"
        f"cgm: cgmanager is not running (nothing listens on {NOSOCK}, from $CGM_SOCKET); "
        "use --socket PATH or CGM_SOCKET to reach a cgmanager listening elsewhere\n",
    )


def test_socket_option_wins_over_environment(tmp_path):
    sock = str(tmp_path / "none" / "other")  # no directory: cgm does not wait for a restart
    for args in (
        ["--socket", sock, "getvalue", "pids", "", "pids.max"],
        ["getvalue", "--socket", sock, "pids", "", "pids.max"],
        [f"--socket={sock}", "getvalue", "pids", "", "pids.max"],
    ):
        cp = run(*args)
        assert cp.returncode == 1 and f"Failed to connect to socket {sock}: " in cp.stderr
        assert f"nothing listens on {sock}, from --socket)" in cp.stderr


def test_standard_socket_by_default():
    if os.path.exists(DEFAULT_SOCKET):
        pytest.skip(f"a cgmanager may be listening on {DEFAULT_SOCKET}")
    cp = run("ping", env={"CGM_SOCKET": ""})
    assert cp.returncode == 1
    assert f"nothing listens on {DEFAULT_SOCKET}, the standard socket)" in cp.stderr


def test_stale_socket_nobody_listening(tmp_path):
    path = str(tmp_path / "stale")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()  # the file stays, nobody listens: ECONNREFUSED
    cp = run("--socket", path, "listcontrollers")
    assert triple(cp) == (
        1,
        "",
        "Failed opening dbus connection: org.freedesktop.DBus.Error.NoServer: Failed to "
        f"connect to socket {path}: Connection refused\n"
        f"cgm: cgmanager is not running (nothing listens on {path}, from --socket); "
        "use --socket PATH or CGM_SOCKET to reach a cgmanager listening elsewhere\n",
    )


def test_dbus_address_accepted(tmp_path):
    cp = run("ping", env={"CGM_SOCKET": f"unix:path={tmp_path}/none/x"})
    assert cp.returncode == 1 and f"Failed to connect to socket {tmp_path}/none/x: " in cp.stderr
    cp = run("ping", env={"CGM_SOCKET": "tcp:host=localhost"})
    assert triple(cp) == (
        1,
        "",
        "cgm: 'tcp:host=localhost' (from $CGM_SOCKET) is not a usable "
        "D-Bus address; give a socket path or unix:path=PATH\n",
    )


def test_socket_option_needs_a_value():
    assert triple(run("ping", "--socket")) == (
        1,
        "",
        "cgm: --socket needs a path (e.g. --socket /run/cgmanager/sock)\n",
    )
    assert triple(run("--socket=", "ping")) == (
        1,
        "",
        "cgm: --socket needs a path (e.g. --socket=/run/cgmanager/sock)\n",
    )


def test_argument_errors_come_before_connecting():
    """0.42 connected first; with no daemon it reported the connection, not the usage."""
    cp = run("create", "pids")
    assert cp.returncode == 1 and cp.stdout == "" and "dbus" not in cp.stderr


def test_invalid_utf8_argument():
    e = {k: v for k, v in os.environ.items() if k != "CGM_SOCKET"}
    e["CGM_SOCKET"] = NOSOCK
    cp = subprocess.run(
        [CGM.encode(), b"getvalue", b"pids", b"a\xff", b"pids.max"],
        capture_output=True,
        env=e,
        timeout=30,
    )
    assert cp.returncode == 1 and cp.stdout == b""
    assert cp.stderr == b"cgm: argument 'a\\udcff' is not valid UTF-8 (D-Bus strings must be)\n"


# -- the parser ----------------------------------------------------------------------------------------


def test_parse_options_anywhere_and_double_dash():
    words, opts, cmd = parse(["--json", "getvalue", "c", "g", "k"], COMMANDS)
    assert words == ["getvalue", "c", "g", "k"] and cmd is COMMANDS["getvalue"]
    assert opts == {"json": True, "help": False, "version": False, "socket": None, "human": False}
    words, opts, _ = parse(
        ["setvalue", "cpu", "x", "cpu.cfs_quota_us", "-1", "--socket", "/s"], COMMANDS
    )
    assert words == ["setvalue", "cpu", "x", "cpu.cfs_quota_us", "-1"] and opts["socket"] == "/s"
    words, opts, _ = parse(["setvalue", "c", "g", "k", "--", "--json"], COMMANDS)
    assert words == ["setvalue", "c", "g", "k", "--json"] and not opts["json"]
    assert parse(["-", "-x"], COMMANDS)[0] == ["-", "-x"]
    # -h: help before a subcommand and for those printing no values; else --human
    assert parse(["-h"], COMMANDS)[1]["help"]
    assert parse(["create", "-h"], COMMANDS)[1]["help"]
    _, opts, _ = parse(["getvalue", "-h", "c", "g", "k"], COMMANDS)
    assert opts["human"] and not opts["help"]


def test_broken_pipe_is_quiet():
    r, w = os.pipe()
    os.close(r)
    e = {k: v for k, v in os.environ.items() if k != "CGM_SOCKET"}
    e["CGM_SOCKET"] = NOSOCK
    cp = subprocess.run([CGM], stdout=w, stderr=subprocess.PIPE, text=True, env=e, timeout=30)
    os.close(w)
    assert cp.returncode == 1 and cp.stderr == ""


def test_launcher_script(tmp_path):
    import sys

    from cgmanager.cli import launcher

    text = launcher.script()
    assert text.startswith(f"#!{sys.executable} -IS\n")
    assert f"sys.path.insert(0, {launcher.package_root()!r})" in text
    dest = tmp_path / "cgm"
    assert launcher.main([str(dest)]) == 0
    assert os.stat(dest).st_mode & 0o777 == 0o755
    assert triple(run("--version", binary=str(dest))) == (0, __version__ + "\n", "")
    assert launcher.main([]) == 2 and launcher.main(["--python"]) == 2
    with pytest.raises(ValueError):
        launcher.script(python="/path with space/python")


def test_retry_only_when_a_daemon_may_be_restarting(tmp_path):
    """Issue 13.6: no daemon and no socket in a directory nobody touched lately: nothing is
    coming, so cgm does not wait.  A stale socket (its daemon died) or a directory changed in
    the last seconds (a daemon removes its socket when it stops) may see one come back."""
    from cgmanager.cli import session

    old = tmp_path / "old"
    old.mkdir()
    os.utime(old, (1_000_000_000, 1_000_000_000))
    assert not session.may_be_restarting(f"{old}/sock", 2)
    assert not session.may_be_restarting(f"{tmp_path}/none/sock", 2)
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    assert session.may_be_restarting(f"{fresh}/sock", 2)
    stale = str(old / "stale")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(stale)
    s.close()
    os.utime(old, (1_000_000_000, 1_000_000_000))
    assert session.may_be_restarting(stale, 111)
    assert session.may_be_restarting("\0abstract", 111)
    # and cgm itself says why it stops, as before
    cp = run("--socket", f"{old}/sock", "ping")
    assert triple(cp) == (
        1,
        "",
        "Failed opening dbus connection: org.freedesktop.DBus.Error.FileNotFound: Failed to "
        f"connect to socket {old}/sock: No such file or directory\n"
        f"cgm: cgmanager is not running (nothing listens on {old}/sock, from --socket); "
        "use --socket PATH or CGM_SOCKET to reach a cgmanager listening elsewhere\n",
    )
