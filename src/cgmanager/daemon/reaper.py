"""Remove-on-empty without a release agent — bounded, and linear in what changes.

0.42 wrote its own program into each v1 hierarchy's ``release_agent`` — a host-global setting
(and the file CVE-2022-0492 abused).  This daemon writes no global file:

* **v2**: the cgroup's ``cgroup.events`` is watched for ``EPOLLPRI`` (the kernel raises it when
  ``populated`` changes); on ``populated 0`` the cgroup is removed.
* **v1**: v1 has no emptiness notification except the release agent, so the processes in a
  watched subtree are watched through pidfds (readable when the process exits).

What a client can make the daemon hold is bounded (issue 12): **one pidfd per process**
however many watches include it (a process deep in a 15-level chain of watched cgroups costs
one fd, not 15); watched cgroups and watched processes are capped per requestor uid and in
all, and the one who asks past a cap gets ``LimitExceeded``.  Work is proportional to what
changed: an exit touches only the watches that held that process, and a subtree is listed
again only when the last process known in it is gone (a fork may have added others) — never
every member on every exit.  Processes that arrive later beyond a cap are not given pidfds:
that watch is then *polled* (listed every ``V1_RECHECK_SECONDS``), and so is every v1 watch,
slowly, to notice processes *moved* out rather than exiting.

Kernel work — listing a subtree's processes, reading ``cgroup.events``, removing — sits in
plain synchronous functions (:func:`settle`, :func:`members`), run through an injectable hook
(:data:`KernelHook`, default :func:`inline`) so that it can run off the event loop; only the
epoll and pidfd bookkeeping happens on the loop.  The bookkeeping is locked, so ``watch()`` may
be called from a worker thread.

Watches live in the daemon's memory, as in 0.42: a restarted daemon forgets them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
import threading
from collections.abc import Callable, Iterable
from typing import Any

from ..cgroupfs import CgroupTree
from ..errors import Busy, CgmError, LimitExceeded, NotFound
from .watches import V2_EVENTS, Caps, Holdings, Watch

log = logging.getLogger(__name__)

#: cgroups awaiting removal (RemoveOnEmpty, Prune), in all and per requestor uid
DEFAULT_MAX_WATCHES = 10000
DEFAULT_MAX_WATCHES_PER_UID = 1000
#: processes watched through a pidfd (v1), in all and per requestor uid
DEFAULT_MAX_PROCESSES = 8192
DEFAULT_MAX_PROCESSES_PER_UID = 2048
V1_RECHECK_SECONDS = 5.0
#: Events taken per turn of the loop.  The loop watches the epoll fd level-triggered, so what
#: is left waits for the next turn, after every other ready callback: a storm of exits (1,000
#: cgroups emptied at once) must not hold a client's request for the whole storm's bookkeeping.
READY_PER_TURN = 64

#: ``hook(work, then)``: run *work* (kernel work, synchronous) somewhere, then call
#: ``then(result, error)`` **on the event loop's thread**
KernelHook = Callable[[Callable[[], Any], Callable[[Any, BaseException | None], None]], None]


def inline(work: Callable[[], Any], then: Callable[[Any, BaseException | None], None]) -> None:
    """The default hook: the kernel work runs right here, on the loop."""
    try:
        result = work()
    except Exception as e:  # noqa: BLE001 - handed to then(), which decides
        then(None, e)
        return
    then(result, None)


# -- kernel work: plain functions, no reaper state ----------------------------------------------

REMOVED, POPULATED, GONE = "removed", "populated", "gone"


def members(tree: CgroupTree, path: str, memo: dict[str, list[int]] | None = None) -> list[int]:
    """Sorted, unique processes of the subtree (v1).  *memo* shares the reads of one pass
    over many watches whose subtrees overlap."""
    if memo is None:
        return tree.procs_recursive(path)
    found: set[int] = set()
    for p in tree.walk(path):
        got = memo.get(p)
        if got is None:
            try:
                got = memo[p] = tree.procs(p)
            except NotFound:
                if p == path:
                    raise
                continue
        found.update(got)
    return sorted(found)


def settle(tree: CgroupTree, path: str) -> str | list[int]:
    """Remove the cgroup if it is empty.  → ``REMOVED``; ``POPULATED`` (v2); the processes
    found (v1, a list); ``GONE`` when someone else removed it.  A process that arrives
    between the check and the removal makes the kernel refuse (``Busy``).  A descendant
    removed meanwhile (by the check of a watch below, on another thread) is looked at again:
    only the cgroup itself gone is ``GONE``."""
    for _ in range(3):
        try:
            if tree.v2:
                if tree.populated(path):  # reading cgroup.events also re-arms EPOLLPRI
                    return POPULATED
            else:
                found = members(tree, path)
                if found:
                    return found
            tree.remove(path, recursive=True)
            return REMOVED
        except NotFound:
            if not tree.exists(path):
                return GONE
    raise Busy(f"{tree.hierarchy.key}:{path}: its subtree kept changing while being removed")


class Reaper:
    """Watches cgroups and removes each once it is empty."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        max_watches: int = DEFAULT_MAX_WATCHES,
        *,
        max_watches_per_uid: int = DEFAULT_MAX_WATCHES_PER_UID,
        max_processes: int = DEFAULT_MAX_PROCESSES,
        max_processes_per_uid: int = DEFAULT_MAX_PROCESSES_PER_UID,
        kernel: KernelHook = inline,
    ) -> None:
        self._loop = loop
        self._kernel = kernel
        self._lock = threading.RLock()
        self._epoll = select.epoll()
        caps = Caps(max_watches, max_watches_per_uid, max_processes, max_processes_per_uid)
        self._h = Holdings(self._epoll, caps)
        self._recheck: asyncio.TimerHandle | None = None
        self._loop_thread = threading.get_ident()  # made on the loop's thread
        loop.add_reader(self._epoll.fileno(), self._on_ready)

    def __len__(self) -> int:
        return len(self._h.watches)

    def stats(self) -> dict[str, int]:
        """What the reaper holds: watches, pidfds, v2 event fds, polled watches."""
        with self._lock:
            return self._h.stats()

    # -- watching (a request; may run on a worker thread) ---------------------------------------

    def watch(self, tree: CgroupTree, path: str, owner: int = 0) -> None:
        """Remove *path* once it is empty; *owner* is the requestor's uid.  Raises
        ``LimitExceeded`` (changing nothing) when the owner's or the daemon's caps would be
        passed; an empty cgroup is removed right away."""
        with self._lock:
            if (tree.hierarchy.key, path) in self._h.watches:
                return
            self._h.room_for_watch(owner)
        if tree.v2:
            self._watch_v2(tree, path, owner)
        else:
            self._watch_v1(tree, path, owner)

    def _watch_v2(self, tree: CgroupTree, path: str, owner: int) -> None:
        fd = tree.open_key_fd(path, "cgroup.events")  # EMFILE: LimitExceeded (errors.py)
        with self._lock:
            try:
                if (tree.hierarchy.key, path) in self._h.watches:
                    os.close(fd)
                    return
                self._h.room_for_watch(owner)
            except LimitExceeded:
                os.close(fd)
                raise
            w = self._h.add(tree, path, owner, fd)
        try:
            outcome: str | list[int] = settle(tree, path)
        except Busy:
            outcome = POPULATED
        with self._lock:
            if outcome == REMOVED:
                log.info("removed empty cgroup %s:%s", tree.hierarchy.key, path)
            if outcome in (REMOVED, GONE):
                self._h.forget(w)

    def _watch_v1(self, tree: CgroupTree, path: str, owner: int) -> None:
        found = members(tree, path)
        if not found:  # empty already: removed in the request itself, nothing kept
            try:
                outcome = settle(tree, path)
            except Busy:
                outcome = members(tree, path)
            if not isinstance(outcome, list):
                if outcome == REMOVED:
                    log.info("removed empty cgroup %s:%s", tree.hierarchy.key, path)
                return
            found = outcome  # processes arrived meanwhile: watch them
        with self._lock:
            if (tree.hierarchy.key, path) in self._h.watches:
                return
            self._h.room_for_watch(owner)
            self._h.room_for_processes(found, owner)
            w = self._h.add(tree, path, owner)
            try:
                for pid in found:
                    self._h.link(w, pid)
            except LimitExceeded:
                self._h.forget(w)
                raise
            if not w.members:  # every one exited between the listing and its pidfd
                self._check(w)
            self._schedule_recheck()

    # -- events (on the loop) --------------------------------------------------------------------

    def _on_ready(self) -> None:
        with self._lock:
            for fd, _events in self._epoll.poll(0, READY_PER_TURN):
                w = self._h.events.get(fd)
                if w is not None:
                    self._check(w)  # v2: populated changed
                    continue
                p = self._h.by_pidfd.get(fd)
                if p is None:
                    continue
                # one process exited: only the watches that held it are touched, and one is
                # listed again only once the last process known in it is gone
                for held in self._h.exited(p):
                    if not held.members and not held.polling:
                        self._check(held)

    def _check(self, w: Watch) -> None:
        """Settle *w* through the kernel hook (called with the lock held)."""
        if w.checking:
            w.again = True
            return
        w.checking = True
        tree, path = w.tree, w.path

        def then(result: Any, error: BaseException | None) -> None:
            with self._lock:
                self._settled(w, result, error)

        self._kernel(lambda: settle(tree, path), then)

    def _settled(self, w: Watch, result: Any, error: BaseException | None) -> None:
        w.checking = False
        if self._h.watches.get(w.key) is not w:
            return  # forgotten meanwhile
        if w.events_fd >= 0 and result not in (REMOVED, GONE):
            self._epoll.modify(w.events_fd, V2_EVENTS)  # cgroup.events was read: re-arm
        if isinstance(error, Busy):
            self._schedule_recheck()  # a process arrived between the check and the rmdir
        elif error is not None:
            log.warning("remove-on-empty %s:%s: %s", w.tree.hierarchy.key, w.path, error)
            self._h.forget(w)
            return
        elif result in (REMOVED, GONE):  # (GONE: removed by someone else)
            if result == REMOVED:
                log.info("removed empty cgroup %s:%s", w.tree.hierarchy.key, w.path)
            self._h.forget_below(w)
            return
        elif isinstance(result, list):
            self._adopt(w, result)
        if w.again:
            w.again = False
            self._check(w)

    def _adopt(self, w: Watch, found: Iterable[int], departed: bool = False) -> None:
        """v1: *found* are the subtree's processes now; watch those not yet watched (or
        poll *w*, past a cap).  With *departed*, also drop the ones no longer there."""
        found = set(found)
        if departed:
            for pid in w.members - found:
                self._h.unlink(w, pid)
        if w.polling:
            return
        new = [pid for pid in found if pid not in w.members]
        if not self._h.fits(w, new):
            self._poll(w)
            return
        try:
            for pid in new:
                self._h.link(w, pid)
        except LimitExceeded:  # out of fds: poll rather than fail
            self._poll(w)
            return
        if not w.members:
            w.again = True  # they exited meanwhile: settle again
        self._schedule_recheck()

    def _poll(self, w: Watch) -> None:
        log.warning(
            "remove-on-empty %s:%s: more processes than the caps allow; polling it every %g s",
            w.tree.hierarchy.key,
            w.path,
            V1_RECHECK_SECONDS,
        )
        for pid in list(w.members):
            self._h.unlink(w, pid)
        w.polling = True
        self._schedule_recheck()

    # -- the slow pass (v1): moved-out processes, polled watches -----------------------------------

    def _schedule_recheck(self) -> None:
        """(With the lock held, from any thread: timers belong to the loop's thread.)"""
        if threading.get_ident() != self._loop_thread:
            self._loop.call_soon_threadsafe(self._locked_schedule)
            return
        if self._recheck is None and any(not w.tree.v2 for w in self._h.watches.values()):
            self._recheck = self._loop.call_later(V1_RECHECK_SECONDS, self._recheck_all)

    def _locked_schedule(self) -> None:
        with self._lock:
            self._schedule_recheck()

    def _recheck_all(self) -> None:
        self._recheck = None
        with self._lock:
            jobs = [
                (w, w.tree, w.path)
                for w in self._h.watches.values()
                if not w.tree.v2 and not w.checking
            ]
        if not jobs:
            return

        def work() -> list[tuple[Watch, list[int] | None]]:
            memos: dict[str, dict[str, list[int]]] = {}
            out: list[tuple[Watch, list[int] | None]] = []
            for w, tree, path in jobs:
                memo = memos.setdefault(tree.hierarchy.key, {})
                try:
                    out.append((w, members(tree, path, memo)))
                except NotFound:
                    out.append((w, None))
                except CgmError as e:
                    log.warning("remove-on-empty %s:%s: %s", tree.hierarchy.key, path, e)
            return out

        def then(result: Any, error: BaseException | None) -> None:
            if error is not None:
                log.warning("remove-on-empty: recheck failed: %s", error)
            with self._lock:
                self._rechecked(result or [])

        self._kernel(work, then)

    def _rechecked(self, listed: list[tuple[Watch, list[int] | None]]) -> None:
        for watch, found in listed:
            if self._h.watches.get(watch.key) is not watch or watch.checking:
                continue
            if found is None:
                self._h.forget_below(watch)
            elif not found:
                self._check(watch)
            else:
                self._adopt(watch, found, departed=True)
        self._schedule_recheck()

    def close(self) -> None:
        with self._lock:
            self._h.close()
        self._loop.remove_reader(self._epoll.fileno())
        self._epoll.close()
        if self._recheck is not None:
            self._recheck.cancel()
