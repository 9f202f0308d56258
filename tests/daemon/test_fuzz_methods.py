"""Fuzzing every D-Bus method of a live cgmanager, and the Scm byte protocol, on the real kernel.

The methods and their signatures come from the daemon's own introspection (both interfaces),
so a new method is fuzzed without touching this file (an argument type the generators do not
know fails loudly).  Arguments come from hostile generators: path spellings, keys, values,
controller lists, pids, ids and modes; some calls carry a wrong signature.  A placed client
(``fuzz_worker.py``: one connection, many calls) makes the calls as root and as a real
unprivileged user, each inside its own place; this process checks after every example:

* the reply is a method return or ``org.linuxcontainers.cgmanager.Error.<Kind>`` (a wrong
  signature: ``InvalidArgs``/``UnknownMethod``), never ``Failed`` or another D-Bus error;
* the daemon is alive and answers Ping on the same connection;
* nothing this test owns outside the place changed (this run's cgtest roots; at the hierarchy
  roots their files and the cgroups named in what it sent — others come and go there), the
  test's processes are all still inside the place, and (as the user) root's processes and
  cgroups in the place are untouched;
* the daemon's log has no traceback, "internal error" or ``Failed`` refusal.

The Scm side (``test_fuzz_scm_socket_*``): requests with benign arguments whose client end of
the passed socket misbehaves — no wait for the kick, empty, random or oversized payloads, no,
two or forged credentials, smuggled fds, a stall, a close, extra datagrams.  A request whose
credentials were not cleanly delivered must never reach its operation, one that root makes in
the name of the user's process must change nothing (nothing in the place is the user's), and
every request must end: the daemon's fds come back to their baseline (``--scm-timeout`` 0.1 s).

Safety (a shared machine): pid arguments are pids of processes this test spawned (sleepers, and
the client itself for read-only methods) or values that name no process (0, negatives, values
above the kernel's PID_MAX_LIMIT, zombies this test keeps unreaped so their pids cannot be
reused); Scm credentials name the client or a sleeper.  The client's own cgroup (the base of every relative path) is never the target of a
method that could freeze, kill, limit or re-own it: such a target is replaced by a child.  Root's
MovePidAbs paths are kept below the place.  The memory hierarchy is not served.

``CGM_FUZZ_SCALE`` multiplies every example count (docs/FUZZING.md: the long run).
"""

from __future__ import annotations

import json
import os
import re
import select
import stat
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from kernel.helpers import snapshot, wait_for
from support.cgtree import thaw_v1
from support.fuzz import examples
from support.procs import pidfd_wait_exit

pytestmark = pytest.mark.t3

OBJ = "/org/linuxcontainers/cgmanager"
IFACE0 = "org.linuxcontainers.cgmanager0_0"
IFACE1 = "org.linuxcontainers.cgmanager1"
ERR = "org.linuxcontainers.cgmanager.Error."
KINDS = frozenset(
    {
        "InvalidArgument",
        "NotFound",
        "NotPermitted",
        "Busy",
        "LimitExceeded",
        "KernelRejected",
        "Unsupported",
    }
)
INVALID_ARGS = "org.freedesktop.DBus.Error.InvalidArgs"
UNKNOWN_METHOD = "org.freedesktop.DBus.Error.UnknownMethod"
INT_MIN, INT_MAX = -(2**31), 2**31 - 1
#: above the kernel's PID_MAX_LIMIT (2^22): names no process on any Linux
NO_PID = (1 << 22) + 1
WORKER = Path(__file__).with_name("fuzz_worker.py").read_text()
#: no example database and no shrinking: the daemon's state moves on between examples, so
#: replaying or shrinking an old example proves little and costs minutes; a failure shows the
#: example as it was run
PHASES = (Phase.explicit, Phase.generate)
LOG_MARKERS = ("Traceback", "internal error", "(Failed:", "exception was never retrieved")

#: methods that change nothing (their pid arguments may name the fuzz client itself)
READ_ONLY = frozenset(
    {
        "Ping",
        "GetPidCgroup",
        "GetPidCgroupAbs",
        "GetValue",
        "GetTasks",
        "GetTasksRecursive",
        "ListChildren",
        "ListControllers",
        "ListHierarchies",
        "ListKeys",
        "GetEvents",
        "GetStat",
        "GetPidCgroupScm",
        "GetPidCgroupAbsScm",
        "GetValueScm",
        "GetTasksScm",
        "GetTasksRecursiveScm",
        "ListChildrenScm",
        "ListKeysScm",
    }
)
#: methods that may target the client's own cgroup without stopping, limiting or re-owning it;
#: for every other (and every new) method such a target is replaced by a child
BASE_OK = READ_ONLY | {
    "Create",
    "Remove",
    "Prune",
    "Thaw",
    "MovePid",
    "MovePidAbs",
    "CreateScm",
    "RemoveScm",
    "PruneScm",
    "MovePidScm",
    "MovePidAbsScm",
}
KNOWN = {
    IFACE0: {
        "Ping",
        "Create",
        "Remove",
        "Chown",
        "Chmod",
        "MovePid",
        "MovePidAbs",
        "GetValue",
        "SetValue",
        "ListKeys",
        "GetPidCgroup",
        "CreateScm",
        "MovePidScm",
        "ChownScm",
    },
    IFACE1: {"Freeze", "Thaw", "Kill", "GetEvents", "GetStat"},
}


# -- what the daemon says it has ---------------------------------------------------------------


def introspect(daemon) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """(interface, method) -> in-arguments as (name, type), from the daemon itself."""
    with daemon.connect() as c:
        (xml,) = c.call(OBJ, "org.freedesktop.DBus.Introspectable", "Introspect")
    out = {}
    for iface in ET.fromstring(xml).findall("interface"):
        if iface.get("name") not in (IFACE0, IFACE1):
            continue
        for m in iface.findall("method"):
            out[(iface.get("name"), m.get("name"))] = [
                (a.get("name"), a.get("type"))
                for a in m.findall("arg")
                if a.get("direction", "in") == "in"
            ]
    return out


def test_introspection_lists_every_known_method(daemon):
    """The fuzzers below take their method list from here: it must not be empty or partial."""
    methods = introspect(daemon)
    for iface, names in KNOWN.items():
        assert names <= {m for i, m in methods if i == iface}, methods.keys()
    assert methods[(IFACE0, "MovePid")] == [("controller", "s"), ("cgroup", "s"), ("pid", "i")]
    assert methods[(IFACE0, "CreateScm")][-1] == ("sockfd", "h")
    assert len(methods) >= 39


# -- the client process ------------------------------------------------------------------------


