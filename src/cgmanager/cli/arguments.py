"""The numbers 0.42's ``cgm`` accepted (uid, gid, mode, pid), checked before anything is
sent; imported only by the subcommands that take them."""

from __future__ import annotations

INT32_MAX = 2147483647


def parse_id(text: str) -> int | None:
    """A uid or gid as 0.42 accepted it: decimal, 0 <= id < INT32_MAX."""
    if text.isascii() and text.isdigit():
        v = int(text)
        if v < INT32_MAX:
            return v
    return None


def parse_mode(text: str) -> int | None:
    """A mode in octal, as 0.42 (strtol base 8), but refusing anything that is not octal."""
    t = text[1:] if text[:1] == "+" else text
    if t and t.isascii() and all(c in "01234567" for c in t):
        v = int(t, 8)
        if v < INT32_MAX:
            return v
    return None


def parse_pid(text: str) -> int | None:
    if text.isascii() and text.isdigit():
        v = int(text)
        if v <= INT32_MAX:
            return v
    return None
