"""The reaper against the real kernel (issue 12, findings 2 and 3): one pidfd per process
however many watches hold it, caps per requestor and in all, work per exit proportional to
what changed, and kernel work run through the injectable hook (inline or on a thread)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import os
import signal
import time

import pytest

from cgmanager.daemon import reaper as reaper_mod
from cgmanager.daemon.reaper import Reaper
from cgmanager.errors import LimitExceeded

from .helpers import hpath, snapshot, tree

pytestmark = pytest.mark.t2

LEVELS = 15


def chain(base: str, levels: int = LEVELS) -> list[str]:
    """base/l1/l2/…: the absolute directories, top first."""
    dirs, cur = [], base
    for i in range(1, levels + 1):
        cur = os.path.join(cur, f"l{i}")
        os.mkdir(cur)
        dirs.append(cur)
    return dirs


def sleepers(procs, where: str, n: int) -> list:
    return [procs.spawn(["sleep", "1000"], cgroup=where) for _ in range(n)]


class Counting:
    """A kernel hook that counts the kernel jobs it is given (inline, or on a thread)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, threaded: bool = False):
        self.loop = loop
        self.jobs = 0
        self.pool = concurrent.futures.ThreadPoolExecutor(2) if threaded else None

    def __call__(self, work, then):
        self.jobs += 1
        if self.pool is None:
            reaper_mod.inline(work, then)
            return

        def run():
            try:
                r, e = work(), None
            except Exception as exc:  # noqa: BLE001
                r, e = None, exc
            self.loop.call_soon_threadsafe(then, r, e)

        self.pool.submit(run)


