"""T0: the pure server-side SASL state machine."""

from __future__ import annotations

import pytest

from cgmanager.dbus.sasl import ServerSasl

pytestmark = pytest.mark.t0

GUID = "0123456789abcdef0123456789abcdef"
OK = f"OK {GUID}\r\n".encode()
REJECTED = b"REJECTED EXTERNAL ANONYMOUS\r\n"


def machine(**kw) -> ServerSasl:
    return ServerSasl(GUID, **kw)


def test_external_with_uid_then_begin():
    m = machine()
    step = m.feed(b"\0AUTH EXTERNAL 31303030\r\n")
    assert step.reply == OK and not step.done
    step = m.feed(b"BEGIN\r\n")
    assert step.done and step.leftover == b"" and not m.unix_fd_negotiated
    assert m.mechanism == "EXTERNAL" and m.claimed_identity == "1000"


@pytest.mark.parametrize("uid", [b"30", b"3635353334", b"31303030303030"])
def test_external_accepts_any_claimed_uid(uid):
    # the claimed uid is never checked against anything: namespaced clients claim their own
    m = machine()
    assert m.feed(b"\0AUTH EXTERNAL " + uid + b"\r\n").reply == OK


def test_external_data_flow_empty():
    m = machine()
    assert m.feed(b"\0AUTH EXTERNAL\r\n").reply == b"DATA\r\n"
    assert m.feed(b"DATA\r\n").reply == OK
    assert m.claimed_identity == ""


def test_external_data_flow_with_uid():
    m = machine()
    assert m.feed(b"\0AUTH EXTERNAL\r\n").reply == b"DATA\r\n"
    assert m.feed(b"DATA 30\r\n").reply == OK
    assert m.claimed_identity == "0"


def test_external_non_numeric_identity_rejected():
    m = machine()
    assert m.feed(b"\0AUTH EXTERNAL 616263\r\n").reply == REJECTED
    assert m.feed(b"AUTH ANONYMOUS\r\n").reply == b"DATA\r\n"  # can try again


def test_bad_hex_is_error():
    m = machine()
    assert m.feed(b"\0AUTH EXTERNAL 3g\r\n").reply.startswith(b"ERROR")
    assert m.feed(b"AUTH EXTERNAL 303\r\n").reply.startswith(b"ERROR")
    assert m.feed(b"AUTH EXTERNAL 30\r\n").reply == OK


@pytest.mark.parametrize(
    "line",
    [
        b"AUTH ANONYMOUS\r\nDATA\r\n",
        b"AUTH ANONYMOUS 74657374\r\n",
        b"AUTH ANONYMOUS\r\nDATA 6869\r\n",
    ],
)
def test_anonymous_with_and_without_trace(line):
    m = machine()
    step = m.feed(b"\0" + line)
    assert step.reply.endswith(OK)
    assert m.mechanism == "ANONYMOUS"


def test_auth_without_mechanism_lists_mechanisms():
    m = machine()
    assert m.feed(b"\0AUTH\r\n").reply == REJECTED


def test_unknown_mechanism_rejected():
    m = machine()
    assert m.feed(b"\0AUTH DBUS_COOKIE_SHA1 31303030\r\n").reply == REJECTED
    assert m.feed(b"AUTH KERBEROS_V4\r\n").reply == REJECTED


@pytest.mark.parametrize(
    "line", [b"HELLO", b"auth external", b"DATA 30", b"\xff\xfe", b"", b"AGREE_UNIX_FD", b"OK 1234"]
)
def test_garbage_is_error_and_recoverable(line):
    m = machine()
    step = m.feed(b"\0" + line + b"\r\n")
    assert step.reply.startswith(b"ERROR") and not step.close
    assert m.feed(b"AUTH EXTERNAL 30\r\n").reply == OK


def test_cancel_returns_to_start():
    m = machine()
    assert m.feed(b"\0AUTH EXTERNAL\r\n").reply == b"DATA\r\n"
    assert m.feed(b"CANCEL\r\n").reply == REJECTED
    assert m.feed(b"AUTH EXTERNAL 30\r\n").reply == OK
    assert m.feed(b"CANCEL\r\n").reply == REJECTED
    assert m.feed(b"BEGIN\r\n").close  # no longer authenticated


def test_error_from_client_gives_rejected():
    m = machine()
    assert m.feed(b'\0ERROR "whatever"\r\n').reply == REJECTED


def test_negotiate_unix_fd_only_after_auth():
    m = machine()
    assert m.feed(b"\0NEGOTIATE_UNIX_FD\r\n").reply.startswith(b"ERROR")
    m.feed(b"AUTH EXTERNAL 30\r\n")
    assert m.feed(b"NEGOTIATE_UNIX_FD\r\n").reply == b"AGREE_UNIX_FD\r\n"
    step = m.feed(b"BEGIN\r\n")
    assert step.done and m.unix_fd_negotiated


def test_negotiate_unix_fd_refused_when_disabled():
    m = machine(unix_fd=False)
    m.feed(b"\0AUTH EXTERNAL 30\r\n")
    assert m.feed(b"NEGOTIATE_UNIX_FD\r\n").reply.startswith(b"ERROR")
    assert m.feed(b"BEGIN\r\n").done and not m.unix_fd_negotiated


