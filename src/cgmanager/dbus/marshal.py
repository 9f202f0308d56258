"""Writing D-Bus values (little-endian): one writer per type, built once per signature.

A writer is ``w(out: bytearray, value, fds: list[int])``: it checks that ``value`` fits its type
(exact types: ``True`` fits ``b``, an ``IntEnum`` fits nothing), appends the bytes and, for an
``h``, the fd (its index in ``fds`` is what goes on the wire).  ``out`` starts at an 8-aligned
position of the message, so alignment relative to ``len(out)`` is right.  A value that does not
fit raises :class:`MarshalError` — our own mistake, never the peer's.
"""

from __future__ import annotations

from .signature import (
    ALIGN,
    FIXED,
    FIXED_ARRAY_FMT,
    MAX_ARRAY,
    SignatureError,
    is_valid_signature,
    parse_signature,
    valid_object_path,
)

TYPE_CHECKING = False  # not typing's: importing typing costs the CLI's start-up (mypy knows it)
if TYPE_CHECKING:
    import struct
    from collections.abc import Callable, Sequence
    from typing import TypeAlias

    from .signature import Node

    Writer: TypeAlias = Callable[[bytearray, object, list[int]], None]
else:  # the same objects: struct.py only re-exports _struct, and loading it costs cgm's start
    import _struct as struct


class MarshalError(ValueError):
    """A value given to the marshaller does not fit its signature (a programming error)."""


#: padding by length: ``out += PAD[(-len(out)) & 7]`` aligns to 8
PAD = [b"\0" * n for n in range(8)]
_U32 = struct.Struct("<I")
pack_u32 = _U32.pack
_pack_into_u32 = _U32.pack_into


def _mk_fixed_writer(code: str) -> Writer:
    pack = struct.Struct("<" + FIXED[code]).pack
    size = struct.calcsize(FIXED[code])
    mask = size - 1
    if code == "b":

        def write_bool(out: bytearray, value: object, fds: list[int]) -> None:
            if value is not True and value is not False and value not in (0, 1):
                raise MarshalError(f"expected bool, got {value!r}")
            out += PAD[(-len(out)) & 3]
            out += pack(1 if value else 0)

        return write_bool
    if code == "h":

        def write_fd(out: bytearray, value: object, fds: list[int]) -> None:
            if hasattr(value, "fileno"):
                value = value.fileno()
            if type(value) is not int or value < 0:
                raise MarshalError(f"expected a file descriptor, got {value!r}")
            out += PAD[(-len(out)) & 3]
            out += pack(len(fds))
            fds.append(value)

        return write_fd
    if code == "d":

        def write_double(out: bytearray, value: object, fds: list[int]) -> None:
            if type(value) not in (float, int):
                raise MarshalError(f"expected float, got {value!r}")
            out += PAD[(-len(out)) & 7]
            out += pack(value)

        return write_double

    def write_int(out: bytearray, value: object, fds: list[int]) -> None:
        if type(value) is not int and type(value) is not bool:
            raise MarshalError(f"expected int for {code!r}, got {value!r}")
        out += PAD[(-len(out)) & mask]
        try:
            out += pack(value)
        except struct.error:
            raise MarshalError(f"{value!r} out of range for {code!r}") from None

    return write_int


def string_writer(code: str) -> Writer:
    """The writer of an ``s`` (UTF-8 without NUL) or ``o`` (object path, checked)."""

    def write_string(out: bytearray, value: object, fds: list[int]) -> None:
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
        out += PAD[(-len(out)) & 3]
        out += pack_u32(len(raw))
        out += raw
        out += b"\0"

    return write_string


def write_signature(out: bytearray, value: object, fds: list[int]) -> None:
    """The writer of a ``g``: a signature, checked."""
    if not is_valid_signature(value):
        raise MarshalError(f"invalid signature {value!r:.80}")
    raw = value.encode("ascii")
    out.append(len(raw))
    out += raw
    out += b"\0"


def _write_variant(out: bytearray, value: object, fds: list[int]) -> None:
    if type(value) is not tuple or len(value) != 2:
        raise MarshalError(f"a variant must be a (signature, value) tuple, got {value!r:.80}")
    sig, inner = value
    try:
        writers = writers_of(sig) if type(sig) is str else ()
    except SignatureError:
        writers = ()
    if len(writers) != 1:
        raise MarshalError(f"variant signature {sig!r} is not one complete type")
    raw = sig.encode("ascii")
    out.append(len(raw))
    out += raw
    out += b"\0"
    writers[0](out, inner, fds)


