"""What ``cgm`` prints and how it stops: the exit exception, 0.42's error line, JSON, lists.

Import-free (``cgm`` starts once per shell command): the JSON writer is hand-rolled, as the
json module would import re, decoder and scanner (~5 ms).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

    from ..dbus.errors import DBusError
    from .commands import Command


class Exit(Exception):
    """Stop with this status after the lines on stderr (and stdout) have been written."""

    def __init__(self, status: int, err: str = "", out: str = "") -> None:
        Exception.__init__(self, status)
        self.status = status
        self.err = err
        self.out = out


class CallFailed(Exception):
    """A D-Bus call failed; ``fn`` is 0.42's libcgmanager function name for the error line."""

    def __init__(self, fn: str, error: DBusError) -> None:
        Exception.__init__(self, fn)
        self.fn = fn
        self.error = error

    @property
    def name(self) -> str:
        return self.error.name

    @property
    def message(self) -> str:
        return self.error.message or self.error.name


def short_usage(cmd: Command, prog: str) -> str:
    """What a wrong use of one subcommand prints on stderr, after the line saying what."""
    return (
        f"Usage: {prog} {cmd.name}{' ' + cmd.synopsis if cmd.synopsis else ''}\n"
        f"Try '{prog} help {cmd.name}' for details and examples.\n"
    )


def usage_error(cmd: Command, prog: str, line: str) -> Exit:
    return Exit(cmd.status, f"{line}\n{short_usage(cmd, prog)}")


def call_failed(e: CallFailed, json: bool) -> str:
    """The line 0.42 printed (``call to cgmanager_<fn>_sync failed: <why>``), or JSON."""
    if json:
        return to_json({"error": e.name, "message": e.message, "call": e.fn}) + "\n"
    return f"call to {e.fn} failed: {e.message}\n"


_JSON_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
}


def json_string(s: str) -> str:
    if s.isprintable() and '"' not in s and "\\" not in s:
        return '"' + s + '"'
    out = []
    for ch in s:
        esc = _JSON_ESCAPES.get(ch)
        if esc is not None:
            out.append(esc)
        elif ch < " " or "\ud800" <= ch <= "\udfff":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def to_json(o: object) -> str:
    if o is None:
        return "null"
    if o is True:
        return "true"
    if o is False:
        return "false"
    if isinstance(o, int):
        return str(o)
    if isinstance(o, float):
        return repr(o) if o == o and o not in (float("inf"), float("-inf")) else "null"
    if isinstance(o, str):
        return json_string(o)
    if isinstance(o, (list, tuple)):
        return "[" + ", ".join([to_json(v) for v in o]) + "]"
    if isinstance(o, dict):
        return (
            "{" + ", ".join([json_string(str(k)) + ": " + to_json(v) for k, v in o.items()]) + "}"
        )
    raise TypeError(f"cannot write {type(o).__name__} as JSON")


def lines(items: Iterable[object], json: bool) -> str:
    """One item per line, or a JSON list."""
    if json:
        return to_json(list(items)) + "\n"
    return "".join([f"{i}\n" for i in items])
