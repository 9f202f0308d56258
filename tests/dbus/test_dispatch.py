"""T0: the dispatcher without sockets — registry validation, routing, fd ownership."""

from __future__ import annotations

import asyncio
import os

import pytest

from cgmanager.dbus import errors
from cgmanager.dbus.codec import ERROR, METHOD_RETURN, NO_REPLY_EXPECTED, Message, parse_message
from cgmanager.dbus.dispatch import Dispatcher
from cgmanager.dbus.objects import Interface, Method, PeerCredentials, Property

pytestmark = pytest.mark.t0

PEER = PeerCredentials(123, 1000, 1000)


def handle(d: Dispatcher, msg: Message):
    result = d.handle(msg, PEER, None, ":1.7")
    if result is not None and not isinstance(result, Message):
        result = asyncio.run(result)
    return result


def call(member, signature="", body=(), *, path="/o", interface="a.B", fds=None, flags=0):
    return Message(
        1,
        serial=5,
        path=path,
        interface=interface,
        member=member,
        signature=signature,
        body=body,
        fds=fds or [],
        flags=flags,
    )


@pytest.mark.parametrize(
    "objects",
    [
        {"bad path": []},
        {"/o/": []},
        {"/o": [Interface("nodot")]},
        {"/o": [Interface("a.B"), Interface("a.B")]},
        {"/o": [Interface("a.B", methods=[Method("M", print, [("x", "a(")])])]},
        {"/o": [Interface("a.B", methods=[Method("M", print, [("x", "ii")])])]},
        {"/o": [Interface("a.B", methods=[Method("M", print), Method("M", print)])]},
        {"/o": [Interface("a.B", methods=[Method("1M", print)])]},
        {"/o": [Interface("a.B", methods=[Method("M", "not callable")])]},
        {"/o": [Interface("a.B", properties=[Property("p", "x(", print)])]},
        {"/o": [Interface("org.freedesktop.DBus.Properties")]},
        {"/org/freedesktop/DBus": [Interface("a.B")]},
    ],
)
def test_registry_validated_at_construction(objects):
    with pytest.raises(ValueError):
        Dispatcher(objects)


def test_sync_and_async_handlers_and_peer():
    seen = {}

    def sync(call):
        seen["peer"] = call.peer
        seen["sender"] = call.sender
        return (call.body[0] * 2,)

    async def coro(call):
        await asyncio.sleep(0)
        return (call.body[0] + "!",)

    d = Dispatcher(
        {
            "/o": [
                Interface(
                    "a.B",
                    methods=[
                        Method("Double", sync, [("x", "i")], [("y", "i")]),
                        Method("Shout", coro, [("x", "s")], [("y", "s")]),
                        Method("Lambda", lambda c: coro(c), [("x", "s")], [("y", "s")]),
                    ],
                )
            ]
        }
    )
    r = handle(d, call("Double", "i", (4,)))
    assert (r.type, r.body, r.signature, r.reply_serial) == (METHOD_RETURN, (8,), "i", 5)
    assert seen == {"peer": PEER, "sender": ":1.7"}
    assert handle(d, call("Shout", "s", ("hi",))).body == ("hi!",)
    assert handle(d, call("Lambda", "s", ("yo",))).body == ("yo!",)  # returns an awaitable


def _pipe_fd() -> tuple[int, int]:
    r, w = os.pipe()
    return r, w


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


@pytest.mark.parametrize(
    "member, signature",
    [
        ("Use", "h"),  # handler ran and did not take it
        ("Raise", "h"),  # handler raised
        ("Async", "h"),  # coroutine handler
        ("Use", "i"),  # wrong signature: handler never ran
        ("Missing", "h"),  # unknown method
    ],
)
def test_received_fds_closed_unless_taken(member, signature):
    d = Dispatcher(
        {
            "/o": [
                Interface(
                    "a.B",
                    methods=[
                        Method("Use", lambda c: (), [("fd", "h")]),
                        Method("Raise", lambda c: 1 / 0, [("fd", "h")]),
                        Method("Async", _async_noop, [("fd", "h")]),
                    ],
                )
            ]
        }
    )
    r, w = _pipe_fd()
    os.close(w)
    body = (r,) if signature == "h" else (1,)
    handle(d, call(member, signature, body, fds=[r]))
    assert not _is_open(r)


async def _async_noop(call):
    await asyncio.sleep(0)
    return ()


