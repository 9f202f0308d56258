"""``cgm help <subcommand>`` / ``cgm <subcommand> --help`` (imported only for help).

The texts live in :mod:`.help_classic` (0.42's subcommands) and :mod:`.help_extended` (the
additions); topics that are not subcommands (``units``) are built here from the code they
describe, so they stay true to it.
"""

from __future__ import annotations

from .commands import COMMANDS, unknown, usage
from .output import Exit

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .help_classic import Entry
    from .session import Session

_FOOTER = """\
Options:
  --socket PATH  talk to the cgmanager listening on PATH (default: $CGM_SOCKET,
                 else /sys/fs/cgroup/cgmanager/sock if present, else
                 /run/cgmanager/sock)
  --json         print results as JSON{human}

Exit status: {status}
When the daemon refuses, stderr says
  call to cgmanager_<function>_sync failed: <what failed and why>
While nothing listens on the socket and a daemon may be restarting (a stale socket,
  or its directory changed in the last 10 s), connecting is retried for up to 2.5 s;
  a request is never sent twice."""

_HUMAN = "\n  -h, --human    sizes and times with units (512M, 1.5s)"
_STATUS = "0 on success, 1 on any failure."
_EXEC_STATUS = (
    "the command's own; 125 when cgm failed before running it,\n"
    "  126 when it could not be executed, 127 when it was not found."
)


def _entry(sub: str) -> Entry | None:
    from .help_classic import TEXTS

    entry = TEXTS.get(sub)
    if entry is None:
        from .help_extended import TEXTS as MORE

        entry = MORE.get(sub)
    if entry is None:
        from .policy import HELP

        entry = HELP.get(sub)
    return entry


def text(sub: str, prog: str = "cgm") -> str | None:
    """The help for one subcommand or topic, or None if there is none."""
    if sub == "units":
        return units_text(prog)
    entry = _entry(sub)
    if entry is None:
        return None
    synopsis, description, arguments, output, examples, call = entry
    synopsis = COMMANDS[sub].synopsis if sub in COMMANDS else synopsis
    parts = [f"Usage: {prog} {sub}{' ' + synopsis if synopsis else ''}", description]
    if arguments:
        parts.append("Arguments:\n" + arguments.replace("{p}", prog))
    if output:
        parts.append("Output: " + output)
    if examples:
        parts.append("Examples:\n" + "\n".join("  " + e.format(p=prog) for e in examples))
    if call:
        parts.append("D-Bus call: " + call)
    if sub != "help":
        cmd = COMMANDS[sub]
        parts.append(
            _FOOTER.format(
                human=_HUMAN if cmd.human else "",
                status=_EXEC_STATUS if cmd.status != 1 else _STATUS,
            )
        )
    return "\n\n".join(parts) + "\n"


def units_text(prog: str = "cgm") -> str:
    """``cgm help units``: what each key accepts, from :mod:`cgmanager.units` itself."""
    from .. import units

    rows = []
    for kind, keys, accepted in units.table():
        rows.append(f"  {kind}: {accepted}")
        rows.extend(f"      {k}" for k in keys)
    return (
        f"Usage: {prog} setvalue|setup|exec ... <file> <value with a unit>\n\n"
        "Values given to setvalue, setup and exec may carry units where the file has\n"
        "them; they are converted exactly before the value is sent.  The kernel's own\n"
        "syntax (plain numbers, max, -1, several fields) always passes unchanged, and a\n"
        "value cgm does not recognise is left for the kernel to judge.\n\n"
        "Sizes are binary (1K = 1024, as the kernel and systemd read them); a fraction\n"
        "of a byte is dropped.  Times are microseconds and must come out whole.  Counts\n"
        "are decimal (1K = 1000) and must be whole.  For cpu.max, a share of CPUs (50%,\n"
        "0.5, 2cpus) becomes 'quota period' with the period given after it or the\n"
        "kernel's default 100ms; an integer alone is the kernel's microseconds.\n\n"
        "Keys and what they accept:\n" + "\n".join(rows) + "\n\n"
        "Examples:\n"
        f"  {prog} setvalue pids job pids.max 1K\n"
        f"  {prog} setvalue cpu job cpu.cfs_quota_us 50ms\n"
        f"  {prog} setvalue unified job cpu.max 50%\n"
        f"  {prog} setup memory,pids job memory.max=1.5G pids.max=2K\n\n"
        "With -h (--human), getvalue, get, dump and top show sizes and times with units.\n"
    )


def subcommand_help(sub: str, prog: str) -> str:
    t = text(sub, prog)
    if t is None:
        raise Exit(1, unknown(sub))
    return t


def do_help(s: Session, args: list[str]) -> str:
    if not args:
        return usage(s.prog)
    return subcommand_help(args[0], s.prog)


def names() -> list[str]:
    from .help_classic import TEXTS
    from .help_extended import TEXTS as MORE

    return sorted([*TEXTS, *MORE])
