"""``cgm``'s command line: options and words, and the numbers 0.42 accepted.

Options are recognised anywhere before ``--``: the global ones (``--socket``, ``--json``,
``--help``, ``--version``) and those the subcommand declares (:mod:`.commands`).  Any other
word starting with ``-`` is an argument for the 0.42 subcommands (``-1`` as a cfs quota, say,
as in 0.42 where every argument was one); the newer subcommands refuse unknown ``--options``.
A subcommand with a *tail* (``exec``) takes every word after its first arguments verbatim: the
command it runs has options of its own.

``-h`` is ``--help`` before the subcommand (0.42) and for subcommands that print no values;
for those that do (getvalue, get, dump, top) it is ``--human``, as in du(1) and ls(1).
"""

from __future__ import annotations

from .output import Exit

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .commands import Command

INT32_MAX = 2147483647

#: option word -> (destination, kind of value: None for a flag, else "path")
GLOBAL_OPTIONS: dict[str, tuple[str, str | None]] = {
    "--json": ("json", None),
    "--help": ("help", None),
    "--version": ("version", None),
    "--socket": ("socket", "path"),
}


def defaults() -> dict[str, Any]:
    return {"json": False, "help": False, "version": False, "socket": None, "human": False}


def parse(
    argv: list[str], commands: dict[str, Command]
) -> tuple[list[str], dict[str, Any], Command | None]:
    """(words, options, the subcommand's entry or None).  ``words[0]`` is the subcommand."""
    words: list[str] = []
    opts = defaults()
    cmd: Command | None = None
    i, n = 0, len(argv)
    while i < n:
        a = argv[i]
        i += 1
        if cmd is not None and cmd.tail is not None and len(words) - 1 >= cmd.tail:
            words.append(a)  # the rest belongs to the command cgm runs
            words.extend(argv[i:])
            break
        if a[:1] != "-" or a == "-":
            words.append(a)
            if cmd is None and len(words) == 1:
                cmd = commands.get(a)
            continue
        if a == "--":
            words.extend(argv[i:])
            break
        name, eq, value = a.partition("=")
        spec = GLOBAL_OPTIONS.get(name)
        if spec is None and cmd is not None:
            spec = cmd.options.get(name)
        if name == "-h" and not eq:
            spec = ("human", None) if cmd is not None and cmd.human else ("help", None)
        if spec is None:
            if cmd is not None and cmd.strict and a.startswith("--"):
                raise Exit(
                    cmd.status,
                    f"cgm: {cmd.name}: unknown option {name}\n{short_usage(cmd, 'cgm')}",
                )
            words.append(a)
            continue
        dest, kind = spec
        if kind is None:
            if eq:
                raise Exit(1, f"cgm: {name} takes no value\n")
            opts[dest] = True
            continue
        if not eq:
            if i >= n or not argv[i]:
                example = "/run/cgmanager/sock" if kind == "path" else _EXAMPLES.get(kind, "1")
                raise Exit(1, f"cgm: {name} needs a {kind} (e.g. {name} {example})\n")
            value = argv[i]
            i += 1
        elif not value:
            example = "/run/cgmanager/sock" if kind == "path" else _EXAMPLES.get(kind, "1")
            raise Exit(1, f"cgm: {name} needs a {kind} (e.g. {name}={example})\n")
        opts[dest] = _option_value(name, kind, value)
    return words, opts, cmd


_EXAMPLES = {"number": "3", "seconds": "0.5", "word": "cpu"}


def _option_value(name: str, kind: str, value: str) -> object:
    if kind == "number":
        if not (value.isascii() and value.isdigit()):
            raise Exit(1, f"cgm: {name} takes a whole number, not {value!r}\n")
        return int(value)
    if kind == "seconds":
        try:
            v = float(value)
        except ValueError:
            v = -1.0
        if not 0.01 <= v <= 3600:
            raise Exit(1, f"cgm: {name} takes seconds from 0.01 to 3600, not {value!r}\n")
        return v
    return value


def short_usage(cmd: Command, prog: str) -> str:
    """What a wrong use of one subcommand prints on stderr, after the line saying what."""
    return (
        f"Usage: {prog} {cmd.name}{' ' + cmd.synopsis if cmd.synopsis else ''}\n"
        f"Try '{prog} help {cmd.name}' for details and examples.\n"
    )


def usage_error(cmd: Command, prog: str, line: str) -> Exit:
    return Exit(cmd.status, f"{line}\n{short_usage(cmd, prog)}")


# -- the numbers 0.42 accepted -----------------------------------------------------------------


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