def test_taken_fd_stays_open():
    kept = []
    d = Dispatcher(
        {
            "/o": [
                Interface(
                    "a.B",
                    methods=[
                        Method("Keep", lambda c: kept.append(c.take_fd(c.body[0])), [("fd", "h")]),
                    ],
                )
            ]
        }
    )
    r, w = _pipe_fd()
    handle(d, call("Keep", "h", (r,), fds=[r]))
    assert kept == [r] and _is_open(r)
    os.close(r)
    os.close(w)


def test_no_reply_flag_closes_returned_fds():
    r, w = _pipe_fd()
    d = Dispatcher(
        {
            "/o": [
                Interface(
                    "a.B",
                    methods=[
                        Method("Give", lambda c: (w,), [], [("fd", "h")]),
                    ],
                )
            ]
        }
    )
    assert handle(d, call("Give", flags=1)) is None
    assert not _is_open(w)
    os.close(r)


def test_errors_and_no_reply():
    d = Dispatcher(
        {
            "/o": [
                Interface(
                    "a.B",
                    methods=[
                        Method(
                            "Fail",
                            lambda c: (_ for _ in ()).throw(errors.DBusError("x.y.Z", "why")),
                        ),
                        Method("Bug", lambda c: {}["missing"]),
                        Method("List", lambda c: [1], [], [("x", "i")]),
                        Method("Ok", lambda c: None),
                    ],
                )
            ]
        }
    )
    r = handle(d, call("Fail", flags=1))  # errors are sent even with NO_REPLY_EXPECTED
    assert (r.type, r.error_name, r.body) == (ERROR, "x.y.Z", ("why",))
    assert handle(d, call("Bug")).error_name == errors.FAILED
    assert handle(d, call("List")).error_name == errors.FAILED  # not a tuple
    assert handle(d, call("Ok")).body == ()
    assert handle(d, call("Ok", flags=1)) is None
    r = handle(d, call("Ok", "i", (1,)))
    assert (r.error_name, r.body) == (errors.INVALID_ARGS, ("Invalid arguments to Ok method",))


def test_async_properties():
    async def value(call):
        return 42

    d = Dispatcher(
        {
            "/o": [
                Interface(
                    "a.B", properties=[Property("p", "i", value), Property("q", "s", lambda c: "x")]
                )
            ]
        }
    )
    props = "org.freedesktop.DBus.Properties"
    assert handle(d, call("Get", "ss", ("a.B", "p"), interface=props)).body == (("i", 42),)
    assert handle(d, call("GetAll", "s", ("",), interface=props)).body == (
        {"p": ("i", 42), "q": ("s", "x")},
    )


def test_ancestors_and_unknown_paths():
    d = Dispatcher({"/a/b/c": [Interface("a.B")], "/a/x": [Interface("a.B")]})
    intro = "org.freedesktop.DBus.Introspectable"
    xml = handle(d, call("Introspect", path="/a", interface=intro)).body[0]
    assert '<node name="b"/>' in xml and '<node name="x"/>' in xml
    assert "a.B" not in xml
    assert handle(d, call("Introspect", path="/", interface=None)).body[0].count("<node") == 2
    assert handle(d, call("Foo", path="/a")).error_name == errors.UNKNOWN_OBJECT
    assert (
        handle(d, call("Introspect", path="/zzz", interface=intro)).error_name
        == errors.UNKNOWN_OBJECT
    )
    assert handle(d, call("Ping", path="/zzz", interface=None)).type == METHOD_RETURN
    assert handle(d, call("Hello", path="/org/freedesktop/DBus", interface=None)).body == (":1.7",)


def test_a_reply_marshalled_ahead_is_framed_or_refused():
    """A handler may return its out-args already marshalled (a worker did it); the signature
    must be the method's, and a caller that wants no reply gets none."""
    from cgmanager.dbus.codec import Marshalled, serialise_message

    d = Dispatcher(
        {
            "/o": [
                Interface(
                    "a.B",
                    methods=[
                        Method("L", lambda c: Marshalled("as", (["x", "y"],)), [], [("n", "as")]),
                        Method("W", lambda c: Marshalled("ai", ([1],)), [], [("n", "as")]),
                    ],
                )
            ]
        }
    )
    reply = handle(d, call("L"))
    assert reply.type == METHOD_RETURN and reply.signature == "as" and reply.reply_serial == 5
    data, fds = serialise_message(reply, 1)
    assert fds == [] and parse_message(data).body == (["x", "y"],)
    assert handle(d, call("L", flags=NO_REPLY_EXPECTED)) is None
    wrong = handle(d, call("W"))
    assert wrong.type == ERROR and wrong.error_name == errors.FAILED
