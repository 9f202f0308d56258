"""D-Bus type signatures and names: the grammar, its limits, and the syntax of header names.

What the readers (:mod:`.unmarshal`) and writers (:mod:`.marshal`) are built from: the type
codes with their alignment and :mod:`struct` formats, and a signature parsed into nodes.  The
limits are libdbus's (32 nested arrays, 32 nested structs, 64 levels in all counting variants):
a peer chooses the signatures of variants, so the parser checks nesting on the way down and its
recursion stays bounded.

Imports nothing (not even :mod:`re`, which costs milliseconds): the CLI loads this at start.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: importing typing costs the CLI's start-up (mypy knows it)
if TYPE_CHECKING:
    from typing import TypeAlias, TypeGuard

    #: one complete type: its code and what it contains — ``(basic or "v", ())``,
    #: ``("a", (element,))``, ``("{", (key, value))`` for an array of dict entries,
    #: ``("(", fields)`` for a struct
    Node: TypeAlias = tuple[str, tuple["Node", ...]]

#: the largest array (in bytes) the specification allows
MAX_ARRAY = 1 << 26
#: nesting of containers in all, variants included (libdbus's DBUS_MAXIMUM_TYPE_RECURSION_DEPTH)
MAX_DEPTH = 64
#: nesting of arrays, and separately of structs (dict entries count as structs)
MAX_CONTAINER = 32

BASIC = "ybnqiuxtdhsog"
#: struct formats of the fixed-size types (without the byte-order prefix)
FIXED = {
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
#: the fixed-size types whose arrays are read and written as one struct call (not y, b, h)
FIXED_ARRAY_FMT = {"n": "h", "q": "H", "i": "i", "u": "I", "x": "q", "t": "Q", "d": "d"}
ALIGN = {
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


class SignatureError(ValueError):
    """Not a valid D-Bus type signature."""


def _parse_type(sig: str, i: int, arrays: int, structs: int) -> tuple[Node, int]:
    """Parse one complete type at ``sig[i]``; returns (node, next index).

    Recursion is bounded by 64 levels because the nesting limits are checked on the way down.
    """
    if i >= len(sig):
        raise SignatureError(f"incomplete signature {sig!r}")
    c = sig[i]
    if c in BASIC or c == "v":
        return (c, ()), i + 1
    if c == "a":
        if arrays >= MAX_CONTAINER:
            raise SignatureError(f"arrays nested too deeply in {sig!r}")
        if i + 1 < len(sig) and sig[i + 1] == "{":
            if structs >= MAX_CONTAINER:
                raise SignatureError(f"structs nested too deeply in {sig!r}")
            j = i + 2
            if j >= len(sig) or sig[j] not in BASIC:
                raise SignatureError(f"dict key must be a basic type in {sig!r}")
            key: Node = (sig[j], ())
            value, j = _parse_type(sig, j + 1, arrays + 1, structs + 1)
            if j >= len(sig) or sig[j] != "}":
                raise SignatureError(f"dict entry must have exactly two types in {sig!r}")
            return ("{", (key, value)), j + 1
        elem, j = _parse_type(sig, i + 1, arrays + 1, structs)
        return ("a", (elem,)), j
    if c == "(":
        if structs >= MAX_CONTAINER:
            raise SignatureError(f"structs nested too deeply in {sig!r}")
        fields: list[Node] = []
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


def node_depth(node: Node) -> int:
    """How many container levels ``node`` spans (a dict entry is an array and a struct)."""
    code, inner = node
    if code == "a":
        return 1 + node_depth(inner[0])
    if code == "{":
        return 2 + node_depth(inner[1])
    if code == "(":
        return 1 + max(node_depth(f) for f in inner)
    if code == "v":
        return 1
    return 0


def _node_sig(node: Node) -> str:
    code, inner = node
    if code == "a":
        return "a" + _node_sig(inner[0])
    if code == "{":
        return "a{" + inner[0][0] + _node_sig(inner[1]) + "}"
    if code == "(":
        return "(" + "".join(_node_sig(f) for f in inner) + ")"
    return code


def parse_signature(sig: str) -> list[Node]:
    """Validate ``sig`` and return its complete types as nodes (see :data:`Node`)."""
    if type(sig) is not str:
        raise SignatureError(f"signature must be str, not {type(sig).__name__}")
    if len(sig) > 255 or not sig.isascii():
        raise SignatureError(f"invalid signature {sig[:40]!r}")
    nodes: list[Node] = []
    i = 0
    while i < len(sig):
        node, i = _parse_type(sig, i, 0, 0)
        nodes.append(node)
    return nodes


def split_signature(sig: str) -> list[str]:
    """Split a valid signature into its complete types: ``"sa(ii)h"`` → ``["s", "a(ii)", "h"]``."""
    return [_node_sig(n) for n in parse_signature(sig)]


def is_valid_signature(sig: object) -> TypeGuard[str]:
    """True if ``sig`` is a valid signature (any number of complete types)."""
    if type(sig) is not str:
        return False
    try:
        parse_signature(sig)
    except SignatureError:
        return False
    return True


# --------------------------------------------------------------------------------------------
# Names carried in the header (no `re`: it costs milliseconds to import)


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
