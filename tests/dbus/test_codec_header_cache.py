"""The parsed-header cache of method calls: a repeated header gives the same message as a fresh
parse, the parts outside the cached fields (serial, body, fds) always come from the message
itself, a header that fails validation is never kept, and the cache stays bounded."""

from __future__ import annotations

import pytest

from cgmanager.dbus import message
from cgmanager.dbus.message import (
    METHOD_CALL,
    METHOD_RETURN,
    Message,
    parse_message,
    serialise_message,
)
from cgmanager.dbus.unmarshal import ProtocolError

pytestmark = pytest.mark.t0


def call(member: str = "GetValue", body: tuple = ("pids", "gv", "pids.max")) -> Message:
    return Message(
        METHOD_CALL,
        path="/org/linuxcontainers/cgmanager",
        interface="org.linuxcontainers.cgmanager0_0",
        member=member,
        signature="sss",
        body=body,
    )


def fields(m: Message) -> tuple:
    return (m.type, m.serial, m.path, m.interface, m.member, m.signature, m.body, m.fds)


def test_a_repeated_header_parses_like_a_fresh_one():
    message._CALL_HEADERS.clear()
    first, _ = serialise_message(call(), 1)
    again, _ = serialise_message(call(body=("pids", "other", "pids.current")), 2)
    a = parse_message(first)
    assert len(message._CALL_HEADERS) == 1
    b = parse_message(again)  # same header bytes but the serial: served from the cache
    assert len(message._CALL_HEADERS) == 1
    assert (a.serial, a.member, a.body) == (1, "GetValue", ("pids", "gv", "pids.max"))
    assert b.serial == 2 and b.body == ("pids", "other", "pids.current")
    message._CALL_HEADERS.clear()
    assert fields(parse_message(again)) == fields(b)  # the same without the cache


def test_an_invalid_header_is_never_kept():
    message._CALL_HEADERS.clear()
    good, _ = serialise_message(call(member="Ping"), 1)
    bad = bytearray(good)
    at = bad.index(b"Ping")
    bad[at : at + 4] = b"Pi-g"  # an invalid member name, same length
    for _ in range(2):  # the second time too: nothing was cached
        with pytest.raises(ProtocolError, match="invalid member name"):
            parse_message(bytes(bad))
    assert len(message._CALL_HEADERS) == 0
    assert parse_message(good).member == "Ping"


def test_replies_are_not_cached_and_the_cache_is_bounded():
    message._CALL_HEADERS.clear()
    reply = Message(METHOD_RETURN, reply_serial=7, signature="s", body=("x",))
    parse_message(serialise_message(reply, 3)[0])
    assert len(message._CALL_HEADERS) == 0
    for i in range(message._CALL_HEADERS_MAX + 10):
        parse_message(serialise_message(call(member=f"M{i}"), i + 1)[0])
    assert len(message._CALL_HEADERS) <= message._CALL_HEADERS_MAX
    huge = Message(
        METHOD_CALL,
        path="/" + "/".join(["p" * 200] * 4),
        member="Ping",
    )
    parse_message(serialise_message(huge, 1)[0])
    assert all(len(k) <= message._CALL_HEADER_BYTES for k in message._CALL_HEADERS)
