"""cgproxy started by ``unshare --pid --fork`` (a new pid namespace whose /proc was not
remounted): it serves the processes of that namespace, reading their facts from a private
/proc of its own that nobody else sees."""

from __future__ import annotations

import json
import os

import pytest

from proxy import container as ct

pytestmark = pytest.mark.t3

#: runs as pid 1 of the new pid namespace, with the container's /proc: starts cgproxy, then
#: makes the calls a process of that namespace makes, and reports what it saw as JSON
INNER = r"""
import json, os, subprocess, sys, time
from cgmanager.dbus.client import connect
from cgmanager.dbus.errors import DBusError

LOG = sys.argv[1]
OBJ, IFACE = "/org/linuxcontainers/cgmanager", "org.linuxcontainers.cgmanager0_0"
out = {"pid": os.getpid(), "nspid": [l for l in open("/proc/self/status") if l.startswith("NSpid:")]}
with open(LOG, "w") as log:
    proxy = subprocess.Popen([sys.argv[2], "--log-level", "debug"], stdout=log, stderr=log)
deadline = time.monotonic() + 20
while time.monotonic() < deadline and proxy.poll() is None:
    if "ready: serving" in open(LOG).read():
        break
    time.sleep(0.02)
out["proxy_exit"] = proxy.poll()
out["log"] = open(LOG).read()
if out["proxy_exit"] is None:
    def call(method, sig, args):
        try:
            with connect("unix:path=/sys/fs/cgroup/cgmanager/sock", timeout=10) as c:
                return ["ok", list(c.call(OBJ, IFACE, method, sig, args))]
        except DBusError as e:
            return ["err", e.name, e.message]
    me = os.getpid()
    out["create"] = call("Create", "ss", ("pids", "inpidns"))
    out["chown"] = call("Chown", "ssii", ("pids", "inpidns", 1000, 1000))  # userns-gated
    out["move"] = call("MovePid", "ssi", ("pids", "inpidns", me))  # pid-gated: reads /proc
    out["pidcgroup"] = call("GetPidCgroupAbs", "si", ("pids", me))
    out["proc_mounts"] = open("/proc/self/mountinfo").read().count(" - proc ")
    # /proc/self is this process in any /proc
    out["cgroup"] = [l for l in open("/proc/self/cgroup").read().split("\n") if ":pids:" in l]
    proxy.terminate()
    out["proxy_exit"] = proxy.wait(10)
print(json.dumps(out))
"""


def test_cgproxy_in_a_new_pid_namespace_without_its_own_proc(containers):
    c = containers.new(proxy=False)
    proc_mounts = c(ct.mountinfo).count(" - proc ")
    rc, out, err = c(
        ct.run,
        [
            "unshare",
            "--pid",
            "--fork",
            f"{ct.VENV_BIN}/python",
            "-c",
            INNER,
            f"{ct.CG}/cgproxy-pidns.log",
            ct.CGPROXY,
        ],
        None,
        60,
    )
    assert rc == 0, out + err
    seen = json.loads(out)
    assert seen["pid"] == 1 and len(seen["nspid"][0].split()) == 3, seen  # /proc is not its own
    assert seen["proxy_exit"] == 0, seen["log"]  # served, and stopped cleanly on SIGTERM
    assert "using a private /proc" in seen["log"]
    assert seen["create"] == ["ok", [-1]], seen
    assert seen["move"] == ["ok", []], seen
    assert seen["pidcgroup"] == ["ok", ["/inpidns"]], seen
    assert seen["chown"] == ["ok", []], seen
    pids = c.dirs["pids"]
    st = os.stat(f"{pids}/inpidns")
    assert (st.st_uid, st.st_gid) == (101000, 101000)  # container uid 1000, translated
    assert seen["cgroup"] and seen["cgroup"][0].endswith(":pids:/inpidns"), seen  # moved
    # the proxy's /proc stayed its own: the namespace's processes saw no new mount
    assert seen["proc_mounts"] == proc_mounts
    assert c(ct.mountinfo).count(" - proc ") == proc_mounts


def test_without_a_private_proc_cgproxy_refuses_and_changes_nothing(containers):
    """Root of a user namespace below the pid namespace's owner may not mount that pid
    namespace's /proc: cgproxy says why and what to do, before it touches anything."""
    c = containers.new(proxy=False)
    argv = ["unshare", "--pid", "--fork", "unshare", "--user", "--map-root-user", ct.CGPROXY]
    rc, out, err = c(ct.run, argv, None, 60)
    assert rc == 1, out + err
    assert "could not mount a private /proc of its own (Operation not permitted)" in err, err
    assert "unshare --pid --fork --mount-proc" in err  # says what to do
    assert c(ct.listdir, ct.CG) == ["cgmanager"]  # the socket directory was not moved
    assert c(ct.connectable, ct.PROXY_ADDRESS)  # still the host daemon, as before
    # as advised, the same proxy starts
    argv = ["unshare", "--pid", "--fork", "--mount-proc", ct.CGPROXY, "--daemon"]
    rc, out, err = c(ct.run, [*argv, "--pidfile", "/dev/null"], None, 60)
    assert rc == 0, out + err
