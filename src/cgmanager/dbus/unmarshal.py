"""Reading D-Bus values: a validating unmarshaller that trusts nothing the peer sent.

Why not jeepney's parser, although jeepney was the chosen codec?  Its parser trusts the peer:

* ``Message.from_buffer`` loops forever on a 28-byte body with signature ``a()`` (an empty struct
  never advances the array cursor) — one such message would freeze the daemon's only event loop;
* variant signatures inside header fields and bodies are not validated, nesting is unbounded
  (a deep variant chain ends in ``RecursionError`` after ~1000 Python frames — CVE-2019-6454 class);
* unknown header field codes (which the specification says must be ignored) raise, strings are
  not checked for NULs, booleans not for 0/1, object paths not at all;
* and ``import jeepney`` costs ~20 ms (typing, enum, socket, re), too much for a CLI that starts
  once per shell command.

So the readers validate like libdbus does (signature grammar, 32/32 nesting, total depth 64
including variants, lengths against the buffer, UTF-8 without NUL, object path syntax, fd indices
against the fds that came with the message) and raise only :class:`ProtocolError` on bad input
(or the built-in errors :func:`.message.parse_message` turns into it).  Values have jeepney's
shapes (variant → ``(signature, value)``, ``a{..}`` → dict, ``ay`` → bytes, struct → tuple,
array → list, ``h`` → the received fd as an int), so the tests cross-check against jeepney.

A reader is ``r(buf, pos, ctx) -> (value, new_pos)``, one closure per type built once per
signature and byte order; positions are absolute in the message, which makes alignment right
because the body starts 8-aligned.
"""

from __future__ import annotations

from .signature import (
    ALIGN,
    FIXED,
    FIXED_ARRAY_FMT,
    MAX_ARRAY,
    MAX_DEPTH,
    SignatureError,
    node_depth,
    parse_signature,
    valid_object_path,
)

TYPE_CHECKING = False  # not typing's: importing typing costs the CLI's start-up (mypy knows it)
if TYPE_CHECKING:
    import struct
    from collections.abc import Callable, Sequence
    from typing import TypeAlias

    from .signature import Node

    Reader: TypeAlias = Callable[[bytes, int, "ReadCtx"], tuple[object, int]]
    StrReader: TypeAlias = Callable[[bytes, int, "ReadCtx"], tuple[str, int]]
else:  # the same objects: struct.py only re-exports _struct, and loading it costs cgm's start
    import _struct as struct


class ProtocolError(ValueError):
    """The peer sent bytes that are not a valid D-Bus message (or handshake).

    The only exception :func:`.message.message_size` and :func:`.message.parse_message` raise;
    the connection that produced it must be dropped.
    """


class ReadCtx:
    """What a reader needs besides the bytes: the message's fds, the nesting depth of the
    enclosing variants (``base``) and the byte order."""

    __slots__ = ("fds", "base", "endian")

    def __init__(self, fds: list[int], endian: str) -> None:
        self.fds = fds
        self.base = 0
        self.endian = endian


def _mk_fixed_reader(code: str, e: str) -> Reader:
    st = struct.Struct(e + FIXED[code])
    unpack = st.unpack_from
    size = st.size
    mask = size - 1
    if code == "b":

        def read_bool(buf: bytes, pos: int, ctx: ReadCtx) -> tuple[bool, int]:
            pos = (pos + 3) & ~3
            v = unpack(buf, pos)[0]
            if v > 1:
                raise ProtocolError(f"boolean value {v}")
            return v == 1, pos + 4

        return read_bool
    if code == "h":

        def read_fd(buf: bytes, pos: int, ctx: ReadCtx) -> tuple[int, int]:
            pos = (pos + 3) & ~3
            idx = unpack(buf, pos)[0]
            if idx >= len(ctx.fds):
                raise ProtocolError(f"fd index {idx} but {len(ctx.fds)} fds")
            return ctx.fds[idx], pos + 4

        return read_fd
    if size == 1:

        def read_byte(buf: bytes, pos: int, ctx: ReadCtx) -> tuple[int, int]:
            return buf[pos], pos + 1

        return read_byte

    def read_fixed(buf: bytes, pos: int, ctx: ReadCtx) -> tuple[int | float, int]:
        pos = (pos + mask) & ~mask
        return unpack(buf, pos)[0], pos + size

    return read_fixed


