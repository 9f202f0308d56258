"""Whole D-Bus messages: :class:`Message`, its header fields, and the four names the transport
uses — :class:`Message`, :func:`message_size`, :func:`parse_message`, :func:`serialise_message`.

Everything that knows the byte layout of a message lives here and in the modules beside it
(:mod:`.signature`, :mod:`.unmarshal`, :mod:`.marshal`); swapping the codec (e.g. for a compiled
one) means re-implementing these four names.  Parsing validates everything the peer sent and
raises only :class:`~.unmarshal.ProtocolError`; method-call headers, which a client repeats with
only the serial changed, are parsed and validated once per distinct header (a bounded cache).

Imports only ``_struct`` and its siblings: the blocking client imports this and must start fast.
"""

from __future__ import annotations

from .marshal import (
    PAD,
    MarshalError,
    Marshalled,
    marshal_body,
    pack_u32,
    string_writer,
    write_signature,
)
from .signature import MAX_DEPTH, valid_interface_name, valid_member_name
from .unmarshal import (
    ProtocolError,
    ReadCtx,
    read_plan,
    read_signature,
    read_signature_raw,
    string_reader,
)

TYPE_CHECKING = False  # not typing's: importing typing costs the CLI's start-up (mypy knows it)
if TYPE_CHECKING:
    import struct
    from collections.abc import Sequence
    from typing import Any, TypeAlias

    from .unmarshal import StrReader

    #: a message's header fields: the string-valued ones (path, names, signature) and the
    #: integer ones (reply serial, number of fds), by field code
    Header: TypeAlias = tuple[dict[int, str], dict[int, int]]
else:  # the same objects: struct.py only re-exports _struct, and loading it costs cgm's start
    import _struct as struct

METHOD_CALL = 1
METHOD_RETURN = 2
ERROR = 3
SIGNAL = 4

NO_REPLY_EXPECTED = 0x1
NO_AUTO_START = 0x2
ALLOW_INTERACTIVE_AUTHORIZATION = 0x4

#: The specification's hard limit for a whole message.
PROTOCOL_MAX_MESSAGE = 1 << 27


class MessageTooLarge(ProtocolError):
    """The announced message size exceeds the configured limit."""


class Message:
    """One D-Bus message, header fields as attributes and the body as a tuple.

    ``fds`` holds the file descriptors that arrived with the message (ints, in body index order);
    whoever holds the message owns them.  The body's values have the types its signature names
    (see :mod:`.unmarshal` for their Python shapes), known only at run time — hence ``Any``.
    """

    __slots__ = (
        "type",
        "flags",
        "serial",
        "path",
        "interface",
        "member",
        "error_name",
        "reply_serial",
        "destination",
        "sender",
        "signature",
        "body",
        "raw_body",
        "fds",
    )

    def __init__(
        self,
        type: int,
        *,
        flags: int = 0,
        serial: int = 0,
        path: str | None = None,
        interface: str | None = None,
        member: str | None = None,
        error_name: str | None = None,
        reply_serial: int | None = None,
        destination: str | None = None,
        sender: str | None = None,
        signature: str = "",
        body: tuple[Any, ...] = (),
        raw_body: Marshalled | None = None,
        fds: list[int] | None = None,
    ) -> None:
        self.type = type
        self.flags = flags
        self.serial = serial
        self.path = path
        self.interface = interface
        self.member = member
        self.error_name = error_name
        self.reply_serial = reply_serial
        self.destination = destination
        self.sender = sender
        self.signature = signature
        self.body = body
        #: the body marshalled ahead (outgoing only): sent in place of ``body``
        self.raw_body = raw_body
        self.fds = fds if fds is not None else []

    def __repr__(self) -> str:
        parts = [f"type={self.type}", f"serial={self.serial}"]
        for name in (
            "flags",
            "path",
            "interface",
            "member",
            "error_name",
            "reply_serial",
            "destination",
            "sender",
            "signature",
        ):
            value = getattr(self, name)
            if value:
                parts.append(f"{name}={value!r}")
        parts.append(f"body={self.body!r}")
        if self.fds:
            parts.append(f"fds={self.fds!r}")
        return f"Message({', '.join(parts)})"


# --------------------------------------------------------------------------------------------
# Header fields: 1 path (o), 2 interface, 3 member, 4 error name, 5 reply serial (u),
# 6 destination, 7 sender, 8 body signature (g), 9 number of fds (u)

_HDR_LE = struct.Struct("<III")
_HDR_BE = struct.Struct(">III")
_U32 = {e: struct.Struct(e + "I").unpack_from for e in "<>"}
_HEADER_SIGS = {1: "o", 2: "s", 3: "s", 4: "s", 5: "u", 6: "s", 7: "s", 8: "g", 9: "u"}


def _string_field_readers(e: str) -> dict[int, StrReader]:
    s = string_reader("s", e)
    return {1: string_reader("o", e), 2: s, 3: s, 4: s, 6: s, 7: s, 8: read_signature}


_STR_READERS = {e: _string_field_readers(e) for e in "<>"}


