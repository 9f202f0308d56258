"""Event signals: clients subscribe to a cgroup and receive ``CgroupEvent`` signals on their
own (peer-to-peer) connection instead of polling ``GetEvents``.

What is watched, per subscription (the kernel's hierarchical files, so a subscription covers
the whole subtree below the cgroup):

* v2 ``cgroup.events`` — ``populated`` and ``frozen`` (kernfs raises ``EPOLLPRI`` on change,
  at most every 10 ms per file); ``memory.events`` (``oom``, ``oom_kill``, ``max``, …) and
  ``pids.events`` where those controllers are enabled;
* v1 — no notification exists short of a release agent: ``populated`` (any process in the
  subtree) and, in the freezer hierarchy, ``freezer.state`` are polled every
  :data:`V1_POLL_SECONDS`;
* ``removed`` — the cgroup is gone, and the subscription with it (the kernel wakes no poller
  on removal: found by the same periodic check);
* ``WatchPressure``: a PSI trigger (``some 150000 1000000`` written to ``<resource>.pressure``,
  ``EPOLLPRI`` when stalls exceed it within the window; the kernel fires at most once per
  window).

Bounds: :data:`MAX_PER_CONNECTION` subscriptions per connection and :data:`MAX_TOTAL` in all
(each holds at most three fds), :data:`MAX_TRIGGERS_PER_CONNECTION`/:data:`MAX_TRIGGERS` PSI
triggers; a subscriber whose connection has more than :data:`SIGNAL_BUDGET` bytes unread loses
signals, each later signal carries the count lost so far.  Subscribing needs what ``GetEvents``
needs (read access to the cgroup, within reach); a PSI trigger needs write access to the
pressure file, and a client other than host root gets the kernel's rule for unprivileged
triggers (windows in multiples of 2 s), so the daemon's privilege widens nothing.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import select
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..cgroupfs import CgroupTree
from ..contract import INTERFACE1, OBJECT_PATH, SIGNALS
from ..dbus.message import SIGNAL, Message
from ..errors import CgmError, InvalidArgument, LimitExceeded, NotFound
from ..hierarchy import Hierarchy
from ..operations import Manager, Request, run
from ..operations.targets import lookup
from ..permission import Access, FileOwner, require_access
from .event_text import PSI_RESOURCES, parse_flat, parse_pressure, parse_trigger

log = logging.getLogger("cgmanager.events")

MAX_PER_CONNECTION = 64
MAX_TOTAL = 1024
MAX_TRIGGERS_PER_CONNECTION = 8
MAX_TRIGGERS = 256
#: unread bytes on a subscriber's connection past which its signals are dropped (counted)
SIGNAL_BUDGET = 64 << 10
V1_POLL_SECONDS = 1.0
#: the signal, as the contract describes it
SIGNAL_NAME, _SIGNAL_ARGS = SIGNALS[0]
SIGNAL_SIGNATURE = "".join(t for _, t in _SIGNAL_ARGS)
#: what each watched file reports as
FILES = {"cgroup.events": "cgroup", "memory.events": "memory", "pids.events": "pids"}


@dataclass(eq=False)
class Subscriber:
    """One connection's subscriptions (closed with the connection)."""

    owner: Events
    name: str
    subs: dict[int, Subscription] = field(default_factory=dict)
    lost: int = 0
    sent: int = 0

    def close(self) -> None:
        for sid in list(self.subs):
            self.owner._drop(self, sid)


@dataclass(eq=False)
class Subscription:
    id: int
    subscriber: Subscriber
    tree: CgroupTree
    path: str
    controller: str
    cgroup: str  # as the client named it
    fds: dict[int, str] = field(default_factory=dict)  # fd -> file
    last: dict[str, dict[str, int]] = field(default_factory=dict)
    trigger: bool = False
    ep: select.epoll | None = None  # a PSI trigger's own epoll


