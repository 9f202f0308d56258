"""Characters no cgroup name may hold, and the one escaped form that shows them.

Pure, and importing nothing of the project: :mod:`cgmanager.names` validates with it,
:mod:`cgmanager.errors` makes every message printable with it (a message may carry a name a
client chose), and listings show names made on cgroupfs through it.
"""

from __future__ import annotations

import re
import unicodedata

#: Characters no name may hold, by Unicode category (decided once, here):
#:
#: * ``Cc`` — C0 controls, DEL and C1 controls: ``\n``, ``\r``, ``\v``, ``\f``, the
#:   ``\x1c``-``\x1e`` separators and U+0085 (NEL) end lines for ``str.splitlines`` and for
#:   terminals;
#: * ``Zl``, ``Zp`` — U+2028 LINE SEPARATOR and U+2029 PARAGRAPH SEPARATOR end lines for
#:   ``splitlines``, JavaScript and many editors;
#: * ``Zs`` other than the ASCII space — U+00A0, U+1680, U+2000-U+200A, U+202F, U+205F,
#:   U+3000 are field breaks for ``str.split()``, ``\s`` in most regex engines and awk; the
#:   ASCII space stays (0.42 accepted it; the kernel escapes it in mountinfo);
#: * ``Cf`` — format controls: bidi overrides and isolates (U+202A-U+202E, U+2066-U+2069),
#:   zero-width characters (U+200B-U+200D, U+2060), U+FEFF: they make a listing or a log line
#:   show another name than the one it holds;
#: * ``Cs``, ``Cn`` — surrogates (bytes that are not UTF-8) and code points this Python's
#:   Unicode database does not know (what they will become is not known);
#: * U+FFFD REPLACEMENT CHARACTER — the escape marker below.
REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Cn", "Zl", "Zp"})
#: the escape marker of names the API could not have made (see :func:`escape`)
ESCAPE = "\ufffd"
_ASCII_CONTROL = re.compile("[\x00-\x1f\x7f]")
ESCAPED_BYTE = re.compile("\ufffd([0-9a-f]{2})")


def refused_char(c: str) -> bool:
    """Whether the character *c* may not appear in a name (see ``REFUSED_CATEGORIES``)."""
    if c < "\x80":
        return c < " " or c == "\x7f"
    cat = unicodedata.category(c)
    return cat in REFUSED_CATEGORIES or (cat == "Zs" and c != " ") or c == ESCAPE


def first_refused(s: str, but: str = "") -> str | None:
    """The first refused character of *s* other than *but*, or None."""
    if s.isascii():
        m = _ASCII_CONTROL.search(s)
        return None if m is None else m.group()
    return next((c for c in s if c != but and refused_char(c)), None)


def escape(name: str) -> str:
    """The one escaped form of a name found on cgroupfs (surrogateescape-decoded bytes):
    every refused character becomes U+FFFD followed by two lowercase hex digits per byte of
    its UTF-8 encoding (a byte that is not UTF-8: that byte).  Names the API accepts are
    unchanged; no name the API accepts contains U+FFFD, so an escaped form never collides
    with one, and each name has exactly one escaped form."""
    if first_refused(name) is None:
        return name
    return "".join(
        "".join(f"{ESCAPE}{b:02x}" for b in c.encode("utf-8", "surrogateescape"))
        if refused_char(c)
        else c
        for c in name
    )


def printable(text: str) -> str:
    """*text* (a message, a log line) with every refused character escaped as in
    :func:`escape` — except U+FFFD itself, which in a message already belongs to an escaped
    name: one line that shows what it holds, whatever a client put in it."""
    if first_refused(text, but=ESCAPE) is None:
        return text
    return "".join(
        "".join(f"{ESCAPE}{b:02x}" for b in c.encode("utf-8", "surrogateescape"))
        if c != ESCAPE and refused_char(c)
        else c
        for c in text
    )


def escape_path(path: str) -> str:
    """:func:`escape` applied to each component of a path the kernel showed."""
    if first_refused(path) is None:
        return path
    return "/".join(escape(c) for c in path.split("/"))