def run_until(loop: asyncio.AbstractEventLoop, pred, timeout: float = 20.0) -> bool:
    """Turn the loop until *pred* holds (a hang guard, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        loop.run_until_complete(asyncio.sleep(0.01))
    return pred()


def open_fds() -> int:
    """This process's open fds, once garbage that holds some (an earlier test's loop or
    sockets) has been collected: only what the reaper holds may make a difference."""
    gc.collect()
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("threaded", [False, True], ids=["inline", "worker-thread"])
def test_nested_watches_share_one_pidfd_per_process_and_work_is_linear(cgdir, procs, threaded):
    base = cgdir("pids")
    t = tree("pids")
    dirs = chain(base)
    kids = sleepers(procs, dirs[-1], 40)
    loop = asyncio.new_event_loop()
    hook = Counting(loop, threaded)
    r = Reaper(loop, kernel=hook)
    try:
        before = open_fds()
        for d in dirs:
            r.watch(t, hpath(t, d), 1000)
        assert r.stats() == {"watches": LEVELS, "pidfds": 40, "event_fds": 0, "polled": 0}
        assert open_fds() - before == 40  # 15 levels x 40 processes: 40 fds, not 600
        jobs = hook.jobs
        for k in kids[:-1]:  # all but one exit: no watch is listed again
            k.kill()
            run_until(loop, lambda k=k: r.stats()["pidfds"] <= 40 - kids.index(k) - 1)
        run_until(loop, lambda: r.stats()["pidfds"] == 1)
        assert hook.jobs == jobs, "an exit that emptied no watch caused kernel work"
        assert all(os.path.isdir(d) for d in dirs)
        kids[-1].kill()
        assert run_until(loop, lambda: len(r) == 0), r.stats()
        assert not os.path.exists(dirs[0])  # the whole chain removed
        assert hook.jobs - jobs <= LEVELS  # the last exit: at most one check per watch
        assert r.stats()["pidfds"] == 0 and open_fds() == before
    finally:
        r.close()
        loop.close()
        t.close()


def test_caps_refuse_the_one_who_asks_and_change_nothing(cgdir, procs):
    base = cgdir("pids")
    t = tree("pids")
    a, b, c, d, e, f = (os.path.join(base, n) for n in ("a", "b", "b/c", "d", "e", "f"))
    for x in (a, b, c, d, e, f):
        os.mkdir(x)
    sleepers(procs, a, 12)
    sleepers(procs, f, 11)
    sleepers(procs, b, 2)
    sleepers(procs, c, 1)
    sleepers(procs, d, 1)
    sleepers(procs, e, 1)
    loop = asyncio.new_event_loop()
    r = Reaper(loop, 3, max_watches_per_uid=2, max_processes=13, max_processes_per_uid=11)
    try:
        state = snapshot(base)
        with pytest.raises(LimitExceeded, match="12 processes for uid 1000"):
            r.watch(t, hpath(t, a), 1000)
        assert r.stats()["pidfds"] == 0 and len(r) == 0
        r.watch(t, hpath(t, b), 1000)  # b and b/c: 3 processes
        r.watch(t, hpath(t, b), 1000)  # the same cgroup again: no second watch
        r.watch(t, hpath(t, c), 1000)  # c's process is b's too: no new pidfd
        assert r.stats() == {"watches": 2, "pidfds": 3, "event_fds": 0, "polled": 0}
        with pytest.raises(LimitExceeded, match="for uid 1000"):
            r.watch(t, hpath(t, d), 1000)  # a third cgroup for uid 1000 (2 at most)
        with pytest.raises(LimitExceeded, match="than this cgmanager does"):
            r.watch(t, hpath(t, f), 2000)  # within uid 2000's quota, but 3 + 11 > 13 in all
        r.watch(t, hpath(t, d), 2000)
        with pytest.raises(LimitExceeded, match="in all"):
            r.watch(t, hpath(t, e), 3000)  # a fourth cgroup (3 in all)
        assert r.stats() == {"watches": 3, "pidfds": 4, "event_fds": 0, "polled": 0}
        assert snapshot(base) == state  # watching changes nothing on the kernel side
    finally:
        r.close()
        loop.close()
        t.close()


def test_processes_beyond_the_caps_after_the_watch_are_polled(cgdir, procs, monkeypatch):
    """Forks into a watched cgroup are not refused (nobody asked): the watch is polled."""
    monkeypatch.setattr(reaper_mod, "V1_RECHECK_SECONDS", 0.05)
    base = cgdir("pids")
    t = tree("pids")
    w = os.path.join(base, "w")
    os.mkdir(w)
    first = sleepers(procs, w, 2)
    loop = asyncio.new_event_loop()
    r = Reaper(loop, max_processes_per_uid=3)
    try:
        r.watch(t, hpath(t, w), 1000)
        more = sleepers(procs, w, 4)
        for k in first:
            k.kill()  # the known ones exit: re-listed, 4 found, more than 3 allowed
        assert run_until(loop, lambda: r.stats()["polled"] == 1), r.stats()
        assert r.stats()["pidfds"] == 0
        for k in more:
            k.kill()
        assert run_until(loop, lambda: not os.path.exists(w)), r.stats()
        assert len(r) == 0
    finally:
        r.close()
        loop.close()
        t.close()


def test_a_process_moved_out_is_noticed_by_the_slow_pass(cgdir, procs, monkeypatch):
    monkeypatch.setattr(reaper_mod, "V1_RECHECK_SECONDS", 0.05)
    base = cgdir("pids")
    t = tree("pids")
    w = os.path.join(base, "w")
    os.mkdir(w)
    [k] = sleepers(procs, w, 1)
    loop = asyncio.new_event_loop()
    r = Reaper(loop)
    try:
        r.watch(t, hpath(t, w), 0)
        with open(os.path.join(base, "cgroup.procs"), "w") as f:
            f.write(str(k.pid))  # alive, but no longer in w
        assert run_until(loop, lambda: not os.path.exists(w))
        assert r.stats() == {"watches": 0, "pidfds": 0, "event_fds": 0, "polled": 0}
        assert k.alive()
    finally:
        r.close()
        loop.close()
        t.close()


@pytest.mark.parametrize("threaded", [False, True], ids=["inline", "worker-thread"])
def test_v2_watches_one_events_fd_each(cgdir, procs, threaded):
    base = cgdir("unified")
    t = tree("unified")
    dirs = chain(base, 5)
    [k] = sleepers(procs, dirs[-1], 1)
    loop = asyncio.new_event_loop()
    r = Reaper(loop, kernel=Counting(loop, threaded))
    try:
        for d in dirs:
            r.watch(t, hpath(t, d), 0)
        assert r.stats() == {"watches": 5, "pidfds": 0, "event_fds": 5, "polled": 0}
        empty = os.path.join(base, "empty")
        os.mkdir(empty)
        r.watch(t, hpath(t, empty), 0)  # already empty: removed in the request itself
        assert not os.path.exists(empty) and len(r) == 5
        signal.pidfd_send_signal(k.pidfd, signal.SIGKILL)
        assert run_until(loop, lambda: not os.path.exists(dirs[0])), r.stats()
        assert run_until(loop, lambda: len(r) == 0), r.stats()
    finally:
        r.close()
        loop.close()
        t.close()


def test_a_storm_of_exits_is_taken_a_turn_at_a_time(cgdir, procs):
    """Exits that are all ready at once are handled at most READY_PER_TURN per turn of the
    loop, so a callback queued meanwhile (a client's request) runs between the turns."""
    n = reaper_mod.READY_PER_TURN * 3
    base = cgdir("unified")
    t = tree("unified")
    dirs = [os.path.join(base, f"c{i}") for i in range(n)]
    for d in dirs:
        os.mkdir(d)
    kids = [procs.spawn(["sleep", "1000"], cgroup=d) for d in dirs]
    loop = asyncio.new_event_loop()
    hook = Counting(loop)
    seen_by_marker: list[int] = []

    def counted(work, then):
        if hook.jobs == 0:  # the storm's first job: queue another callback behind it
            loop.call_soon(lambda: seen_by_marker.append(hook.jobs))
        hook(work, then)

    r = Reaper(loop, kernel=counted)
    try:
        for d in dirs:
            r.watch(t, hpath(t, d), 0)
        for k in kids:
            k.signal(signal.SIGKILL)
        for k in kids:
            assert k.wait(10) is not None
        for d in dirs:  # every exit is pending before the loop turns
            with open(os.path.join(d, "cgroup.events")) as f:
                assert "populated 0\n" in f.read()
        assert run_until(loop, lambda: len(r) == 0), r.stats()
        assert not any(os.path.exists(d) for d in dirs)
        assert hook.jobs == n
        assert seen_by_marker and 0 < seen_by_marker[0] <= reaper_mod.READY_PER_TURN
    finally:
        r.close()
        loop.close()
        t.close()