class Events:
    """Subscriptions of every connection, watched on the daemon's event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, manager: Manager) -> None:
        self._loop = loop
        self.m = manager
        self._connection: Callable[[str], Any] = lambda name: None
        self._epoll = select.epoll()
        self._by_fd: dict[int, Subscription] = {}
        self._all: dict[int, Subscription] = {}
        self._ids = itertools.count(1)
        self._poll: asyncio.TimerHandle | None = None
        self.triggers = 0
        self.signals = 0
        self.dropped = 0
        loop.add_reader(self._epoll.fileno(), self._on_ready)

    #: fds the subscriptions may hold at most (for RLIMIT_NOFILE)
    max_fds = MAX_TOTAL * len(FILES) + 2 * MAX_TRIGGERS  # a trigger: its file and epoll

    def bind(self, connection: Callable[[str], Any]) -> None:
        """How to find a connection by its unique name (the server's registry)."""
        self._connection = connection

    def counters(self) -> dict[str, int]:
        return {
            "subscriptions": len(self._all),
            "pressure_triggers": self.triggers,
            "signals_sent": self.signals,
            "signals_dropped": self.dropped,
        }

    # -- subscribing --------------------------------------------------------------------------

    def _subscriber(self, sender: str, state: dict[str, Any]) -> Subscriber:
        sub = state.get("events")
        if not isinstance(sub, Subscriber):
            sub = state["events"] = Subscriber(self, sender)
        return sub

    def _target(self, req: Request, controller: str, cgroup: str) -> tuple[Hierarchy, str]:
        """The cgroup as GetEvents resolves it — which is also the permission check."""
        run(self.m, req.requestor, "GetEvents", controller, cgroup, proxy=req.proxy)
        h = self.m.layout.resolve_one(controller)
        return h, lookup(self.m, req, h, cgroup).path

    def _new(
        self, sender: str, state: dict[str, Any], h: Hierarchy, path: str, c: str, cg: str
    ) -> Subscription:
        who = self._subscriber(sender, state)
        if len(who.subs) >= MAX_PER_CONNECTION:
            raise LimitExceeded(f"at most {MAX_PER_CONNECTION} subscriptions per connection")
        if len(self._all) >= MAX_TOTAL:
            raise LimitExceeded(f"at most {MAX_TOTAL} subscriptions in all; try again later")
        s = Subscription(next(self._ids) & 0xFFFFFFFF, who, self.m.trees[h.key], path, c, cg)
        return s

    def subscribe(
        self, sender: str, state: dict[str, Any], req: Request, controller: str, cgroup: str
    ) -> int:
        h, path = self._target(req, controller, cgroup)
        s = self._new(sender, state, h, path, controller, cgroup)
        t = s.tree
        try:
            if t.v2:
                for f in FILES:
                    if f != "cgroup.events":
                        try:  # the requestor must be able to read it, as GetValue
                            run(self.m, req.requestor, "GetValue", controller, cgroup, f)
                        except NotFound:
                            continue
                    fd = t.open_key_fd(path, f)
                    self._watch(s, fd, f)
                    s.last[f] = parse_flat(os.pread(fd, 4096, 0).decode("ascii", "replace"))
            else:
                s.last["v1"] = self._v1_state(s)
        except BaseException:
            self._close_fds(s)
            raise
        self._add(s)
        self._schedule_poll()
        return s.id

    def watch_pressure(
        self,
        sender: str,
        state: dict[str, Any],
        req: Request,
        controller: str,
        cgroup: str,
        resource: str,
        trigger: str,
    ) -> int:
        if resource not in PSI_RESOURCES:
            raise InvalidArgument(f"invalid resource {resource!r}: one of {PSI_RESOURCES}")
        r = req.r
        parse_trigger(trigger, r.is_host_root and r.same_userns)
        h, path = self._target(req, controller, cgroup)
        if h.version != 2:
            raise InvalidArgument(f"pressure is reported by cgroup v2 only; {h.key} is v1")
        who = self._subscriber(sender, state)
        if sum(x.trigger for x in who.subs.values()) >= MAX_TRIGGERS_PER_CONNECTION:
            raise LimitExceeded(f"at most {MAX_TRIGGERS_PER_CONNECTION} triggers per connection")
        if self.triggers >= MAX_TRIGGERS:
            raise LimitExceeded(f"at most {MAX_TRIGGERS} pressure triggers in all")
        key = f"{resource}.pressure"
        t = self.m.trees[h.key]
        st = t.stat(path, key)
        require_access(r, FileOwner(st.st_uid, st.st_gid, st.st_mode), Access.WRITE, key)
        s = self._new(sender, state, h, path, controller, cgroup)
        s.trigger = True
        fd = t.open_key_fd(path, key, os.O_RDWR)
        try:
            os.write(fd, trigger.strip().encode() + b"\0")
        except OSError as e:
            os.close(fd)
            raise InvalidArgument(f"the kernel refused the trigger: {e.strerror}") from None
        # A trigger's poll consumes its event, so it cannot sit in the shared epoll (asyncio's
        # epoll polls that one first and would eat the event): each trigger gets an epoll of
        # its own, and that epoll becoming readable *is* the event.
        s.fds[fd] = key
        s.ep = select.epoll()
        s.ep.register(fd, select.EPOLLPRI)
        self._loop.add_reader(s.ep.fileno(), self._on_trigger, s)
        self.triggers += 1
        self._add(s)
        self._schedule_poll()
        return s.id

    def unsubscribe(self, state: dict[str, Any], sid: int) -> None:
        who = state.get("events")
        if not isinstance(who, Subscriber) or sid not in who.subs:
            raise NotFound(f"subscription {sid}: not found on this connection")
        self._drop(who, sid)

    # -- bookkeeping --------------------------------------------------------------------------

    def _add(self, s: Subscription) -> None:
        s.subscriber.subs[s.id] = s
        self._all[s.id] = s

    def _watch(self, s: Subscription, fd: int, file: str) -> None:
        s.fds[fd] = file
        self._by_fd[fd] = s
        self._epoll.register(fd, select.EPOLLPRI)

    def _close_fds(self, s: Subscription) -> None:
        if s.ep is not None:
            self._loop.remove_reader(s.ep.fileno())
            s.ep.close()
            s.ep = None
        for fd in list(s.fds):
            self._by_fd.pop(fd, None)
            try:
                self._epoll.unregister(fd)
            except OSError:
                pass
            os.close(fd)
        s.fds.clear()

    def _drop(self, who: Subscriber, sid: int) -> None:
        s = who.subs.pop(sid, None)
        if s is None:
            return
        self._all.pop(sid, None)
        if s.trigger:
            self.triggers -= 1
        self._close_fds(s)

    # -- watching -----------------------------------------------------------------------------

    def _on_trigger(self, s: Subscription) -> None:
        assert s.ep is not None
        s.ep.poll(0)  # takes the item off the ready list (its event is already consumed)
        fd = next(iter(s.fds))
        try:
            text = os.pread(fd, 4096, 0).decode("ascii", "replace")
        except OSError:
            self._emit(s, "removed", {})
            self._drop(s.subscriber, s.id)
            return
        if s.tree.exists(s.path):
            self._emit(s, "pressure", parse_pressure(text))
        else:
            self._emit(s, "removed", {})
            self._drop(s.subscriber, s.id)

    def _on_ready(self) -> None:
        for fd, _ev in self._epoll.poll(0):
            s = self._by_fd.get(fd)
            if s is None:
                continue
            file = s.fds[fd]
            try:
                text = os.pread(fd, 4096, 0).decode("ascii", "replace")
            except OSError:  # the cgroup was removed: its files give ENODEV
                self._emit(s, "removed", {})
                self._drop(s.subscriber, s.id)
                continue
            now = parse_flat(text)
            before = s.last.get(file, {})
            s.last[file] = now
            self._changes(s, FILES[file], before, now)

    def _changes(
        self, s: Subscription, kind: str, before: dict[str, int], now: dict[str, int]
    ) -> None:
        if kind == "cgroup":
            for key in ("populated", "frozen"):
                if key in now and before.get(key) != now[key]:
                    self._emit(s, key, {key: now[key]})
        elif now != before:
            self._emit(s, kind, now)

    def _v1_state(self, s: Subscription) -> dict[str, int]:
        t = s.tree
        state = {"populated": int(t.populated(s.path))}
        if "freezer" in t.hierarchy.controllers:
            state["frozen"] = int(t.read(s.path, "freezer.state").strip() == "FROZEN")
        return state

    def _schedule_poll(self) -> None:
        if self._poll is None:
            self._poll = self._loop.call_later(V1_POLL_SECONDS, self._poll_v1)

    def _poll_v1(self) -> None:
        """v1 state, and on v2 whether each cgroup still exists (the kernel does not wake
        pollers when a cgroup is removed; its files then fail with ENODEV)."""
        self._poll = None
        for s in list(self._all.values()):
            if s.tree.v2:
                fd = next(iter(s.fds), None)
                try:
                    if fd is not None:
                        os.pread(fd, 1, 0)
                except OSError:
                    self._emit(s, "removed", {})
                    self._drop(s.subscriber, s.id)
                continue
            try:
                now = self._v1_state(s)
            except CgmError:
                self._emit(s, "removed", {})
                self._drop(s.subscriber, s.id)
                continue
            before, s.last["v1"] = s.last.get("v1", {}), now
            self._changes(s, "cgroup", before, now)
        if self._all:
            self._schedule_poll()

    def _emit(self, s: Subscription, kind: str, values: dict[str, int]) -> None:
        who = s.subscriber
        conn = self._connection(who.name)
        if conn is None:
            return
        msg = Message(
            SIGNAL,
            path=OBJECT_PATH,
            interface=INTERFACE1,
            member=SIGNAL_NAME,
            signature=SIGNAL_SIGNATURE,
            body=(s.id, s.controller, s.cgroup, kind, values, who.lost),
            destination=who.name,
        )
        if conn.send_signal(msg, SIGNAL_BUDGET):
            who.sent += 1
            self.signals += 1
        else:
            who.lost += 1
            self.dropped += 1

    def close(self) -> None:
        for s in list(self._all.values()):
            self._drop(s.subscriber, s.id)
        self._loop.remove_reader(self._epoll.fileno())
        self._epoll.close()
        if self._poll is not None:
            self._poll.cancel()
