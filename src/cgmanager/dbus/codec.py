"""The D-Bus wire format: validating unmarshaller and marshaller (the codec adapter).

Everything that knows the byte layout of a D-Bus message lives here; the rest of the package only
uses :class:`Message`, :func:`message_size`, :func:`parse_message` and :func:`serialise_message`.
Swapping the codec (e.g. for a compiled one) means re-implementing those four names.

Why not jeepney's parser, although jeepney was the chosen codec?  Its parser trusts the peer:

* ``Message.from_buffer`` loops forever on a 28-byte body with signature ``a()`` (an empty struct
  never advances the array cursor) — one such message would freeze the daemon's only event loop;
* variant signatures inside header fields and bodies are not validated, nesting is unbounded
  (a deep variant chain ends in ``RecursionError`` after ~1000 Python frames — CVE-2019-6454 class);
* unknown header field codes (which the specification says must be ignored) raise, strings are
  not checked for NULs, booleans not for 0/1, object paths not at all;
* and ``import jeepney`` costs ~20 ms (typing, enum, socket, re), too much for a CLI that starts
  once per shell command.

So this module validates like libdbus does (signature grammar, 32/32 nesting, total depth 64
including variants, lengths against the buffer, UTF-8 without NUL, object path syntax, fd indices
against the fds that came with the message) and raises only :class:`ProtocolError` on bad input.
Parsed values have jeepney's shapes (variant → ``(signature, value)``, ``a{..}`` → dict, ``ay`` →
bytes, struct → tuple, array → list, ``h`` → the received fd as an int), so the test suite can
cross-check both directions against jeepney.

Imports only :mod:`struct`: the blocking client imports this module and must start fast.
"""

from __future__ import annotations

import struct

METHOD_CALL = 1
METHOD_RETURN = 2
ERROR = 3
SIGNAL = 4

NO_REPLY_EXPECTED = 0x1
NO_AUTO_START = 0x2
ALLOW_INTERACTIVE_AUTHORIZATION = 0x4

#: The specification's hard limit for a whole message.
PROTOCOL_MAX_MESSAGE = 1 << 27
_MAX_ARRAY = 1 << 26
_MAX_DEPTH = 64
_MAX_CONTAINER = 32


class ProtocolError(ValueError):
    """The peer sent bytes that are not a valid D-Bus message (or handshake).

    The only exception :func:`message_size` and :func:`parse_message` raise; the connection
    that produced it must be dropped.
    """


class MessageTooLarge(ProtocolError):
    """The announced message size exceeds the configured limit."""


class MarshalError(ValueError):
    """A value given to the marshaller does not fit its signature (a programming error)."""


class SignatureError(ValueError):
    """Not a valid D-Bus type signature."""


