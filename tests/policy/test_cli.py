"""cgm's policy commands end to end: config check (no daemon), config diff, reload, classify,
monitor (and events --follow) against a live daemon."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time

import pytest

from .conftest import rel

CGM = os.path.join(os.path.dirname(sys.executable), "cgm")


def cgm(*args: str, socket: str | None = None, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if socket:
        env["CGM_SOCKET"] = socket
    return subprocess.run([CGM, *args], capture_output=True, text=True, timeout=60, env=env, **kw)


@pytest.mark.t2  # checks against this host's hierarchies (a v1 pids one)
def test_config_check_names_file_and_line(tmp_path):
    good = tmp_path / "good.conf"
    good.write_text("mount { cpu = /x; }\ngroup a { pids { pids.max = 5; } }\n")
    bad = tmp_path / "bad.conf"
    bad.write_text("group a {\n  pids { pids.max = 5 }\n}\n")
    r = cgm("config", "check", str(good))
    assert r.returncode == 0
    assert r.stdout.startswith(f"{good}: ok (1 groups, 0 templates)\n")
    assert "mount block ignored" in r.stdout
    r = cgm("config", "check", str(good), str(bad))
    assert r.returncode == 1
    assert r.stderr == f"{bad}:2: expected ';' after the value of pids.max, found '}}'\n"
    r = cgm("--json", "config", "check", str(bad))
    assert r.returncode == 1 and '"error"' in r.stdout


@pytest.mark.t2
def test_diff_reload_classify(policy_daemon, cgdir, cgroots, procs):
    d = cgdir("pids")
    r = rel(cgroots, d, "pids")
    conf = policy_daemon.write(f"group {r}/web {{ pids {{ pids.max = 9; }} }}\n")
    daemon = policy_daemon.start()
    sock = daemon.socket
    os.rename(conf, conf + ".off")  # the daemon applied it; now compare another text
    other = os.path.join(policy_daemon.dir, "other.conf")
    with open(other, "w") as f:
        f.write(f"group {r}/web {{ pids {{ pids.max = 11; }} }}\n")
    out = cgm("config", "diff", other, socket=sock)
    assert out.returncode == 0 and out.stdout.endswith("pids.max: 9 -> 11\n"), out
    assert cgm("config", "diff", socket=sock).stdout == ""  # nothing configured now
    assert cgm("reload", socket=sock).returncode == 0
    p = procs.spawn(["sleep", "60"])
    out = cgm("classify", str(p.pid), socket=sock)
    assert out.stdout == f"{p.pid}: no rule matches\n", out


@pytest.mark.t1
@pytest.mark.parametrize("argv", [["monitor"], ["events", "--follow"]])
def test_monitor_follows_until_removed(daemon, cgdir, cgroots, procs, argv):
    d = cgdir("unified")
    sub = os.path.join(d, "m")
    os.mkdir(sub)
    path = "/" + rel(cgroots, sub, "unified")
    env = dict(os.environ, CGM_SOCKET=daemon.socket)
    m = subprocess.Popen(
        [CGM, *argv[:1], "unified", path, *argv[1:]], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        lines = [m.stdout.readline(), m.stdout.readline()]  # the state when it started
        assert lines == [f"{path} populated populated=0\n", f"{path} frozen frozen=0\n"]
        p = procs.spawn(["sleep", "60"], cgroup=sub)
        assert select.select([m.stdout], [], [], 20)[0]
        assert m.stdout.readline() == f"{path} populated populated=1\n"
        p.kill()
        assert m.stdout.readline() == f"{path} populated populated=0\n"
        time.sleep(0.05)
        os.rmdir(sub)
        assert m.stdout.readline() == f"{path} removed\n"
        assert m.wait(20) == 0
    finally:
        if m.poll() is None:
            m.kill()
            m.wait()
