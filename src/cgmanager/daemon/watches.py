"""What the reaper holds for its clients: watched cgroups, one pidfd per watched process, and
the quotas both count against.

Separate from *when* the reaper looks (:mod:`.reaper`) because this is where the bound lives:
every fd the reaper opens is opened here, and counted here — per requestor uid (whose quota a
watch and its processes count in) and in all.  A process is watched through one pidfd
however many watches include it; it counts once per uid however many of that uid's watches
include it.  Not thread-safe by itself: the reaper calls it with its lock held.
"""

from __future__ import annotations

import errno
import os
import select
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field

from .. import names
from ..cgroupfs import CgroupTree
from ..errors import LimitExceeded

Key = tuple[str, str]

#: v2: one notification per change, re-armed once cgroup.events was read (a check run on
#: another thread must not leave a level-triggered event spinning the loop)
V2_EVENTS = select.EPOLLPRI | select.EPOLLONESHOT


@dataclass(eq=False)
class Watch:
    tree: CgroupTree
    path: str
    owner: int  # the requestor's uid (as the kernel reported it): whose quota it counts in
    events_fd: int = -1  # v2: cgroup.events
    members: set[int] = field(default_factory=set)  # v1: processes known to be in the subtree
    polling: bool = False  # v1: past a cap, listed every so often instead
    checking: bool = False  # a check is under way
    again: bool = False  # ... and another was asked for meanwhile

    @property
    def key(self) -> Key:
        return (self.tree.hierarchy.key, self.path)


@dataclass(eq=False)
class Proc:
    pid: int
    pidfd: int
    watches: set[Watch] = field(default_factory=set)
    owners: Counter[int] = field(default_factory=Counter)  # uid -> its watches holding it


@dataclass(frozen=True)
class Caps:
    watches: int
    watches_per_uid: int
    processes: int
    processes_per_uid: int


class Holdings:
    """The watches, their fds (registered in *epoll*) and the quotas."""

    def __init__(self, epoll: select.epoll, caps: Caps) -> None:
        self.epoll = epoll
        self.caps = caps
        self.watches: dict[Key, Watch] = {}
        self.events: dict[int, Watch] = {}  # v2 cgroup.events fd -> watch
        self.procs: dict[int, Proc] = {}  # pid -> its one pidfd and the watches holding it
        self.by_pidfd: dict[int, Proc] = {}
        self._per_uid: Counter[int] = Counter()  # watches per owner
        self._procs_per_uid: Counter[int] = Counter()  # distinct processes per owner

    def stats(self) -> dict[str, int]:
        return {
            "watches": len(self.watches),
            "pidfds": len(self.procs),
            "event_fds": len(self.events),
            "polled": sum(w.polling for w in self.watches.values()),
        }

    # -- quotas ------------------------------------------------------------------------------

    def room_for_watch(self, owner: int) -> None:
        """Raise LimitExceeded unless *owner* may have one more watch."""
        if len(self.watches) >= self.caps.watches:
            raise LimitExceeded(f"too many cgroups awaiting removal ({self.caps.watches} in all)")
        if self._per_uid[owner] >= self.caps.watches_per_uid:
            raise LimitExceeded(
                f"too many cgroups awaiting removal for uid {owner}"
                f" ({self.caps.watches_per_uid}); remove some or wait"
            )

    def room_for_processes(self, found: Collection[int], owner: int) -> None:
        """Raise LimitExceeded unless *owner*'s new watch may hold *found*."""
        mine = self._procs_per_uid[owner] + sum(1 for p in found if not self._counts(p, owner))
        if mine > self.caps.processes_per_uid:
            raise LimitExceeded(
                f"RemoveOnEmpty would watch {mine} processes for uid {owner}"
                f" ({self.caps.processes_per_uid} at most)"
            )
        if len(self.procs) + sum(1 for p in found if p not in self.procs) > self.caps.processes:
            raise LimitExceeded(
                "RemoveOnEmpty would watch more processes than this cgmanager does"
                f" ({self.caps.processes})"
            )

    def fits(self, w: Watch, new: Collection[int]) -> bool:
        try:
            self.room_for_processes(new, w.owner)
            return True
        except LimitExceeded:
            return False

    def _counts(self, pid: int, owner: int) -> bool:
        p = self.procs.get(pid)
        return p is not None and p.owners[owner] > 0

    # -- watches and their fds ------------------------------------------------------------------

    def add(self, tree: CgroupTree, path: str, owner: int, events_fd: int = -1) -> Watch:
        w = Watch(tree, path, owner, events_fd)
        self.watches[w.key] = w
        self._per_uid[owner] += 1
        if events_fd >= 0:
            self.events[events_fd] = w
            self.epoll.register(events_fd, V2_EVENTS)
        return w

    def link(self, w: Watch, pid: int) -> bool:
        """Watch *pid* for *w* (one pidfd per process).  False if it has already exited;
        LimitExceeded when the daemon is out of fds."""
        if pid in w.members:
            return True
        p = self.procs.get(pid)
        if p is None:
            try:
                fd = os.pidfd_open(pid)
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE):
                    raise LimitExceeded(
                        "RemoveOnEmpty: cgmanager is out of file descriptors; try again later"
                    ) from None
                return False  # ESRCH: exited meanwhile
            p = self.procs[pid] = self.by_pidfd[fd] = Proc(pid, fd)
            self.epoll.register(fd, select.EPOLLIN)
        if p.owners[w.owner] == 0:
            self._procs_per_uid[w.owner] += 1
        p.owners[w.owner] += 1
        p.watches.add(w)
        w.members.add(pid)
        return True

    def unlink(self, w: Watch, pid: int) -> None:
        w.members.discard(pid)
        p = self.procs.get(pid)
        if p is None or w not in p.watches:
            return
        p.watches.discard(w)
        p.owners[w.owner] -= 1
        if p.owners[w.owner] <= 0:
            del p.owners[w.owner]
            self._procs_per_uid[w.owner] -= 1
        if not p.watches:
            self._drop(p)

    def exited(self, p: Proc) -> list[Watch]:
        """Process *p* exited: it leaves every watch that held it (and its pidfd is closed).
        → the watches that held it — only these are touched."""
        holders = list(p.watches)
        for w in holders:
            self.unlink(w, p.pid)
        if self.procs.get(p.pid) is p:
            self._drop(p)
        return holders

    def _drop(self, p: Proc) -> None:
        self.procs.pop(p.pid, None)
        self.by_pidfd.pop(p.pidfd, None)
        try:
            self.epoll.unregister(p.pidfd)
        except OSError:
            pass
        os.close(p.pidfd)

    def forget(self, w: Watch) -> None:
        for pid in list(w.members):
            self.unlink(w, pid)
        if w.events_fd >= 0:
            self.events.pop(w.events_fd, None)
            try:
                self.epoll.unregister(w.events_fd)
            except OSError:
                pass
            os.close(w.events_fd)
            w.events_fd = -1
        if self.watches.get(w.key) is w:
            del self.watches[w.key]
            self._per_uid[w.owner] -= 1
            if self._per_uid[w.owner] <= 0:
                del self._per_uid[w.owner]

    def forget_below(self, w: Watch) -> None:
        """*w*'s cgroup is gone with its subtree: so are the watched ones below it."""
        hkey = w.tree.hierarchy.key
        for other in [
            o for o in self.watches.values() if o.key[0] == hkey and names.is_under(o.path, w.path)
        ]:
            self.forget(other)

    def close(self) -> None:
        for w in list(self.watches.values()):
            self.forget(w)
        for p in list(self.procs.values()):
            self._drop(p)