class Worker:
    """The placed fuzz client: one process, one connection, JSON requests."""

    def __init__(self, place, user=None) -> None:
        self.proc = place.spawn(
            [sys.executable, "-c", WORKER, place.daemon.address],
            user=user,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.pid = self.ask({"op": "pid"})["pid"]

    def ask(self, req: dict, timeout: float = 60.0) -> dict:
        popen = self.proc.popen
        popen.stdin.write(json.dumps(req) + "\n")
        popen.stdin.flush()
        if not select.select([popen.stdout], [], [], timeout)[0]:
            raise AssertionError(f"the fuzz client gave no answer within {timeout:g} s to {req}")
        line = popen.stdout.readline()
        if not line:
            raise AssertionError(f"the fuzz client died on {req} (status {popen.poll()})")
        return json.loads(line)

    def call(self, iface: str, member: str, sig: str, *args: Any) -> dict:
        return self.ask(
            {"op": "call", "iface": iface, "member": member, "sig": sig, "args": list(args)}
        )


class Sleepers:
    """Processes this test spawned, whose pids the fuzzers may name.  A killed one is replaced;
    the dead stay unreaped zombies until teardown, so their pids cannot name anyone else."""

    def __init__(self, place, owners: list) -> None:
        self.place = place
        self.owners = owners
        self.procs = [self._spawn(o) for o in owners]
        zombie = self._spawn(None)
        zombie.signal(9)
        assert wait_for(lambda: not zombie.alive(), timeout=10)
        self.zombies = [zombie.pid]

    def _spawn(self, user):
        return self.place.spawn(["sleep", "3600"], user=user)

    def refill(self) -> None:
        for i, p in enumerate(self.procs):
            if not p.alive():
                self.zombies.append(p.pid)
                self.procs[i] = self._spawn(self.owners[i])

    def pid(self, i: int) -> int:
        return self.procs[i % len(self.procs)].pid

    def alive_pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.alive()]


# -- generators --------------------------------------------------------------------------------


def _text(max_size: int) -> st.SearchStrategy[str]:
    # D-Bus strings are UTF-8 without NUL: anything else is the codec's business (test_codec)
    return st.text(
        st.characters(exclude_categories=("Cs",), exclude_characters="\0"), max_size=max_size
    )


CONTROL_FILES = [
    "tasks",
    "cgroup.procs",
    "cgroup.threads",
    "release_agent",
    "notify_on_release",
    "cgroup.clone_children",
    "cgroup.subtree_control",
    "cgroup.controllers",
    "cgroup.freeze",
    "cgroup.kill",
    "cgroup.type",
    "cgroup.events",
    "cgroup.stat",
    "cgroup.max.depth",
    "cgroup.max.descendants",
    "cgroup.pressure",
    "cgroup.sane_behavior",
    "pids.max",
    "pids.current",
    "freezer.state",
    "cpu.shares",
    "cpu.cfs_quota_us",
    "cpuset.cpus",
    "cpuset.mems",
    "devices.allow",
    "devices.deny",
    "devices.list",
    "blkio.weight",
    "memory.limit_in_bytes",
    "memory.max",
    "hugetlb.2MB.limit_in_bytes",
    "hugetlb.2MB.max",
    "cpuacct.usage",
    ".cgm_leaf",
]
ODD_NAMES = [
    "a",
    "b",
    "fz",
    "x y",
    "ü",
    "🙂",
    "a..b",
    "...",
    "-",
    "~",
    "*",
    "a\\b",
    "%s%n",
    "$HOME",
    "\u202e",
    "\ufeff",
    "\u2028",
    "ａ",
    "e\u0301",
    "all",
    "pids,cpu",
    "name=systemd",
    "a\nb",
    "\n",
    "\x01",
    "\x7f",
    "\t",
    "\r",
    "\x1b[31m",
    " ",
    "a:b",
]
SPELLINGS = [
    "",
    "/",
    "//",
    "///",
    ".",
    "..",
    "./",
    "../",
    "/.",
    "/..",
    "a/.",
    "a/..",
    "a/../..",
    "../x",
    "./a",
    "a/./b",
    "a//b",
    "/a",
    "a/",
    "/a/",
    "a/b",
    "a/b/c",
    "../../../../../../etc",
    "/../../x",
    ".cgm_leaf",
    "a/.cgm_leaf",
    "fz",
]
LONG = [
    "n" * 255,
    "n" * 256,
    "ü" * 128,
    "/".join(["d"] * 17),
    "/".join(["d"] * 40),
    "x" * 4097,
    "a/" * 2000,
    "/" * 5000,
]


#: (controller, key, value) that belong together, for GetValue/SetValue-like methods
KNOBS = [
    ("pids", "pids.max", "5"),
    ("pids", "pids.max", "max"),
    ("pids", "pids.current", "1"),
    ("freezer", "freezer.state", "FROZEN"),
    ("freezer", "freezer.state", "THAWED"),
    ("unified", "cgroup.freeze", "1"),
    ("unified", "cgroup.freeze", "0"),
    ("unified", "cgroup.max.depth", "3"),
    ("unified", "cgroup.subtree_control", "+hugetlb"),
    ("unified", "cgroup.type", "threaded"),
    ("cpuset", "cpuset.cpus", "0"),
    ("cpu", "cpu.shares", "512"),
    ("cpu", "cpu.cfs_quota_us", "50000"),
    ("devices", "devices.deny", "c 1:3 rwm"),
    ("blkio", "blkio.weight", "500"),
    ("pids", "tasks", "1"),
    ("pids", "cgroup.procs", "1"),
    ("pids", "release_agent", "/x"),
    ("pids", "notify_on_release", "1"),
    ("cpuset", "cgroup.clone_children", "1"),
    ("pids", "memory.limit_in_bytes", "1M"),
    ("unified", "memory.max", "1M"),
]


def weighted(*choices: tuple[int, st.SearchStrategy]) -> st.SearchStrategy:
    """A choice between strategies in the given proportions (``one_of`` and ``integers``
    favour their first and constant branches), so that plausible arguments come often enough
    to reach the deeper checks."""
    table = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.sampled_from(table).flatmap(lambda strategy: strategy)


