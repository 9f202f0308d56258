"""Worker threads for kernel work whose size grows with a subtree.

Why threads: the work is system calls on cgroupfs (openat2, getdents, rmdir, read, write), each
of which releases the GIL, so the event loop keeps serving other clients while a worker removes
10,000 cgroups.  Why not processes: the work needs the daemon's held fds (hierarchy roots,
pidfds) and costs far less than a process hand-off.

Fairness: jobs wait in one FIFO per *key* (the requestor's uid), and an idle worker takes the
oldest job of the next key in round-robin order whose running jobs are below ``per_key``; so
one uid can occupy at most ``per_key`` of the ``workers`` threads, however many connections it
opens.  Both the queue per key and the total are bounded: past them the requester gets
LimitExceeded at once.  All bookkeeping happens on the event loop's thread; a worker only runs
its job and hands the outcome back with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from ..errors import LimitExceeded

log = logging.getLogger(__name__)

DEFAULT_WORKERS = 4
#: queued (not yet running) jobs per key, and in all
DEFAULT_QUEUE_PER_KEY = 64
DEFAULT_QUEUE_TOTAL = 1024


class _Job:
    __slots__ = ("key", "fn", "future")

    def __init__(self, key: int, fn: Callable[[], Any], future: asyncio.Future[Any]) -> None:
        self.key = key
        self.fn = fn
        self.future = future


class WorkerPool:
    """A fixed set of threads taking jobs in per-key round-robin order (see the module)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        workers: int = DEFAULT_WORKERS,
        *,
        per_key: int | None = None,
        queue_per_key: int = DEFAULT_QUEUE_PER_KEY,
        queue_total: int = DEFAULT_QUEUE_TOTAL,
    ) -> None:
        if workers < 1:
            raise ValueError("at least one worker")
        self._loop = loop
        self._loop_thread = threading.get_ident()  # (made on the loop's thread)
        self.workers = workers
        #: most jobs of one key running at once: never every worker when there are two or more
        self.per_key = per_key or max(1, workers // 2)
        self._queue_per_key = queue_per_key
        self._queue_total = queue_total
        self._waiting: OrderedDict[int, deque[_Job]] = OrderedDict()  # key -> FIFO, in RR order
        self._queued = 0
        self._running: dict[int, int] = {}
        self._idle = workers
        self._inbox: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"cgmanager-worker-{i}", daemon=True)
            for i in range(workers)
        ]
        for t in self._threads:
            t.start()

    @property
    def busy(self) -> int:
        return self.workers - self._idle

    @property
    def queued(self) -> int:
        return self._queued

    def submit(
        self, key: int, fn: Callable[[], Any], *, bounded: bool = True
    ) -> asyncio.Future[Any]:
        """Run *fn* on a worker; its result or exception in the returned future.  Loop thread
        only.  *bounded* false: the daemon's own work, bounded by its own caps (the reaper's
        watches), which must not be refused; it still takes its turn with the clients'."""
        fifo = self._waiting.get(key)
        if bounded and (
            self._queued >= self._queue_total
            or (fifo is not None and len(fifo) >= self._queue_per_key)
        ):
            raise LimitExceeded(
                "too many long requests waiting; retry when the earlier ones have finished"
            )
        job = _Job(key, fn, self._loop.create_future())
        if fifo is None:
            fifo = self._waiting[key] = deque()
        fifo.append(job)
        self._queued += 1
        self._pump()
        return job.future

    def _pump(self) -> None:
        """Hand waiting jobs to idle workers, one key at a time in round-robin order."""
        while self._idle and self._waiting:
            for key in list(self._waiting):
                if self._running.get(key, 0) < self.per_key:
                    break
            else:
                return  # every waiting key is at its share: wait for one of its jobs
            fifo = self._waiting.pop(key)
            job = fifo.popleft()
            if fifo:
                self._waiting[key] = fifo  # to the back of the round
            self._queued -= 1
            self._running[key] = self._running.get(key, 0) + 1
            self._idle -= 1
            self._inbox.put(job)

    def _work(self) -> None:
        while True:
            job = self._inbox.get()
            if job is None:
                return
            try:
                result, error = job.fn(), None
            except BaseException as e:  # handed to the loop, which re-raises in the awaiter
                result, error = None, e
            try:
                self._loop.call_soon_threadsafe(self._finished, job, result, error)
            except RuntimeError:  # the loop is closed: the daemon is stopping
                return

    def _finished(self, job: _Job, result: Any, error: BaseException | None) -> None:
        left = self._running[job.key] - 1
        if left:
            self._running[job.key] = left
        else:
            del self._running[job.key]
        self._idle += 1
        if not job.future.done():
            if error is not None:
                job.future.set_exception(error)
            else:
                job.future.set_result(result)
        self._pump()

    def close(self) -> None:
        """Cancel what waits; running jobs finish (a system call cannot be interrupted), their
        threads then exit."""
        for fifo in self._waiting.values():
            for job in fifo:
                job.future.cancel()
        self._waiting.clear()
        self._queued = 0
        for _ in self._threads:
            self._inbox.put(None)

    def join(self, timeout: float | None = None) -> None:
        for t in self._threads:
            t.join(timeout)


def on_workers(
    pool: WorkerPool, key: int
) -> Callable[[Callable[[], Any], Callable[[Any, BaseException | None], None]], None]:
    """A hook for loop-bound components with kernel work (the reaper): ``hook(work, then)``
    runs *work* on a worker under *key*'s share (never refused: the component bounds its own
    work) and calls ``then(result, error)`` back on the loop's thread."""

    def hook(work: Callable[[], Any], then: Callable[[Any, BaseException | None], None]) -> None:
        if threading.get_ident() != pool._loop_thread:  # asked from a worker: via the loop
            pool._loop.call_soon_threadsafe(hook, work, then)
            return
        done = pool.submit(key, work, bounded=False)

        def finished(f: asyncio.Future[Any]) -> None:
            if f.cancelled():
                return  # the daemon is stopping
            error = f.exception()
            then(None if error is not None else f.result(), error)

        done.add_done_callback(finished)

    return hook