def test_begin_before_auth_closes():
    m = machine()
    step = m.feed(b"\0BEGIN\r\n")
    assert step.close and not step.done


def test_missing_leading_nul_tolerated():
    m = machine()
    assert m.feed(b"AUTH EXTERNAL 30\r\n").reply == OK


def test_nul_in_separate_write_and_split_lines():
    m = machine()
    assert m.feed(b"\0").reply == b""
    assert m.feed(b"AUTH EXT").reply == b""
    assert m.feed(b"ERNAL 30\r").reply == b""
    assert m.feed(b"\n").reply == OK
    step = m.feed(b"BEG")
    assert not step.done
    assert m.feed(b"IN\r\n").done


def test_pipelined_handshake_leaves_message_bytes():
    message = b"l\x01\x00\x01" + bytes(range(40))  # whatever follows BEGIN belongs to the codec
    m = machine()
    step = m.feed(b"\0AUTH EXTERNAL 30\r\nNEGOTIATE_UNIX_FD\r\nBEGIN\r\n" + message)
    assert step.reply == OK + b"AGREE_UNIX_FD\r\n"
    assert step.done and step.leftover == message and m.unix_fd_negotiated


def test_pipelined_data_flow_like_sd_bus():
    m = machine()
    step = m.feed(b"\0AUTH EXTERNAL\r\nDATA\r\nNEGOTIATE_UNIX_FD\r\nBEGIN\r\nl\x01")
    assert step.reply == b"DATA\r\n" + OK + b"AGREE_UNIX_FD\r\n"
    assert step.done and step.leftover == b"l\x01"


def test_leftover_containing_crlf_is_not_parsed_as_sasl():
    m = machine()
    step = m.feed(b"\0AUTH EXTERNAL 30\r\nBEGIN\r\nAUTH\r\nBEGIN\r\n")
    assert step.done and step.leftover == b"AUTH\r\nBEGIN\r\n"


def test_overlong_line_closes():
    m = machine(max_line=100)
    step = m.feed(b"\0AUTH EXTERNAL " + b"30" * 100)
    assert step.close and m.close_reason


def test_overlong_line_with_terminator_closes():
    m = machine(max_line=100)
    assert m.feed(b"\0" + b"A" * 200 + b"\r\n").close


def test_too_many_commands_close():
    m = machine(max_commands=5)
    step = m.feed(b"\0" + b"X\r\n" * 10)
    assert step.close
    assert step.reply.count(b"ERROR") == 5


def test_feed_after_done_is_a_bug():
    m = machine()
    m.feed(b"\0AUTH EXTERNAL 30\r\nBEGIN\r\n")
    with pytest.raises(RuntimeError):
        m.feed(b"x")


def test_guid_validated():
    with pytest.raises(ValueError):
        ServerSasl("nothex")


# ------------------------------------------------------------------------------------------
# fuzzing: never an exception, never a hang, replies always well-formed, leftover exact

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from support.fuzz import examples  # noqa: E402

_REPLY_WORDS = (b"OK", b"REJECTED", b"DATA", b"ERROR", b"AGREE_UNIX_FD")


def _check_reply(reply: bytes) -> None:
    assert reply == b"" or reply.endswith(b"\r\n")
    for line in reply.split(b"\r\n")[:-1]:
        assert line.split(b" ")[0] in _REPLY_WORDS, line


def _drive(chunks: list[bytes]) -> None:
    m = machine(max_line=256, max_commands=40)
    fed = b""
    for chunk in chunks:
        fed += chunk
        step = m.feed(chunk)
        _check_reply(step.reply)
        if step.done:
            # the leftover is exactly what followed the BEGIN line that ended the handshake
            assert fed.endswith(step.leftover)
            assert fed[: len(fed) - len(step.leftover)].endswith(b"BEGIN\r\n")
            return
        if step.close:
            assert m.close_reason
            return


@settings(max_examples=examples(300), deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=20))
def test_fuzz_random_bytes(chunks):
    _drive(chunks)


_LINES = st.one_of(
    st.sampled_from(
        [
            b"AUTH",
            b"AUTH EXTERNAL",
            b"AUTH EXTERNAL 30",
            b"AUTH EXTERNAL 3",
            b"AUTH ANONYMOUS",
            b"AUTH ANONYMOUS 6869",
            b"AUTH FOO",
            b"DATA",
            b"DATA 30",
            b"DATA zz",
            b"CANCEL",
            b"ERROR",
            b"BEGIN",
            b"NEGOTIATE_UNIX_FD",
            b"BEGIN x",
            b"",
            b"\0",
        ]
    ),
    st.binary(max_size=20).filter(lambda b: b"\r\n" not in b),
)


@settings(max_examples=examples(400), deadline=None)
@given(st.booleans(), st.lists(_LINES, max_size=25), st.binary(max_size=30), st.integers(1, 7))
def test_fuzz_command_sequences(nul, lines, tail, split):
    stream = (b"\0" if nul else b"") + b"".join(line + b"\r\n" for line in lines) + tail
    chunks = [stream[i : i + split] for i in range(0, len(stream), split)]
    _drive(chunks)
