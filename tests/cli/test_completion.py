"""completion/cgm.bash: subcommands, controllers from the daemon, cgroups level by level."""

from __future__ import annotations

import os
import subprocess

import pytest

from cgmanager.cli.commands import COMMANDS

from .conftest import CGM
from .test_commands import sleeper

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "completion", "cgm.bash")
DRIVER = (
    'source "$1"; shift\n'
    'COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}\n'
    '_cgm; printf "%s\\n" "${COMPREPLY[@]}"\n'
)


def complete(words, run=None):
    """Candidates for the last word of ``cgm <words>`` (the last word may be '')."""
    argv = ["bash", "--norc", "-c", DRIVER, "_", SCRIPT, CGM, *words]
    cp = run(argv) if run else subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert cp.returncode == 0 and cp.stderr == "", cp.stderr
    return [line for line in cp.stdout.splitlines() if line]


@pytest.mark.t0
def test_script_is_valid_bash():
    subprocess.run(["bash", "-n", SCRIPT], check=True)


@pytest.mark.t0
def test_subcommands():
    assert complete(["get"]) == [
        "getpidcgroup",
        "getpidcgroupabs",
        "getvalue",
        "gettasks",
        "gettasksrecursive",
        "get",
    ]
    assert len(complete([""])) == len(COMMANDS)
    assert complete(["help", "list"]) == ["listchildren", "listcontrollers", "listkeys"]
    assert complete(["--json", "rem"]) == ["remove", "removeonempty"]


@pytest.mark.t0
def test_options():
    assert complete(["--"]) == ["--socket", "--json", "--help", "--version"]
    assert complete(["create", "--j"]) == ["--json"]


@pytest.mark.t0
def test_nothing_without_a_daemon():
    env = dict(os.environ, CGM_SOCKET="/nonexistent/sock")
    run = lambda argv: subprocess.run(argv, capture_output=True, text=True, env=env)  # noqa
    assert complete(["getvalue", ""], run) == []
    assert complete(["remove", "pids", "x", ""], run) == ["0", "1"]


@pytest.mark.t3
def test_controllers(place, cgm):
    run = lambda argv: place.run(argv)  # noqa: E731
    assert complete(["getvalue", "p"], run) == ["pids"]
    got = complete(["gettasks", ""], run)
    assert "freezer" in got and "unified" in got  # the v2 tree, not listed on this hybrid host
    assert "unified,hugetlb" not in got
    assert "all" not in got
    assert "all" in complete(["create", ""], run)


@pytest.mark.t3
def test_cgroups_level_by_level(place, cgm):
    cgm.ok("create", "pids", "alpha/one")
    cgm.ok("create", "pids", "alpha/two")
    cgm.ok("create", "pids", "beta")
    run = lambda argv: place.run(argv)  # noqa: E731
    assert sorted(complete(["getvalue", "pids", ""], run)) == ["alpha/", "beta/"]
    assert complete(["listchildren", "pids", "al"], run) == ["alpha/"]
    assert sorted(complete(["gettasks", "pids", "alpha/"], run)) == ["alpha/one/", "alpha/two/"]
    assert complete(["gettasks", "pids", "alpha/o"], run) == ["alpha/one/"]
    # through --socket rather than $CGM_SOCKET, and with "all" as the controller
    sock = place.daemon.socket
    env_free = lambda argv: place.run(["env", "-u", "CGM_SOCKET", *argv])  # noqa: E731
    assert complete(["--socket", sock, "remove", "pids", "be"], env_free) == ["beta/"]
    cgm.ok("create", "all", "gamma")
    assert complete(["remove", "all", "ga"], run) == ["gamma/"]


@pytest.mark.t3
def test_keys_and_pids(place, cgm):
    cgm.ok("create", "pids", "k")
    run = lambda argv: place.run(argv)  # noqa: E731
    assert complete(["getvalue", "pids", "k", "pids.m"], run) == ["pids.max"]
    s = sleeper(place)
    assert str(s.pid) in complete(["movepid", "pids", "k", str(s.pid)[:-1]], run)
    assert str(s.pid) in complete(["getpidcgroup", "pids", str(s.pid)], run)


@pytest.mark.t0
def test_options_of_new_subcommands():
    assert complete(["top", "--o"]) == ["--once", "--order"]
    assert complete(["top", "--order", "m"]) == ["memory"]
    assert complete(["tree", "--color", "a"]) == ["auto", "always"]
    assert complete(["tree", "--no"]) == ["--no-pager"]
    assert complete(["exec", "--c"]) == ["--create"]
    assert complete(["exec", "--r"]) == ["--remove-on-exit"]
    assert complete(["getvalue", "--h"]) == ["--help", "--human"]
    assert complete(["help", "un"]) == ["units"]
    assert set(complete(["t"])) == {"thaw", "top", "tree"}


@pytest.mark.t3
def test_comma_lists_item_by_item(place, cgm):
    run = lambda argv: place.run(argv)  # noqa: E731
    assert complete(["create", "pids,fr"], run) == ["pids,freezer"]
    got = complete(["tree", "pids,"], run)
    assert "pids,freezer" in got and "pids,unified" in got
    assert "pids,pids" not in got and not any(g.count(",") > 1 for g in got)
    assert complete(["top", "pids,freezer,u"], run) == ["pids,freezer,unified"]
    assert complete(["gettasks", "pids,fr"], run) == []  # one hierarchy only


@pytest.mark.t3
def test_exec_items_then_the_command(place, cgm):
    run = lambda argv: place.run(argv)  # noqa: E731
    cgm.ok("create", "pids", "ex")
    assert complete(["exec", "pids", "ex", "pids.m"], run) == ["pids.max="]
    assert complete(["exec", "--create", "pids", "new", "ow"], run) == ["owner="]
    assert "sleep" in complete(["exec", "pids", "ex", "--", "slee"], run)
    assert "sleep" in complete(["exec", "pids", "ex", "pids.max=5", "slee"], run)
    # the command's own options are not cgm's
    assert complete(["exec", "pids", "ex", "ls", "--hel"], run) == []


@pytest.mark.t3
def test_get_files_by_prefix_or_hierarchy(place, cgm):
    run = lambda argv: place.run(argv)  # noqa: E731
    cgm.ok("create", "unified,pids", "gt")
    assert complete(["get", "gt", "pids.m"], run) == ["pids.max"]
    assert complete(["get", "gt", "unif"], run) == ["unified:"]
    assert sorted(complete(["get", "gt", "unified:cgroup.max.d"], run)) == [
        "unified:cgroup.max.depth",
        "unified:cgroup.max.descendants",
    ]
    assert complete(["dump", "pids,u"], run) == ["pids,unified"]