def string_reader(code: str, e: str) -> StrReader:
    """The reader of an ``s`` (UTF-8 without NUL) or ``o`` (object path) in byte order ``e``."""
    u32 = struct.Struct(e + "I").unpack_from
    check_path = code == "o"

    def read_string(buf: bytes, pos: int, ctx: ReadCtx) -> tuple[str, int]:
        pos = (pos + 3) & ~3
        n: int = u32(buf, pos)[0]
        pos += 4
        end = pos + n
        if end >= len(buf) or buf[end] != 0:
            raise ProtocolError("string not NUL-terminated inside the message")
        raw = buf[pos:end]
        if b"\0" in raw:
            raise ProtocolError("string contains NUL")
        s = raw.decode("utf-8")
        if check_path and not valid_object_path(s):
            raise ProtocolError(f"invalid object path {s[:80]!r}")
        return s, end + 1

    return read_string


def read_signature_raw(buf: bytes, pos: int) -> tuple[str, int]:
    """A signature's text at ``pos`` (length byte, ASCII, NUL), not yet validated."""
    n = buf[pos]
    end = pos + 1 + n
    if end >= len(buf) or buf[end] != 0:
        raise ProtocolError("signature not NUL-terminated inside the message")
    raw = buf[pos + 1 : end]
    if not raw.isascii():
        raise ProtocolError("non-ASCII signature")
    return raw.decode("ascii"), end + 1


def read_signature(buf: bytes, pos: int, ctx: ReadCtx) -> tuple[str, int]:
    """The reader of a ``g``: a signature, validated."""
    sig, pos = read_signature_raw(buf, pos)
    try:
        parse_signature(sig)
    except SignatureError as exc:
        raise ProtocolError(str(exc)) from None
    return sig, pos


def make_reader(node: Node, e: str, level: int) -> Reader:
    """The reader of one complete type; ``level`` is its container depth in the message (a
    variant inside adds it to the depth of what it holds)."""
    code, inner = node
    if code in FIXED:
        return _mk_fixed_reader(code, e)
    if code in "so":
        return string_reader(code, e)
    if code == "g":
        return read_signature
    if code == "v":
        return _mk_variant_reader(e, level)
    u32 = struct.Struct(e + "I").unpack_from
    if code == "(":
        fields = tuple(make_reader(f, e, level + 1) for f in inner)

        def read_struct(buf: bytes, pos: int, ctx: ReadCtx) -> tuple[tuple[object, ...], int]:
            pos = (pos + 7) & ~7
            out = []
            for field in fields:
                v, pos = field(buf, pos, ctx)
                out.append(v)
            return tuple(out), pos

        return read_struct
    if code == "{":
        key_r = make_reader(inner[0], e, level + 2)
        val_r = make_reader(inner[1], e, level + 2)

        def read_dict(buf: bytes, pos: int, ctx: ReadCtx) -> tuple[dict[object, object], int]:
            pos = (pos + 3) & ~3
            n: int = u32(buf, pos)[0]
            if n > MAX_ARRAY:
                raise ProtocolError("array too long")
            pos = (pos + 4 + 7) & ~7
            end = pos + n
            if end > len(buf):
                raise ProtocolError("array extends past the message")
            out = {}
            while pos < end:
                pos = (pos + 7) & ~7
                k, pos = key_r(buf, pos, ctx)
                v, pos = val_r(buf, pos, ctx)
                out[k] = v
            if pos != end:
                raise ProtocolError("array elements overrun the array length")
            return out, pos

        return read_dict
    # plain array
    elem = inner[0]
    ecode = elem[0]
    emask = ALIGN[ecode] - 1
    if ecode == "y":

        def read_bytes(buf: bytes, pos: int, ctx: ReadCtx) -> tuple[bytes, int]:
            pos = (pos + 3) & ~3
            n: int = u32(buf, pos)[0]
            pos += 4
            end = pos + n
            if n > MAX_ARRAY or end > len(buf):
                raise ProtocolError("byte array extends past the message")
            return bytes(buf[pos:end]), end

        return read_bytes
    if ecode in FIXED_ARRAY_FMT:
        fmt = FIXED_ARRAY_FMT[ecode]
        esize = struct.calcsize(fmt)

        def read_fixed_array(buf: bytes, pos: int, ctx: ReadCtx) -> tuple[list[object], int]:
            pos = (pos + 3) & ~3
            n: int = u32(buf, pos)[0]
            pos = (pos + 4 + emask) & ~emask
            end = pos + n
            if n > MAX_ARRAY or end > len(buf) or n % esize:
                raise ProtocolError("bad fixed-size array length")
            return list(struct.unpack_from(f"{e}{n // esize}{fmt}", buf, pos)), end

        return read_fixed_array
    elem_r = make_reader(elem, e, level + 1)

    def read_array(buf: bytes, pos: int, ctx: ReadCtx) -> tuple[list[object], int]:
        pos = (pos + 3) & ~3
        n: int = u32(buf, pos)[0]
        if n > MAX_ARRAY:
            raise ProtocolError("array too long")
        pos = (pos + 4 + emask) & ~emask
        end = pos + n
        if end > len(buf):
            raise ProtocolError("array extends past the message")
        out = []
        while pos < end:
            v, pos = elem_r(buf, pos, ctx)
            out.append(v)
        if pos != end:
            raise ProtocolError("array elements overrun the array length")
        return out, pos

    return read_array


