"""Issue 12, closing the class end to end: what the daemon believes about who asks equals what
the kernel says, whatever the requestor names its cgroups.

For each input, a requestor — an unprivileged user, and root of a user namespace mapping two
users (as LXC maps one user's containers) — in a cgroup ``d`` delegated to it:

1. creates a child named with a drawn name (the whole Unicode range, raw bytes, names posing
   as lines of /proc/<pid>/cgroup): through the API when the API takes the name, else the way
   the kernel lets a delegatee (``mkdir`` on cgroupfs);
2. moves itself there (MovePid, by the name's escaped form when it has one);
3. asks the daemon where it is (GetPidCgroupAbs in every served hierarchy) and what is there:
   the answers must be what the kernel says in /proc/self/cgroup, line for line;
4. runs every method of both interfaces on its own cgroup and below: each answers a return or
   a documented error kind (never ``Failed``);
5. leaves, and removes the child through the API by the form the listing showed.

After each input nothing outside the requestor's subtree has changed (cgroups, owners, modes,
the watched files, in every served hierarchy of the place: root's cgroup and the other
tenant's included).  CI runs a few dozen inputs per requestor; ``CGM_FUZZ_SCALE`` scales it.
The fast kernel-level target for millions of names: tests/kernel/test_fuzz_names.py.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter

import pytest
from kernel.name_fuzz import SHAPES, draw
from support import fuzz
from support.ns import spawn_in_ns

from cgmanager import escapes, kerneltext

from .hostile_helpers import kernel_state
from .replies import ok

pytestmark = pytest.mark.t3

OBJ = "/org/linuxcontainers/cgmanager"
I0, I1 = "org.linuxcontainers.cgmanager0_0", "org.linuxcontainers.cgmanager1"
ERR = "org.linuxcontainers.cgmanager.Error."
DOCUMENTED = {
    ERR + k
    for k in (
        "InvalidArgument",
        "NotFound",
        "NotPermitted",
        "Busy",
        "LimitExceeded",
        "KernelRejected",
        "Unsupported",
    )
}
CI_INPUTS = 40


def _serve(rfd: int, wfd: int, address: str) -> None:
    """The requestor (in a forked child, as the user or in the user namespace): JSON lines in,
    JSON lines out.  Byte strings travel as hex."""
    from cgmanager.dbus.client import connect
    from cgmanager.dbus.errors import DBusError

    conn = connect(address, timeout=30)
    inp, out = os.fdopen(rfd, "r"), os.fdopen(wfd, "w")
    for line in inp:
        req = json.loads(line)
        op = req["op"]
        try:
            if op == "call":
                try:
                    body = conn.call(
                        OBJ, req["iface"], req["member"], req["sig"], tuple(req["args"])
                    )
                    res = {"ok": body}
                except DBusError as e:
                    res = {"err": [e.name, e.message]}
            elif op in ("mkdir", "enter"):
                path = bytes.fromhex(req["path"])
                if op == "mkdir":
                    os.mkdir(path)
                else:
                    with open(path + b"/cgroup.procs", "w") as f:
                        f.write(str(os.getpid()))
                res = {"errno": 0}
            elif op == "cgroup":
                with open("/proc/self/cgroup", "rb") as f:
                    res = {"text": f.read().hex()}
            else:
                res = {"pid": os.getpid()}
        except OSError as e:
            res = {"errno": e.errno}
        out.write(json.dumps(res) + "\n")
        out.flush()


class Requestor:
    def __init__(self, place, **ns_options) -> None:
        a_r, a_w = os.pipe()
        b_r, b_w = os.pipe()
        # it starts in its delegated cgroup d where it has one, in the place elsewhere
        files = [
            os.path.join(p, "d", "cgroup.procs")
            if os.path.isdir(os.path.join(p, "d"))
            else os.path.join(p, "cgroup.procs")
            for p in place.dirs.values()
        ]

        def enter(pid: int) -> None:
            for f in files:
                with open(f, "w") as fh:
                    fh.write(str(pid))

        self.child = spawn_in_ns(
            _serve, a_r, b_w, place.daemon.address, before=enter, timeout=30, **ns_options
        )
        os.close(a_r), os.close(b_w)
        self.w, self.r = os.fdopen(a_w, "w"), os.fdopen(b_r, "r")
        self.pid = self.ask({"op": "pid"})["pid"]

    def ask(self, req: dict) -> dict:
        self.w.write(json.dumps(req) + "\n")
        self.w.flush()
        line = self.r.readline()
        assert line, f"the requestor died on {req}"
        return json.loads(line)

    def call(self, member: str, sig: str, *args, iface: str = I0) -> dict:
        return self.ask({"op": "call", "iface": iface, "member": member, "sig": sig, "args": args})

    def close(self) -> None:
        self.w.close(), self.r.close()
        self.child.kill()


def _kernel_paths(text: bytes, layout) -> dict[str, str]:
    """What the kernel says: each served hierarchy's path, escaped as clients see it."""
    lines = kerneltext.proc_cgroup(kerneltext.decode(text))
    return {h.key: escapes.escape_path(p) for h, p in layout.for_lines(lines).items()}