def paths(hps: Iterable[str]) -> st.SearchStrategy[str]:
    """Cgroup paths: spellings that escape or alias, the place's own absolute path and its
    siblings, kernel file names, control characters, unicode, very long, random."""
    absolute = []
    for hp in hps:
        parent = os.path.dirname(hp)
        absolute += [
            hp,
            hp + "/",
            "/" + hp,
            hp.lstrip("/"),
            hp + "2",
            hp[:-1],
            parent,
            parent + "/",
            hp + "/a",
            hp + "/fz",
            hp + "/..",
            hp + "/../x",
            hp + "/.cgm_leaf",
            parent + "/" + os.path.basename(hp) + "x",
        ]
    piece = st.sampled_from(ODD_NAMES + CONTROL_FILES + SPELLINGS) | _text(12)
    return weighted(
        (3, st.sampled_from(SPELLINGS)),
        (4, st.sampled_from(["a", "b", "fz", "a/b", "x y", "ü", "/", ""])),
        (3, st.lists(piece, min_size=1, max_size=5).map("/".join)),
        (
            2,
            st.tuples(
                st.sampled_from(absolute),
                st.sampled_from(["", "/", "/a", "/fz", "/..", "2", "//a", "/a/b"]),
            ).map("".join),
        ),
        (1, st.sampled_from(LONG)),
        (1, _text(60)),
    )


def keys() -> st.SearchStrategy[str]:
    return weighted(
        (4, st.sampled_from(CONTROL_FILES)),
        (
            2,
            st.sampled_from(
                [
                    "",
                    ".",
                    "..",
                    "../release_agent",
                    "../../release_agent",
                    "../../../release_agent",
                    "/etc/passwd",
                    "a/b",
                    "pids.max/",
                    "pids.max\n",
                    " pids.max",
                    "PIDS.MAX",
                    "pids",
                    "cgroup.",
                    "k" * 256,
                    "k" * 5000,
                    "tasks/../tasks",
                ]
            ),
        ),
        (
            1,
            st.tuples(
                st.sampled_from(CONTROL_FILES), st.sampled_from(["", "/", "\n", "x", ".."])
            ).map("".join),
        ),
        (1, _text(30)),
    )


def values() -> st.SearchStrategy[str]:
    return weighted(
        (
            3,
            st.sampled_from(
                [
                    "1",
                    "0",
                    "-1",
                    "2",
                    "max",
                    "FROZEN",
                    "THAWED",
                    "FREEZING",
                    "+hugetlb",
                    "-hugetlb",
                    "+pids",
                    "threaded",
                    "domain",
                    "a *:* rwm",
                    "c 1:3 r",
                    "0-1",
                    "0",
                    "",
                    "\n",
                    "1\n2",
                    "9" * 30,
                    "-9" * 30,
                    "lots",
                    "100000 100000",
                    str(INT_MAX),
                    str(INT_MIN),
                    "18446744073709551615",
                    "v" * 5000,
                ]
            ),
        ),
        (1, _text(40)),
    )


def controllers(served: list[str]) -> st.SearchStrategy[str]:
    hostile = [
        "",
        ",",
        ",,",
        "memory",
        "memory,pids",
        "pids,memory",
        "nope",
        "name=nope",
        "name=",
        "=",
        "pids,pids",
        ",pids",
        "pids,",
        " pids",
        "PIDS",
        "cpu,cpuacct",
        "cpuacct,cpu",
        "all,pids",
        "pids\n",
        "c" * 300,
        "*",
        "unified,pids",
        "systemd",
    ]
    return weighted(
        (5, st.sampled_from(served)),
        (2, st.just("all")),
        (2, st.sampled_from(hostile)),
        (1, st.lists(st.sampled_from(served + hostile), min_size=2, max_size=4).map(",".join)),
        (1, _text(20)),
    )


def pids() -> st.SearchStrategy[tuple]:
    """Tokens resolved when the call is made: ("n", v) names no process, ("slot", i) a live
    sleeper, ("dead", i) a zombie, ("self",) the client (read-only methods only)."""
    return weighted(
        (2, st.sampled_from([0, -1, INT_MIN, INT_MAX, NO_PID, -NO_PID]).map(lambda v: ("n", v))),
        (1, st.integers(NO_PID, INT_MAX).map(lambda v: ("n", v))),
        (1, st.integers(INT_MIN, -1).map(lambda v: ("n", v))),
        (5, st.integers(0, 7).map(lambda i: ("slot", i))),
        (1, st.integers(0, 7).map(lambda i: ("dead", i))),
        (1, st.just(("self",))),
    )


def ids(extra: list[int]) -> st.SearchStrategy[int]:
    return st.one_of(
        st.sampled_from([0, -1, -2, 65534, 65535, 1000, 100000, INT_MAX, INT_MIN, *extra]),
        st.integers(INT_MIN, INT_MAX),
    )


MODES = st.one_of(
    st.sampled_from(
        [
            0,
            0o777,
            0o755,
            0o644,
            0o600,
            0o4777,
            0o2755,
            0o1777,
            0o7777,
            0o10000,
            0o100644,
            -1,
            INT_MAX,
            INT_MIN,
        ]
    ),
    st.integers(INT_MIN, INT_MAX),
)
ANY_INT = st.one_of(st.sampled_from([0, 1, -1, 2, INT_MAX, INT_MIN]), st.integers(INT_MIN, INT_MAX))
FD_KINDS = [
    "dgram",
    "dgram",
    "dgram",
    "stream",
    "seqpacket",
    "unbound_dgram",
    "inet_dgram",
    "pipe",
    "devnull",
    "dir",
]


@dataclass
class Call:
    iface: str
    member: str
    sig: str
    args: list
    names: list[str]
    wrong: bool = False  # a signature the method does not have

    def __repr__(self) -> str:
        shown = ", ".join(repr(a)[:120] for a in self.args)
        return f"{'WRONG-SIGNATURE ' if self.wrong else ''}{self.member}[{self.sig}]({shown})"