def _mk_variant_reader(e: str, level: int) -> Reader:
    def read_variant(buf: bytes, pos: int, ctx: ReadCtx) -> tuple[tuple[str, object], int]:
        sig, pos = read_signature_raw(buf, pos)
        plan = read_plan(sig)
        if plan is None or plan.count != 1:
            raise ProtocolError(f"variant signature {sig!r} is not one complete type")
        outer = ctx.base
        inner = outer + level + 1
        if inner + plan.depth > MAX_DEPTH:
            raise ProtocolError("containers nested too deeply")
        ctx.base = inner
        try:
            v, pos = plan.readers(e)[0](buf, pos, ctx)
        finally:
            ctx.base = outer
        return (sig, v), pos

    return read_variant


# --------------------------------------------------------------------------------------------
# Compiled signatures, cached.  The cache is bounded: variant signatures come from peers.


class ReadPlan:
    """A valid signature compiled for reading: how many complete types it holds, how deep they
    nest, and their readers per byte order (built on first use)."""

    __slots__ = ("count", "depth", "_nodes", "_readers")

    def __init__(self, nodes: list[Node]) -> None:
        self.count = len(nodes)
        self.depth = max((node_depth(n) for n in nodes), default=0)
        self._nodes = nodes
        self._readers: dict[str, tuple[Reader, ...]] = {}

    def readers(self, e: str) -> tuple[Reader, ...]:
        r = self._readers.get(e)
        if r is None:
            r = self._readers[e] = tuple(make_reader(n, e, 0) for n in self._nodes)
        return r


_PLANS: dict[str, ReadPlan | None] = {}
_PLANS_MAX = 512
_UNSEEN = ReadPlan([])  # (never stored: tells "not cached" from "cached as invalid")


def read_plan(sig: str) -> ReadPlan | None:
    """The compiled form of a signature, or None if it is invalid."""
    plan = _PLANS.get(sig, _UNSEEN)
    if plan is not _UNSEEN:
        return plan
    try:
        plan = ReadPlan(parse_signature(sig))
    except SignatureError:
        plan = None
    if len(_PLANS) >= _PLANS_MAX:
        _PLANS.clear()
    _PLANS[sig] = plan
    return plan


def unmarshal_body(
    signature: str, data: bytes, fds: Sequence[int] = (), endian: str = "<"
) -> tuple[object, ...]:
    """Unmarshal a standalone body (test helper; offsets start at 0, which is 8-aligned)."""
    plan = read_plan(signature)
    if plan is None:
        raise ProtocolError(f"invalid signature {signature!r}")
    ctx = ReadCtx(list(fds), endian)
    try:
        pos = 0
        out = []
        for r in plan.readers(endian):
            v, pos = r(data, pos, ctx)
            out.append(v)
    except ProtocolError:
        raise
    except (struct.error, IndexError, ValueError, RecursionError, OverflowError) as exc:
        raise ProtocolError(f"malformed body: {exc}") from None
    if pos != len(data):
        raise ProtocolError("trailing bytes after the body")
    return tuple(out)
