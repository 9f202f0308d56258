"""cgmanager as a `Delegate=yes` systemd service (tier t4), by systemd's delegation rules.

One systemd 252 container (systemd-nspawn, pure cgroup v2, no resource controllers) runs the
shipped `init/systemd/cgmanager.service`.  Clients inside the container enter the service's
delegated subtree the systemd way (AttachProcessesToUnit) and create and limit cgroups through
the daemon with the core v2 knobs (`cgroup.max.descendants`, `cgroup.max.depth`,
`cgroup.freeze`).  Then systemd does what it does on a live system — daemon-reload, reexec,
restarting other units, restarting a crashed daemon, stopping it — and the tests check from the
host, through the kernel, that nothing the daemon made is lost or reset, that the daemon made
nothing outside its delegated cgroup and never wrote the delegation point's attributes
(CGROUP_DELEGATION.md: "never write to any of the attributes of a cgroup systemd created for
you"; the delegation point is systemd's), and that it stops cleanly.

systemd here is 252: `DelegateSubgroup=` (254) does not exist, so the daemon moves itself into
a leaf of its delegated cgroup on its own (it recognises the delegation point by systemd's
`trusted.delegate` mark), keeps that leaf out of its clients' reach, and reports readiness
(Type=notify) only then.

The tests of this module share one daemon and one tree and run in file order: the tests that
restart and stop the service come last.
"""

from __future__ import annotations

import os
import posixpath
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from support import nspawn

from .helpers import (
    UNIT,
    CgroupWatch,
    Service,
    attributes,
    call,
    events,
    procs,
    read,
    shipped_exec_start,
    shipped_unit,
    wait_for,
    walk,
)

pytestmark = pytest.mark.t4


@dataclass
class Tree:
    """What the workload made (paths relative to the delegation point; container pids)."""

    job_sleeper: int
    frozen_sleeper: int
    workload_events: list[tuple[str, str]]


@pytest.fixture(scope="module")
def tree(service: Service) -> Iterator[Tree]:
    """A root client attaches to the delegation point (the only way in: AttachProcessesToUnit),
    makes `clients/`, moves itself there, and builds below it: `app` (max 3 descendants, depth
    1) with a sleeper in `app/job`, `frozen` (a frozen sleeper) and an empty `idle`."""
    ops = [
        call("Create", "ss", "unified", "clients"),
        call("MovePid", "ssi", "unified", "clients", "$self"),
        call("Create", "ss", "unified", "app"),
        call("SetValue", "ssss", "unified", "app", "cgroup.max.descendants", "3"),
        call("SetValue", "ssss", "unified", "app", "cgroup.max.depth", "1"),
        call("Create", "ss", "unified", "app/job"),
        ["sleeper"],
        call("MovePid", "ssi", "unified", "app/job", "$last"),
        call("Create", "ss", "unified", "frozen"),
        ["sleeper"],
        call("MovePid", "ssi", "unified", "frozen", "$last"),
        call("SetValue", "ssss", "unified", "frozen", "cgroup.freeze", "1"),
        call("Create", "ss", "unified", "idle"),
    ]
    res = service.client(ops, attach="")
    for i in range(len(ops)):
        res.ok(i)
    frozen = os.path.join(service.dp, "clients/frozen")
    wait_for(lambda: events(frozen).get("frozen") == "1", 5, "clients/frozen to freeze")
    assert service.watch is not None
    yield Tree(res.ok(6), res.ok(9), service.watch.drain())
    # the workload ends with the module: thaw it (a frozen process would hold up the
    # container's poweroff) and kill it (the service's KillMode=process leaves it running)
    clients = os.path.join(service.dp, "clients")
    if os.path.isdir(clients):
        service.c.thaw_all()
        with open(os.path.join(clients, "cgroup.kill"), "w") as f:
            f.write("1")
        wait_for(lambda: events(clients)["populated"] == "0", 5, "the workload to die")


@pytest.fixture(scope="module")
def other_unit(container) -> str:
    """An unrelated service, to restart under the daemon's feet."""
    container.write_file(
        "/etc/systemd/system/cgtest-other.service",
        "[Unit]\nDescription=unrelated test service\n[Service]\nExecStart=/bin/sleep infinity\n",
    )
    container.systemctl("daemon-reload")
    container.systemctl("start", "cgtest-other.service")
    return "cgtest-other.service"


