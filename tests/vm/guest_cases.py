"""Tier t5, the guest side: runs INSIDE the pure cgroup v2 VM (tests/support/qemu.py), never on
the host (it refuses to start unless it sees the VM's marks).

It starts the real ``cgmanager`` daemon in the VM, drives it with the blocking client
(``cgmanager.dbus.client``) and records, per case, what the daemon answered and what the kernel
then showed -- it asserts nothing itself.  The host side (``tests/vm/test_v2_controllers.py``)
boots the VM once, reads ``$CGTEST_XFER/results.json`` and asserts on it, one test per case.

The daemon and this driver both run in the VM's root cgroup (where a systemd-less host's init
would put them); every case works in its own cgroup below, created through the API.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

OBJ = "/org/linuxcontainers/cgmanager"
IFACE = "org.linuxcontainers.cgmanager0_0"
CG = "/sys/fs/cgroup"
VENV_BIN = os.path.dirname(sys.executable)
SOCK = "/run/cgmanager/sock"
PY = [sys.executable, "-I", "-S"]  # quick children: stdlib only


def in_the_vm() -> bool:
    """The VM's marks: set by tests/support/qemu.py and its /init, absent on a host."""
    try:
        with open("/proc/cmdline") as f:
            cmdline = f.read().split()
        with open("/proc/self/mountinfo") as f:
            xfer = any(line.split()[4] == "/.cgtest/xfer" for line in f)
    except OSError:
        return False
    return os.environ.get("CGTEST_IN_VM") == "1" and "rdinit=/init" in cmdline and xfer


# ----------------------------------------------------------------------------------- helpers
class Api:
    """The daemon's plain methods; ``try_`` records an error instead of raising."""

    def __init__(self, conn) -> None:
        self.conn = conn

    def __call__(self, method: str, sig: str = "", *args: Any) -> Any:
        body = self.conn.call(OBJ, IFACE, method, sig, args, timeout=60)
        return body[0] if len(body) == 1 else list(body)

    def try_(self, method: str, sig: str = "", *args: Any) -> dict[str, Any]:
        from cgmanager.dbus.errors import DBusError

        try:
            return {"ok": True, "value": self(method, sig, *args)}
        except DBusError as e:
            return {"ok": False, "error": e.name, "message": e.message}


class Child:
    """A process that waits for a line on stdin before acting (so it can be moved first)."""

    def __init__(self, argv: list[str], **popen_kw: Any) -> None:
        self.popen = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            **popen_kw,
        )
        self.pid = self.popen.pid

    def go(self) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write("go\n")
        self.popen.stdin.flush()

    def line(self, timeout: float = 30) -> dict[str, Any] | None:
        """The next JSON line the child prints, or None (EOF or timeout)."""
        out = self.popen.stdout
        assert out is not None
        r, _, _ = select.select([out], [], [], timeout)
        if not r:
            return None
        text = out.readline()
        return json.loads(text) if text.strip() else None

    def wait(self, timeout: float = 30) -> int | None:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        try:
            self.popen.communicate(timeout=10)
        except (subprocess.TimeoutExpired, ValueError, OSError):
            pass


WAIT_THEN_EXEC = "import os,sys; sys.stdin.readline(); os.execvp(sys.argv[1], sys.argv[1:])"


def kv(text: str) -> dict[str, str]:
    """``key value`` lines (memory.events, pids.events, cpu.stat, cgroup.events) as a dict."""
    out = {}
    for line in text.splitlines():
        k, _, v = line.partition(" ")
        out[k] = v.strip()
    return out


def poll(fn: Callable[[], bool], timeout: float = 15, step: float = 0.05) -> float | None:
    """Seconds until fn() held, or None."""
    start = time.monotonic()
    while True:
        if fn():
            return round(time.monotonic() - start, 3)
        if time.monotonic() - start > timeout:
            return None
        time.sleep(step)


# ------------------------------------------------------------------------------------- cases
CASES: list[tuple[str, Callable[..., dict[str, Any]]]] = []


