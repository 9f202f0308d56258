"""Which event loop serves the connections: uvloop when it is installed, asyncio's own else.

Why: a request from a client that pauses between calls (every real client: LXC's libdbus,
dbus-send, scripts) finds the daemon asleep in ``epoll_wait``, so each one pays a trip through
the loop — asyncio's ``_run_once`` is Python (selector keys, a Handle, a context switch into
the callback), uvloop's is C.  Measured in docs/PERFORMANCE.md ("Cheaper wake-ups"); the
connection code uses only ``add_reader``/``add_writer``/``call_soon``/``call_later``, futures
and tasks, which both loops provide alike.

``CGMANAGER_EVENT_LOOP=asyncio`` forces asyncio's loop (for A/B measurements and as a way
out should uvloop misbehave somewhere); ``uvloop`` insists on uvloop.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

ENV = "CGMANAGER_EVENT_LOOP"


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """The factory of the loop to serve on (see the module's docstring)."""
    choice = os.environ.get(ENV, "")
    if choice == "asyncio":
        return asyncio.new_event_loop
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise
        return asyncio.new_event_loop
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on the loop :func:`loop_factory` chooses."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