def _documented(reply: dict) -> bool:
    return "ok" in reply or reply["err"][0] in DOCUMENTED


def _battery(r: Requestor, h: str, me: int, own_abs: str) -> list[tuple[str, dict]]:
    """Every method, on the requestor's own cgroup and below."""
    out = []

    def c(member, sig, *args, iface=I0):
        out.append((member, r.call(member, sig, *args, iface=iface)))
        return out[-1][1]

    c("GetPidCgroup", "si", h, me)
    c("Create", "ss", h, "k")
    c("ListChildren", "ss", h, "")
    c("Chmod", "sssi", h, "k", "", 0o755)
    c("ListKeys", "ss", h, "k")
    c("GetTasks", "ss", h, "")
    c("GetTasksRecursive", "ss", h, "")
    c("GetValue", "sss", h, "k", "cgroup.procs")
    c("SetValue", "ssss", h, "k", "pids.max", "5")
    c("GetEvents", "ss", h, "k", iface=I1)
    c("GetStat", "ss", h, "k", iface=I1)
    c("Freeze", "ss", h, "k", iface=I1)
    c("Thaw", "ss", h, "k", iface=I1)
    c("Kill", "ss", h, "k", iface=I1)
    c("RemoveOnEmpty", "ss", h, "k")
    c("Create", "ss", h, "p/q")
    c("Prune", "ss", h, "p")
    c("Setup", "ssiia{ss}ai", h, "s", -1, -1, {}, [], iface=I1)
    c("Remove", "ssi", h, "s", 1)
    c("Chown", "ssii", h, "", 0, 0)
    c("MovePid", "ssi", h, "", me)
    c("MovePidAbs", "ssi", h, own_abs, me)
    c("Remove", "ssi", h, "k", 1)
    return out


def _outside(place, served: list[str]) -> dict:
    """The place in every served hierarchy, without the requestor's subtree (its ``d``)."""
    state = {}
    for key in served:
        base = place.path(key)
        mine = os.path.join(base, "d")
        for k, v in kernel_state(base).items():
            if (k[0] == base and (k[1] == "d" or str(k[1]).startswith("d/"))) or (
                len(k) == 3 and (k[0] == mine or str(k[0]).startswith(mine + "/"))
            ):
                continue
            state[k] = v
    return state


def _fuzz(place, r: Requestor, label: str, seed: int) -> Counter:
    from cgmanager.hierarchy import discover_host

    layout = discover_host()
    served = [k for k in ("name=systemd", "pids", "unified") if k in place.dirs]
    with open("/proc/self/cgroup") as f:
        ids = [
            (ln.hierarchy_id, ",".join(ln.controllers)) for ln in kerneltext.proc_cgroup(f.read())
        ]
    rng = random.Random(seed)
    stats: Counter = Counter()
    me = r.pid

    n = fuzz.examples(CI_INPUTS)
    for i in range(n):
        src = rng.choice(served)
        shape = ("ok", "forge")[i] if i < 2 else rng.choice(SHAPES)  # each kind at least once
        if shape == "ok":
            raw = "plain ñame".encode()
        elif shape == "forge":  # pose as a real line of this host
            hid, ctrls = rng.choice(ids)
            brk = rng.choice("\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
            raw = f"x{brk}{hid}:{ctrls}:".encode()
        else:
            raw = draw(rng, shape)
        name = raw.decode("utf-8", "surrogateescape")
        shown = escapes.escape(name)
        before = _outside(place, served)
        d = os.fsencode(os.path.join(place.path(src), "d"))
        api = r.call("Create", "ss", src, shown)
        assert _documented(api), (raw, api)
        if "ok" not in api:
            got = r.ask({"op": "mkdir", "path": (d + b"/" + raw).hex()})["errno"]
            if got not in (0, 17):  # the kernel refuses it too (a newline, too long, '.')
                stats[f"{label}: refused by both"] += 1
                continue
            stats[f"{label}: made on cgroupfs ({'escaped' if shown != name else 'as is'})"] += 1
        else:
            assert shown == name, raw  # the API makes only names that need no escape
            stats[f"{label}: made through the API"] += 1
        listing = r.call("ListChildren", "ss", src, "")  # (from d, before moving)
        assert "ok" in listing and shown in listing["ok"][0], (raw, listing)
        mv = r.call("MovePid", "ssi", src, shown, me)
        assert mv == {"ok": []} or _documented(mv), (raw, mv)
        if "ok" not in mv:  # e.g. a name the API takes but cgroupfs shows as a kernel file
            stats[f"{label}: not enterable ({mv['err'][0].rsplit('.', 1)[1]})"] += 1
        truth = _kernel_paths(bytes.fromhex(r.ask({"op": "cgroup"})["text"]), layout)
        if "ok" in mv:
            assert truth[src].endswith("/d/" + shown), (raw, truth)
        for key in served:  # what the daemon believes is what the kernel says
            got = r.call("GetPidCgroupAbs", "si", key, me)
            assert got == {"ok": [truth[key]]}, (raw, key, got, truth)
        if "ok" in mv:
            for member, reply in _battery(r, src, me, truth[src]):
                assert _documented(reply), (raw, member, reply)
                stats[
                    f"{member} {'ok' if 'ok' in reply else reply['err'][0].rsplit('.', 1)[1]}"
                ] += 1
        assert r.ask({"op": "enter", "path": d.hex()})["errno"] == 0
        rm = r.call("Remove", "ssi", src, shown, 1)  # (from d, where it is now)
        assert rm == {"ok": [1]}, (raw, rm)
        assert not os.path.lexists(d + b"/" + raw), raw
        assert _outside(place, served) == before, (raw, "changed outside its subtree")
    stats["inputs"] += n
    return stats


def _delegate(place, served, uid: int, gid: int) -> None:
    for key in served:
        ok(place.py("Create", "ss", key, "d"))
        ok(place.py("Chown", "ssii", key, "d", uid, gid))


def _report(label: str, stats: Counter, seconds: float, seed: int) -> None:
    line = {"fuzzer": f"identity_{label}", "seconds": round(seconds, 1), "seed": seed, **stats}
    print(json.dumps(line))
    path = os.environ.get("CGM_FUZZ_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(line) + "\n")


def _seed() -> int:
    return int(os.environ.get("CGM_FUZZ_SEED", "0")) or int(time.time())


def test_fuzz_identity_as_an_unprivileged_user(place, test_user):
    served = [k for k in ("name=systemd", "pids", "unified") if k in place.dirs]
    _delegate(place, served, test_user.uid, test_user.gid)
    ok(place.py("Create", "ss", "pids", "r"))  # root's, next to the delegation
    r = Requestor(place, uid=test_user.uid, gid=test_user.gid, groups=[])
    try:
        t0, seed = time.monotonic(), _seed()
        stats = _fuzz(place, r, "user", seed)
        _report("user", stats, time.monotonic() - t0, seed)
        assert stats["inputs"] and any("API" in k for k in stats), stats
    finally:
        r.close()


def test_fuzz_identity_as_root_of_a_user_namespace(place, test_user, make_test_user):
    a, b = test_user, make_test_user()
    served = [k for k in ("name=systemd", "pids", "unified") if k in place.dirs]
    _delegate(place, served, a.uid, a.gid)
    for key in served:  # the other tenant's cgroup, which root of the namespace may write
        ok(place.py("Create", "ss", key, "b"))
        ok(place.py("Chown", "ssii", key, "b", b.uid, b.gid))
    r = Requestor(
        place,
        userns=True,
        uid_map=f"0 {a.uid} 1\n1 {b.uid} 1\n",
        gid_map=f"0 {a.gid} 1\n1 {b.gid} 1\n",
        setgroups="deny",
    )
    try:
        t0, seed = time.monotonic(), _seed()
        stats = _fuzz(place, r, "userns root", seed)
        _report("userns_root", stats, time.monotonic() - t0, seed)
        assert stats["inputs"], stats
    finally:
        r.close()
