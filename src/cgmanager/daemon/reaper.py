"""Remove-on-empty without a release agent.

0.42 wrote its own program into each v1 hierarchy's ``release_agent`` — a host-global setting
(and the file CVE-2022-0492 abused).  This daemon writes no global file:

* **v2**: the cgroup's ``cgroup.events`` is watched for ``EPOLLPRI`` (the kernel raises it when
  ``populated`` changes); on ``populated 0`` the cgroup is removed.
* **v1**: v1 has no emptiness notification except the release agent, so each member process is
  watched through a pidfd (readable when the process exits); on each exit the cgroup is
  re-listed and new members are watched.  A slow periodic re-check catches processes that were
  *moved* out rather than exiting.

Watches live in the daemon's memory, as in 0.42: a restarted daemon forgets them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
from dataclasses import dataclass, field

from ..cgroupfs import CgroupTree
from ..errors import Busy, CgmError, LimitExceeded, NotFound

log = logging.getLogger(__name__)

DEFAULT_MAX_WATCHES = 10000
V1_RECHECK_SECONDS = 5.0


@dataclass(eq=False)
class Watch:
    tree: CgroupTree
    path: str
    fds: set[int] = field(default_factory=set)  # cgroup.events fd (v2) or member pidfds (v1)


class Reaper:
    """Watches cgroups and removes each once it is empty."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, max_watches: int = DEFAULT_MAX_WATCHES
    ) -> None:
        self._loop = loop
        self._epoll = select.epoll()
        self._by_fd: dict[int, Watch] = {}
        self._by_key: dict[tuple[str, str], Watch] = {}
        self._max = max_watches
        self._recheck: asyncio.TimerHandle | None = None
        loop.add_reader(self._epoll.fileno(), self._on_ready)

    def __len__(self) -> int:
        return len(self._by_key)

    def watch(self, tree: CgroupTree, path: str) -> None:
        key = (tree.hierarchy.key, path)
        if key in self._by_key:
            return
        if len(self._by_key) >= self._max:
            raise LimitExceeded(f"too many cgroups awaiting removal ({self._max})")
        w = Watch(tree, path)
        self._by_key[key] = w
        if tree.v2:
            fd = tree.open_key_fd(path, "cgroup.events")
            self._add_fd(w, fd, select.EPOLLPRI)
        self._check(w)

    def _add_fd(self, w: Watch, fd: int, events: int) -> None:
        w.fds.add(fd)
        self._by_fd[fd] = w
        self._epoll.register(fd, events)

    def _drop_fd(self, w: Watch, fd: int) -> None:
        w.fds.discard(fd)
        self._by_fd.pop(fd, None)
        try:
            self._epoll.unregister(fd)
        except OSError:
            pass
        os.close(fd)

    def _forget(self, w: Watch) -> None:
        for fd in list(w.fds):
            self._drop_fd(w, fd)
        self._by_key.pop((w.tree.hierarchy.key, w.path), None)

    def _on_ready(self) -> None:
        for fd, _events in self._epoll.poll(0):
            w = self._by_fd.get(fd)
            if w is None:
                continue
            if not w.tree.v2:
                self._drop_fd(w, fd)  # that member exited
            self._check(w)

    def _check(self, w: Watch) -> None:
        """Remove the cgroup if empty; otherwise make sure a wake-up will come."""
        try:
            if w.tree.v2:
                populated = w.tree.populated(w.path)  # reading also re-arms EPOLLPRI
            else:
                members = w.tree.procs_recursive(w.path)
                populated = bool(members)
                if populated:
                    self._watch_members(w, members)
            if not populated:
                w.tree.remove(w.path, recursive=True)
                log.info("removed empty cgroup %s:%s", w.tree.hierarchy.key, w.path)
                self._forget(w)
        except NotFound:
            self._forget(w)  # removed by someone else
        except Busy:
            self._schedule_recheck()  # a process arrived between check and rmdir
        except CgmError as e:
            log.warning("remove-on-empty %s:%s: %s", w.tree.hierarchy.key, w.path, e)
            self._forget(w)

    def _watch_members(self, w: Watch, pids: list[int]) -> None:
        for fd in list(w.fds):
            self._drop_fd(w, fd)
        for pid in pids:
            try:
                fd = os.pidfd_open(pid)
            except OSError:
                continue  # exited meanwhile; the recheck covers it
            self._add_fd(w, fd, select.EPOLLIN)
        self._schedule_recheck()

    def _schedule_recheck(self) -> None:
        if self._recheck is None:
            self._recheck = self._loop.call_later(V1_RECHECK_SECONDS, self._recheck_all)

    def _recheck_all(self) -> None:
        self._recheck = None
        for w in list(self._by_key.values()):
            if not w.tree.v2 or not w.fds:
                self._check(w)
        if any(not w.tree.v2 for w in self._by_key.values()):
            self._schedule_recheck()

    def close(self) -> None:
        for w in list(self._by_key.values()):
            self._forget(w)
        self._loop.remove_reader(self._epoll.fileno())
        self._epoll.close()
        if self._recheck is not None:
            self._recheck.cancel()