@dataclass
class Context:
    served: list[str]
    hps: list[str]
    id_extra: list[int]

    def arg(self, member: str, name: str, sig: str) -> st.SearchStrategy:
        """Argument *name* of type *sig*: half the time a plausible value (so that calls also
        get past the first check and succeed), else a hostile one."""
        hostile = self.hostile(member, name, sig)
        plausible = self.plausible(name, sig)
        return hostile if plausible is None else weighted((1, plausible), (1, hostile))

    def plausible(self, name: str, sig: str) -> st.SearchStrategy | None:
        table: dict[tuple[str, str], list] = {
            ("controller", "s"): ["pids", "freezer", "unified", "cpuset", "all", "pids,freezer"],
            ("controllers", "s"): ["pids", "freezer", "all", "pids,freezer"],
            ("cgroup", "s"): ["a", "b", "fz", "a/b", "n", "a/n", *(hp + "/a" for hp in self.hps)],
            ("key", "s"): [
                "pids.max",
                "freezer.state",
                "cgroup.freeze",
                "cgroup.procs",
                "tasks",
                "cgroup.subtree_control",
                "cpuset.cpus",
            ],
            ("file", "s"): ["", "tasks", "cgroup.procs", "pids.max"],
            ("value", "s"): ["1", "0", "max", "FROZEN", "THAWED", "5"],
            ("uid", "i"): [0, *self.id_extra[:1]],
            ("gid", "i"): [0, *self.id_extra[1:2]],
            ("mode", "i"): [0o755, 0o775, 0o644],
            ("recursive", "i"): [0, 1],
        }
        if name == "pid" and sig == "i" or name == "pids" and sig == "ai":
            slot = st.integers(0, 7).map(lambda i: {"pid": ("slot", i)})
            return slot if sig == "i" else st.lists(slot, min_size=1, max_size=2)
        if name == "values" and sig == "a{ss}":
            return st.dictionaries(
                st.sampled_from(table[("key", "s")]),
                st.sampled_from(table[("value", "s")]),
                max_size=2,
            )
        values = table.get((name, sig))
        return None if values is None else st.sampled_from(values)

    def hostile(self, member: str, name: str, sig: str) -> st.SearchStrategy:
        if sig == "s":
            if name.startswith("controller"):
                return controllers(self.served)
            return {
                "cgroup": paths(self.hps),
                "key": keys(),
                "file": st.one_of(keys(), st.just("")),
                "value": values(),
            }.get(name, st.one_of(paths(self.hps), keys(), values()))
        if sig == "i":
            if name in ("uid", "gid"):
                return ids(self.id_extra)
            if name == "mode":
                return MODES
            if name in ("recursive", "junk"):
                return ANY_INT
            return pids().map(lambda t: {"pid": t})  # "pid" and every int we do not know
        if sig == "u":  # subscription ids
            return st.one_of(st.integers(0, 8), st.integers(0, 2**32 - 1))
        if sig == "h":
            return st.sampled_from(FD_KINDS).map(lambda k: {"fd": k})
        if sig.startswith("a{s") and sig.endswith("}"):
            return st.dictionaries(keys(), self.hostile(member, "value", sig[3:-1]), max_size=4)
        if sig.startswith("a") and sig[1:] in ("s", "i"):
            return st.lists(self.hostile(member, name, sig[1:]), max_size=4)
        raise AssertionError(
            f"{member}: no generator for argument {name!r} of type {sig!r};"
            " teach test_fuzz_methods.py about it"
        )

    def calls(self, item) -> st.SearchStrategy[Call]:
        """Calls of one method with generated arguments of its own signature."""
        (iface, member), args = item
        sig = "".join(t for _, t in args)
        names = [n for n, _ in args]
        independent = st.tuples(*[self.arg(member, n, t) for n, t in args])
        if {"controller", "key"} <= set(names):
            # a knob only exists in its own hierarchy: sometimes draw the three together
            coherent = st.tuples(independent, st.sampled_from(KNOBS)).map(
                lambda vk: tuple(
                    dict(zip(("controller", "key", "value"), vk[1])).get(n, v)
                    for n, v in zip(names, vk[0], strict=True)
                )
            )
            independent = weighted((2, independent), (1, coherent))
        return independent.map(lambda vals: Call(iface, member, sig, list(vals), names))

    def wrong_calls(self, methods: dict) -> st.SearchStrategy[Call]:
        """Calls of every method with random signatures, and of methods that do not exist."""
        typed = st.one_of(
            st.tuples(st.just("s"), st.one_of(paths(self.hps), controllers(self.served))),
            st.tuples(st.just("i"), pids().map(lambda t: {"pid": t})),
            st.tuples(st.just("u"), st.integers(NO_PID, 2**32 - 1)),
            st.tuples(st.just("x"), st.integers(-(2**63), -1)),
            st.tuples(st.just("b"), st.booleans()),
            st.tuples(st.just("d"), st.floats(allow_nan=False, allow_infinity=False)),
            st.tuples(st.just("as"), st.lists(_text(10), max_size=3)),
            st.tuples(st.just("h"), st.sampled_from(["devnull", "dgram"]).map(lambda k: {"fd": k})),
        )

        def wrong(item) -> st.SearchStrategy[Call]:
            (iface, member), args = item
            real = "".join(t for _, t in args)

            def build(pairs) -> Call:
                sig = "".join(s for s, _ in pairs)
                return Call(
                    iface, member, sig, [v for _, v in pairs], ["?"] * len(pairs), wrong=sig != real
                )

            return st.lists(typed, max_size=5).map(build)

        # member names must be valid (an invalid one is a malformed message: the codec's case)
        unknown = st.tuples(
            st.sampled_from([IFACE0, IFACE1]),
            st.sampled_from(["NoSuchMethod", "ping", "Create2", "_Create", "Freeze", "CreateScm"]),
        ).map(
            lambda im: Call(
                im[0], im[1], "", [], [], wrong=(im not in methods or bool(methods[im]))
            )
        )
        return st.one_of(
            st.sampled_from(sorted(methods.items())).flatmap(wrong),
            st.sampled_from(sorted(methods.items())).flatmap(wrong),
            unknown,
        )


# -- the checks --------------------------------------------------------------------------------


def _exiting(pid: int) -> bool:
    """PF_EXITING in /proc/<pid>/stat's flags (or the process is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return True
    return fields[0] in ("Z", "X") or bool(int(fields[6]) & 0x4)


def _components(path: str) -> tuple[str, ...]:
    return tuple(c for c in path.split("/") if c)


class Fuzzer:
    """Runs one example and checks every invariant (module docstring)."""

    def __init__(
        self,
        place,
        worker: Worker,
        sleepers: Sleepers,
        *,
        root: bool,
        protected: list[str] = (),
        protected_pids: list[int] = (),
    ) -> None:
        self.place = place
        self.daemon = place.daemon
        self.worker = worker
        self.sleepers = sleepers
        self.root = root
        self.protected = list(protected)
        self.protected_pids = list(protected_pids)
        self.base_spellings = {()} | {_components(place.hp(k)) for k in place.dirs}
        self.log_offset = os.path.getsize(self.daemon.log_path)
        self.sent: set[str] = set()  # every string argument sent (see outside_changes)
        self.before = self.outside()
        self.stats: Counter = Counter()
        self.members: Counter = Counter()
        self.returns: Counter = Counter()  # per method: calls that succeeded
        self.slowest: tuple[float, str] = (0.0, "")

    # what must not change
    def outside(self) -> dict:
        state: dict = {}
        place_dirs = set(self.place.dirs.values())
        for key, d in self.place.dirs.items():
            mount = self.place.mounts[key]
            run_root = os.path.dirname(d)
            for dirpath, dirnames, filenames in os.walk(run_root):
                dirnames[:] = [n for n in dirnames if os.path.join(dirpath, n) not in place_dirs]
                if key == "unified":  # come and go with other runs' global +hugetlb (rule 8)
                    filenames = [n for n in filenames if n.startswith("cgroup.")]
                for n in [*filenames, *dirnames, ""]:
                    p = os.path.join(dirpath, n)
                    st_ = os.lstat(p)
                    state[p] = (st_.st_uid, st_.st_gid, st_.st_mode)
            # the hierarchy root: its entries (other runs' cgtest roots come and go) and files
            for n in os.listdir(mount):
                if n.startswith("cgtest-"):
                    continue
                p = os.path.join(mount, n)
                st_ = os.lstat(p)
                state[p] = (st_.st_uid, st_.st_gid, st_.st_mode)
                # (the v2 root's cgroup.subtree_control is other runs' global +hugetlb toggle)
                if n in (
                    "release_agent",
                    "notify_on_release",
                    "cgroup.clone_children",
                    "cgroup.max.depth",
                    "cgroup.max.descendants",
                ):
                    with open(p) as f:
                        state[p + ":content"] = f.read()
        for p in self.protected:
            state[p] = snapshot(p)
        return state

    def remember(self, args: Any) -> None:
        """Record the strings of a request: the only names through which the daemon could
        reach an entry at a hierarchy root."""
        if isinstance(args, str):
            self.sent.add(args)
        elif isinstance(args, (list, tuple)):
            for a in args:
                self.remember(a)
        elif isinstance(args, dict):
            for k, v in args.items():
                self.remember(k)
                self.remember(v)

    def outside_changes(self) -> list[str]:
        """What changed outside the place, among what this test owns: everything in this run's
        cgtest roots; at a hierarchy root its own files, and the cgroups whose names this test
        sent (or ``.cgm_leaf``, the daemon's own) — other runs, managers and engineers create
        and remove cgroups there meanwhile, and the daemon only acts on names a client gives
        it."""
        after = self.outside()
        roots = set(self.place.mounts.values())

        def owned(key: str) -> bool:
            if os.path.dirname(key) not in roots:
                return True
            name = os.path.basename(key)
            v = after.get(key, self.before.get(key))  # (uid, gid, mode), or a file's text
            if isinstance(v, str) or not stat.S_ISDIR(v[2]) or name == ".cgm_leaf":
                return True
            return any(name in s for s in self.sent)

        return sorted(
            k
            for k in after.keys() | self.before.keys()
            if after.get(k) != self.before.get(k) and owned(k)
        )

    def check_processes(self) -> None:
        """The client and the live sleepers are inside the place in every served hierarchy.
        A process that is exiting (killed by the example) is left alone: from the kernel's
        cgroup_exit() until it is a zombie, v1 shows it at "/"."""
        for proc in [self.worker.proc, *self.sleepers.procs]:
            outside = self._outside_lines(proc.pid)
            if outside and (not proc.alive() or _exiting(proc.pid)):
                continue
            if outside:  # (PF_EXITING is set a moment after a kill is delivered)
                if pidfd_wait_exit(proc.pidfd, 2.0):
                    continue
                outside = self._outside_lines(proc.pid)
            assert not outside, f"process {proc.pid} {proc.argv[:1]} left the place: {outside}"
        for pid in self.protected_pids:
            assert os.path.exists(f"/proc/{pid}"), f"root's process {pid} is gone"
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            assert state != "Z", f"root's process {pid} was killed"

    def _outside_lines(self, pid: int) -> list[str]:
        try:
            with open(f"/proc/{pid}/cgroup") as f:
                lines = f.read().splitlines()
        except OSError:
            return []
        out = []
        for line in lines:
            hid, ctrls, path = line.split(":", 2)
            key = "unified" if hid == "0" else ctrls
            if key in self.place.dirs:
                hp = self.place.hp(key)
                if not (path == hp or path.startswith(hp + "/")):
                    out.append(line)
        return out

    def new_log(self) -> str:
        with open(self.daemon.log_path, errors="replace") as f:
            f.seek(self.log_offset)
            text = f.read()
        self.log_offset += len(text.encode("utf-8", "replace"))
        return text

    # resolving tokens into the call actually made
    def _resolve(self, call: Call) -> tuple[list, dict]:
        """The arguments actually sent: pid tokens made pids, and the safety rules applied
        (module docstring) to every string that may name a cgroup."""
        mutating = call.member not in READ_ONLY
        hierarchy = next(
            (
                a
                for n, a in zip(call.names, call.args, strict=True)
                if n == "controller" and a in self.place.dirs
            ),
            None,
        )

        def fix(name: str, a):
            if isinstance(a, dict) and set(a) == {"pid"}:
                return self._pid(a["pid"], mutating)
            if isinstance(a, list):
                return [fix(name, x) for x in a]
            if isinstance(a, dict):
                return {k: fix(name, v) for k, v in a.items()}
            if (
                not isinstance(a, str)
                or call.wrong
                or name.startswith("controller")
                or name in ("key", "file", "value", "values")
            ):
                return a
            if call.member not in BASE_OK and _components(a) in self.base_spellings:
                return "fz"  # never freeze, kill, limit or re-own the client's own cgroup
            if call.member == "MovePidAbs" and self.root:
                # root may move processes anywhere: keep it inside the place
                hp = self.place.hp(hierarchy or sorted(self.place.dirs)[0])
                return a if a.startswith(hp + "/") else hp + "/" + a
            return a

        args = [fix(n, a) for n, a in zip(call.names, call.args, strict=True)]
        extra = self._scm_second(call) if call.member.endswith("Scm") and not call.wrong else {}
        return args, extra

    def _pid(self, tok: list, mutating: bool) -> int:
        kind = tok[0]
        if kind == "n":
            return tok[1]
        if kind == "dead":
            return self.sleepers.zombies[tok[1] % len(self.sleepers.zombies)]
        if kind == "self" and not mutating:
            return self.worker.pid
        return self.sleepers.pid(tok[1] if kind == "slot" else 0)

    def _scm_second(self, call: Call) -> dict:
        """The honest client side: requestor = the client; the victim a sleeper (root) or the
        client itself (read-only methods); Chown's target ids valid for the kernel."""
        if not call.args or call.args[-1] != {"fd": "dgram"}:
            return {}
        m = call.member
        if m.startswith("MovePid"):
            if not self.root:  # a user can only name itself, and the client must not move
                return {"skip": True}
            return {"scm": "honest", "second": [self.sleepers.pid(len(str(call.args[1]))), 0, 0]}
        if m.startswith("GetPidCgroup"):
            return {"scm": "honest", "second": "self"}
        if m == "ChownScm":
            if not self.root:
                return {"scm": "honest", "second": "self"}
            uid, gid = [65534, 0, 1000, 12345, INT_MAX][len(call.args[1]) % 5], 0
            return {"scm": "honest", "second": [self.worker.pid, uid, gid]}
        return {"scm": "honest"}

    def run(self, call: Call) -> None:
        self.sleepers.refill()
        if call.member == "Freeze" and "freezer" in self.place.dirs:
            # a v2 freeze never completes while v1 has the processes frozen (Busy after the
            # daemon's 10 s bound, docs/FUZZING.md): seen once, it need not cost CI its time
            thaw_v1(self.place.path("freezer"))
        args, extra = self._resolve(call)
        if extra.pop("skip", False):
            args[-1] = {"fd": "pipe"}
        t0 = time.monotonic()
        reply = self.worker.ask(
            {
                "op": "call",
                "iface": call.iface,
                "member": call.member,
                "sig": call.sig,
                "args": args,
                **extra,
            }
        )
        where = f"{call} sent as {args!r}"
        self.slowest = max(self.slowest, (round(time.monotonic() - t0, 2), where[:300]))
        self._check_reply(call, reply, where)
        ping = self.worker.call(IFACE0, "Ping", "i", 0)
        assert ping == {"ok": []}, f"Ping after {where}: {ping}"
        assert self.daemon.popen.poll() is None, f"the daemon died after {where}"
        self.remember(args)
        changed = self.outside_changes()
        if changed:
            raise AssertionError(f"{where} changed something outside the place: {changed[:10]}")
        self.check_processes()
        log = self.new_log()
        for marker in LOG_MARKERS:
            assert marker not in log, f"daemon log after {where}:\n{log[-3000:]}"

    def _check_reply(self, call: Call, reply: dict, where: str) -> None:
        self.members[call.member] += 1
        if "ok" in reply:
            assert not call.wrong, f"{where} was accepted: {reply}"
            scm = reply.get("scm")
            if scm is not None:
                assert "timeout" not in scm and "malformed" not in scm, f"{where}: {scm}"
                self.stats["scm " + ("success" if scm.get("success") else "failure")] += 1
            self.stats["return"] += 1
            self.returns[call.member] += 1
            return
        name = reply["error"]
        self.stats[name.rsplit(".", 1)[-1]] += 1
        if call.wrong:
            assert name in (INVALID_ARGS, UNKNOWN_METHOD), f"{where}: {reply}"
        else:
            assert name.startswith(ERR) and name[len(ERR) :] in KINDS, f"{where}: {reply}"


def fuzz(fz: Fuzzer, methods: dict, ctx: Context, per_method: int, wrong: int, label: str) -> None:
    """*per_method* examples of every method, then *wrong* calls with wrong signatures."""
    started = time.monotonic()
    for item in sorted(methods.items()):
        run_examples(fz, ctx.calls(item), per_method)
    run_examples(fz, ctx.wrong_calls(methods), wrong)
    report(label, fz.members, fz.stats, time.monotonic() - started, fz.returns, fz.slowest)
    # not vacuous: every method was called, and some calls got through
    assert {m for _, m in methods} <= set(fz.members), set(fz.members)
    assert fz.stats["return"] > 0 and fz.stats["scm success"] > 0, fz.stats


def run_examples(fz: Fuzzer, strategy: st.SearchStrategy[Call], n: int) -> None:
    @settings(
        max_examples=examples(n),
        deadline=None,
        database=None,
        phases=PHASES,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def one(call: Call) -> None:
        fz.run(call)

    one()


def report(
    label: str,
    members: Counter,
    stats: Counter,
    seconds: float,
    returns: Counter | None = None,
    slowest: tuple = (),
) -> None:
    """Numbers for docs/FUZZING.md: printed, and appended to $CGM_FUZZ_REPORT if set.
    per_method: examples (and, for the method fuzzers, how many of them succeeded)."""
    per = {m: [n, returns[m]] if returns is not None else n for m, n in sorted(members.items())}
    line = {
        "test": label,
        "examples": sum(members.values()),
        "seconds": round(seconds, 1),
        "outcomes": dict(stats),
        "slowest_call": slowest,
        "per_method": per,
    }
    print(json.dumps(line))
    out = os.environ.get("CGM_FUZZ_REPORT")
    if out:
        with open(out, "a") as f:
            f.write(json.dumps(line) + "\n")


# -- the method fuzzers --------------------------------------------------------------------


def _served_names(place, cgroots) -> list[str]:
    from cgmanager.hierarchy import discover_host

    layout = discover_host()
    names = []
    for key in place.dirs:
        names += [n for n in layout.lookup(key).names]
    return sorted(set(names))


def _prepare(worker: Worker) -> None:
    for path in ("a", "a/b", "fz", "b"):
        reply = worker.call(IFACE0, "Create", "ss", "all", path)
        assert "ok" in reply, reply


def test_fuzz_every_method_as_root(place, cgroots, test_user):
    methods = introspect(place.daemon)
    worker = Worker(place)
    _prepare(worker)
    sleepers = Sleepers(place, [None, None, test_user])
    ctx = Context(
        _served_names(place, cgroots),
        [place.hp(k) for k in place.dirs],
        [test_user.uid, test_user.gid],
    )
    fz = Fuzzer(place, worker, sleepers, root=True)
    fuzz(fz, methods, ctx, 20, 100, "methods as root")


def test_fuzz_every_method_as_user(place, cgroots, test_user):
    """The user owns its place (delegated by root), which also holds a cgroup ``r`` and
    processes of root's: those must survive everything the user sends."""
    uid, gid = test_user.uid, test_user.gid
    root_client = Worker(place)  # stays in the place: root's process in the user's cgroup
    assert "ok" in root_client.call(IFACE0, "Create", "ss", "all", "r")
    reply = root_client.call(IFACE0, "Chown", "ssii", "all", "", uid, gid)
    assert "ok" in reply, reply
    root_sleepers = Sleepers(place, [None])
    for p in root_sleepers.alive_pids():
        assert "ok" in root_client.call(IFACE0, "MovePid", "ssi", "all", "r", p)

    methods = introspect(place.daemon)
    worker = Worker(place, user=test_user)
    _prepare(worker)
    sleepers = Sleepers(place, [test_user, test_user])
    ctx = Context(_served_names(place, cgroots), [place.hp(k) for k in place.dirs], [uid, gid])
    fz = Fuzzer(
        place,
        worker,
        sleepers,
        root=False,
        protected=[os.path.join(d, "r") for d in place.dirs.values()],
        protected_pids=[*root_sleepers.alive_pids(), root_client.pid],
    )
    fuzz(fz, methods, ctx, 12, 60, "methods as user")
    assert fz.stats["NotPermitted"] > 0


# -- the Scm side: hostile data on the passed socket ----------------------------------------------

#: the daemon's --scm-timeout for this fuzzer: a stalled or closed client costs this long
SCM_TIMEOUT = 0.1
AUDIT_OK = re.compile(r"audit: proxy .*\): ok( |$)", re.M)


def _wanted(member: str) -> int:
    """How many credentials the daemon waits for."""
    from cgmanager import scm

    return 1 if scm.BY_NAME[member].second == scm.Second.NONE else 2


def scripts(member: str) -> st.SearchStrategy[list[dict]]:
    """The client side of one request: a datagram where the daemon waits for each credential,
    then up to two more.  A datagram may skip the wait for the kick, carry an empty, odd or
    oversized payload, no credential (the kernel then attaches the sender's own: SO_PASSCRED),
    two, or a forged one, smuggle fds — or the client stalls, or closes its end."""
    payload = st.one_of(
        st.just("70"),
        st.just("70"),
        st.just(""),
        st.just("00"),
        st.binary(min_size=1, max_size=64).map(bytes.hex),
    ).map(lambda h: {"hex": h})
    oversized = st.sampled_from([{"hex": "70", "repeat": 65536}, {"hex": "00", "repeat": 200000}])
    datagram = st.tuples(
        st.one_of(payload, payload, oversized),
        st.fixed_dictionaries(
            {
                "wait": st.sampled_from([True, True, False]),
                "creds": st.sampled_from(
                    [
                        ["honest"],
                        ["honest"],
                        [],
                        ["forged", "honest"],
                        ["forged"],
                        ["honest", "forged"],
                    ]
                ),
                "rights": st.sampled_from([0, 0, 0, 0, 1, 3]),
            }
        ),
    ).map(lambda pd: {**pd[0], **pd[1]})
    # (one_of would favour the two constant branches: weigh explicitly)
    any_step = st.integers(0, 9).flatmap(
        lambda k: (
            st.just({"stall": True}) if k == 0 else st.just({"close": True}) if k == 1 else datagram
        )
    )
    wanted = _wanted(member)
    return st.tuples(
        st.lists(any_step, min_size=wanted, max_size=wanted), st.lists(any_step, max_size=2)
    ).map(lambda t: t[0] + t[1])


class ScmFuzzer(Fuzzer):
    """Runs Scm requests with benign arguments and a hostile client side.  Checks that a
    request whose credentials were not cleanly delivered is never performed, that one made by
    root in the name of the user's process is judged as the user's, that every request ends
    (the daemon's fds come back to their baseline), and the invariants of :class:`Fuzzer`."""

    def __init__(self, *a, methods: dict, forged: list[int], **kw) -> None:
        super().__init__(*a, **kw)
        self.methods = methods
        self.forged = forged  # [pid, uid, gid] of a process of another user's
        self.n = 0
        self.baseline = self.daemon_fds()

    def daemon_fds(self) -> dict[str, str]:
        """fd -> what it is, for every fd the daemon holds."""
        d = f"/proc/{self.daemon.popen.pid}/fd"
        out = {}
        for n in os.listdir(d):
            try:
                out[n] = os.readlink(f"{d}/{n}")
            except FileNotFoundError:
                pass
        return out

    def extra_fds(self) -> dict[str, str]:
        return {n: v for n, v in self.daemon_fds().items() if self.baseline.get(n) != v}

    def place_state(self) -> tuple:
        """The place's cgroups (names, owners, modes) and where the sleepers are."""
        cgroups = {k: snapshot(d) for k, d in self.place.dirs.items()}
        where = {}
        for pid in self.sleepers.alive_pids():
            try:
                with open(f"/proc/{pid}/cgroup") as f:
                    where[pid] = f.read()
            except OSError:
                pass
        return cgroups, where

    def benign(self, member: str, controller: str) -> list:
        """Arguments with which the request would succeed if the client behaved."""
        self.n += 1
        n = self.n
        target = {
            "CreateScm": f"t/c{n}",
            "RemoveScm": f"r{n}",
            "RemoveOnEmptyScm": f"e{n}",
            "MovePidScm": "m" if self.root else "",
            "GetTasksScm": "m",
            "MovePidAbsScm": "/m" if self.root else "/",
        }.get(member, "t")
        if member in ("RemoveScm", "RemoveOnEmptyScm"):
            assert "ok" in self.worker.call(IFACE0, "Create", "ss", controller, target)
        if member in (
            "GetValueScm",
            "SetValueScm",
            "ListChildrenScm",
            "ListKeysScm",
            "GetTasksScm",
            "GetPidCgroupScm",
            "GetPidCgroupAbsScm",
        ):
            controller = "pids"  # one hierarchy only
        fixed = {
            "controller": controller,
            "cgroup": target,
            "key": "pids.max",
            "file": "tasks",
            "value": str(n),
            "mode": 0o644,
            "recursive": 1,
        }
        args = self.methods[(IFACE0, member)]
        return [fixed.get(name, 0) for name, _ in args[:-1]] + [{"fd": "dgram"}]

    def honest(self, member: str, position: int):
        """The honest credential at *position* (0: requestor, 1: victim or target ids)."""
        if position == 0 or not self.root:
            return "self"  # a user can only name itself (its MovePid is into its own cgroup)
        if member == "ChownScm":
            return [self.worker.pid, 12345, 12345]
        return [self.sleepers.pid(0), 0, 0]

    def scm_run(self, member: str, controller: str, steps: list[dict]) -> None:
        from cgmanager import scm

        wanted = _wanted(member)
        self.sleepers.refill()
        args = self.benign(member, controller)
        sent = []
        for i, step_ in enumerate(steps):
            if "creds" in step_:
                honest = self.honest(member, min(i, 1))
                forged = self.forged
                if i >= 1 and member == "ChownScm" and self.root:
                    # as target ids, another uid: nothing in the place may become the user's,
                    # so that a request in the user's name must be refused
                    forged = [self.worker.pid, 23456, 23456]
                creds = [honest if c == "honest" else forged for c in step_["creds"]]
                if i == 1 and not creds and self.root:
                    creds = [honest]  # the implicit credential would make the client the victim
                step_ = {**step_, "creds": creds}
            sent.append(step_)
        log_before = self.log_offset
        in_users_name = (
            bool(sent) and "creds" in sent[0] and (sent[0]["creds"] or ["self"])[-1] == self.forged
        )
        place_before = self.place_state() if in_users_name else None
        sig = "".join(t for _, t in self.methods[(IFACE0, member)])
        reply = self.worker.ask(
            {
                "op": "call",
                "iface": IFACE0,
                "member": member,
                "sig": sig,
                "args": args,
                "steps": sent,
            }
        )
        where = f"{member}({args}) with the client side {sent}"
        assert reply.get("ok") == [], f"{where}: {reply}"
        done = reply["steps"]
        # delivered: a datagram with a payload and no fds that was sent (the last credential
        # of a message is the one the kernel delivers; none means the sender's own)
        delivered = len(done) >= wanted and all(
            "hex" in s and s["hex"] and not s["rights"] and done[i].startswith("sent")
            for i, s in enumerate(sent[:wanted])
        )
        forged_requestor = delivered and (sent[0]["creds"] or ["self"])[-1] == self.forged
        assert wait_for(lambda: not self.extra_fds(), timeout=SCM_TIMEOUT + 10), (
            f"{where}: the request did not end; the daemon still holds {self.extra_fds()}"
        )
        datagrams = [bytes.fromhex(h) for h in self.worker.ask({"op": "drain"})["datagrams"]]
        results = [d for d in datagrams if d != scm.KICK]
        self.log_offset = log_before
        log = self.new_log()
        mutating = member not in READ_ONLY
        performed = (
            bool(AUDIT_OK.search(log))
            if mutating
            else (bool(results) and results[0] not in (b"", b"\xff\xff\xff\xff"))
        )
        self.members[member] += 1
        kind = (
            "clean"
            if delivered and not forged_requestor
            else ("forged requestor" if delivered else "garbage")
        )
        self.stats[f"{kind} {'performed' if performed else 'refused'}"] += 1
        if not delivered:
            assert not performed, f"{where} was performed: {done}, {results}\n{log}"
            assert not os.path.exists(os.path.join(self.place.path("pids"), "t", f"c{self.n}"))
        if forged_requestor:
            # nothing in the place is the user's: a request in its name changes nothing
            assert self.place_state() == place_before, (
                f"{where}: root's request in the name of the user's process changed the "
                f"place: {done}\n{log}"
            )
        ping = self.worker.call(IFACE0, "Ping", "i", 0)
        assert ping == {"ok": []}, f"Ping after {where}: {ping}"
        assert self.daemon.popen.poll() is None, f"the daemon died after {where}"
        self.remember(args)
        changed = self.outside_changes()
        assert not changed, f"{where} changed something outside the place: {changed[:10]}"
        self.check_processes()
        for marker in LOG_MARKERS:
            assert marker not in log, f"daemon log after {where}:\n{log[-3000:]}"


def scm_fuzz(start_daemon, place, test_user, *, root: bool, per_method: int) -> None:
    d = start_daemon("--scm-timeout", str(SCM_TIMEOUT))
    p = replace(place, daemon=d)
    methods = {k: v for k, v in introspect(d).items() if k[1].endswith("Scm")}
    assert len(methods) >= 16, methods
    if root:
        worker = Worker(p)
        sleepers = Sleepers(p, [None, test_user])
        forged = [sleepers.pid(1), test_user.uid, test_user.gid]  # the user's process
    else:
        root_client = Worker(p)
        reply = root_client.call(IFACE0, "Chown", "ssii", "all", "", test_user.uid, test_user.gid)
        assert "ok" in reply, reply
        worker = Worker(p, user=test_user)
        sleepers = Sleepers(p, [test_user])
        forged = [root_client.pid, 0, 0]  # the kernel refuses to send it (EPERM)
    for path in ("t", "m"):
        assert "ok" in worker.call(IFACE0, "Create", "ss", "all", path)
    fz = ScmFuzzer(p, worker, sleepers, root=root, methods=methods, forged=forged)
    started = time.monotonic()
    for _, member in sorted(methods):
        strategy = st.tuples(
            st.just(member), st.sampled_from(["pids", "freezer", "all"]), scripts(member)
        )

        honest = {"hex": "70", "wait": True, "creds": ["honest"], "rights": 0}

        @settings(
            max_examples=examples(per_method),
            deadline=None,
            database=None,
            phases=PHASES,
            suppress_health_check=list(HealthCheck),
        )
        @given(strategy)
        @example((member, "pids", [honest] * _wanted(member)))  # one clean request, always
        def one(case) -> None:
            fz.scm_run(*case)

        one()
    report(
        f"scm socket as {'root' if root else 'user'}",
        fz.members,
        fz.stats,
        time.monotonic() - started,
    )
    # not vacuous: every method ran, clean requests went through, garbage was refused
    assert {m for _, m in methods} <= set(fz.members), fz.members
    assert fz.stats["clean performed"] > 0 and fz.stats["garbage refused"] > 0, fz.stats
    d.stop()


def test_fuzz_scm_socket_as_root(start_daemon, place, test_user):
    scm_fuzz(start_daemon, place, test_user, root=True, per_method=4)


def test_fuzz_scm_socket_as_user(start_daemon, place, test_user):
    scm_fuzz(start_daemon, place, test_user, root=False, per_method=2)


# -- regressions: what the fuzzers found ---------------------------------------------------------


@pytest.mark.parametrize("kind", ["stream", "seqpacket", "inet_dgram", "pipe", "devnull", "dir"])
def test_an_unusable_sockfd_is_an_invalid_argument(place, kind):
    """Found by the method fuzzer: a sockfd that is no unix datagram socket was answered with
    the generic ``Failed`` (reserved for bugs); it is the caller's mistake."""
    worker = Worker(place)
    reply = worker.call(IFACE0, "CreateScm", "ssh", "pids", "x", {"fd": kind})
    assert reply["error"] == ERR + "InvalidArgument", reply
    assert not os.path.exists(os.path.join(place.path("pids"), "x"))
    assert worker.call(IFACE0, "Ping", "i", 0) == {"ok": []}


def test_the_configured_scm_server_is_used():
    """Found by the Scm fuzzer: ``--scm-timeout`` had no effect.  An idle ScmServer has length
    0, so ``scm_server or ScmServer()`` replaced the configured one with a default (5 s)."""
    from types import SimpleNamespace

    from cgmanager.daemon.api import Service
    from cgmanager.proxy.service import ProxyService
    from cgmanager.scm_server import ScmServer

    srv = ScmServer(timeout=0.2)
    assert len(srv) == 0
    assert Service(None, None, None, None, None, srv).scm is srv
    assert ProxyService(SimpleNamespace(timeout=9.0), None, srv).relay is srv


def test_a_value_longer_than_the_kernel_file_takes_is_kernel_rejected(place):
    """Found by the long run of the method fuzzer: a 5,000-byte value for v1 freezer.state
    (the kernel takes at most 4 KiB: E2BIG) was answered with the generic ``Failed``."""
    worker = Worker(place)
    assert "ok" in worker.call(IFACE0, "Create", "ss", "freezer", "n")
    reply = worker.call(IFACE0, "SetValue", "ssss", "freezer", "n", "freezer.state", "v" * 5000)
    assert reply["error"] == ERR + "KernelRejected", reply
    with open(os.path.join(place.path("freezer"), "n", "freezer.state")) as f:
        assert f.read().strip() == "THAWED"