def case(fn: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    CASES.append((fn.__name__, fn))
    return fn


class Ctx:
    def __init__(self, api: Api) -> None:
        self.api = api
        self.children: list[Child] = []
        self.cgroups: list[str] = []  # top-level cgroups a case made (removed after it)

    def child(self, argv: list[str], **popen_kw: Any) -> Child:
        c = Child(argv, **popen_kw)
        self.children.append(c)
        return c

    def waiter(self, *argv: str) -> Child:
        """A process that execs *argv* once told to go."""
        return self.child([*PY, "-c", WAIT_THEN_EXEC, *argv])

    def create(self, controller: str, name: str) -> Any:
        self.cgroups.append(name.split("/")[0])
        return self.api("Create", "ss", controller, name)

    def cleanup(self) -> list[str]:
        problems = []
        for c in self.children:
            c.kill()
        for name in dict.fromkeys(self.cgroups):
            path = f"{CG}/{name}"
            if not os.path.isdir(path):
                continue
            try:  # through the API first: also exercises Remove on v2
                self.api("SetValue", "ssss", "unified", name, "cgroup.freeze", "0")
                self.api("SetValue", "ssss", "unified", name, "cgroup.kill", "1")
                poll(lambda p=path: "populated 0" in _read(f"{p}/cgroup.events"), 10)
                self.api("Remove", "ssi", "unified", name, 1)
            except Exception as e:  # noqa: BLE001 - reported, then removed directly
                problems.append(f"Remove {name} through the API: {e!r}")
                _rmtree(path)
        return problems


@case
def layout(ctx: Ctx) -> dict[str, Any]:
    """What the daemon discovers on a pure v2 host (--print-layout) and lists (ListControllers)."""
    cp = subprocess.run(
        [f"{VENV_BIN}/cgmanager", "--print-layout"], capture_output=True, text=True, timeout=120
    )
    return {
        "print_layout_rc": cp.returncode,
        "print_layout": cp.stdout + cp.stderr,
        "list_controllers": ctx.api("ListControllers"),
        "kernel_controllers": _read(f"{CG}/cgroup.controllers").split(),
        "root_subtree_control": _read(f"{CG}/cgroup.subtree_control").split(),
        "mount_options": next(
            line.split()[3]
            for line in _read("/proc/self/mounts").splitlines()
            if line.split()[1] == CG
        ),
    }


@case
def memory_oom(ctx: Ctx) -> dict[str, Any]:
    """memory.max through SetValue; a process that allocates more is OOM-killed; memory.events
    read through GetValue."""
    api, obs = ctx.api, {}
    obs["create"] = ctx.create("memory", "oom")
    obs["set_max"] = api.try_("SetValue", "ssss", "memory", "oom", "memory.max", str(32 << 20))
    obs["max"] = api("GetValue", "sss", "memory", "oom", "memory.max")
    hog = ctx.child(
        [
            *PY,
            "-c",
            "import sys; sys.stdin.readline(); b = b'x' * (256 << 20); "
            "print('survived', len(b), flush=True)",
        ]
    )
    obs["move"] = api.try_("MovePid", "ssi", "memory", "oom", hog.pid)
    obs["pid_cgroup"] = api("GetPidCgroup", "si", "memory", hog.pid)
    hog.go()
    obs["returncode"] = hog.wait(60)
    obs["events"] = kv(api("GetValue", "sss", "memory", "oom", "memory.events"))
    obs["peak"] = api.try_("GetValue", "sss", "memory", "oom", "memory.peak")
    obs["tasks_after"] = api("GetTasks", "ss", "memory", "oom")
    return obs


@case
def memory_event_signals(ctx: Ctx) -> dict[str, Any]:
    """A subscriber's CgroupEvent signals (issue 18) for a cgroup whose process is OOM-killed:
    populated, then memory (memory.events with oom_kill), then empty; a PSI memory trigger."""
    from cgmanager.dbus.client import connect

    api, obs = ctx.api, {}
    obs["create"] = ctx.create("memory", "oomsig")
    obs["set_max"] = api.try_("SetValue", "ssss", "memory", "oomsig", "memory.max", str(32 << 20))
    sub = connect(f"unix:path={SOCK}", timeout=60)
    iface1 = "org.linuxcontainers.cgmanager1"
    try:
        obs["subscribe"] = list(sub.call(OBJ, iface1, "Subscribe", "ss", ("memory", "oomsig")))
        try:
            obs["pressure"] = list(
                sub.call(
                    OBJ,
                    iface1,
                    "WatchPressure",
                    "ssss",
                    ("memory", "oomsig", "memory", "some 10000 2000000"),
                )
            )
        except Exception as e:  # noqa: BLE001 - recorded
            obs["pressure"] = repr(e)
        hog = ctx.child([*PY, "-c", "import sys; sys.stdin.readline(); b = b'x' * (256 << 20)"])
        obs["move"] = api.try_("MovePid", "ssi", "memory", "oomsig", hog.pid)
        hog.go()
        obs["returncode"] = hog.wait(60)
        signals = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            msg = sub.receive(1.0)
            if msg is None:
                if any(b[3] == "populated" and b[4].get("populated") == 0 for b in signals):
                    break
                continue
            signals.append(list(msg.body))
        obs["signals"] = signals
    finally:
        sub.close()
    return obs


@case
def memory_oom_group(ctx: Ctx) -> dict[str, Any]:
    """memory.oom.group=1: the OOM killer takes the whole cgroup, not only the hog."""
    api, obs = ctx.api, {}
    ctx.create("memory", "oomg")
    api("SetValue", "ssss", "memory", "oomg", "memory.max", str(32 << 20))
    obs["set_group"] = api.try_("SetValue", "ssss", "memory", "oomg", "memory.oom.group", "1")
    obs["group"] = api("GetValue", "sss", "memory", "oomg", "memory.oom.group")
    code = (
        "import os, sys, time\n"
        "sys.stdin.readline()\n"
        "if os.fork() == 0:\n    time.sleep(120); os._exit(0)\n"
        "print('{\"forked\": true}', flush=True)\n"
        "b = b'x' * (256 << 20)\n"
    )
    hog = ctx.child([*PY, "-c", code])
    api("MovePid", "ssi", "memory", "oomg", hog.pid)
    hog.go()
    obs["forked"] = hog.line(30)
    obs["returncode"] = hog.wait(60)
    obs["emptied_after"] = poll(lambda: api("GetTasks", "ss", "memory", "oomg") == [], 15)
    obs["events"] = kv(api("GetValue", "sss", "memory", "oomg", "memory.events"))
    return obs


@case
def pids_max(ctx: Ctx) -> dict[str, Any]:
    """pids.max through SetValue: fork fails past it; pids.events shows it."""
    api, obs = ctx.api, {}
    ctx.create("pids", "pl")
    obs["set_max"] = api.try_("SetValue", "ssss", "pids", "pl", "pids.max", "3")
    obs["max"] = api("GetValue", "sss", "pids", "pl", "pids.max")
    code = (
        "import os, sys, time, json\n"
        "sys.stdin.readline()\n"
        "kids, err = [], None\n"
        "for i in range(8):\n"
        "    try:\n        pid = os.fork()\n"
        "    except OSError as e:\n        err = e.errno; break\n"
        "    if pid == 0:\n        time.sleep(120); os._exit(0)\n"
        "    kids.append(pid)\n"
        "print(json.dumps({'forked': len(kids), 'errno': err}), flush=True)\n"
        "sys.stdin.readline()\n"
        "for k in kids:\n    os.kill(k, 9); os.waitpid(k, 0)\n"
    )
    forker = ctx.child([*PY, "-c", code])
    api("MovePid", "ssi", "pids", "pl", forker.pid)
    forker.go()
    obs["forks"] = forker.line(30)
    obs["current"] = api("GetValue", "sss", "pids", "pl", "pids.current")
    obs["events"] = kv(api("GetValue", "sss", "pids", "pl", "pids.events"))
    obs["tasks"] = len(api("GetTasks", "ss", "pids", "pl"))
    forker.go()
    obs["returncode"] = forker.wait(30)
    return obs


@case
def cpu_max_weight(ctx: Ctx) -> dict[str, Any]:
    """cpu.max and cpu.weight settable and read back; a busy loop under cpu.max is throttled."""
    api, obs = ctx.api, {}
    ctx.create("cpu", "cpu")
    obs["set_max"] = api.try_("SetValue", "ssss", "cpu", "cpu", "cpu.max", "20000 100000")
    obs["max"] = api("GetValue", "sss", "cpu", "cpu", "cpu.max")
    obs["set_weight"] = api.try_("SetValue", "ssss", "cpu", "cpu", "cpu.weight", "250")
    obs["weight"] = api("GetValue", "sss", "cpu", "cpu", "cpu.weight")
    obs["set_bad_weight"] = api.try_("SetValue", "ssss", "cpu", "cpu", "cpu.weight", "0")
    code = (
        "import sys, time, json\n"
        "sys.stdin.readline()\n"
        "t = time.monotonic()\n"
        "while time.monotonic() - t < 1.5:\n    pass\n"
        "print(json.dumps({'cpu': time.process_time(), 'wall': time.monotonic() - t}), flush=True)\n"
    )
    busy = ctx.child([*PY, "-c", code])
    api("MovePid", "ssi", "cpu", "cpu", busy.pid)
    busy.go()
    obs["busy"] = busy.line(60)
    busy.wait(30)
    obs["stat"] = kv(api("GetValue", "sss", "cpu", "cpu", "cpu.stat"))
    return obs


@case
def freeze(ctx: Ctx) -> dict[str, Any]:
    """cgroup.freeze through SetValue; cgroup.events shows frozen 1 (and 0 after thawing)."""
    api, obs = ctx.api, {}
    ctx.create("unified", "fz")
    sleeper = ctx.child(["sleep", "300"])
    obs["move"] = api.try_("MovePid", "ssi", "unified", "fz", sleeper.pid)
    obs["events_before"] = kv(api("GetValue", "sss", "unified", "fz", "cgroup.events"))
    obs["set_freeze"] = api.try_("SetValue", "ssss", "unified", "fz", "cgroup.freeze", "1")
    frozen = lambda v: (
        kv(api("GetValue", "sss", "unified", "fz", "cgroup.events")).get("frozen") == v
    )  # noqa: E731
    obs["frozen_after"] = poll(lambda: frozen("1"))
    obs["events_frozen"] = kv(api("GetValue", "sss", "unified", "fz", "cgroup.events"))
    obs["state_frozen"] = _proc_state(sleeper.pid)
    obs["set_thaw"] = api.try_("SetValue", "ssss", "unified", "fz", "cgroup.freeze", "0")
    obs["thawed_after"] = poll(lambda: frozen("0"))
    obs["alive"] = sleeper.popen.poll() is None
    return obs


@case
def max_descendants(ctx: Ctx) -> dict[str, Any]:
    """cgroup.max.descendants / cgroup.max.depth set through SetValue are enforced on Create."""
    api, obs = ctx.api, {}
    ctx.create("unified", "lim")
    obs["set_desc"] = api.try_("SetValue", "ssss", "unified", "lim", "cgroup.max.descendants", "2")
    obs["desc"] = api("GetValue", "sss", "unified", "lim", "cgroup.max.descendants")
    obs["create_a"] = api.try_("Create", "ss", "unified", "lim/a")
    obs["create_b"] = api.try_("Create", "ss", "unified", "lim/b")
    obs["create_c"] = api.try_("Create", "ss", "unified", "lim/c")
    obs["create_a_x"] = api.try_("Create", "ss", "unified", "lim/a/x")
    obs["children"] = sorted(api("ListChildren", "ss", "unified", "lim"))
    ctx.create("unified", "dep")
    obs["set_depth"] = api.try_("SetValue", "ssss", "unified", "dep", "cgroup.max.depth", "1")
    obs["create_depth1"] = api.try_("Create", "ss", "unified", "dep/a")
    obs["create_depth2"] = api.try_("Create", "ss", "unified", "dep/a/b")
    obs["depth2_exists"] = os.path.isdir(f"{CG}/dep/a/b")
    return obs


@case
def move_pid_and_internal_processes(ctx: Ctx) -> dict[str, Any]:
    """MovePid on v2, and the no-internal-process rule: what the daemon says when the kernel
    refuses (EBUSY) a move into, or a +controller on, a cgroup that would then hold both."""
    api, obs = ctx.api, {}
    ctx.create("unified", "nip/leaf")
    sleeper = ctx.child(["sleep", "300"])
    pid = sleeper.pid
    obs["move_to_nip"] = api.try_("MovePid", "ssi", "unified", "nip", pid)
    obs["cgroup_nip"] = api("GetPidCgroup", "si", "unified", pid)
    obs["procs_file"] = _read(f"{CG}/nip/cgroup.procs").split()
    obs["enable_memory_while_populated"] = api.try_(
        "SetValue", "ssss", "unified", "nip", "cgroup.subtree_control", "+memory"
    )
    obs["move_to_leaf"] = api.try_("MovePid", "ssi", "memory", "nip/leaf", pid)
    obs["cgroup_leaf"] = api("GetPidCgroup", "si", "memory", pid)
    obs["enable_memory_after"] = api.try_(
        "SetValue", "ssss", "unified", "nip", "cgroup.subtree_control", "+memory +pids"
    )
    obs["subtree_control"] = api("GetValue", "sss", "unified", "nip", "cgroup.subtree_control")
    obs["leaf_has_memory_max"] = os.path.exists(f"{CG}/nip/leaf/memory.max")
    obs["move_back_to_nip"] = api.try_("MovePid", "ssi", "unified", "nip", pid)
    obs["cgroup_final"] = api("GetPidCgroup", "si", "unified", pid)
    obs["tasks_recursive"] = api("GetTasksRecursive", "ss", "unified", "nip")
    obs["remove_populated"] = api.try_("Remove", "ssi", "unified", "nip", 1)
    obs["move_to_root"] = api.try_("MovePidAbs", "ssi", "unified", "/", pid)
    obs["cgroup_after_abs"] = api("GetPidCgroup", "si", "unified", pid)
    return obs


#: the start of the client scripts run in child processes: wait for "go", connect, and t()
#: records each call's result or error
CLIENT_PRELUDE = r"""
import json, os, sys
from cgmanager.dbus.client import connect
from cgmanager.dbus.errors import DBusError
sys.stdin.readline()
c = connect(sys.argv[1], timeout=60)
def t(method, sig, *args):
    try:
        body = c.call("/org/linuxcontainers/cgmanager", "org.linuxcontainers.cgmanager0_0",
                      method, sig, args, timeout=60)
        return {"ok": True, "value": body[0] if len(body) == 1 else list(body)}
    except DBusError as e:
        return {"ok": False, "error": e.name, "message": e.message}
"""

CLIENT_IN_LEAF = (
    CLIENT_PRELUDE
    + r"""
out = {}
import os
out["own"] = t("GetPidCgroup", "si", "memory", os.getpid())
out["create"] = t("Create", "ss", "memory", "c1")
out["set_memory_max"] = t("SetValue", "ssss", "memory", "c1", "memory.max", str(64 << 20))
out["enable_memory_on_own"] = t("SetValue", "ssss", "unified", "", "cgroup.subtree_control", "+memory")
out["create_via_parent_leaf"] = t("Create", "ss", "memory", "c2/leaf")
print(json.dumps(out), flush=True)
"""
)


@case
def client_in_leaf(ctx: Ctx) -> dict[str, Any]:
    """A client that is itself in a non-root cgroup (as every client is on a systemd host) asks
    for a memory limit on a cgroup it creates below its own: on v2 the parent (the client's
    cgroup) needs +memory in subtree_control, which the kernel refuses while it holds the
    client.  Recorded as the daemon behaves; the host side states the expectation."""
    api, obs = ctx.api, {}
    ctx.create("unified", "session")
    client = ctx.child([sys.executable, "-c", CLIENT_IN_LEAF, f"unix:path={SOCK}"])
    obs["move"] = api.try_("MovePid", "ssi", "unified", "session", client.pid)
    client.go()
    obs["client"] = client.line(120)
    obs["returncode"] = client.wait(30)
    obs["stderr"] = client.popen.stderr.read()[-2000:] if client.popen.stderr else ""
    obs["session_children"] = sorted(os.listdir(f"{CG}/session"))
    obs["c1_has_memory_max"] = os.path.exists(f"{CG}/session/c1/memory.max")
    return obs


DELEGATED_CLIENT = (
    CLIENT_PRELUDE
    + r"""
def direct(path, value):
    try:
        with open(path, "w") as f:
            f.write(value)
        return {"ok": True}
    except OSError as e:
        return {"ok": False, "errno": e.errno, "message": str(e)}
leaf = "/sys/fs/cgroup/dl/leaf"
out = {"uid": os.getuid()}
out["raise_own_memory_max"] = t("SetValue", "ssss", "memory", "", "memory.max", "max")
out["own_memory_max"] = t("GetValue", "sss", "memory", "", "memory.max")
out["create_kid"] = t("Create", "ss", "memory", "kid")
out["kid_memory_max_before"] = t("SetValue", "ssss", "memory", "kid", "memory.max", str(32 << 20))
out["enable_memory_while_inside"] = t("SetValue", "ssss", "unified", "", "cgroup.subtree_control", "+memory")
out["move_self_to_kid"] = t("MovePid", "ssi", "unified", "kid", os.getpid())
out["own_cgroup"] = t("GetPidCgroupAbs", "si", "unified", os.getpid())
out["enable_memory_from_kid"] = t("SetValue", "ssss", "unified", "/dl/leaf", "cgroup.subtree_control", "+memory")
out["enable_memory_direct"] = direct(leaf + "/cgroup.subtree_control", "+memory")
out["kid_memory_max"] = t("SetValue", "ssss", "memory", "", "memory.max", str(32 << 20))
out["kid_memory_max_read"] = t("GetValue", "sss", "memory", "", "memory.max")
out["move_self_out"] = t("MovePidAbs", "ssi", "unified", "/", os.getpid())
out["move_self_out_direct"] = direct("/sys/fs/cgroup/cgroup.procs", str(os.getpid()))
print(json.dumps(out), flush=True)
"""
)


@case
def delegated_user(ctx: Ctx) -> dict[str, Any]:
    """A cgroup handed to an unprivileged user with Chown (v2 delegation): the user may use
    it but not raise the limits root set on it; what it can and cannot do below it through
    the API (and, for comparison, with the kernel's own delegation rules)."""
    api, obs = ctx.api, {}
    uid = 4242
    ctx.create("unified", "dl/leaf")
    api("SetValue", "ssss", "unified", "dl", "cgroup.subtree_control", "+memory +pids")
    api("SetValue", "ssss", "memory", "dl/leaf", "memory.max", str(64 << 20))
    obs["chown"] = api.try_("Chown", "ssii", "unified", "dl/leaf", uid, uid)
    owners = {}
    for name in ["", *sorted(os.listdir(f"{CG}/dl/leaf"))]:
        owners[name or "."] = os.stat(f"{CG}/dl/leaf/{name}").st_uid
    obs["owned_by_user"] = sorted(k for k, v in owners.items() if v == uid)
    obs["memory_max_owner"] = owners.get("memory.max")
    user = ctx.child(
        [sys.executable, "-c", DELEGATED_CLIENT, f"unix:path={SOCK}"],
        user=uid,
        group=uid,
        extra_groups=[],
        cwd="/",
    )
    obs["move"] = api.try_("MovePid", "ssi", "unified", "dl/leaf", user.pid)
    user.go()
    obs["client"] = user.line(120)
    obs["returncode"] = user.wait(30)
    obs["stderr"] = user.popen.stderr.read()[-2000:] if user.popen.stderr else ""
    obs["leaf_memory_max_after"] = _read(f"{CG}/dl/leaf/memory.max").strip()
    return obs


@case
def io_controller(ctx: Ctx) -> dict[str, Any]:
    """io.max (a read bandwidth limit on the VM's disk) and io.weight through SetValue; a
    direct-I/O read in the cgroup is throttled."""
    api, obs = ctx.api, {}
    dev = _read("/sys/block/vda/dev").strip()
    obs["dev"] = dev
    ctx.create("io", "io")
    dd = ["dd", "if=/dev/vda", "of=/dev/null", "bs=64k", "count=32", "iflag=direct"]
    t = time.monotonic()
    subprocess.run(dd, capture_output=True, timeout=60)
    obs["baseline_seconds"] = round(time.monotonic() - t, 3)
    obs["set_max"] = api.try_("SetValue", "ssss", "io", "io", "io.max", f"{dev} rbps=1048576")
    obs["max"] = api("GetValue", "sss", "io", "io", "io.max")
    obs["set_weight"] = api.try_("SetValue", "ssss", "io", "io", "io.weight", "default 200")
    obs["weight"] = api.try_("GetValue", "sss", "io", "io", "io.weight")
    reader = ctx.waiter(*dd)
    api("MovePid", "ssi", "io", "io", reader.pid)
    t = time.monotonic()
    reader.go()
    obs["returncode"] = reader.wait(60)
    obs["throttled_seconds"] = round(time.monotonic() - t, 3)
    stat = api("GetValue", "sss", "io", "io", "io.stat")
    obs["stat"] = {
        line.split()[0]: dict(f.split("=") for f in line.split()[1:])
        for line in stat.splitlines()
        if line.strip()
    }
    return obs


@case
def cpuset(ctx: Ctx) -> dict[str, Any]:
    """cpuset.cpus through SetValue confines a process moved in with MovePid."""
    api, obs = ctx.api, {}
    ctx.create("cpuset", "cs")
    obs["set_cpus"] = api.try_("SetValue", "ssss", "cpuset", "cs", "cpuset.cpus", "1")
    obs["cpus"] = api("GetValue", "sss", "cpuset", "cs", "cpuset.cpus")
    obs["effective"] = api("GetValue", "sss", "cpuset", "cs", "cpuset.cpus.effective")
    sleeper = ctx.child(["sleep", "300"])
    obs["allowed_before"] = _status(sleeper.pid).get("Cpus_allowed_list")
    obs["move"] = api.try_("MovePid", "ssi", "cpuset", "cs", sleeper.pid)
    obs["allowed_after"] = _status(sleeper.pid).get("Cpus_allowed_list")
    obs["set_bad_cpus"] = api.try_("SetValue", "ssss", "cpuset", "cs", "cpuset.cpus", "7")
    return obs


@case
def v1_keys_translated(ctx: Ctx) -> dict[str, Any]:
    """Old clients' v1 keys on pure v2 (issue 6): each write checked in the v2 file it maps to,
    each read against the v2 file's value."""
    api, obs = ctx.api, {}
    ctx.create("memory", "tr")

    def set_get(ctrl: str, key: str, value: str, v2key: str) -> dict[str, Any]:
        return {
            "set": api.try_("SetValue", "ssss", ctrl, "tr", key, value),
            "v2": api.try_("GetValue", "sss", "unified", "tr", v2key),
            "get": api.try_("GetValue", "sss", ctrl, "tr", key),
        }

    obs["memory.limit_in_bytes"] = set_get(
        "memory", "memory.limit_in_bytes", str(64 << 20), "memory.max"
    )
    obs["memory.limit_in_bytes=-1"] = set_get("memory", "memory.limit_in_bytes", "-1", "memory.max")
    obs["memory.soft_limit_in_bytes"] = set_get(
        "memory", "memory.soft_limit_in_bytes", str(16 << 20), "memory.low"
    )
    api("SetValue", "ssss", "memory", "tr", "memory.limit_in_bytes", str(64 << 20))
    obs["memory.memsw.limit_in_bytes"] = set_get(
        "memory", "memory.memsw.limit_in_bytes", str(96 << 20), "memory.swap.max"
    )
    obs["memory.usage_in_bytes"] = api.try_(
        "GetValue", "sss", "memory", "tr", "memory.usage_in_bytes"
    )
    obs["memory.max_usage_in_bytes"] = api.try_(
        "GetValue", "sss", "memory", "tr", "memory.max_usage_in_bytes"
    )
    obs["cpu.shares"] = set_get("cpu", "cpu.shares", "512", "cpu.weight")
    obs["cpu.cfs_quota_us"] = set_get("cpu", "cpu.cfs_quota_us", "50000", "cpu.max")
    obs["cpu.cfs_period_us"] = set_get("cpu", "cpu.cfs_period_us", "200000", "cpu.max")
    obs["cpu.cfs_quota_us=-1"] = set_get("cpu", "cpu.cfs_quota_us", "-1", "cpu.max")
    obs["cpuacct.usage"] = api.try_("GetValue", "sss", "cpuacct", "tr", "cpuacct.usage")
    obs["blkio.weight"] = set_get("blkio", "blkio.weight", "500", "io.weight")
    obs["pids.max"] = set_get("pids", "pids.max", "100", "pids.max")
    obs["hugetlb.2MB.limit_in_bytes"] = set_get(
        "hugetlb", "hugetlb.2MB.limit_in_bytes", str(4 << 20), "hugetlb.2MB.max"
    )
    obs["cpuset.effective_cpus"] = api.try_(
        "GetValue", "sss", "cpuset", "tr", "cpuset.effective_cpus"
    )
    sleeper = ctx.child(["sleep", "300"])
    api("MovePid", "ssi", "freezer", "tr", sleeper.pid)
    obs["freezer.state=FROZEN"] = set_get("freezer", "freezer.state", "FROZEN", "cgroup.freeze")
    obs["freezer.frozen_after"] = poll(
        lambda: (
            api.try_("GetValue", "sss", "freezer", "tr", "freezer.state").get("value") == "FROZEN"
        )
    )
    obs["freezer.state=THAWED"] = set_get("freezer", "freezer.state", "THAWED", "cgroup.freeze")
    obs["tasks"] = api.try_("GetValue", "sss", "pids", "tr", "tasks")
    obs["sleeper"] = sleeper.pid
    obs["devices.allow"] = api.try_(
        "SetValue", "ssss", "devices", "tr", "devices.allow", "a *:* rwm"
    )
    obs["devices.allow_unified"] = api.try_(
        "SetValue", "ssss", "unified", "tr", "devices.allow", "a *:* rwm"
    )
    return obs


@case
def structure(ctx: Ctx) -> dict[str, Any]:
    """Plain structure calls on pure v2: ListChildren, ListKeys, GetTasks, Remove, Prune."""
    api, obs = ctx.api, {}
    obs["create"] = ctx.create("memory", "st/a/b")
    obs["create_again"] = api("Create", "ss", "memory", "st/a/b")
    obs["children"] = api("ListChildren", "ss", "memory", "st")
    keys = api("ListKeys", "ss", "memory", "st/a")
    obs["keys"] = sorted(k[0] for k in keys)
    obs["remove_nonrecursive"] = api.try_("Remove", "ssi", "memory", "st/a", 0)
    obs["remove_recursive"] = api.try_("Remove", "ssi", "memory", "st/a", 1)
    obs["exists_after"] = os.path.isdir(f"{CG}/st/a")
    obs["remove_missing"] = api.try_("Remove", "ssi", "memory", "st/a", 1)
    return obs


# ------------------------------------------------------------------------------------- main
def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _status(pid: int) -> dict[str, str]:
    out = {}
    for line in _read(f"/proc/{pid}/status").splitlines():
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


def _proc_state(pid: int) -> str:
    return _status(pid).get("State", "?")


def _rmtree(path: str) -> None:
    for root, dirs, _files in os.walk(path, topdown=False):
        for d in dirs:
            try:
                os.rmdir(os.path.join(root, d))
            except OSError:
                pass
    try:
        os.rmdir(path)
    except OSError:
        pass


def default_socket_on_v2(results: dict[str, Any]) -> None:
    """0.42's socket, /sys/fs/cgroup/cgmanager/sock, is inside cgroup2 on a pure v2 host: the
    daemon must refuse it when asked rather than mkdir a cgroup there; told nothing, the daemon
    and clients pick /run/cgmanager/sock (contract.daemon_socket, client_socket)."""
    from cgmanager.contract import client_socket, daemon_socket

    t = time.monotonic()
    try:
        cp = subprocess.run(
            [
                f"{VENV_BIN}/cgmanager",
                "--socket",
                "/sys/fs/cgroup/cgmanager/sock",
                "--fs-dir",
                "/run/cgm-default/fs",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        obs = {
            "rc": cp.returncode,
            "output": (cp.stdout + cp.stderr)[-3000:],
            "cgroup_made": os.path.isdir(f"{CG}/cgmanager"),
            "daemon_default": daemon_socket(),
            "client_default": client_socket(),
        }
        results["default_socket_on_v2"] = {"obs": obs, "error": None}
    except Exception:  # noqa: BLE001
        results["default_socket_on_v2"] = {"obs": {}, "error": traceback.format_exc()}
    results["default_socket_on_v2"]["seconds"] = round(time.monotonic() - t, 3)


def main() -> int:
    if not in_the_vm():
        print(
            "guest_cases.py runs only inside the tier-t5 VM (tests/support/qemu.py)",
            file=sys.stderr,
        )
        return 2
    xfer = os.environ["CGTEST_XFER"]
    only = set(sys.argv[1:])
    results: dict[str, Any] = {}
    meta: dict[str, Any] = {"uname": os.uname().release, "started": _uptime()}
    out = {"meta": meta, "cases": results}

    def save() -> None:
        with open(f"{xfer}/results.json.tmp", "w") as f:
            json.dump(out, f, indent=1, default=repr)
        os.replace(f"{xfer}/results.json.tmp", f"{xfer}/results.json")

    default_socket_on_v2(results)
    save()

    log = open(f"{xfer}/daemon.log", "w")
    t = time.monotonic()
    daemon = subprocess.Popen(
        [
            f"{VENV_BIN}/cgmanager",  # no --socket: the default on pure v2 is SOCK
            "--fs-dir",
            "/run/cgmanager/fs",
            "--log-level",
            "info",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    from cgmanager.dbus.client import connect

    conn = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and daemon.poll() is None:
        try:
            conn = connect(f"unix:path={SOCK}", timeout=60)
            break
        except Exception:  # noqa: BLE001 - not listening yet
            time.sleep(0.1)
    meta["daemon_start_seconds"] = round(time.monotonic() - t, 3)
    if conn is None:
        meta["daemon_failed"] = f"daemon exit {daemon.poll()}"
        save()
        daemon.kill()
        return 1
    api = Api(conn)
    for name, fn in CASES:
        if only and name not in only:
            continue
        ctx = Ctx(api)
        t = time.monotonic()
        entry: dict[str, Any] = {"obs": {}, "error": None}
        try:
            entry["obs"] = fn(ctx)
        except Exception:  # noqa: BLE001 - recorded for the host side
            entry["error"] = traceback.format_exc()
        try:
            entry["cleanup_problems"] = ctx.cleanup()
        except Exception:  # noqa: BLE001
            entry["cleanup_problems"] = [traceback.format_exc()]
        entry["seconds"] = round(time.monotonic() - t, 3)
        results[name] = entry
        save()
        print(f"case {name}: {entry['seconds']} s{' ERROR' if entry['error'] else ''}", flush=True)
    conn.close()
    daemon.send_signal(signal.SIGTERM)
    try:
        meta["daemon_exit"] = daemon.wait(30)
    except subprocess.TimeoutExpired:
        daemon.kill()
        meta["daemon_exit"] = "killed after 30 s"
    meta["finished"] = _uptime()
    save()
    return 0


def _uptime() -> float:
    return float(_read("/proc/uptime").split()[0])


if __name__ == "__main__":
    sys.exit(main())