def _survived_unit_death(before: dict, after: dict) -> None:
    """When the unit's main process dies (stop, crash), systemd 252 prunes the unit's cgroup:
    cg_trim() removes every *empty* cgroup of the delegated subtree (populated ones cannot be
    removed).  So after a stop or crash restart exactly the cgroups with no process anywhere
    below them may be gone; everything else must be there, attributes and members unchanged."""
    lost = set(before) - set(after)
    for path in lost:
        below = [p for p in before if p == path or p.startswith(path + "/")]
        assert not any(before[p]["procs"] for p in below), f"populated {path} was lost"
    assert set(after) <= set(before), f"new cgroups: {set(after) - set(before)}"
    assert {p: before[p] for p in after} == after


def _in_place(service: Service, tree: Tree) -> None:
    cg = service.control_group
    assert service.inner_cgroup(tree.job_sleeper) == f"{cg}/clients/app/job"
    assert service.inner_cgroup(tree.frozen_sleeper) == f"{cg}/clients/frozen"
    assert events(os.path.join(service.dp, "clients/frozen"))["frozen"] == "1"


# ------------------------------------------------------------------------------ the setting
def test_container_is_pure_v2_without_controllers(container):
    # booting it changed no global cgroup2 flag of the host (rule 6 of the testing notes)
    assert nspawn.host_cgroup2_options() == container.host_cgroup2_options
    fs = container.run(["stat", "-f", "-c", "%T", "/sys/fs/cgroup"]).stdout.strip()
    assert fs == "cgroup2fs"
    assert read(os.path.join(container.payload, "cgroup.controllers")) == ""
    assert container.systemctl("is-system-running", check=False) in ("running", "degraded")


def test_shipped_unit_is_delegated_and_loads(service):
    text = shipped_unit()
    assert shipped_exec_start(text)[0] == "/usr/sbin/cgmanager"
    # no ConditionVirtualization=!container (see the unit's comment): it runs in containers
    assert not [ln for ln in text.splitlines() if ln.startswith("ConditionVirtualization")]
    props = service.c.show(
        UNIT, "LoadState", "Delegate", "KillMode", "Restart", "Type", "ActiveState", "Result"
    )
    assert props == {
        "LoadState": "loaded",
        "Delegate": "yes",
        "KillMode": "process",
        "Restart": "on-failure",
        "Type": "notify",
        "ActiveState": "active",
        "Result": "success",
    }
    verify = service.c.run(["systemd-analyze", "verify", "--man=no", UNIT], check=False)
    assert (verify.returncode, verify.stderr.strip()) == (0, ""), verify
    assert service.control_group == f"/system.slice/{UNIT}"
    assert os.getxattr(service.dp, "user.delegate") == b"1"
    # only the v2 hierarchy is mounted in the container: that is all the daemon serves, listed
    # with the v1 names it answers to there (no resource controllers: freezer is v2's own)
    res = service.client([call("ListControllers", "")])
    assert res.ok() == [["unified,freezer,name=systemd"]]


# ------------------------------------------------------------------------------ clients
def test_clients_create_and_limit_cgroups_in_the_delegated_subtree(service, tree):
    app = os.path.join(service.dp, "clients/app")
    assert read(os.path.join(app, "cgroup.max.descendants")) == "3"
    assert read(os.path.join(app, "cgroup.max.depth")) == "1"
    _in_place(service, tree)
    res = service.client(
        [
            call("Create", "ss", "unified", "app/a"),
            call("Create", "ss", "unified", "app/b"),
            call("Create", "ss", "unified", "app/c"),  # 4th descendant
            call("Create", "ss", "unified", "app/job/deep"),  # depth 2 below app
            call("GetValue", "sss", "unified", "frozen", "cgroup.freeze"),
            call("GetTasks", "ss", "unified", "frozen"),
            call("GetPidCgroup", "si", "unified", tree.job_sleeper),
            call("Remove", "ssi", "unified", "app/a", 0),
            call("Remove", "ssi", "unified", "app/b", 0),
        ],
        attach="/clients",
    )
    assert res.ok(0) == [-1] and res.ok(1) == [-1]
    assert res.error(2) == "LimitExceeded"
    assert res.error(3) == "LimitExceeded"
    assert res.ok(4) == ["1"]
    assert res.ok(5) == [[tree.frozen_sleeper]]
    assert res.ok(6) == ["app/job"]
    assert res.ok(7) == [1] and res.ok(8) == [1]
    assert [d for d in os.listdir(app) if os.path.isdir(os.path.join(app, d))] == ["job"]


