"""T0: where requests run and in what order (daemon/scheduler.py, daemon/workers.py), with
jobs that stand in for operations: inline unless they escalate, per-uid fairness on the
workers, bounded queues, and claims that serialise overlapping subtrees."""

from __future__ import annotations

import asyncio
import threading

import pytest

from cgmanager.daemon.scheduler import Job, OnLoop, Scheduler, _overlap
from cgmanager.daemon.workers import WorkerPool
from cgmanager.errors import LimitExceeded, NotFound
from cgmanager.operations import Escalate

pytestmark = pytest.mark.t0


@pytest.mark.parametrize(
    "a, b, meet",
    [
        (("pids", "/a", False), ("pids", "/a", False), True),  # the same cgroup
        (("pids", "/a", True), ("pids", "/a/b", False), True),  # inside a subtree acted on
        (("pids", "/a/b", False), ("pids", "/a", True), True),
        (("pids", "/a", False), ("pids", "/a/b", True), False),  # reading /a, removing /a/b
        (("pids", "/a", True), ("pids", "/a2", True), False),  # '/' boundary
        (("pids", "/a", True), ("freezer", "/a", True), False),  # another hierarchy
        (("pids", "/", True), ("pids", "/x/y", False), True),
    ],
)
def test_claims_overlap(a, b, meet):
    assert _overlap(a, b) is meet


class Work:
    """A job whose worker part blocks until released (so tests control when it ends)."""

    def __init__(self, name, log, claims=(), exclusive=True, key=1000, escalate=True):
        self.name, self.log, self.escalate = name, log, escalate
        self.release = threading.Event()
        self.job = Job(self.run, lambda: list(claims), exclusive, key)

    def run(self, inline: bool):
        if inline and self.escalate:
            raise Escalate
        self.log.append(f"start {self.name} {'inline' if inline else 'worker'}")
        if not inline:
            assert self.release.wait(10)
        self.log.append(f"end {self.name}")
        return self.name


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


def test_small_jobs_run_inline_and_big_ones_on_a_worker():
    async def main():
        log = []
        s = Scheduler(WorkerPool(asyncio.get_running_loop(), 2))
        small = Work("small", log, escalate=False)
        assert s.submit(small.job) == "small"  # done at once, no future
        big = Work("big", log)
        fut = s.submit(big.job)
        assert isinstance(fut, asyncio.Future)
        big.release.set()
        assert await fut == "big"
        s.pool.close()
        return log, s.escalated

    log, escalated = run(main())
    assert log == ["start small inline", "end small", "start big worker", "end big"]
    assert escalated == 1


def test_an_inline_error_is_raised_at_once():
    async def main():
        s = Scheduler(WorkerPool(asyncio.get_running_loop(), 1))

        def fail(inline):
            raise NotFound("x")

        with pytest.raises(NotFound):
            s.submit(Job(fail, list, False, 0))
        s.pool.close()

    run(main())


def test_overlapping_requests_wait_in_order_and_disjoint_ones_do_not():
    async def main():
        log = []
        s = Scheduler(WorkerPool(asyncio.get_running_loop(), 4))
        big = Work("remove /a", log, claims=[("pids", "/a", True)])
        f_big = s.submit(big.job)
        inside = Work("create /a/b", log, claims=[("pids", "/a/b", False)], escalate=False)
        f_inside = s.submit(inside.job)  # waits: inside the subtree being removed
        assert isinstance(f_inside, asyncio.Future)
        beside = Work("create /c", log, claims=[("pids", "/c", False)], escalate=False)
        assert s.submit(beside.job) == "create /c"  # not waiting
        reader = Work(
            "read /a", log, claims=[("pids", "/a/b", False)], exclusive=False, escalate=False
        )
        f_reader = s.submit(reader.job)  # after the earlier waiter: arrival order
        await asyncio.sleep(0.05)
        assert not f_inside.done() and not f_reader.done()
        big.release.set()
        assert await f_big == "remove /a"
        assert await f_inside == "create /a/b"
        assert await f_reader == "read /a"
        s.pool.close()
        return log

    log = run(main())
    assert log.index("end remove /a") < log.index("start create /a/b inline")
    assert log.index("start create /c inline") < log.index("end remove /a")
    assert log.index("end create /a/b") < log.index("start read /a inline")


def test_two_readers_share():
    async def main():
        log = []
        s = Scheduler(WorkerPool(asyncio.get_running_loop(), 4))
        r1 = Work("r1", log, claims=[("pids", "/a", True)], exclusive=False)
        r2 = Work("r2", log, claims=[("pids", "/a", True)], exclusive=False)
        f1, f2 = s.submit(r1.job), s.submit(r2.job)
        await asyncio.sleep(0.05)
        assert log == ["start r1 worker", "start r2 worker"]  # both running at once
        r1.release.set(), r2.release.set()
        await asyncio.gather(f1, f2)
        s.pool.close()

    run(main())


def test_one_uid_never_occupies_every_worker():
    async def main():
        log = []
        s = Scheduler(WorkerPool(asyncio.get_running_loop(), 2))  # per uid: 1
        hog = [Work(f"hog{i}", log, claims=[("pids", f"/h{i}", True)], key=1000) for i in range(4)]
        futs = [s.submit(w.job) for w in hog]
        other = Work("other", log, claims=[("pids", "/o", True)], key=1001)
        f_other = s.submit(other.job)
        await asyncio.sleep(0.05)
        assert log == ["start hog0 worker", "start other worker"]
        other.release.set()
        await f_other
        for w in hog:
            w.release.set()
        await asyncio.gather(*futs)
        s.pool.close()
        return log

    log = run(main())
    assert [e for e in log if e.startswith("start")] == [
        "start hog0 worker",
        "start other worker",
        "start hog1 worker",
        "start hog2 worker",
        "start hog3 worker",
    ]


def test_queues_are_bounded_per_uid():
    async def main():
        pool = WorkerPool(asyncio.get_running_loop(), 1, queue_per_key=2, queue_total=3)
        gate = threading.Event()
        running = pool.submit(1, gate.wait)  # takes the only worker
        queued = [pool.submit(1, lambda: 1), pool.submit(1, lambda: 2)]
        with pytest.raises(LimitExceeded):
            pool.submit(1, lambda: 3)  # this uid's queue is full
        queued.append(pool.submit(2, lambda: 4))  # another uid still gets in
        with pytest.raises(LimitExceeded):
            pool.submit(3, lambda: 5)  # the total is full
        gate.set()
        assert await asyncio.gather(running, *queued) == [True, 1, 2, 4]
        pool.close()

    run(main())


def test_a_worker_reaches_loop_state_through_the_loop():
    async def main():
        loop = asyncio.get_running_loop()
        on_loop = OnLoop(loop)
        seen = []

        def loop_only(x):
            seen.append(threading.get_ident())
            if x < 0:
                raise NotFound("negative")
            return x * 2

        assert on_loop.call(loop_only, 2) == 4  # on the loop: directly
        pool = WorkerPool(loop, 1)
        assert await pool.submit(0, lambda: on_loop.call(loop_only, 3)) == 6
        with pytest.raises(NotFound):
            await pool.submit(0, lambda: on_loop.call(loop_only, -1))
        pool.close()
        return seen

    seen = run(main())
    assert len(set(seen)) == 1  # always the loop's thread
