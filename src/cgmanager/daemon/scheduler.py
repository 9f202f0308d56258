"""Where each request runs: on the event loop, or on a worker thread — and in what order.

Most requests cost a fixed handful of system calls and run at once on the event loop, where a
thread hand-off would cost more than the work.  A request whose work grows with a subtree
(recursive Remove, Prune, GetTasksRecursive, Chown, Kill or Freeze of a cgroup with children;
ListChildren of a big directory; a big Setup) finds that out *before it changes anything* and
raises :class:`~cgmanager.operations.Escalate`; it then runs again on a worker
(:mod:`.workers`), so no request ever waits for another's kernel work.

Ordering guarantees (documented in docs/ARCHITECTURE.md):

* a connection's requests are answered in order (the connection reads its next request only
  after replying: see cgmanager.dbus.connection);
* requests on overlapping subtrees are serialised: a request on a worker *claims* the cgroups it
  acts on ``(hierarchy, path)`` — shared for reads, exclusive for changes, and for the whole
  subtree when it acts on every cgroup below (a recursive Remove, Prune, Kill, …) — from before
  it starts until it ends; another request whose claims overlap (the same cgroup, or one inside
  a subtree the other acts on) waits, in arrival order, and then runs as usual.  An inline request needs no claim: nothing
  else runs on the loop while it does.
* permission decisions are made on the state they act on: within a request, each cgroup is
  resolved once and checked and acted on through the same directory fd (Scope), and no
  overlapping request changes the subtree in between.

Claims are computed only while some worker request is active, so the common path pays nothing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from .. import names
from ..operations import Escalate
from .workers import WorkerPool

log = logging.getLogger(__name__)

#: (hierarchy key, absolute path, whether the whole subtree below is acted on)
Claim = tuple[str, str, bool]
T = TypeVar("T")


def _overlap(a: Claim, b: Claim) -> bool:
    """Two claims meet when they name the same cgroup, or one acts on a whole subtree that
    holds the other's cgroup.  (Reading /a does not meet removing /a/b: /a itself stays.)"""
    if a[0] != b[0]:
        return False
    if a[1] == b[1]:
        return True
    return (a[2] and names.is_under(b[1], a[1])) or (b[2] and names.is_under(a[1], b[1]))


class Job:
    """One request to schedule: *run(inline)* does the whole work (raising Escalate when
    *inline* and the work is not known small); *claims()* says what it acts on; *key* is its
    requestor (fairness)."""

    __slots__ = ("run", "claims_of", "exclusive", "key", "claims", "future")

    def __init__(
        self,
        run: Callable[[bool], Any],
        claims_of: Callable[[], list[Claim]],
        exclusive: bool,
        key: int,
    ) -> None:
        self.run = run
        self.claims_of = claims_of
        self.exclusive = exclusive
        self.key = key
        self.claims: list[Claim] = []
        self.future: asyncio.Future[Any] | None = None

    def conflicts(self, other: Job) -> bool:
        if not (self.exclusive or other.exclusive):
            return False  # two readers
        return any(_overlap(a, b) for a in self.claims for b in other.claims)


class Scheduler:
    """Runs jobs inline or on the pool, keeping the ordering guarantees above."""

    def __init__(self, pool: WorkerPool) -> None:
        self.pool = pool
        self._active: list[Job] = []  # holding claims: queued for or running on a worker
        self._waiting: list[Job] = []  # arrived while their claims overlapped, in order
        #: how many requests went to a worker (statistics, tests)
        self.escalated = 0

    def submit(self, job: Job) -> Any:
        """The job's result when it ran inline; otherwise a future of it.  A CgmError raised
        inline propagates at once."""
        if self._active or self._waiting:
            job.claims = job.claims_of()
            if self._blocked(job, self._waiting):
                return self._wait(job)
        try:
            return job.run(True)
        except Escalate:
            pass
        if not job.claims:
            job.claims = job.claims_of()
        return self._start(job)

    def _blocked(self, job: Job, before: list[Job]) -> bool:
        return any(job.conflicts(a) for a in self._active) or any(job.conflicts(w) for w in before)

    def _wait(self, job: Job) -> asyncio.Future[Any]:
        job.future = asyncio.get_running_loop().create_future()
        self._waiting.append(job)
        return job.future

    def _start(self, job: Job) -> asyncio.Future[Any]:
        """Give the job to the pool, holding its claims until it ends."""
        self.escalated += 1
        work = self.pool.submit(job.key, lambda: job.run(False))  # may raise LimitExceeded
        self._active.append(job)
        if job.future is None:
            job.future = asyncio.get_running_loop().create_future()
        work.add_done_callback(lambda f: self._ended(job, f))
        return job.future

    def _ended(self, job: Job, work: asyncio.Future[Any]) -> None:
        self._active.remove(job)
        assert job.future is not None
        if not job.future.done():
            if work.cancelled():
                job.future.cancel()
            elif work.exception() is not None:
                job.future.set_exception(work.exception())  # type: ignore[arg-type]
            else:
                job.future.set_result(work.result())
        self._release()

    def _release(self) -> None:
        """Start (in arrival order) the waiting jobs no longer blocked."""
        i = 0
        while i < len(self._waiting):
            job = self._waiting[i]
            job.claims = job.claims_of()  # afresh: the tree may have changed while it waited
            if self._blocked(job, self._waiting[:i]):
                i += 1
                continue
            del self._waiting[i]
            assert job.future is not None
            if job.future.done():  # the requester went away
                continue
            try:
                job.future.set_result(job.run(True))
                continue
            except Escalate:
                pass
            except BaseException as e:
                job.future.set_exception(e)
                continue
            try:
                self._start(job)
            except BaseException as e:
                job.future.set_exception(e)
            # (a started job blocks later waiters; re-scan from the same index)


class OnLoop:
    """Calls into loop-bound state (the reaper) from wherever an operation runs: directly on
    the loop's thread, else handed to the loop and awaited (a worker may wait for the loop;
    the loop never waits for a worker)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.get_ident()

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        if threading.get_ident() == self._thread:
            return fn(*args)
        done: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                done.set_result(fn(*args))
            except BaseException as e:
                done.set_exception(e)

        self._loop.call_soon_threadsafe(run)
        return done.result()