def test_daemon_creates_nothing_outside_its_delegated_cgroup(service, tree):
    cg = service.control_group.lstrip("/")

    def outside() -> list[str]:
        return [p for p in walk(service.c.payload) if p != cg and not p.startswith(cg + "/")]

    v1 = service.c.cgroups.get("systemd")
    before, before_v1 = outside(), (walk(v1) if v1 else [])
    res = service.client(
        [
            call("Create", "ss", "unified", "../escape"),
            call("Create", "ss", "unified", "a/../../escape"),
            call("GetValue", "sss", "unified", "/system.slice", "cgroup.max.depth"),
            call("SetValue", "ssss", "unified", "/", "cgroup.max.depth", "5"),
            call("ListChildren", "ss", "unified", "/"),
            call("GetPidCgroupAbs", "si", "unified", 1),
            call("MovePid", "ssi", "unified", "", 1),
        ],
        attach="/clients",
    )
    assert res.error(0) == "InvalidArgument"
    assert res.error(1) == "InvalidArgument"
    assert res.error(2) == "NotFound"
    assert res.error(3) == "NotFound"
    assert res.error(4) == "NotFound"
    assert res.error(5) == "NotFound"
    assert res.error(6) in ("NotPermitted", "NotFound")
    # a process outside the delegated subtree (nsenter's /../enter) is nobody to the daemon
    stranger = service.client([call("Create", "ss", "unified", "stranger")], attach=None)
    assert stranger.error(0) == "NotFound"
    assert outside() == before
    assert (walk(v1) if v1 else []) == before_v1


def test_startup_and_requests_never_write_the_delegation_point(service, tree):
    """From before the daemon's first instruction through the whole workload, the delegation
    point's own files were only touched by process moves (systemd attaching processes) and
    kernel notifications; its attributes and ownership are what systemd made."""
    assert service.watch is not None
    changes = service.watch.attribute_changes(service.startup_events + tree.workload_events)
    assert changes == []
    assert attributes(service.dp) == service.attrs_at_start


def test_daemon_moves_itself_into_a_leaf_of_its_delegated_cgroup(service, tree):
    cg = service.control_group
    own = service.inner_cgroup(service.main_pid())
    assert posixpath.dirname(own) == cg, f"daemon runs in {own}, not in a leaf of {cg}"
    leaf = os.path.join(service.dp, posixpath.basename(own))
    assert os.listdir(leaf) and procs(leaf) == [service.host_pid(service.main_pid())]
    assert procs(service.dp) == []  # the delegation point is an inner node now
    # its bound is still the delegation point: clients there and below are served
    assert service.client([call("ListChildren", "ss", "unified", "")], attach="").ok()


@pytest.mark.parametrize(
    "op",
    [
        call("SetValue", "ssss", "unified", "", "cgroup.max.descendants", "1000"),
        call("SetValue", "ssss", "unified", "", "cgroup.max.depth", "1000"),
        call("Chmod", "sssi", "unified", "", "cgroup.max.depth", 0o644),
        call("Chmod", "sssi", "unified", "", "", 0o755),
        call("Chown", "ssii", "unified", "", 0, 0),
    ],
    ids=["max.descendants", "max.depth", "chmod-file", "chmod-dir", "chown"],
)
def test_requests_cannot_change_the_delegation_point(service, tree, op):
    """Only harmless values are asked for (the same owner and modes, limits far above what
    exists): the daemon under test still carries them out today."""
    watch = CgroupWatch(service.dp)
    before = attributes(service.dp)
    try:
        res = service.client([op], attach="")
        changes = watch.attribute_changes(watch.drain())
        assert res.error(0) == "NotPermitted"
        assert changes == []
    finally:
        watch.close()
        for key in ("cgroup.max.descendants", "cgroup.max.depth"):  # undo what it did
            if attributes(service.dp)[key] != before[key]:
                with open(os.path.join(service.dp, key), "w") as f:
                    f.write(before[key])
    assert attributes(service.dp) == before


def test_the_daemons_leaf_is_out_of_clients_reach(service, tree):
    own = service.inner_cgroup(service.main_pid())
    assert posixpath.dirname(own) == service.control_group, f"no leaf: daemon runs in {own}"
    name = posixpath.basename(own)
    leaf = os.path.join(service.dp, name)
    try:
        res = service.client(
            [
                call("SetValue", "ssss", "unified", name, "cgroup.freeze", "1"),
                call("SetValue", "ssss", "unified", name, "cgroup.max.descendants", "0"),
                call("Create", "ss", "unified", f"{name}/x"),
                call("MovePid", "ssi", "unified", name, "$self"),
                call("Chown", "ssii", "unified", name, 0, 0),
                call("Remove", "ssi", "unified", name, 1),
            ],
            attach="",
            timeout=20,
        )
        for i in range(6):
            assert res.error(i) in ("NotPermitted", "NotFound"), i
    finally:
        if os.path.isdir(leaf) and read(os.path.join(leaf, "cgroup.freeze")) == "1":
            with open(os.path.join(leaf, "cgroup.freeze"), "w") as f:
                f.write("0")  # a frozen daemon would stall the rest of the tier
    assert events(leaf)["frozen"] == "0" and not any(
        os.path.isdir(os.path.join(leaf, d)) for d in os.listdir(leaf)
    )