def message_size(head: bytes | bytearray | memoryview, max_size: int = PROTOCOL_MAX_MESSAGE) -> int:
    """Total size of the message whose first 16 bytes are ``head``.

    Raises :class:`ProtocolError` for a bad endianness byte or protocol version and
    :class:`MessageTooLarge` when the size exceeds ``max_size`` — checked before the rest of the
    message is read, so an announced 4 GiB message costs nothing.
    """
    if len(head) < 16:
        raise ProtocolError("short header")
    e = head[0]
    if e == 108:  # 'l'
        hdr = _HDR_LE
    elif e == 66:  # 'B'
        hdr = _HDR_BE
    else:
        raise ProtocolError(f"bad endianness byte {e!r}")
    if head[3] != 1:
        raise ProtocolError(f"unsupported protocol version {head[3]}")
    body_len, _serial, fields_len = hdr.unpack_from(head, 4)
    total: int = 16 + fields_len + ((-fields_len) & 7) + body_len
    if total > max_size or total > PROTOCOL_MAX_MESSAGE:
        raise MessageTooLarge(f"message of {total} bytes exceeds the limit of {max_size}")
    return total


def parse_message(data: bytes, fds: Sequence[int] = ()) -> Message:
    """Parse exactly one message occupying all of ``data``.

    ``fds`` are the file descriptors received so far and not yet given to a message; the message
    takes the first ``unix_fds`` of them (``msg.fds``); the caller removes ``len(msg.fds)`` from
    its queue.  Raises only :class:`ProtocolError`.
    """
    try:
        return _parse_message(data, fds)
    except ProtocolError:
        raise
    except (
        struct.error,
        IndexError,
        ValueError,
        KeyError,
        RecursionError,
        OverflowError,
        TypeError,
    ) as exc:
        raise ProtocolError(f"malformed message: {exc!r:.200}") from None


#: validated header fields of method calls, by their bytes (see :func:`_parse_message`);
#: bounded: headers up to 512 bytes (ours are ~150), emptied when 256 are kept, so a client
#: sending ever-new headers costs misses and at most ~130 kB
_CALL_HEADERS: dict[bytes, Header] = {}
_CALL_HEADERS_MAX = 256
_CALL_HEADER_BYTES = 512


def _parse_fields(data: bytes, e: str, fend: int, ctx: ReadCtx) -> Header:
    """The header fields (16 .. fend) of a message, their names validated; the caller must
    not modify the dicts (they may be shared through the cache)."""
    readers = _STR_READERS[e]
    u32 = _U32[e]
    strs: dict[int, str] = {}
    ints: dict[int, int] = {}
    pos = 16
    while pos < fend:
        pos = (pos + 7) & ~7
        code = data[pos]
        sig, pos = read_signature_raw(data, pos + 1)
        expected = _HEADER_SIGS.get(code)
        if expected == "u":
            if sig != expected:
                raise ProtocolError(f"header field {code} has signature {sig!r}")
            pos = (pos + 3) & ~3
            number: int = u32(data, pos)[0]
            pos += 4
            if code in ints:
                raise ProtocolError(f"duplicate header field {code}")
            ints[code] = number
        elif expected is not None:
            if sig != expected:
                raise ProtocolError(f"header field {code} has signature {sig!r}")
            text, pos = readers[code](data, pos, ctx)
            if code in strs:
                raise ProtocolError(f"duplicate header field {code}")
            strs[code] = text
        else:  # unknown fields must be skipped, but still parsed safely
            plan = read_plan(sig)
            if plan is None or plan.count != 1 or plan.depth + 2 > MAX_DEPTH:
                raise ProtocolError(f"bad signature {sig!r} in header field {code}")
            ctx.base = 1
            _v, pos = plan.readers(e)[0](data, pos, ctx)
            ctx.base = 0
    if pos != fend:
        raise ProtocolError("header fields overrun their array")
    interface = strs.get(2)
    member = strs.get(3)
    error_name = strs.get(4)
    if interface is not None and not valid_interface_name(interface):
        raise ProtocolError(f"invalid interface name {interface!r:.80}")
    if member is not None and not valid_member_name(member):
        raise ProtocolError(f"invalid member name {member!r:.80}")
    if error_name is not None and not valid_interface_name(error_name):
        raise ProtocolError(f"invalid error name {error_name!r:.80}")
    return strs, ints


