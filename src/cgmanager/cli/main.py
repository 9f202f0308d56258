"""``cgm``: command-line client for cgmanager, compatible with cgmanager 0.42's ``cgm``.

Every subcommand of 0.42 keeps its arguments, output lines, error-line shape
(``call to cgmanager_<fn>_sync failed: <message>``) and exit status, so scripts written for
0.42 keep working.  Additions: ``--socket PATH`` / ``$CGM_SOCKET``, ``--json``, units on
values, ``get``/``dump``/``tree``/``top``/``exec`` and the cgmanager1 methods, ``cgm help
<subcommand>``, and errors that say what failed and why.

This module is the dispatcher: options and words (below), the table of
subcommands (:mod:`.commands`), then the subcommand's family module, imported only when it
runs.  Start-up time matters (one process per shell command): the common path imports only
:mod:`sys`, the built-in :mod:`posix`, small modules of this package, the contract and the
lean blocking D-Bus client.  No argparse, json, typing, dataclasses or enum at run time.
"""

from __future__ import annotations

import posix
import sys

from .. import __version__
from .commands import COMMANDS, Command, unknown, usage
from .output import CallFailed, Exit, call_failed, short_usage

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

    from .session import Session


# -- options and words --------------------------------------------------------------------------
#
# Options are recognised anywhere before ``--``: the global ones (``--socket``, ``--json``,
# ``--help``, ``--version``) and those the subcommand declares (:mod:`.commands`).  Any other
# word starting with ``-`` is an argument for the 0.42 subcommands (``-1`` as a cfs quota, say,
# as in 0.42 where every argument was one); the newer subcommands refuse unknown ``--options``.
# A subcommand with a *tail* (``exec``) takes every word after its first arguments verbatim:
# the command it runs has options of its own.  ``-h`` is ``--help`` before the subcommand (0.42)
# and for subcommands that print no values; for those that do (getvalue, get, dump, top) it is
# ``--human``, as in du(1) and ls(1).

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


def prog_name(argv0: str) -> str:
    me = argv0.rpartition("/")[2] or "cgm"
    if me.startswith("lt-") and len(me) > 3:
        me = me[3:]
    return me


def _count_error(cmd: Command, prog: str, got: int) -> Exit:
    lo, hi = cmd.least, cmd.most
    if hi is None:
        want = f"at least {lo}"
    else:
        want = f"{lo}" if lo == hi else f"{lo} or {hi}" if hi == lo + 1 else f"{lo} to {hi}"
    return Exit(
        cmd.status,
        f"cgm: {cmd.name} takes {want} arguments ({cmd.synopsis}), got {got}\n"
        + short_usage(cmd, prog),
    )


def handler(cmd: Command) -> Callable[[Session, list[str]], str]:
    """The subcommand's function, from its family module (imported now)."""
    module = __import__(f"{__package__}.{cmd.family}", fromlist=(cmd.handler,))
    fn: Callable[[Session, list[str]], str] = getattr(module, cmd.handler)
    return fn


def run(argv: list[str], prog: str) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of one cgm command line."""
    words, opts, cmd = parse(argv, COMMANDS)
    if opts["version"] and not words:
        return 0, __version__ + "\n", ""
    if not words:
        # 0.42: no subcommand, -h or --help -> usage on stdout, exit status 1
        return 1, usage(prog), ""
    for w in words:
        try:
            w.encode("utf-8")
        except UnicodeEncodeError:
            raise Exit(
                1, f"cgm: argument {w!r} is not valid UTF-8 (D-Bus strings must be)\n"
            ) from None
    sub, args = words[0], words[1:]
    if cmd is None:
        return 1, "", unknown(sub)
    if opts["help"]:
        from .help import subcommand_help

        return 0, subcommand_help(sub if sub != "help" or not args else args[0], prog), ""
    if len(args) < cmd.least or (cmd.most is not None and len(args) > cmd.most):
        raise _count_error(cmd, prog, len(args))
    from .session import Session

    session = Session(prog, opts)
    try:
        out = handler(cmd)(session, args)
    except CallFailed as e:
        return cmd.status, "", call_failed(e, session.json)
    finally:
        session.close()
    return 0, out, ""


def main(argv: Sequence[str] | None = None) -> int:
    """The ``cgm`` command; returns the exit status."""
    prog = prog_name(sys.argv[0] if sys.argv and sys.argv[0] else "cgm")
    if argv is None:
        argv = sys.argv[1:]
    try:
        try:
            status, out, err = run(list(argv), prog)
        except Exit as e:
            status, out, err = e.status, e.out, e.err
        if out:
            sys.stdout.write(out)
            sys.stdout.flush()
        if err:
            sys.stderr.write(err)
            sys.stderr.flush()
        return status
    except BrokenPipeError:
        # `cgm gettasks … | head -1`: stop quietly, and keep Python from complaining at exit
        devnull = posix.open("/dev/null", posix.O_WRONLY)
        posix.dup2(devnull, sys.stdout.fileno())
        posix.close(devnull)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # a bug: one line, the traceback on request
        from .session import getenv

        if getenv("CGM_DEBUG"):
            raise
        sys.stderr.write(
            f"cgm: internal error: {type(e).__name__}: {e} (run with CGM_DEBUG=1 for a traceback)\n"
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