def test_notify_readiness_comes_after_the_leaf(service):
    """A second instance of the shipped unit with Type=notify (own socket and runtime
    directory): it must become active by itself, and be in its leaf by then."""
    notify = Service(service.c, unit="cgmanager-notify.service", socket="/run/cgm-n/sock")
    notify.install(
        "Type=notify\nNotifyAccess=main\nTimeoutStartSec=20s\n"
        "RuntimeDirectory=\nRuntimeDirectory=cgm-n\n",
        extra_args=("--socket", "/run/cgm-n/sock", "--fs-dir", "/run/cgm-n/fs"),
    )
    try:
        service.c.systemctl("start", "--no-block", notify.unit)
        wait_for(lambda: os.path.exists(service.c.path(notify.socket)), 20, "the socket")
        deadline = time.monotonic() + 2.0  # READY=1 belongs right after listen()
        while time.monotonic() < deadline:
            if service.c.show(notify.unit, "ActiveState")["ActiveState"] == "active":
                break
            time.sleep(0.05)
        assert service.c.show(notify.unit, "ActiveState")["ActiveState"] == "active"
        own = notify.inner_cgroup(notify.main_pid())
        assert posixpath.dirname(own) == notify.control_group
    finally:
        service.c.systemctl("stop", notify.unit, check=False)


# ------------------------------------------------------------------------------ systemd acts
@pytest.mark.parametrize("action", ["daemon-reload", "daemon-reexec", "restart-other-unit"])
def test_systemd_keeps_what_the_daemon_made(service, tree, other_unit, action):
    before = service.snapshot()
    pid = service.main_pid()
    if action == "restart-other-unit":
        other_pid = service.c.show(other_unit, "MainPID")["MainPID"]
        service.c.systemctl("restart", other_unit)
        assert service.c.show(other_unit, "MainPID")["MainPID"] != other_pid
    else:
        service.c.systemctl(action)
        service.c.wait_running(15)
    assert service.snapshot() == before
    assert service.main_pid() == pid
    _in_place(service, tree)
    res = service.client(
        [call("GetValue", "sss", "unified", "app", "cgroup.max.descendants")],
        attach="/clients",
    )
    assert res.ok() == ["3"]


def test_crashed_daemon_is_restarted_and_finds_its_tree(service, tree):
    before = service.snapshot()
    pid = service.main_pid()
    service.c.systemctl("kill", "--signal=SIGKILL", "--kill-who=main", UNIT)
    wait_for(lambda: service.main_pid() not in (0, pid), 15, "a new main pid")
    service.wait_ready()
    assert service.c.show(UNIT, "NRestarts")["NRestarts"] == "1"
    after = service.snapshot()
    _survived_unit_death(before, after)  # KillMode=process: the clients' processes stay
    _in_place(service, tree)
    res = service.client([call("ListChildren", "ss", "unified", "")], attach="/clients")
    assert {"app", "frozen"} <= set(res.ok()[0])


def test_systemctl_stop_is_clean_and_leaves_the_workload_alone(service, tree):
    """SIGTERM (KillMode=process: to the daemon only) -> exit 0, unit inactive (not failed),
    the socket gone (its directory stays: it may be a bind mount); the clients' processes keep running where they were
    and a started-again daemon serves the same tree."""
    job_host = service.host_pid(tree.job_sleeper)
    pidfd = os.pidfd_open(job_host)
    before = service.snapshot()
    try:
        service.c.systemctl("stop", UNIT, timeout=30)
        props = service.c.show(UNIT, "ActiveState", "Result", "ExecMainCode", "ExecMainStatus")
        assert props == {
            "ActiveState": "inactive",
            "Result": "success",
            "ExecMainCode": "1",  # CLD_EXITED
            "ExecMainStatus": "0",
        }, service.journal()
        assert not os.path.exists(service.c.path(service.socket))
        assert "stopping" in service.journal()
        signal.pidfd_send_signal(pidfd, 0)  # still alive
        _survived_unit_death(before, service.snapshot(exclude_daemon=False))
        _in_place(service, tree)
        service.c.systemctl("start", UNIT)
        service.wait_ready()
        res = service.client([call("ListChildren", "ss", "unified", "")], attach="/clients")
        assert {"app", "frozen"} <= set(res.ok()[0])
        _in_place(service, tree)
    finally:
        os.close(pidfd)