class Message:
    """One D-Bus message, header fields as attributes and the body as a tuple.

    ``fds`` holds the file descriptors that arrived with the message (ints, in body index order);
    whoever holds the message owns them.
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
        body: tuple = (),
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
# Name validation (no `re`: it costs milliseconds to import)


def valid_object_path(path: object) -> bool:
    """True if ``path`` is a syntactically valid object path (``/`` or ``/a/b_c/d9``)."""
    if type(path) is not str or not path or path[0] != "/":
        return False
    if path == "/":
        return True
    if path[-1] == "/":
        return False
    for element in path[1:].split("/"):
        if not element or not element.isascii() or not element.replace("_", "a").isalnum():
            return False
    return True


def _valid_element(element: str, allow_dash: bool = False) -> bool:
    if not element or not element.isascii() or element[0].isdigit():
        return False
    probe = element.replace("_", "a")
    if allow_dash:
        probe = probe.replace("-", "a")
    return probe.isalnum()


def valid_member_name(name: object) -> bool:
    """True if ``name`` is a valid method/signal/property member name."""
    return type(name) is str and len(name) <= 255 and _valid_element(name)


def valid_interface_name(name: object) -> bool:
    """True if ``name`` is a valid interface (or error) name: two or more dotted elements."""
    if type(name) is not str or len(name) > 255:
        return False
    elements = name.split(".")
    return len(elements) >= 2 and all(_valid_element(e) for e in elements)


def valid_bus_name(name: object) -> bool:
    """True if ``name`` is a valid unique (``:1.5``) or well-known bus name."""
    if type(name) is not str or not name or len(name) > 255:
        return False
    if name[0] == ":":
        elements = name[1:].split(".")
        return len(elements) >= 2 and all(
            e and e.isascii() and e.replace("_", "a").replace("-", "a").isalnum() for e in elements
        )
    elements = name.split(".")
    return len(elements) >= 2 and all(_valid_element(e, allow_dash=True) for e in elements)


# --------------------------------------------------------------------------------------------
# Signatures

_BASIC = "ybnqiuxtdhsog"
_FIXED = {
    "y": "B",
    "b": "I",
    "n": "h",
    "q": "H",
    "i": "i",
    "u": "I",
    "x": "q",
    "t": "Q",
    "d": "d",
    "h": "I",
}
_ALIGN = {
    "y": 1,
    "b": 4,
    "n": 2,
    "q": 2,
    "i": 4,
    "u": 4,
    "x": 8,
    "t": 8,
    "d": 8,
    "h": 4,
    "s": 4,
    "o": 4,
    "g": 1,
    "v": 1,
    "a": 4,
    "(": 8,
    "{": 8,
}


def _parse_type(sig: str, i: int, arrays: int, structs: int) -> tuple[tuple, int]:
    """Parse one complete type at ``sig[i]``; returns (node, next index).

    Nodes: ``(code,)`` for basic types and ``v``; ``("a", elem)``; ``("{", key, value)`` for a
    dict (array of dict entries); ``("(", (fields…))``.  Recursion is bounded by 64 levels
    because the nesting limits are checked on the way down.
    """
    if i >= len(sig):
        raise SignatureError(f"incomplete signature {sig!r}")
    c = sig[i]
    if c in _BASIC or c == "v":
        return (c,), i + 1
    if c == "a":
        if arrays >= _MAX_CONTAINER:
            raise SignatureError(f"arrays nested too deeply in {sig!r}")
        if i + 1 < len(sig) and sig[i + 1] == "{":
            if structs >= _MAX_CONTAINER:
                raise SignatureError(f"structs nested too deeply in {sig!r}")
            j = i + 2
            if j >= len(sig) or sig[j] not in _BASIC:
                raise SignatureError(f"dict key must be a basic type in {sig!r}")
            key = sig[j]
            value, j = _parse_type(sig, j + 1, arrays + 1, structs + 1)
            if j >= len(sig) or sig[j] != "}":
                raise SignatureError(f"dict entry must have exactly two types in {sig!r}")
            return ("{", key, value), j + 1
        elem, j = _parse_type(sig, i + 1, arrays + 1, structs)
        return ("a", elem), j
    if c == "(":
        if structs >= _MAX_CONTAINER:
            raise SignatureError(f"structs nested too deeply in {sig!r}")
        fields = []
        j = i + 1
        while True:
            if j >= len(sig):
                raise SignatureError(f"unterminated struct in {sig!r}")
            if sig[j] == ")":
                break
            field, j = _parse_type(sig, j, arrays, structs + 1)
            fields.append(field)
        if not fields:
            raise SignatureError(f"empty struct in {sig!r}")
        return ("(", tuple(fields)), j + 1
    raise SignatureError(f"unexpected {c!r} in signature {sig!r}")


def _node_depth(node: tuple) -> int:
    code = node[0]
    if code == "a":
        return 1 + _node_depth(node[1])
    if code == "{":
        return 2 + _node_depth(node[2])
    if code == "(":
        return 1 + max(_node_depth(f) for f in node[1])
    if code == "v":
        return 1
    return 0


def _node_sig(node: tuple) -> str:
    code = node[0]
    if code == "a":
        return "a" + _node_sig(node[1])
    if code == "{":
        return "a{" + node[1] + _node_sig(node[2]) + "}"
    if code == "(":
        return "(" + "".join(_node_sig(f) for f in node[1]) + ")"
    return code


def parse_signature(sig: str) -> list[tuple]:
    """Validate ``sig`` and return its complete types as nodes (see :func:`_parse_type`)."""
    if type(sig) is not str:
        raise SignatureError(f"signature must be str, not {type(sig).__name__}")
    if len(sig) > 255 or not sig.isascii():
        raise SignatureError(f"invalid signature {sig[:40]!r}")
    nodes = []
    i = 0
    while i < len(sig):
        node, i = _parse_type(sig, i, 0, 0)
        nodes.append(node)
    return nodes


def split_signature(sig: str) -> list[str]:
    """Split a valid signature into its complete types: ``"sa(ii)h"`` → ``["s", "a(ii)", "h"]``."""
    return [_node_sig(n) for n in parse_signature(sig)]


def is_valid_signature(sig: object) -> bool:
    """True if ``sig`` is a valid signature (any number of complete types)."""
    try:
        parse_signature(sig)  # type: ignore[arg-type]
    except SignatureError:
        return False
    return True


# --------------------------------------------------------------------------------------------
# Readers (unmarshalling).  A reader is ``r(buf, pos, ctx) -> (value, new_pos)``; positions are
# absolute in the message, which makes alignment right because the body starts 8-aligned.


class _ReadCtx:
    __slots__ = ("fds", "base", "endian")

    def __init__(self, fds: list[int], endian: str) -> None:
        self.fds = fds
        self.base = 0
        self.endian = endian


def _bad(what: str) -> ProtocolError:
    return ProtocolError(what)


def _mk_fixed_reader(code: str, e: str):
    st = struct.Struct(e + _FIXED[code])
    unpack = st.unpack_from
    size = st.size
    mask = size - 1
    if code == "b":

        def read_bool(buf, pos, ctx):
            pos = (pos + 3) & ~3
            v = unpack(buf, pos)[0]
            if v > 1:
                raise _bad(f"boolean value {v}")
            return v == 1, pos + 4

        return read_bool
    if code == "h":

        def read_fd(buf, pos, ctx):
            pos = (pos + 3) & ~3
            idx = unpack(buf, pos)[0]
            if idx >= len(ctx.fds):
                raise _bad(f"fd index {idx} but {len(ctx.fds)} fds")
            return ctx.fds[idx], pos + 4

        return read_fd
    if size == 1:

        def read_byte(buf, pos, ctx):
            return buf[pos], pos + 1

        return read_byte

    def read_fixed(buf, pos, ctx):
        pos = (pos + mask) & ~mask
        return unpack(buf, pos)[0], pos + size

    return read_fixed


def _mk_string_reader(code: str, e: str):
    u32 = struct.Struct(e + "I").unpack_from
    check_path = code == "o"

    def read_string(buf, pos, ctx):
        pos = (pos + 3) & ~3
        n = u32(buf, pos)[0]
        pos += 4
        end = pos + n
        if end >= len(buf) or buf[end] != 0:
            raise _bad("string not NUL-terminated inside the message")
        raw = buf[pos:end]
        if b"\0" in raw:
            raise _bad("string contains NUL")
        s = raw.decode("utf-8")
        if check_path and not valid_object_path(s):
            raise _bad(f"invalid object path {s[:80]!r}")
        return s, end + 1

    return read_string


def _read_sig_raw(buf, pos) -> tuple[str, int]:
    n = buf[pos]
    end = pos + 1 + n
    if end >= len(buf) or buf[end] != 0:
        raise _bad("signature not NUL-terminated inside the message")
    raw = buf[pos + 1 : end]
    if not raw.isascii():
        raise _bad("non-ASCII signature")
    return raw.decode("ascii"), end + 1


def _read_signature_value(buf, pos, ctx):
    sig, pos = _read_sig_raw(buf, pos)
    try:
        parse_signature(sig)
    except SignatureError as exc:
        raise _bad(str(exc)) from None
    return sig, pos


_FIXED_ARRAY_FMT = {"n": "h", "q": "H", "i": "i", "u": "I", "x": "q", "t": "Q", "d": "d"}


def _mk_reader(node: tuple, e: str, level: int):
    code = node[0]
    if code in _FIXED:
        return _mk_fixed_reader(code, e)
    if code in "so":
        return _mk_string_reader(code, e)
    if code == "g":
        return _read_signature_value
    if code == "v":
        return _mk_variant_reader(e, level)
    u32 = struct.Struct(e + "I").unpack_from
    if code == "(":
        fields = tuple(_mk_reader(f, e, level + 1) for f in node[1])

        def read_struct(buf, pos, ctx):
            pos = (pos + 7) & ~7
            out = []
            for field in fields:
                v, pos = field(buf, pos, ctx)
                out.append(v)
            return tuple(out), pos

        return read_struct
    if code == "{":
        key_r = _mk_reader((node[1],), e, level + 2)
        val_r = _mk_reader(node[2], e, level + 2)

        def read_dict(buf, pos, ctx):
            pos = (pos + 3) & ~3
            n = u32(buf, pos)[0]
            if n > _MAX_ARRAY:
                raise _bad("array too long")
            pos = (pos + 4 + 7) & ~7
            end = pos + n
            if end > len(buf):
                raise _bad("array extends past the message")
            out = {}
            while pos < end:
                pos = (pos + 7) & ~7
                k, pos = key_r(buf, pos, ctx)
                v, pos = val_r(buf, pos, ctx)
                out[k] = v
            if pos != end:
                raise _bad("array elements overrun the array length")
            return out, pos

        return read_dict
    # plain array
    elem = node[1]
    ecode = elem[0]
    ealign = _ALIGN[ecode]
    emask = ealign - 1
    if ecode == "y":

        def read_bytes(buf, pos, ctx):
            pos = (pos + 3) & ~3
            n = u32(buf, pos)[0]
            pos += 4
            end = pos + n
            if n > _MAX_ARRAY or end > len(buf):
                raise _bad("byte array extends past the message")
            return bytes(buf[pos:end]), end

        return read_bytes
    if ecode in _FIXED_ARRAY_FMT:
        fmt = _FIXED_ARRAY_FMT[ecode]
        esize = struct.calcsize(fmt)

        def read_fixed_array(buf, pos, ctx):
            pos = (pos + 3) & ~3
            n = u32(buf, pos)[0]
            pos = (pos + 4 + emask) & ~emask
            end = pos + n
            if n > _MAX_ARRAY or end > len(buf) or n % esize:
                raise _bad("bad fixed-size array length")
            return list(struct.unpack_from(f"{e}{n // esize}{fmt}", buf, pos)), end

        return read_fixed_array
    elem_r = _mk_reader(elem, e, level + 1)

    def read_array(buf, pos, ctx):
        pos = (pos + 3) & ~3
        n = u32(buf, pos)[0]
        if n > _MAX_ARRAY:
            raise _bad("array too long")
        pos = (pos + 4 + emask) & ~emask
        end = pos + n
        if end > len(buf):
            raise _bad("array extends past the message")
        out = []
        while pos < end:
            v, pos = elem_r(buf, pos, ctx)
            out.append(v)
        if pos != end:
            raise _bad("array elements overrun the array length")
        return out, pos

    return read_array


def _mk_variant_reader(e: str, level: int):
    def read_variant(buf, pos, ctx):
        sig, pos = _read_sig_raw(buf, pos)
        comp = _compiled(sig)
        if comp is None or len(comp.nodes) != 1:
            raise _bad(f"variant signature {sig!r} is not one complete type")
        outer = ctx.base
        inner = outer + level + 1
        if inner + comp.depth > _MAX_DEPTH:
            raise _bad("containers nested too deeply")
        ctx.base = inner
        try:
            v, pos = comp.readers(e)[0](buf, pos, ctx)
        finally:
            ctx.base = outer
        return (sig, v), pos

    return read_variant


# --------------------------------------------------------------------------------------------
# Writers (marshalling): ``w(out: bytearray, value, fds: list[int])``.  ``out`` starts at an
# 8-aligned position of the message, so alignment relative to ``len(out)`` is right.

_PAD = [b"\0" * n for n in range(8)]
_U32 = struct.Struct("<I")
_pack_u32 = _U32.pack
_pack_into_u32 = _U32.pack_into


def _mk_fixed_writer(code: str):
    pack = struct.Struct("<" + _FIXED[code]).pack
    size = struct.calcsize(_FIXED[code])
    mask = size - 1
    if code == "b":

        def write_bool(out, value, fds):
            if value is not True and value is not False and value not in (0, 1):
                raise MarshalError(f"expected bool, got {value!r}")
            out += _PAD[(-len(out)) & 3]
            out += pack(1 if value else 0)

        return write_bool
    if code == "h":

        def write_fd(out, value, fds):
            if hasattr(value, "fileno"):
                value = value.fileno()
            if type(value) is not int or value < 0:
                raise MarshalError(f"expected a file descriptor, got {value!r}")
            out += _PAD[(-len(out)) & 3]
            out += pack(len(fds))
            fds.append(value)

        return write_fd
    if code == "d":

        def write_double(out, value, fds):
            if type(value) not in (float, int):
                raise MarshalError(f"expected float, got {value!r}")
            out += _PAD[(-len(out)) & 7]
            out += pack(value)

        return write_double

    def write_int(out, value, fds):
        if type(value) is not int and type(value) is not bool:
            raise MarshalError(f"expected int for {code!r}, got {value!r}")
        out += _PAD[(-len(out)) & mask]
        try:
            out += pack(value)
        except struct.error:
            raise MarshalError(f"{value!r} out of range for {code!r}") from None

    return write_int


def _mk_string_writer(code: str):
    def write_string(out, value, fds):
        if type(value) is not str:
            raise MarshalError(f"expected str for {code!r}, got {value!r:.80}")
        if "\0" in value:
            raise MarshalError("string contains NUL")
        if code == "o" and not valid_object_path(value):
            raise MarshalError(f"invalid object path {value!r:.80}")
        try:
            raw = value.encode("utf-8")
        except UnicodeEncodeError:
            raise MarshalError("string is not encodable as UTF-8") from None
        out += _PAD[(-len(out)) & 3]
        out += _pack_u32(len(raw))
        out += raw
        out += b"\0"

    return write_string


def _write_signature(out, value, fds):
    if not is_valid_signature(value):
        raise MarshalError(f"invalid signature {value!r:.80}")
    raw = value.encode("ascii")
    out.append(len(raw))
    out += raw
    out += b"\0"


def _write_variant(out, value, fds):
    if type(value) is not tuple or len(value) != 2:
        raise MarshalError(f"a variant must be a (signature, value) tuple, got {value!r:.80}")
    sig, inner = value
    comp = _compiled(sig) if type(sig) is str else None
    if comp is None or len(comp.nodes) != 1:
        raise MarshalError(f"variant signature {sig!r} is not one complete type")
    raw = sig.encode("ascii")
    out.append(len(raw))
    out += raw
    out += b"\0"
    comp.writers[0](out, inner, fds)


def _mk_writer(node: tuple):
    code = node[0]
    if code in _FIXED:
        return _mk_fixed_writer(code)
    if code in "so":
        return _mk_string_writer(code)
    if code == "g":
        return _write_signature
    if code == "v":
        return _write_variant
    if code == "(":
        fields = tuple(_mk_writer(f) for f in node[1])
        nfields = len(fields)

        def write_struct(out, value, fds):
            if type(value) not in (tuple, list) or len(value) != nfields:
                raise MarshalError(f"expected a {nfields}-tuple, got {value!r:.80}")
            out += _PAD[(-len(out)) & 7]
            for field, item in zip(fields, value):
                field(out, item, fds)

        return write_struct
    if code == "{":
        key_w = _mk_writer((node[1],))
        val_w = _mk_writer(node[2])

        def write_dict(out, value, fds):
            if not isinstance(value, dict):
                raise MarshalError(f"expected dict, got {value!r:.80}")
            out += _PAD[(-len(out)) & 3]
            at = len(out)
            out += b"\0\0\0\0"
            out += _PAD[(-len(out)) & 7]
            start = len(out)
            for k, v in value.items():
                out += _PAD[(-len(out)) & 7]
                key_w(out, k, fds)
                val_w(out, v, fds)
            n = len(out) - start
            if n > _MAX_ARRAY:
                raise MarshalError("array longer than 64 MiB")
            _pack_into_u32(out, at, n)

        return write_dict
    elem = node[1]
    ecode = elem[0]
    emask = _ALIGN[ecode] - 1
    if ecode == "y":

        def write_bytes(out, value, fds):
            if not isinstance(value, (bytes, bytearray, memoryview)):
                if type(value) not in (list, tuple):
                    raise MarshalError(f"expected bytes, got {value!r:.80}")
                try:
                    value = bytes(value)
                except (TypeError, ValueError):
                    raise MarshalError(f"expected bytes, got {value!r:.80}") from None
            if len(value) > _MAX_ARRAY:
                raise MarshalError("array longer than 64 MiB")
            out += _PAD[(-len(out)) & 3]
            out += _pack_u32(len(value))
            out += value

        return write_bytes
    if ecode in _FIXED_ARRAY_FMT:
        fmt = _FIXED_ARRAY_FMT[ecode]
        int_elems = ecode != "d"

        def write_fixed_array(out, value, fds):
            if type(value) not in (list, tuple):
                raise MarshalError(f"expected list, got {value!r:.80}")
            if int_elems and any(type(v) is not int and type(v) is not bool for v in value):
                raise MarshalError(f"expected ints in array of {ecode!r}")
            try:
                raw = struct.pack(f"<{len(value)}{fmt}", *value)
            except struct.error as exc:
                raise MarshalError(f"bad array of {ecode!r}: {exc}") from None
            if len(raw) > _MAX_ARRAY:
                raise MarshalError("array longer than 64 MiB")
            out += _PAD[(-len(out)) & 3]
            out += _pack_u32(len(raw))
            out += _PAD[(-len(out)) & emask]
            out += raw

        return write_fixed_array
    elem_w = _mk_writer(elem)

    def write_array(out, value, fds):
        if type(value) not in (list, tuple):
            raise MarshalError(f"expected list, got {value!r:.80}")
        out += _PAD[(-len(out)) & 3]
        at = len(out)
        out += b"\0\0\0\0"
        out += _PAD[(-len(out)) & emask]
        start = len(out)
        for item in value:
            elem_w(out, item, fds)
        n = len(out) - start
        if n > _MAX_ARRAY:
            raise MarshalError("array longer than 64 MiB")
        _pack_into_u32(out, at, n)

    return write_array


# --------------------------------------------------------------------------------------------
# Compiled signatures, cached.  The cache is bounded: variant signatures come from peers.


class _Compiled:
    __slots__ = ("sig", "nodes", "depth", "_readers", "_writers")

    def __init__(self, sig: str, nodes: list[tuple]) -> None:
        self.sig = sig
        self.nodes = nodes
        self.depth = max((_node_depth(n) for n in nodes), default=0)
        self._readers: dict[str, tuple] = {}
        self._writers: tuple | None = None

    def readers(self, e: str) -> tuple:
        r = self._readers.get(e)
        if r is None:
            r = self._readers[e] = tuple(_mk_reader(n, e, 0) for n in self.nodes)
        return r

    @property
    def writers(self) -> tuple:
        w = self._writers
        if w is None:
            w = self._writers = tuple(_mk_writer(n) for n in self.nodes)
        return w


_CACHE: dict[str, _Compiled | None] = {}
_CACHE_MAX = 512


def _compiled(sig: str) -> _Compiled | None:
    """Compiled form of a signature, or None if it is invalid."""
    comp = _CACHE.get(sig, False)
    if comp is not False:
        return comp  # type: ignore[return-value]
    try:
        comp = _Compiled(sig, parse_signature(sig))
    except SignatureError:
        comp = None
    if len(_CACHE) >= _CACHE_MAX:
        _CACHE.clear()
    _CACHE[sig] = comp
    return comp


def compile_signature(sig: str) -> _Compiled:
    """Validate and compile ``sig`` (raises :class:`SignatureError`)."""
    comp = _compiled(sig)
    if comp is None:
        parse_signature(sig)  # raises with a precise message
        raise SignatureError(sig)
    return comp


def marshal_body(signature: str, values: tuple | list) -> tuple[bytes, list[int]]:
    """Marshal ``values`` (one per complete type of ``signature``); returns (bytes, fds).

    Raises :class:`MarshalError` if the values do not fit.
    """
    try:
        comp = compile_signature(signature)
    except SignatureError as exc:
        raise MarshalError(str(exc)) from None
    writers = comp.writers
    if type(values) not in (tuple, list) or len(values) != len(writers):
        raise MarshalError(
            f"signature {signature!r} needs {len(writers)} values, got {values!r:.120}"
        )
    out = bytearray()
    fds: list[int] = []
    try:
        for w, v in zip(writers, values):
            w(out, v, fds)
    except RecursionError:
        raise MarshalError("value nested too deeply") from None
    return bytes(out), fds


def unmarshal_body(
    signature: str, data: bytes, fds: list[int] | tuple = (), endian: str = "<"
) -> tuple:
    """Unmarshal a standalone body (test helper; offsets start at 0, which is 8-aligned)."""
    comp = _compiled(signature)
    if comp is None:
        raise ProtocolError(f"invalid signature {signature!r}")
    ctx = _ReadCtx(list(fds), endian)
    try:
        pos = 0
        out = []
        for r in comp.readers(endian):
            v, pos = r(data, pos, ctx)
            out.append(v)
    except ProtocolError:
        raise
    except (struct.error, IndexError, ValueError, RecursionError, OverflowError) as exc:
        raise ProtocolError(f"malformed body: {exc}") from None
    if pos != len(data):
        raise ProtocolError("trailing bytes after the body")
    return tuple(out)


# --------------------------------------------------------------------------------------------
# Whole messages

_HDR_LE = struct.Struct("<III")
_HDR_BE = struct.Struct(">III")
_HEADER_SIGS = {1: "o", 2: "s", 3: "s", 4: "s", 5: "u", 6: "s", 7: "s", 8: "g", 9: "u"}
_HEADER_READERS = {
    e: {code: _mk_reader((sig,), e, 1) for code, sig in _HEADER_SIGS.items()} for e in "<>"
}


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
    total = 16 + fields_len + ((-fields_len) & 7) + body_len
    if total > max_size or total > PROTOCOL_MAX_MESSAGE:
        raise MessageTooLarge(f"message of {total} bytes exceeds the limit of {max_size}")
    return total


def parse_message(data: bytes, fds: list[int] | tuple = ()) -> Message:
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
_CALL_HEADERS: dict[bytes, dict[int, object]] = {}
_CALL_HEADERS_MAX = 256
_CALL_HEADER_BYTES = 512


def _parse_fields(data: bytes, e: str, fend: int, ctx: _ReadCtx) -> dict[int, object]:
    """The header fields (16 .. fend) of a message, their names validated; the caller must
    not modify the dict (it may be shared through the cache)."""
    readers = _HEADER_READERS[e]
    fields: dict[int, object] = {}
    pos = 16
    while pos < fend:
        pos = (pos + 7) & ~7
        code = data[pos]
        sig, pos = _read_sig_raw(data, pos + 1)
        expected = _HEADER_SIGS.get(code)
        if expected is not None:
            if sig != expected:
                raise ProtocolError(f"header field {code} has signature {sig!r}")
            value, pos = readers[code](data, pos, ctx)
            if code in fields:
                raise ProtocolError(f"duplicate header field {code}")
            fields[code] = value
        else:  # unknown fields must be skipped, but still parsed safely
            comp = _compiled(sig)
            if comp is None or len(comp.nodes) != 1 or comp.depth + 2 > _MAX_DEPTH:
                raise ProtocolError(f"bad signature {sig!r} in header field {code}")
            ctx.base = 1
            _v, pos = comp.readers(e)[0](data, pos, ctx)
            ctx.base = 0
    if pos != fend:
        raise ProtocolError("header fields overrun their array")
    interface = fields.get(2)
    member = fields.get(3)
    error_name = fields.get(4)
    if interface is not None and not valid_interface_name(interface):
        raise ProtocolError(f"invalid interface name {interface!r:.80}")
    if member is not None and not valid_member_name(member):
        raise ProtocolError(f"invalid member name {member!r:.80}")
    if error_name is not None and not valid_interface_name(error_name):
        raise ProtocolError(f"invalid error name {error_name!r:.80}")
    return fields


def _parse_message(data: bytes, fds) -> Message:
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
    ctx = _ReadCtx([], e)
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

    path = fields.get(1)
    interface = fields.get(2)
    member = fields.get(3)
    error_name = fields.get(4)
    if mtype == METHOD_CALL:
        if path is None or member is None:
            raise ProtocolError("method call without path or member")
    elif mtype == SIGNAL:
        if path is None or member is None or interface is None:
            raise ProtocolError("signal without path, interface or member")
    elif mtype == ERROR:
        if error_name is None or 5 not in fields:
            raise ProtocolError("error without name or reply serial")
    elif mtype == METHOD_RETURN:  # noqa: SIM102 (parallel to the cases above)
        if 5 not in fields:
            raise ProtocolError("method return without reply serial")

    n_fds = fields.get(9, 0)
    if n_fds > len(fds):  # type: ignore[operator]
        raise ProtocolError(f"message announces {n_fds} fds but {len(fds)} arrived")
    msg_fds = list(fds[:n_fds])  # type: ignore[misc]
    signature = fields.get(8, "")
    body: tuple = ()
    if signature:
        comp = _compiled(signature)  # type: ignore[arg-type]
        if comp is None:
            raise ProtocolError(f"invalid body signature {signature!r}")
        ctx.fds = msg_fds
        ctx.base = 0
        out = []
        pos = body_start
        for r in comp.readers(e):
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
        reply_serial=fields.get(5),
        destination=fields.get(6),
        sender=fields.get(7),
        signature=signature,
        body=body,
        fds=msg_fds,
    )


def serialise_message(msg: Message, serial: int) -> tuple[bytes, list[int]]:
    """Encode ``msg`` (little-endian) with ``serial``; returns (bytes, fds to send with them).

    The fds are the ``h`` values found in the body, in index order (``msg.fds`` is ignored).
    Raises :class:`MarshalError` if the body does not fit the signature.
    """
    body, fds = marshal_body(msg.signature, msg.body) if msg.signature else (b"", [])
    if msg.body and not msg.signature:
        raise MarshalError("body given without a signature")
    out = bytearray(16)
    if msg.path is not None:
        out += b"\x01\x01o\x00"
        _write_path(out, msg.path, fds)
    for code, value in ((2, msg.interface), (3, msg.member), (4, msg.error_name)):
        if value is not None:
            out += _PAD[(-len(out)) & 7]
            out += _FIELD_S[code]
            _write_str(out, value, fds)
    if msg.reply_serial is not None:
        out += _PAD[(-len(out)) & 7]
        out += b"\x05\x01u\x00"
        out += _pack_u32(msg.reply_serial)
    for code, value in ((6, msg.destination), (7, msg.sender)):
        if value is not None:
            out += _PAD[(-len(out)) & 7]
            out += _FIELD_S[code]
            _write_str(out, value, fds)
    if msg.signature:
        out += _PAD[(-len(out)) & 7]
        out += b"\x08\x01g\x00"
        _write_signature(out, msg.signature, fds)
    if fds:
        out += _PAD[(-len(out)) & 7]
        out += b"\x09\x01u\x00"
        out += _pack_u32(len(fds))
    fields_len = len(out) - 16
    out += _PAD[(-len(out)) & 7]
    struct.pack_into(
        "<cBBBIII", out, 0, b"l", msg.type, msg.flags, 1, len(body), serial, fields_len
    )
    out += body
    if len(out) > PROTOCOL_MAX_MESSAGE:
        raise MarshalError("message larger than 128 MiB")
    return bytes(out), fds


_FIELD_S = {
    2: b"\x02\x01s\x00",
    3: b"\x03\x01s\x00",
    4: b"\x04\x01s\x00",
    6: b"\x06\x01s\x00",
    7: b"\x07\x01s\x00",
}
_write_str = _mk_string_writer("s")
_write_path = _mk_string_writer("o")
