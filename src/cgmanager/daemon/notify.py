"""Waiting for the kernel's word on a cgroup file (``POLLPRI``), inside the event loop.

cgroupfs raises ``EPOLLPRI`` on ``cgroup.events`` (and other notifying files) when a value
changes; asyncio's ``add_reader`` watches only ``EPOLLIN``, so one epoll set of our own holds
those fds and its own fd is what the loop watches.
"""

from __future__ import annotations

import asyncio
import os
import select
from collections.abc import Callable


class PriorityWatch:
    """One epoll set for ``EPOLLPRI`` fds, read by the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._epoll = select.epoll()
        self._waiters: dict[int, Callable[[], None]] = {}
        loop.add_reader(self._epoll.fileno(), self._ready)

    def __len__(self) -> int:
        return len(self._waiters)

    async def until(self, fd: int, reached: Callable[[], bool], timeout: float) -> bool:
        """Wait until *reached()* (re-checked on each notification of *fd*), at most *timeout*
        seconds; whether it was reached.  *fd* stays the caller's."""
        changed = asyncio.Event()
        self._waiters[fd] = changed.set
        self._epoll.register(fd, select.EPOLLPRI)
        try:
            async with asyncio.timeout(timeout):
                while True:  # (registered, then cleared, then checked: no change is missed)
                    changed.clear()
                    if reached():
                        return True
                    await changed.wait()
        except TimeoutError:
            return reached()
        finally:
            del self._waiters[fd]
            self._epoll.unregister(fd)

    def _ready(self) -> None:
        for fd, _ in self._epoll.poll(0):
            wake = self._waiters.get(fd)
            if wake is not None:
                wake()

    def close(self) -> None:
        self._loop.remove_reader(self._epoll.fileno())
        self._epoll.close()


async def poll_until(reached: Callable[[], bool], timeout: float, every: float = 0.005) -> bool:
    """For files without notification (the v1 freezer's ``freezer.state``)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not reached():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(every)
    return True


def close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass
