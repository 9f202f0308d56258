"""T3: what the layer sees across namespaces, for unprivileged users and dying processes."""

import json
import os
import subprocess
import sys

import pytest

from cgmanager.errors import NotFound
from cgmanager.procfs import ProcDir, parse_cgroup

from .helpers import hpath, tree, wait_for

pytestmark = pytest.mark.t3
PY = [sys.executable]


def run_py(code: str, **kw) -> dict:
    out = subprocess.run([*PY, "-c", code], capture_output=True, text=True, timeout=60, **kw)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_private_mounts_are_invisible_to_the_host(tmp_path, cgroots):
    fs_dir = str(tmp_path / "fs")
    v2_line = lambda text: [l.split(" - ")[1] for l in text.splitlines() if " cgroup2 " in l]  # noqa: E731
    host_before = open("/proc/self/mountinfo").read()
    result = run_py(
        "import json, os\n"
        "from cgmanager import hierarchy, mounts\n"
        "from cgmanager.cgroupfs import CgroupTree\n"
        "L = mounts.setup(hierarchy.discover_host(skip=['memory']), %r)\n"
        "pids = CgroupTree(L.lookup('pids'))\n"
        "print(json.dumps({'mounts': {h.key: h.mountpoint for h in L.all()},\n"
        "  'listing': sorted(os.listdir(%r)),\n"
        "  'children': pids.children('/'),\n"
        "  'mountinfo': open('/proc/self/mountinfo').read()}))\n" % (fs_dir, fs_dir)
    )
    assert result["mounts"]["pids"] == fs_dir + "/pids"
    assert result["mounts"]["unified"] == fs_dir + "/unified"
    assert "memory" not in result["listing"]
    assert {"pids", "unified", "hugetlb", "cpu", "freezer"} <= set(result["listing"])
    assert cgroots.rel("pids").strip("/") in result["children"]
    assert fs_dir in result["mountinfo"]
    # the host saw nothing: no mount, an empty directory, the same cgroup2 options
    host_after = open("/proc/self/mountinfo").read()
    assert fs_dir not in host_after
    assert os.listdir(fs_dir) == []
    assert v2_line(host_after) == v2_line(host_before)


def test_cgroup_namespace_shows_outside_paths_as_dotdot(cgdir, procs):
    base = cgdir("unified")
    t = tree("unified")
    hp = hpath(t, base)
    code = (
        "import json, os, sys\n"
        "from cgmanager import _linux\n"
        "from cgmanager.hierarchy import discover_host\n"
        "from cgmanager.cgroupfs import CgroupTree\n"
        "from cgmanager.errors import NotFound\n"
        "_linux.unshare(_linux.CLONE_NEWCGROUP)\n"
        "L = discover_host()\n"
        "try:\n"
        "    CgroupTree(L.v2).children('/'); reach = True\n"
        "except NotFound:\n"
        "    reach = False\n"
        "print(json.dumps({'self': open('/proc/self/cgroup').read(),\n"
        "  'parent': open('/proc/%d/cgroup' % os.getppid()).read(),\n"
        "  'v2_root': L.v2.mount_root, 'reach': reach}))\n"
    )
    out = subprocess.run(
        [*PY, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: open(base + "/cgroup.procs", "w").write(str(os.getpid())),
    )
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    [self_v2] = [l for l in parse_cgroup(r["self"]) if l.hierarchy_id == 0]
    assert self_v2.path == "/" and not self_v2.outside_namespace
    [parent_v2] = [l for l in parse_cgroup(r["parent"]) if l.hierarchy_id == 0]
    assert parent_v2.outside_namespace, parent_v2
    # depth of the namespace root below the parent's cgroup shows as that many '..'
    assert parent_v2.path.count("..") == hp.count("/")
    # the host mount shows a root outside the namespace: the layer refuses to resolve it
    assert r["v2_root"].startswith("/..")
    assert r["reach"] is False


def test_v2_delegation_lets_the_user_organise_its_subtree_only(cgdir, procs, test_user):
    t = tree("unified")
    base = cgdir("unified")
    other = cgdir("unified")
    hp = hpath(t, base)
    t.mkdir(hp + "/d")
    t.chown(hp + "/d", test_user.uid, test_user.gid)
    r = test_user.run(["mkdir", f"{base}/d/c1", f"{base}/d/c2"])
    assert r.returncode == 0, r.stderr
    p = procs.spawn(["sleep", "100"], user=test_user)
    t.move(hp + "/d/c1", p.pid)  # root places the user's own process into its subtree
    mv = lambda dst: test_user.run(["sh", "-c", f"echo {p.pid} > {dst}/cgroup.procs"])  # noqa: E731
    assert mv(f"{base}/d/c2").returncode == 0
    assert t.procs(hp + "/d/c2") == [p.pid]
    # out of the delegated subtree: refused by the kernel's common-ancestor rule
    assert mv(other).returncode != 0
    assert t.procs(hp + "/d/c2") == [p.pid]
    # the user cannot raise limits on its delegation root
    assert (
        test_user.run(["sh", "-c", f"echo 1000 > {base}/d/cgroup.max.descendants"]).returncode != 0
    )


def test_v1_delegation_lets_the_user_create_and_enter_children(cgdir, procs, test_user):
    t = tree("pids")
    base = cgdir("pids")
    hp = hpath(t, base)
    t.mkdir(hp + "/d")
    t.chown(hp + "/d", test_user.uid, test_user.gid)
    assert test_user.run(["mkdir", f"{base}/d/c1"]).returncode == 0
    p = procs.spawn(["sleep", "100"], user=test_user)
    t.move(hp + "/d", p.pid)
    r = test_user.run(["sh", "-c", f"echo {p.pid} > {base}/d/c1/cgroup.procs"])
    assert r.returncode == 0, r.stderr
    assert t.procs(hp + "/d/c1") == [p.pid]
    assert test_user.run(["sh", "-c", f"echo 5 > {base}/d/pids.max"]).returncode != 0


def test_procdir_pinned_by_pidfd_refuses_a_dead_process(procs):
    p = procs.spawn(["sleep", "100"])
    d = ProcDir(p.pid, p.pidfd)
    assert d.status().tgid == p.pid
    p.kill()
    assert wait_for(lambda: not p.alive())
    with pytest.raises(NotFound):
        d.read("cgroup")  # the directory never switches to another process
    d.close()
    with pytest.raises(NotFound):
        ProcDir(p.pid, p.pidfd)


def test_procdir_namespaces_and_maps(procs):
    p = procs.spawn(["sleep", "100"])
    with ProcDir(p.pid, p.pidfd) as d, ProcDir(os.getpid()) as me:
        assert d.namespace("pid") == me.namespace("pid")
        assert d.uid_map().is_identity()
        assert d.starttime() > 0