def _mk_writer(node: Node) -> Writer:
    code, inner = node
    if code in FIXED:
        return _mk_fixed_writer(code)
    if code in "so":
        return string_writer(code)
    if code == "g":
        return write_signature
    if code == "v":
        return _write_variant
    if code == "(":
        fields = tuple(_mk_writer(f) for f in inner)
        nfields = len(fields)

        def write_struct(out: bytearray, value: object, fds: list[int]) -> None:
            if (type(value) is not tuple and type(value) is not list) or len(value) != nfields:
                raise MarshalError(f"expected a {nfields}-tuple, got {value!r:.80}")
            out += PAD[(-len(out)) & 7]
            for field, item in zip(fields, value):
                field(out, item, fds)

        return write_struct
    if code == "{":
        key_w = _mk_writer(inner[0])
        val_w = _mk_writer(inner[1])

        def write_dict(out: bytearray, value: object, fds: list[int]) -> None:
            if not isinstance(value, dict):
                raise MarshalError(f"expected dict, got {value!r:.80}")
            out += PAD[(-len(out)) & 3]
            at = len(out)
            out += b"\0\0\0\0"
            out += PAD[(-len(out)) & 7]
            start = len(out)
            for k, v in value.items():
                out += PAD[(-len(out)) & 7]
                key_w(out, k, fds)
                val_w(out, v, fds)
            n = len(out) - start
            if n > MAX_ARRAY:
                raise MarshalError("array longer than 64 MiB")
            _pack_into_u32(out, at, n)

        return write_dict
    elem = inner[0]
    ecode = elem[0]
    emask = ALIGN[ecode] - 1
    if ecode == "y":

        def write_bytes(out: bytearray, value: object, fds: list[int]) -> None:
            if not isinstance(value, (bytes, bytearray, memoryview)):
                if type(value) is not list and type(value) is not tuple:
                    raise MarshalError(f"expected bytes, got {value!r:.80}")
                try:
                    value = bytes(value)
                except (TypeError, ValueError):
                    raise MarshalError(f"expected bytes, got {value!r:.80}") from None
            if len(value) > MAX_ARRAY:
                raise MarshalError("array longer than 64 MiB")
            out += PAD[(-len(out)) & 3]
            out += pack_u32(len(value))
            out += value

        return write_bytes
    if ecode in FIXED_ARRAY_FMT:
        fmt = FIXED_ARRAY_FMT[ecode]
        int_elems = ecode != "d"

        def write_fixed_array(out: bytearray, value: object, fds: list[int]) -> None:
            if type(value) is not list and type(value) is not tuple:
                raise MarshalError(f"expected list, got {value!r:.80}")
            if int_elems and any(type(v) is not int and type(v) is not bool for v in value):
                raise MarshalError(f"expected ints in array of {ecode!r}")
            try:
                raw = struct.pack(f"<{len(value)}{fmt}", *value)
            except struct.error as exc:
                raise MarshalError(f"bad array of {ecode!r}: {exc}") from None
            if len(raw) > MAX_ARRAY:
                raise MarshalError("array longer than 64 MiB")
            out += PAD[(-len(out)) & 3]
            out += pack_u32(len(raw))
            out += PAD[(-len(out)) & emask]
            out += raw

        return write_fixed_array
    elem_w = _mk_writer(elem)

    def write_array(out: bytearray, value: object, fds: list[int]) -> None:
        if type(value) is not list and type(value) is not tuple:
            raise MarshalError(f"expected list, got {value!r:.80}")
        out += PAD[(-len(out)) & 3]
        at = len(out)
        out += b"\0\0\0\0"
        out += PAD[(-len(out)) & emask]
        start = len(out)
        for item in value:
            elem_w(out, item, fds)
        n = len(out) - start
        if n > MAX_ARRAY:
            raise MarshalError("array longer than 64 MiB")
        _pack_into_u32(out, at, n)

    return write_array


# --------------------------------------------------------------------------------------------
# Compiled signatures, cached (bounded: a variant's signature may come from what a peer sent)

_WRITERS: dict[str, tuple[Writer, ...]] = {}
_WRITERS_MAX = 512


def writers_of(sig: str) -> tuple[Writer, ...]:
    """The writers of a signature's complete types (raises :class:`SignatureError`)."""
    w = _WRITERS.get(sig)
    if w is None:
        w = tuple(_mk_writer(n) for n in parse_signature(sig))
        if len(_WRITERS) >= _WRITERS_MAX:
            _WRITERS.clear()
        _WRITERS[sig] = w
    return w


def marshal_body(signature: str, values: Sequence[object]) -> tuple[bytes, list[int]]:
    """Marshal ``values`` (one per complete type of ``signature``); returns (bytes, fds).

    Raises :class:`MarshalError` if the values do not fit.
    """
    try:
        writers = writers_of(signature)
    except SignatureError as exc:
        raise MarshalError(str(exc)) from None
    if (type(values) is not tuple and type(values) is not list) or len(values) != len(writers):
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


class Marshalled:
    """A body marshalled ahead of its message: a worker thread marshals a large reply, and
    the event loop, which frames and sends it, does not spend the milliseconds a list of
    10,000 names takes.  It carries no fds (those are marshalled where they are sent)."""

    __slots__ = ("signature", "data")

    def __init__(self, signature: str, values: Sequence[object]) -> None:
        data, fds = marshal_body(signature, values)
        if fds:
            raise MarshalError("a body that carries fds cannot be marshalled ahead")
        self.signature = signature
        self.data = data
