"""``cgm``: command-line client for cgmanager, compatible with cgmanager 0.42's ``cgm``.

Every subcommand of 0.42 keeps its arguments, output lines, error-line shape
(``call to cgmanager_<fn>_sync failed: <message>``) and exit status, so scripts written for
0.42 keep working.  Additions: ``--socket PATH`` / ``$CGM_SOCKET``, ``--json``, units on
values, ``get``/``dump``/``tree``/``top``/``exec`` and the cgmanager1 methods, ``cgm help
<subcommand>``, and errors that say what failed and why.

This module is the dispatcher: options and words (:mod:`.arguments`), the table of
subcommands (:mod:`.commands`), then the subcommand's family module, imported only when it
runs.  Start-up time matters (one process per shell command): the common path imports only
:mod:`sys`, the built-in :mod:`posix`, small modules of this package, the contract and the
lean blocking D-Bus client.  No argparse, json, typing, dataclasses or enum at run time.
"""

from __future__ import annotations

import posix
import sys

from .. import __version__
from .arguments import parse, short_usage
from .commands import COMMANDS, Command, unknown, usage
from .output import CallFailed, Exit, call_failed

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from .session import Session


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
        return 0, __version__, ""
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
