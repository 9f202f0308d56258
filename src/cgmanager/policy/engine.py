"""The rules engine: places processes by ``cgrules.conf`` when the kernel reports an exec or a
change of uid/gid (the proc connector), and on ``Classify``.

Never on what a client claims: the events come from the kernel (port id 0, see
:mod:`.proc_connector`); each process is pinned by a pidfd, its facts (effective ids, groups,
executable) are read from its ``/proc`` directory through that pin, and it is checked to be the
process the event named (it started before the event: a pid recycled since started after).
The move is the daemon's own ``MovePidAbs`` (victim checks, delegation rules, the daemon's
cgroup as the bound).

Races, by design: a process that exits before its event is handled is counted (``exited``);
one whose pid was recycled is skipped (``recycled``); one that execs or changes ids again is
handled again at its next event.  The event loop never stalls on this work: events wait in a
queue of at most :data:`QUEUE_MAX` processes (one entry per process; beyond, they are
dropped and counted), drained :data:`BATCH` at a time with a :data:`SLICE` time budget per
turn of the loop; the kernel's own socket buffer overflowing is counted too (``overruns``).
"""

from __future__ import annotations

import asyncio
import grp
import logging
import os
import pwd
import signal
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .. import names
from ..errors import CgmError, InvalidArgument, NotFound, NotPermitted
from ..operations import Manager, run
from ..procfs import ProcDir, parse_real_uid, parse_starttime
from ..requestor import Party
from . import cgrules, plan
from .apply import apply_group
from .lexer import ConfigError
from .proc_connector import Event, ProcConnector

log = logging.getLogger("cgmanager.rules")

QUEUE_MAX = 4096
BATCH = 64
SLICE = 0.002
_TICK_NS = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
_NAME_CACHE = 1024


def _status_ids(text: str) -> tuple[int, int, frozenset[int]]:
    """(euid, egid, supplementary groups) from /proc/<pid>/status (lines end at \\n only)."""
    euid = egid = -1
    groups: frozenset[int] = frozenset()
    for line in text.split("\n"):
        key, _, rest = line.partition(":")
        if key == "Uid":
            euid = int(rest.split()[1])
        elif key == "Gid":
            egid = int(rest.split()[1])
        elif key == "Groups":
            groups = frozenset(int(g) for g in rest.split())
    if euid < 0 or egid < 0:
        raise NotFound("process status without ids")
    return euid, egid, groups