def _parse_message(data: bytes, fds: Sequence[int]) -> Message:
    size = message_size(data)
    if size != len(data):
        raise ProtocolError("message length does not match its header")
    e = "<" if data[0] == 108 else ">"
    mtype = data[1]
    if mtype == 0:
        raise ProtocolError("message type 0 is invalid")
    body_len, serial, fields_len = (_HDR_LE if e == "<" else _HDR_BE).unpack_from(data, 4)
    if serial == 0:
        raise ProtocolError("serial 0 is invalid")
    ctx = ReadCtx([], e)
    fend = 16 + fields_len
    if mtype == METHOD_CALL and fend <= _CALL_HEADER_BYTES:
        # a client repeats the same few call headers (only the serial, outside the fields,
        # changes): parse and validate each distinct one once (a pure function of its bytes)
        key = data[:1] + data[12:fend]
        fields = _CALL_HEADERS.get(key)
        if fields is None:
            fields = _parse_fields(data, e, fend, ctx)
            if len(_CALL_HEADERS) >= _CALL_HEADERS_MAX:
                _CALL_HEADERS.clear()
            _CALL_HEADERS[key] = fields
    else:  # replies carry a fresh reply serial each; big headers are not kept
        fields = _parse_fields(data, e, fend, ctx)
    body_start = (fend + 7) & ~7
    if body_start + body_len != len(data):
        raise ProtocolError("body length mismatch")

    strs, ints = fields
    path = strs.get(1)
    interface = strs.get(2)
    member = strs.get(3)
    error_name = strs.get(4)
    if mtype == METHOD_CALL:
        if path is None or member is None:
            raise ProtocolError("method call without path or member")
    elif mtype == SIGNAL:
        if path is None or member is None or interface is None:
            raise ProtocolError("signal without path, interface or member")
    elif mtype == ERROR:
        if error_name is None or 5 not in ints:
            raise ProtocolError("error without name or reply serial")
    elif mtype == METHOD_RETURN:  # noqa: SIM102 (parallel to the cases above)
        if 5 not in ints:
            raise ProtocolError("method return without reply serial")

    n_fds = ints.get(9, 0)
    if n_fds > len(fds):
        raise ProtocolError(f"message announces {n_fds} fds but {len(fds)} arrived")
    msg_fds = list(fds[:n_fds])
    signature = strs.get(8, "")
    body: tuple[object, ...] = ()
    if signature:
        plan = read_plan(signature)
        if plan is None:
            raise ProtocolError(f"invalid body signature {signature!r}")
        ctx.fds = msg_fds
        ctx.base = 0
        out = []
        pos = body_start
        for r in plan.readers(e):
            v, pos = r(data, pos, ctx)
            out.append(v)
        if pos != len(data):
            raise ProtocolError("trailing bytes after the body")
        body = tuple(out)
    elif body_len:
        raise ProtocolError("body without signature")

    return Message(
        mtype,
        flags=data[2],
        serial=serial,
        path=path,
        interface=interface,
        member=member,
        error_name=error_name,
        reply_serial=ints.get(5),
        destination=strs.get(6),
        sender=strs.get(7),
        signature=signature,
        body=body,
        fds=msg_fds,
    )


_FIELD_S = {
    2: b"\x02\x01s\x00",
    3: b"\x03\x01s\x00",
    4: b"\x04\x01s\x00",
    6: b"\x06\x01s\x00",
    7: b"\x07\x01s\x00",
}
_write_str = string_writer("s")
_write_path = string_writer("o")


def serialise_message(msg: Message, serial: int) -> tuple[bytes, list[int]]:
    """Encode ``msg`` (little-endian) with ``serial``; returns (bytes, fds to send with them).

    The fds are the ``h`` values found in the body, in index order (``msg.fds`` is ignored).
    Raises :class:`MarshalError` if the body does not fit the signature.
    """
    fds: list[int]
    raw = msg.raw_body
    if raw is not None:
        if raw.signature != msg.signature or msg.body:
            raise MarshalError("a body marshalled ahead must match the signature, alone")
        body, fds = raw.data, []
    else:
        body, fds = marshal_body(msg.signature, msg.body) if msg.signature else (b"", [])
    if msg.body and not msg.signature:
        raise MarshalError("body given without a signature")
    out = bytearray(16)
    if msg.path is not None:
        out += b"\x01\x01o\x00"
        _write_path(out, msg.path, fds)
    for code, value in ((2, msg.interface), (3, msg.member), (4, msg.error_name)):
        if value is not None:
            out += PAD[(-len(out)) & 7]
            out += _FIELD_S[code]
            _write_str(out, value, fds)
    if msg.reply_serial is not None:
        out += PAD[(-len(out)) & 7]
        out += b"\x05\x01u\x00"
        out += pack_u32(msg.reply_serial)
    for code, value in ((6, msg.destination), (7, msg.sender)):
        if value is not None:
            out += PAD[(-len(out)) & 7]
            out += _FIELD_S[code]
            _write_str(out, value, fds)
    if msg.signature:
        out += PAD[(-len(out)) & 7]
        out += b"\x08\x01g\x00"
        write_signature(out, msg.signature, fds)
    if fds:
        out += PAD[(-len(out)) & 7]
        out += b"\x09\x01u\x00"
        out += pack_u32(len(fds))
    fields_len = len(out) - 16
    out += PAD[(-len(out)) & 7]
    struct.pack_into(
        "<cBBBIII", out, 0, b"l", msg.type, msg.flags, 1, len(body), serial, fields_len
    )
    out += body
    if len(out) > PROTOCOL_MAX_MESSAGE:
        raise MarshalError("message larger than 128 MiB")
    return bytes(out), fds
