"""The connection's contract with whatever answers a call: ``Dispatcher.handle`` may return a
reply, ``None`` or any awaitable — such as the asyncio future of work done in a worker thread —
and a client's replies still come in the order of its requests, on asyncio's loop and on
uvloop's (the daemon's, dbus/loop.py), while another connection is served meanwhile."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cgmanager.dbus import loop as event_loop
from cgmanager.dbus.codec import METHOD_RETURN, Message
from cgmanager.dbus.server import Server

from .conftest import call_msg, raw_authenticated, recv_msg, send_msg

pytestmark = pytest.mark.t0

N = 12


class ThreadDispatcher:
    """Answers ``Work(i)`` from a worker thread after (N - i) ms — earlier requests finish
    later — and ``Ping`` at once; records the threads that did the work."""

    def __init__(self) -> None:
        self.threads: set[str] = set()

    def handle(
        self, msg: Message, peer: Any, pidfd: Any, sender: str, state: Any = None
    ) -> Message | None | asyncio.Future[Message]:
        def reply(value: int) -> Message:
            return Message(
                METHOD_RETURN,
                reply_serial=msg.serial,
                signature="i",
                body=(value,),
                destination=sender,
            )

        if msg.member == "Ping":
            return reply(-1)
        (i,) = msg.body

        def work() -> Message:
            self.threads.add(threading.current_thread().name)
            time.sleep((N - i) / 1000)
            return reply(i)

        return asyncio.get_running_loop().run_in_executor(None, work)


def loops() -> list[tuple[str, Callable[[], asyncio.AbstractEventLoop]]]:
    out: list[tuple[str, Callable[[], asyncio.AbstractEventLoop]]] = [
        ("asyncio", asyncio.new_event_loop)
    ]
    try:
        import uvloop

        out.append(("uvloop", uvloop.new_event_loop))
    except ImportError:
        pass
    return out


@pytest.fixture(params=loops(), ids=lambda p: p[0])
def server(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[tuple[str, Any]]:
    loop = request.param[1]()
    srv = Server({})
    dispatcher = ThreadDispatcher()
    srv.dispatcher = dispatcher  # type: ignore[assignment]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    path = str(tmp_path / "sock")
    asyncio.run_coroutine_threadsafe(srv.start(path), loop).result(10)
    yield path, dispatcher
    asyncio.run_coroutine_threadsafe(srv.close(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def test_pipelined_requests_answered_by_futures_come_back_in_order(server):
    path, dispatcher = server
    with raw_authenticated(path) as s, raw_authenticated(path) as other:
        for i in range(N):  # all sent before any reply: pipelined
            send_msg(s, call_msg("Work", "i", (i,)), serial=i + 1)
        send_msg(other, call_msg("Ping"), serial=1)
        # the other client is not held up by the first one's pending work
        assert recv_msg(other).body == (-1,)
        buf = bytearray()
        got = [recv_msg(s, buf) for _ in range(N)]
    assert [m.reply_serial for m in got] == list(range(1, N + 1))
    assert [m.body for m in got] == [(i,) for i in range(N)]
    assert dispatcher.threads and threading.main_thread().name not in dispatcher.threads


def test_the_daemons_loop_factory_serves():
    async def main() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert event_loop.run(main()).split(".")[0] in ("uvloop", "asyncio")


def test_the_loop_can_be_forced_to_asyncio(monkeypatch):
    monkeypatch.setenv(event_loop.ENV, "asyncio")
    assert event_loop.loop_factory() is asyncio.new_event_loop
    monkeypatch.setenv(event_loop.ENV, "")
    try:
        import uvloop
    except ImportError:
        assert event_loop.loop_factory() is asyncio.new_event_loop
    else:
        assert event_loop.loop_factory() is uvloop.new_event_loop