class Engine:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        manager: Manager,
        me: Party,
        rules_path: str | None,
        templates: Callable[[], Any],
    ) -> None:
        self._loop = loop
        self.m = manager
        self.me = me
        self.rules_path = rules_path or None
        #: returns the configuration in force (for templates): daemon/policy.py's Policy
        self._policy = templates
        self.rules: list[cgrules.Resolved] = []
        self._uids: set[int] = set()
        self._any_user = False
        self._queue: deque[Event] = deque()
        self._queued: set[int] = set()
        self._draining = False
        self.pc: ProcConnector | None = None
        self._users: dict[int, str] = {}
        self._groups: dict[int, str] = {}
        self.n = dict.fromkeys(
            (
                "events",
                "refused",
                "overruns",
                "dropped",
                "coalesced",
                "filtered",
                "exited",
                "recycled",
                "unmatched",
                "moved",
                "failed",
                "handled_ns",
            ),
            0,
        )

    # -- rules --------------------------------------------------------------------------------

    def load(self) -> tuple[list[cgrules.Resolved], list[str]]:
        if self.rules_path is None:
            return [], []
        try:
            with open(self.rules_path, encoding="utf-8") as f:
                text = f.read((1 << 20) + 1)
        except FileNotFoundError:
            return [], []
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(self.rules_path, 0, f"cannot read: {e}") from None
        rules = cgrules.parse(text, self.rules_path)
        for r in rules:
            if r.controllers != "*":
                try:
                    self.m.layout.resolve(r.controllers)
                except CgmError as e:
                    raise ConfigError(self.rules_path, r.line, e.message) from None
        return cgrules.resolve(
            rules, lambda n: pwd.getpwnam(n).pw_uid, lambda n: grp.getgrnam(n).gr_gid
        )

    def reload(self) -> list[str]:
        """Re-read the rules; a bad file changes nothing (InvalidArgument, line-numbered)."""
        try:
            rules, warnings = self.load()
        except ConfigError as e:
            log.error("rules not applied (the last good ones stay in force): %s", e)
            raise InvalidArgument(f"rules not applied: {e}") from None
        for w in warnings:
            log.warning("rules: %s", w)
        self.rules = rules
        self._uids = {r.uid for r in rules if r.uid is not None}
        self._any_user = any(r.uid is None for r in rules)
        self._users.clear()
        self._groups.clear()
        self._listen(bool(rules))
        head = [f"rules: {len(rules)} in force"] if rules or warnings else []
        return head + [f"rules: {w}" for w in warnings]

    def reload_logged(self) -> None:
        try:
            self.reload()
        except CgmError:
            pass

    def _listen(self, on: bool) -> None:
        """The netlink socket is open only while there are rules."""
        if on and self.pc is None:
            try:
                self.pc = ProcConnector()
            except OSError as e:
                log.error("cannot listen to the kernel's process events: %s", e)
                return
            self._loop.add_reader(self.pc.fileno(), self._on_readable)
            log.info("rules engine: listening to process events (filtered: %s)", self.pc.filtered)
        elif not on and self.pc is not None:
            self._loop.remove_reader(self.pc.fileno())
            self.pc.close()
            self.pc = None

    def counters(self) -> dict[str, int]:
        out = {f"rules_{k}": v for k, v in self.n.items()}
        out["rules_in_force"] = len(self.rules)
        out["rules_queued"] = len(self._queue)
        return out

    # -- events -------------------------------------------------------------------------------

    def _on_readable(self) -> None:
        assert self.pc is not None
        try:
            events, refused, overruns = self.pc.read()
        except OSError as exc:
            log.error("reading process events: %s", exc)
            return
        n = self.n
        n["refused"] += refused
        n["overruns"] += overruns
        n["events"] += len(events)
        for ev in events:
            if ev.euid is not None and not self._any_user and ev.euid not in self._uids:
                n["filtered"] += 1  # an id change no rule can match: no /proc read needed
            elif ev.tgid in self._queued:
                n["coalesced"] += 1
            elif len(self._queue) >= QUEUE_MAX:
                n["dropped"] += 1
            else:
                self._queue.append(ev)
                self._queued.add(ev.tgid)
        if self._queue and not self._draining:
            self._draining = True
            self._loop.call_soon(self._drain)

    def _drain(self) -> None:
        start = time.monotonic()
        done = 0
        try:
            while self._queue and done < BATCH and time.monotonic() - start < SLICE:
                e = self._queue.popleft()
                self._queued.discard(e.tgid)
                t0 = time.perf_counter_ns()
                try:
                    self._handle(e)
                except (CgmError, OSError, ValueError, IndexError) as exc:
                    # /proc of a process dying under our feet can be short or empty: that
                    # process is skipped, and the queue must never stall on it
                    self.n["exited"] += 1
                    log.debug("rules: process %d: %s", e.tgid, exc)
                self.n["handled_ns"] += time.perf_counter_ns() - t0
                done += 1
        finally:
            if self._queue:
                self._loop.call_soon(self._drain)
            else:
                self._draining = False

    def _handle(self, e: Event) -> None:
        try:
            pidfd = os.pidfd_open(e.tgid)
        except OSError:
            self.n["exited"] += 1
            return
        try:
            boot_ns = (
                e.timestamp_ns
                + time.clock_gettime_ns(time.CLOCK_BOOTTIME)
                - (time.clock_gettime_ns(time.CLOCK_MONOTONIC))
            )
            try:
                p = self.facts(e.tgid, pidfd, boot_ns)
            except NotFound:
                self.n["exited"] += 1
                return
            if p is None:
                self.n["recycled"] += 1
                return
            self.place(p, pidfd)
        finally:
            os.close(pidfd)

    def facts(self, pid: int, pidfd: int, before_ns: int | None = None) -> cgrules.Process | None:
        """What the kernel says about *pid*, pinned by *pidfd*; None if it started after
        *before_ns* (CLOCK_BOOTTIME): then it is not the process the event named."""
        with ProcDir(pid, pidfd) as d:
            if before_ns is not None:
                start = parse_starttime(d.read("stat")) * _TICK_NS
                if start > before_ns + _TICK_NS:
                    return None
            euid, egid, groups = _status_ids(d.read("status", whole=True))
            try:
                exe = os.readlink("exe", dir_fd=d.fd)
            except OSError:
                exe = ""  # kernel threads, or gone
            comm = d.read("comm").removesuffix("\n")
            try:
                signal.pidfd_send_signal(pidfd, 0)  # still the same process after the reads
            except ProcessLookupError:
                raise NotFound(f"process {pid}: exited") from None
        return cgrules.Process(pid, euid, egid, groups, exe, comm)

    # -- placing ------------------------------------------------------------------------------

    def _user(self, uid: int) -> str:
        name = self._users.get(uid)
        if name is None:
            try:
                name = pwd.getpwuid(uid).pw_name
            except KeyError:
                name = str(uid)
            if len(self._users) >= _NAME_CACHE:
                self._users.clear()
            self._users[uid] = name
        return name

    def _group(self, gid: int) -> str:
        name = self._groups.get(gid)
        if name is None:
            try:
                name = grp.getgrgid(gid).gr_name
            except KeyError:
                name = str(gid)
            if len(self._groups) >= _NAME_CACHE:
                self._groups.clear()
            self._groups[gid] = name
        return name

    def place(self, p: cgrules.Process, pidfd: int) -> str:
        """Apply the first matching rule to *p*; a description of what happened."""
        matched = cgrules.match(self.rules, p)
        if not matched:
            self.n["unmatched"] += 1
            return "no rule matches"
        done: list[str] = []
        for r in matched:
            if "ignore" in r.rule.options:
                return f"left alone ({r.rule})"
            controllers = "all" if r.rule.controllers == "*" else r.rule.controllers
            made: list[tuple[str, str]] = []
            try:
                dest = cgrules.destination(r, p, self._user, self._group)
                made = self._ensure(controllers, dest, p)
                run(self.m, self.me, "MovePidAbs", controllers, dest, p.pid, pidfd=pidfd)
            except CgmError as e:
                self.n["failed"] += 1
                log.debug("rules: process %d, %s: %s", p.pid, r.rule, e.message)
                return f"refused ({r.rule}): {e.message}"
            finally:
                self._reap_when_empty(made)  # after the move: an empty cgroup goes at once
            self.n["moved"] += 1
            done.append(f"{controllers}:{dest}")
        return "moved to " + ", ".join(done)

    def _reap_when_empty(self, made: list[tuple[str, str]]) -> None:
        for hierarchy, path in made:
            try:
                run(self.m, self.me, "RemoveOnEmpty", hierarchy, path)
            except CgmError as e:
                log.warning("rules: %s:%s stays after use: %s", hierarchy, path, e)

    def _ensure(self, controllers: str, dest: str, p: cgrules.Process) -> list[tuple[str, str]]:
        """A missing destination is made from the configuration's template that names it
        (libcgroup's templates), and removed again once empty; without one, the move fails."""
        hs = self.m.layout.resolve(controllers)
        parts = names.split(dest)
        if all(self.m.trees[h.key].exists(names.join(self.me.cgroup(h), *parts)) for h in hs):
            return []
        policy = self._policy()
        cfg = policy.current.config
        values = {
            "u": self._user(p.uid),
            "U": str(p.uid),
            "g": self._group(p.gid),
            "G": str(p.gid),
            "p": p.name,
            "P": str(p.pid),
        }
        for t in cfg.templates:
            if names.split(cgrules.expand(t.name, values)) != parts:
                continue
            try:
                d = plan.resolve_group(t, cfg, self.m.layout, policy.ids, name=dest)
            except ConfigError as e:
                raise InvalidArgument(f"template {t.name}: {e}") from None
            out = apply_group(self.m, self.me, d, policy.echoes)
            if out.error:
                raise InvalidArgument(f"template {t.name}: {out.error}")
            log.info("rules: made %s from template %s (%s:%d)", dest, t.name, t.source, t.line)
            return [(c.hierarchy, c.path) for c in out.done if c.kind == "create"]
        return []

    # -- Classify -------------------------------------------------------------------------------

    def classify(self, who: Party, pids: list[int]) -> list[tuple[int, str]]:
        """The rules applied now to each process: host root may name any, others only their
        own (real uid) processes."""
        if len(pids) > 256:
            raise InvalidArgument("invalid pids: at most 256 at once")
        host_root = who.identity.is_host_root and who.identity.same_userns
        out: list[tuple[int, str]] = []
        for pid in pids:
            if pid <= 0:
                out.append((pid, "invalid pid"))
                continue
            try:
                pidfd = os.pidfd_open(pid)
            except OSError:
                out.append((pid, "not found"))
                continue
            try:
                if not host_root:
                    with ProcDir(pid, pidfd) as d:
                        if parse_real_uid(d.read("status", whole=True)) != who.identity.uid:
                            raise NotPermitted("not permitted: it belongs to another user")
                p = self.facts(pid, pidfd)
                out.append((pid, "not found" if p is None else self.place(p, pidfd)))
            except CgmError as e:
                out.append((pid, e.message))
            finally:
                os.close(pidfd)
        return out

    def close(self) -> None:
        self._listen(False)
        self._queue.clear()
        self._queued.clear()
