"""T2: the cgroup layer on the host's real v1 hierarchies (never memory)."""

import os
import stat
import sys

import pytest

from cgmanager.errors import Busy, InvalidArgument, KernelRejected, NotFound
from cgmanager.procfs import ProcDir

from .helpers import host_layout, hpath, snapshot, tree, wait_for

pytestmark = pytest.mark.t2

V1 = ["pids", "freezer", "cpu", "cpuset", "devices", "blkio", "systemd"]


@pytest.fixture
def v1(cgdir, request):
    name = request.param if hasattr(request, "param") else "pids"
    t = tree(name)
    base = cgdir(name)
    yield t, base, hpath(t, base)
    t.close()


@pytest.mark.parametrize("v1", V1, indirect=True)
def test_structure_in_each_hierarchy(v1, procs):
    t, base, hp = v1
    assert t.create(hp + "/a/b") == [hp + "/a", hp + "/a/b"]
    assert t.children(hp + "/a") == ["b"]
    if t.hierarchy.controllers == ("cpuset",):
        for k in ("cpuset.cpus", "cpuset.mems"):
            for p in (hp + "/a", hp + "/a/b"):
                t.write(p, k, t.read(hp, k).strip())
    p = procs.spawn(["sleep", "100"])
    t.move(hp + "/a/b", p.pid)
    assert t.procs(hp + "/a/b") == [p.pid]
    assert t.procs_recursive(hp + "/a") == [p.pid]
    with ProcDir(p.pid, p.pidfd) as d:
        assert host_layout().for_lines(d.cgroups())[t.hierarchy] == hp + "/a/b"
    before = snapshot(base)
    with pytest.raises(Busy):
        t.remove(hp + "/a", recursive=True)
    assert snapshot(base) == before
    p.kill()
    assert wait_for(lambda: not t.procs(hp + "/a/b"))
    t.remove(hp + "/a", recursive=True)
    assert not os.path.exists(base + "/a")


@pytest.mark.parametrize("v1", ["pids"], indirect=True)
def test_threads_versus_processes(v1, procs):
    t, base, hp = v1
    code = "import threading,time; threading.Thread(target=time.sleep,args=(100,)).start(); time.sleep(100)"
    p = procs.spawn([sys.executable, "-I", "-S", "-c", code])
    assert wait_for(lambda: len(os.listdir(f"/proc/{p.pid}/task")) == 2)
    t.move(hp, p.pid)  # moves the whole process, all threads
    assert t.procs(hp) == [p.pid]
    assert sorted(t.threads(hp)) == sorted(int(x) for x in os.listdir(f"/proc/{p.pid}/task"))
    assert len(t.threads(hp)) == 2


@pytest.mark.parametrize("v1", ["pids"], indirect=True)
def test_pids_max_is_enforced(v1, procs):
    t, base, hp = v1
    t.mkdir(hp + "/lim")
    t.write(hp + "/lim", "pids.max", "2")
    assert t.read(hp + "/lim", "pids.max") == "2\n"
    # the shell is placed in the cgroup before exec; it can fork once, not twice
    procs.spawn(["sh", "-c", "sleep 100 & sleep 100 & wait"], cgroup=base + "/lim")
    assert wait_for(lambda: t.events(hp + "/lim", "pids.events").get("max", 0) >= 1)
    assert 1 <= len(t.procs(hp + "/lim")) <= 2


@pytest.mark.parametrize("v1", ["freezer"], indirect=True)
def test_freezer_state(v1, procs):
    t, base, hp = v1
    t.mkdir(hp + "/fr")
    p = procs.spawn(["sleep", "100"])
    t.move(hp + "/fr", p.pid)
    t.write(hp + "/fr", "freezer.state", "FROZEN")
    assert wait_for(lambda: t.read(hp + "/fr", "freezer.state").strip() == "FROZEN")
    t.write(hp + "/fr", "freezer.state", "THAWED")
    assert wait_for(lambda: t.read(hp + "/fr", "freezer.state").strip() == "THAWED")
    with pytest.raises(KernelRejected):
        t.write(hp + "/fr", "freezer.state", "MELTED")


@pytest.mark.parametrize("v1", ["cpuset"], indirect=True)
def test_cpuset_needs_cpus_and_mems_before_tasks(v1, procs):
    t, base, hp = v1
    t.mkdir(hp + "/cs")
    p = procs.spawn(["sleep", "100"])
    with pytest.raises(KernelRejected):
        t.move(hp + "/cs", p.pid)  # ENOSPC: no cpus/mems yet
    assert t.procs(hp + "/cs") == []
    t.write(hp + "/cs", "cpuset.cpus", t.read(hp, "cpuset.cpus").strip())
    t.write(hp + "/cs", "cpuset.mems", t.read(hp, "cpuset.mems").strip())
    t.move(hp + "/cs", p.pid)
    assert t.procs(hp + "/cs") == [p.pid]


@pytest.mark.parametrize("v1", ["cpu"], indirect=True)
def test_cpu_quota_values(v1):
    t, base, hp = v1
    t.mkdir(hp + "/q")
    t.write(hp + "/q", "cpu.cfs_quota_us", "50000")
    assert t.read(hp + "/q", "cpu.cfs_quota_us") == "50000\n"
    with pytest.raises(KernelRejected):
        t.write(hp + "/q", "cpu.cfs_quota_us", "not-a-number")
    assert t.read(hp + "/q", "cpu.cfs_quota_us") == "50000\n"


@pytest.mark.parametrize("v1", ["pids", "cpu"], indirect=True)
def test_chown_hands_over_dir_tasks_and_procs_only(v1):
    t, base, hp = v1
    t.mkdir(hp + "/o")
    assert sorted(t.chown(hp + "/o", 4242, 4343)) == ["cgroup.procs", "tasks"]
    for name in ["", "tasks", "cgroup.procs"]:
        st = os.stat(os.path.join(base, "o", name))
        assert (st.st_uid, st.st_gid) == (4242, 4343), name
    for name in os.listdir(base + "/o"):
        if name not in ("tasks", "cgroup.procs"):
            assert os.stat(f"{base}/o/{name}").st_uid == 0, name


@pytest.mark.parametrize("v1", ["pids"], indirect=True)
def test_keys_report_owner_and_full_mode(v1):
    t, base, hp = v1
    t.mkdir(hp + "/lk")
    t.chown(hp + "/lk", 100000, 100000)
    keys = {k.name: k for k in t.keys(hp + "/lk")}
    assert keys["tasks"].uid == 100000 and keys["pids.max"].uid == 0
    assert keys["tasks"].mode == os.stat(base + "/lk/tasks").st_mode
    assert stat.S_ISREG(keys["tasks"].mode)


@pytest.mark.parametrize("v1", ["pids"], indirect=True)
def test_release_agent_is_unreachable_from_below(v1):
    t, base, hp = v1
    t.mkdir(hp + "/ra")
    before = open(t.mountpoint + "/release_agent").read()
    for key in ["../release_agent", "../../release_agent", "/release_agent"]:
        with pytest.raises(InvalidArgument):
            t.write(hp + "/ra", key, "/tmp/pwn")
    with pytest.raises(NotFound):
        t.write(hp + "/ra", "release_agent", "/tmp/pwn")  # only the root has one
    assert open(t.mountpoint + "/release_agent").read() == before
