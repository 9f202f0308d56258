"""T0: the validating codec — round trips, jeepney cross-checks, hostile inputs, fuzzing."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.fuzz import examples

from cgmanager.dbus import codec
from cgmanager.dbus.codec import (
    Message,
    MessageTooLarge,
    ProtocolError,
    marshal_body,
    message_size,
    parse_message,
    serialise_message,
    unmarshal_body,
)

pytestmark = pytest.mark.t0

jeepney = pytest.importorskip("jeepney")
from jeepney.low_level import Parser  # noqa: E402


def call(signature: str, body: tuple, **kw) -> Message:
    return Message(
        1, path="/org/x", interface="org.x.Y", member="M", signature=signature, body=body, **kw
    )


SAMPLES = [
    ("", ()),
    ("i", (-5,)),
    ("s", ("héllo wörld",)),
    ("as", (["a", "", "ccc"],)),
    ("ai", ([1, -2, 2**31 - 1, -(2**31)],)),
    ("a(suuu)", ([("tasks", 0, 0, 0o100644), ("cgroup.procs", 4294967295, 1, 33188)],)),
    ("a{sv}", ({"api_version": ("i", 10), "x": ("as", ["y"])},)),
    ("yqnutxdb", (255, 65535, -32768, 4294967295, 2**64 - 1, -(2**63), 1.5, True)),
    ("ogv", ("/a/b_c/D9", "a{sv}(ii)", ("v", ("s", "nested")))),
    ("ay", (b"\x00\x01binary",)),
    ("aai", ([[1], [], [2, 3]],)),
    ("a{ia(ss)}", ({1: [("a", "b")], -1: []},)),
    ("(i(s(b)))", ((1, ("x", (False,))),)),
    ("ad", ([0.5, -1e300],)),
]


@pytest.mark.parametrize("signature, body", SAMPLES)
def test_round_trip_and_jeepney_agree(signature, body):
    data, fds = serialise_message(call(signature, body), 7)
    assert fds == []
    msg = parse_message(data)
    assert msg.body == body and msg.signature == signature and msg.serial == 7
    # jeepney reads what we write ...
    p = Parser()
    p.add_data(data)
    jm = p.get_next_message()
    assert jm.body == body
    # ... and we read what jeepney writes
    jm2 = jeepney.new_method_call(
        jeepney.DBusAddress("/org/x", "org.x.dest", "org.x.Y"), "M", signature or None, body
    )
    theirs = parse_message(jm2.serialise(serial=3))
    assert theirs.body == body and theirs.destination == "org.x.dest"


def test_big_endian_messages_parse():
    jm = jeepney.new_method_call(
        jeepney.DBusAddress("/o", "a.b", "a.b"), "M", "ia{sv}", (3, {"k": ("u", 9)})
    )
    jm.header.endianness = jeepney.low_level.Endianness.big
    msg = parse_message(jm.serialise(serial=1))
    assert msg.body == (3, {"k": ("u", 9)})


def test_fds_are_indices_into_received_fds():
    data, fds = serialise_message(call("hih", (10, 5, 11)), 1)
    assert fds == [10, 11]
    msg = parse_message(data, [100, 101, 102])
    assert msg.body == (100, 5, 101) and msg.fds == [100, 101]


def test_message_announcing_more_fds_than_received():
    data, _ = serialise_message(call("h", (3,)), 1)
    with pytest.raises(ProtocolError):
        parse_message(data, [])


def _raw_message(signature: bytes, body: bytes, extra_fields: bytes = b"") -> bytes:
    """Hand-built little-endian method call with arbitrary signature/body bytes."""

    def field(code: int, sig: bytes, value: bytes) -> bytes:
        return bytes([code, len(sig)]) + sig + b"\0" + value

    def pad(b: bytes) -> bytes:
        return b + b"\0" * ((-len(b)) % 8)

    fields = pad(field(1, b"o", struct.pack("<I", 2) + b"/x\0"))
    fields = pad(fields + field(3, b"s", struct.pack("<I", 1) + b"M\0"))
    fields = fields + field(8, b"g", bytes([len(signature)]) + signature + b"\0")
    if extra_fields:
        fields = pad(fields) + extra_fields
    head = struct.pack("<cBBBIII", b"l", 1, 0, 1, len(body), 1, len(fields))
    return pad(head + fields) + body


def test_hand_built_message_parses():
    msg = parse_message(_raw_message(b"i", struct.pack("<i", 42)))
    assert msg.body == (42,) and msg.path == "/x" and msg.member == "M"


@pytest.mark.parametrize(
    "signature, body",
    [
        (b"a()", struct.pack("<I", 8) + b"\0" * 12),  # hangs jeepney's parser forever
        (b"()", b""),
        (b"a{vs}", struct.pack("<I", 0) + b"\0" * 4),  # dict key must be basic
        (b"{ss}", b""),  # dict entry outside array
        (b"i", struct.pack("<i", 1) + b"\0\0\0\0"),  # trailing bytes
        (b"ii", struct.pack("<i", 1)),  # short body
        (b"b", struct.pack("<I", 2)),  # boolean must be 0 or 1
        (b"s", struct.pack("<I", 3) + b"a\0b\0"),  # embedded NUL
        (b"s", struct.pack("<I", 2) + b"\xff\xfe\0\0"),  # invalid UTF-8
        (b"s", struct.pack("<I", 0xFFFFFFF0) + b"ab\0\0"),  # length past the end
        (b"o", struct.pack("<I", 3) + b"a/b\0"),  # not an object path
        (b"o", struct.pack("<I", 3) + b"/a/\0"),
        (b"g", b"\x03a()\0"),  # invalid signature value
        (b"ai", struct.pack("<I", 6) + b"\0" * 8),  # not a multiple of 4
        (b"as", struct.pack("<I", 6) + struct.pack("<I", 4) + b"abcd\0"),  # element overruns
        (b"h", struct.pack("<I", 0)),  # fd index without fds
        (b"v", b"\x02ii\0" + b"\0" * 8),  # variant with two types
        (b"v", b"\x01(\0\0"),
        (b"a" * 33 + b"i", struct.pack("<I", 0)),  # arrays nested > 32
        (b"(" * 33 + b"i" + b")" * 33, b"\0" * 8),  # structs nested > 32
    ],
)
def test_hostile_bodies_are_protocol_errors(signature, body):
    with pytest.raises(ProtocolError):
        parse_message(_raw_message(signature, body))


def test_deeply_nested_variants_rejected_without_recursion_error():
    # 'v' containing 'v' containing ... 5000 levels: the total depth limit (64) stops it early
    body = b"\x01v\0" * 5000 + b"\x01i\0\0" + struct.pack("<i", 1)
    with pytest.raises(ProtocolError, match="deep"):
        parse_message(_raw_message(b"v", body))


def test_variant_nesting_within_limit_is_fine():
    value = ("i", 1)
    for _ in range(30):
        value = ("v", value)
    data, _ = serialise_message(call("v", (value,)), 1)
    assert parse_message(data).body == (value,)


def test_unknown_header_fields_are_skipped():
    extra = bytes([42, 2]) + b"as\0\0\0\0" + struct.pack("<I", 6) + struct.pack("<I", 1) + b"z\0"
    msg = parse_message(_raw_message(b"i", struct.pack("<i", 7), extra))
    assert msg.body == (7,)


def test_header_field_with_wrong_type_rejected():
    extra = bytes([3, 1]) + b"i\0" + struct.pack("<i", 5)  # member as int32 (and duplicate)
    with pytest.raises(ProtocolError):
        parse_message(_raw_message(b"i", struct.pack("<i", 7), extra))


def test_unknown_header_field_with_hostile_signature_rejected():
    extra = bytes([42, 3]) + b"a()\0" + struct.pack("<I", 8) + b"\0" * 12
    with pytest.raises(ProtocolError):
        parse_message(_raw_message(b"i", struct.pack("<i", 7), extra))


def test_method_call_requires_path_and_member():
    data, _ = serialise_message(Message(1, member="M"), 1)
    with pytest.raises(ProtocolError):
        parse_message(data)


@pytest.mark.parametrize(
    "head, error",
    [
        (b"x\x01\x00\x01" + b"\0" * 12, ProtocolError),  # endianness
        (b"l\x01\x00\x02" + b"\0" * 12, ProtocolError),  # protocol version
        (struct.pack("<cBBBIII", b"l", 1, 0, 1, 2 << 20, 1, 16), MessageTooLarge),
        (struct.pack("<cBBBIII", b"l", 1, 0, 1, 0, 1, 0xFFFFFFF0), MessageTooLarge),
    ],
)
def test_message_size_checks_header_before_body(head, error):
    with pytest.raises(error):
        message_size(head, 1 << 20)


def test_marshal_rejects_bad_values():
    for sig, body in [
        ("i", ("x",)),
        ("i", (2**31,)),
        ("s", (1,)),
        ("s", ("a\0",)),
        ("o", ("nope",)),
        ("as", ("abc",)),
        ("(ii)", ((1,),)),
        ("b", (2,)),
        ("v", (("ii", 1),)),
        ("a{sv}", ([1],)),
        ("h", (-1,)),
        ("g", ("a(",)),
        ("i", (1, 2)),
        ("ai", (["1"],)),
    ]:
        with pytest.raises(codec.MarshalError):
            marshal_body(sig, body)


def test_split_signature():
    assert codec.split_signature("sa(ii)a{sv}h") == ["s", "a(ii)", "a{sv}", "h"]


# ------------------------------------------------------------------------------------------
# fuzzing: random bytes must only ever produce ProtocolError, quickly


@settings(max_examples=examples(400), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(data):
    try:
        size = message_size(data[:16], 1 << 20) if len(data) >= 16 else None
    except ProtocolError:
        return
    try:
        parse_message(data, [3, 4, 5])
    except ProtocolError:
        pass
    assert size is None or size >= 16


@settings(max_examples=examples(400), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SAMPLES), st.data())
def test_fuzz_mutated_valid_messages(sample, data):
    raw = bytearray(serialise_message(call(*sample), 1)[0])
    for _ in range(data.draw(st.integers(1, 6))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    try:
        parse_message(bytes(raw), [7])
    except ProtocolError:
        pass


@settings(max_examples=examples(300), deadline=None)
@given(st.text(alphabet="ybnqiuxtdhsogva(){}", max_size=40), st.binary(max_size=200))
def test_fuzz_signatures_and_bodies(signature, body):
    try:
        unmarshal_body(signature, body, [9])
    except ProtocolError:
        pass


def _values_for(sig_strategy_depth: int = 2):
    """(signature, value) pairs to round-trip."""
    basic = st.one_of(
        st.tuples(st.just("i"), st.integers(-(2**31), 2**31 - 1)),
        st.tuples(st.just("u"), st.integers(0, 2**32 - 1)),
        st.tuples(st.just("t"), st.integers(0, 2**64 - 1)),
        st.tuples(st.just("y"), st.integers(0, 255)),
        st.tuples(st.just("ay"), st.binary(max_size=8)),
        st.tuples(st.just("b"), st.booleans()),
        st.tuples(st.just("d"), st.floats(allow_nan=False)),
        st.tuples(
            st.just("s"),
            st.text(
                alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\0")
            ),
        ),
    )

    def extend(children):
        arrays = children.filter(lambda sv: sv[0] != "y").flatmap(
            lambda sv: st.lists(st.just(sv[1]), max_size=3).map(
                lambda vals, sig=sv[0]: ("a" + sig, vals)
            )
        )
        structs = st.lists(children, min_size=1, max_size=3).map(
            lambda items: ("(" + "".join(s for s, _ in items) + ")", tuple(v for _, v in items))
        )
        variants = children.map(lambda sv: ("v", sv))
        return st.one_of(arrays, structs, variants)

    return st.recursive(basic, extend, max_leaves=8)


@settings(max_examples=examples(300), deadline=None)
@given(st.lists(_values_for(), max_size=4))
def test_fuzz_round_trip_against_jeepney(pairs):
    signature = "".join(s for s, _ in pairs)
    body = tuple(v for _, v in pairs)
    data, _ = serialise_message(call(signature, body), 1)
    assert parse_message(data).body == body
    p = Parser()
    p.add_data(data)
    assert p.get_next_message().body == body


@pytest.mark.parametrize("signature, body", [s for s in SAMPLES if s[0]])
def test_a_body_marshalled_ahead_frames_to_the_same_bytes(signature, body):
    """A reply marshalled on a worker thread (Marshalled) is byte for byte the reply the
    loop would have marshalled itself."""
    reply = dict(reply_serial=9, destination=":1.4", signature=signature)
    inline = serialise_message(Message(2, body=body, **reply), 11)
    ahead = serialise_message(Message(2, raw_body=codec.Marshalled(signature, body), **reply), 11)
    assert ahead == inline
    assert parse_message(ahead[0]).body == body


def test_a_body_marshalled_ahead_must_fit_its_message():
    m = codec.Marshalled("as", (["a"],))
    with pytest.raises(codec.MarshalError):  # another signature
        serialise_message(Message(2, reply_serial=1, signature="s", raw_body=m), 1)
    with pytest.raises(codec.MarshalError):  # a body as well
        serialise_message(Message(2, reply_serial=1, signature="as", body=(["b"],), raw_body=m), 1)
    with pytest.raises(codec.MarshalError):  # fds are marshalled where they are sent
        codec.Marshalled("h", (3,))
    with pytest.raises(codec.MarshalError):  # values that do not fit
        codec.Marshalled("as", ([1],))
