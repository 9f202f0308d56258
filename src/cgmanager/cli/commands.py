"""The subcommands of ``cgm``: one table, from which dispatch, usage and completion derive.

Each entry names its *family*: the module of :mod:`cgmanager.cli` holding ``do_<name>``
(imported only when that subcommand runs).  Adding a family of subcommands is one module plus
its entries here (and its help texts, man page section and completion words).
"""

from __future__ import annotations

from ..contract import DEFAULT_SOCKET


class Command:
    """One subcommand.

    ``least``/``most``: how many arguments (``most`` None: no limit); ``options``: option
    word -> (destination, value kind or None for a flag); ``human``: ``-h`` means
    ``--human``; ``tail``: after this many arguments every word is taken verbatim; ``status``:
    the exit status of cgm's own failures; ``strict``: unknown ``--options`` are refused
    (the 0.42 subcommands take them as arguments); ``destructive``: never suggested for a
    mistyped subcommand."""

    __slots__ = (
        "name",
        "family",
        "synopsis",
        "least",
        "most",
        "options",
        "human",
        "tail",
        "status",
        "strict",
        "destructive",
    )

    def __init__(
        self,
        name: str,
        family: str,
        synopsis: str,
        least: int,
        most: int | None,
        *,
        options: dict[str, tuple[str, str | None]] | None = None,
        human: bool = False,
        tail: int | None = None,
        status: int = 1,
        strict: bool = False,
        destructive: bool = False,
    ) -> None:
        self.name = name
        self.family = family
        self.synopsis = synopsis
        self.least = least
        self.most = most
        self.options = options or {}
        self.human = human
        self.tail = tail
        self.status = status
        self.strict = strict
        self.destructive = destructive

    @property
    def handler(self) -> str:
        return "do_" + self.name


_CG = "<controller> <cgroup>"
_CG_OPT = "<controller> [cgroup]"
_HUMAN: dict[str, tuple[str, str | None]] = {"--human": ("human", None)}
_TREE_OPTIONS: dict[str, tuple[str, str | None]] = {
    "--depth": ("depth", "number"),
    "--all": ("all", None),
    "-k": ("all", None),
    "--full": ("full", None),
    "-l": ("full", None),
    "--no-pager": ("no_pager", None),
    "--color": ("color", "word"),
}
_TOP_OPTIONS: dict[str, tuple[str, str | None]] = {
    **_HUMAN,
    "--once": ("once", None),
    "--iterations": ("iterations", "number"),
    "-n": ("iterations", "number"),
    "--delay": ("delay", "seconds"),
    "-d": ("delay", "seconds"),
    "--depth": ("depth", "number"),
    "--order": ("order", "word"),
    "--batch": ("batch", None),
    "-b": ("batch", None),
    "--raw": ("raw", None),
    "-r": ("raw", None),
    "--color": ("color", "word"),
}
_EXEC_OPTIONS: dict[str, tuple[str, str | None]] = {
    "--create": ("create", None),
    "-c": ("create", None),
    "--remove-on-exit": ("remove_on_exit", None),
}

#: in the order of 0.42's usage text, then the additions
COMMAND_LIST = (
    Command("ping", "info", "", 0, None),
    Command("create", "cgroups", _CG, 2, 2),
    Command("chown", "cgroups", f"{_CG} uid gid", 4, 4),
    Command("chmod", "cgroups", f"{_CG} mode", 3, 3),
    Command("chmodfile", "cgroups", f"{_CG} file mode", 4, 4),
    Command("remove", "cgroups", f"{_CG} [0|1]", 2, 3, destructive=True),
    Command("getpidcgroup", "tasks", "<controller> pid", 2, 2),
    Command("getpidcgroupabs", "tasks", "<controller> pid", 2, 2),
    Command("movepid", "tasks", f"{_CG} pid", 3, 3),
    Command("movepidabs", "tasks", f"{_CG} pid", 3, 3),
    Command("getvalue", "values", f"{_CG} file", 3, 3, options=_HUMAN, human=True),
    Command("setvalue", "values", f"{_CG} file value", 4, 4),
    Command("gettasks", "tasks", _CG_OPT, 1, 2),
    Command("gettasksrecursive", "tasks", _CG_OPT, 1, 2),
    Command("listchildren", "cgroups", _CG_OPT, 1, 2),
    Command("removeonempty", "cgroups", _CG, 2, 2, destructive=True),
    Command("prune", "cgroups", _CG_OPT, 1, 2, destructive=True),
    Command("listcontrollers", "info", "", 0, None),
    Command("listkeys", "values", _CG_OPT, 1, 2),
    Command("apiversion", "info", "", 0, None),
    # -- beyond 0.42 --
    Command(
        "get",
        "show",
        "<cgroup> <file>|<controller>:<file>...",
        2,
        None,
        options=_HUMAN,
        human=True,
        strict=True,
    ),
    Command("dump", "show", _CG_OPT, 1, 2, options=_HUMAN, human=True, strict=True),
    Command(
        "tree",
        "tree",
        "[controller] [cgroup]",
        0,
        2,
        options=_TREE_OPTIONS,
        strict=True,
    ),
    Command(
        "top",
        "top",
        "[controller] [cgroup]",
        0,
        2,
        options=_TOP_OPTIONS,
        human=True,
        strict=True,
    ),
    Command(
        "exec",
        "execute",
        f"[--create] [--remove-on-exit] {_CG} [owner=uid:gid] [file=value]... [--] command [arg]...",
        3,
        None,
        options=_EXEC_OPTIONS,
        tail=2,
        status=125,
        strict=True,
    ),
    Command("freeze", "control", _CG, 2, 2, destructive=True),
    Command("thaw", "control", _CG, 2, 2),
    Command("kill", "control", _CG, 2, 2, destructive=True),
    Command(
        "events", "info", f"{_CG_OPT} [--follow]", 1, 2, options={"--follow": ("follow", None)}
    ),
    Command("stat", "info", _CG_OPT, 1, 2),
    Command(
        "setup",
        "setup",
        f"{_CG} [owner=uid:gid] [file=value]... [pid=pid]...",
        2,
        None,
    ),
    # -- policy (cli/policy.py) --
    Command("config", "policy", "check FILE... | diff [FILE]", 1, None),
    Command("reload", "policy", "", 0, 0),
    Command("classify", "policy", "pid...", 1, None),
    Command(
        "monitor",
        "policy",
        "<controller> [cgroup] [psi=resource:some|full:stall:window]...",
        1,
        None,
    ),
    Command(
        "pamsession", "policy", "[-c controllers] [-p pattern] [-s ctrl,key,value]...", 0, None
    ),
    Command("help", "help", "[subcommand]", 0, 1),
)
COMMANDS: dict[str, Command] = {c.name: c for c in COMMAND_LIST}

#: words users of systemd and libcgroup reach for, and the subcommand that does it here
#: (never a destructive one)
ALIASES = {
    "run": "exec",
    "cgexec": "exec",
    "systemd-run": "exec",
    "cgtop": "top",
    "systemd-cgtop": "top",
    "ls": "tree",
    "cgls": "tree",
    "lscgroup": "tree",
    "systemd-cgls": "tree",
    "show": "get",
    "cat": "get",
    "cgget": "get",
    "cgset": "setvalue",
    "set": "setvalue",
    "cgcreate": "create",
    "cgclassify": "movepid",
    "move": "movepid",
    "mkdir": "create",
}

_USAGE_NOTES = """\
 Replace '<controller>' with the desired controller, i.e.
 memory, and '<cgroup>' with the desired cgroup, i.e. x1.
 For create, chown, chmod, remove, prune, removeonempty,
 gettasksrecursive, movepid, setup and exec, <controller> may be "all"
 or a comma-separated set of controllers.
 Remove by default is recursive.  Adding '0' as the last argument
 will perform non-recursive deletion.  Adding '1' is supported
 for legacy reasons; any other value is refused.

 To refer to the current cgroup, use ''.

 Values may carry units where a file takes them: 512M, 1.5G, 50ms,
 1K tasks, 50% of a CPU for cpu.max ('{p} help units').

Options (anywhere before a '--'):
  --socket PATH  talk to the cgmanager listening on PATH
                 (default: $CGM_SOCKET, else {sock}
                 if present, else /run/cgmanager/sock)
  --json         print results as JSON
  --help         this text; '{p} help <subcommand>' or
                 '{p} <subcommand> --help' explains one subcommand
  -h             --help, except after a subcommand that prints values
                 (getvalue, get, dump, top), where it is --human
  --version      print the version

Exit status: 0 on success, 1 on failure ('exec': the command's own
status, 125 if cgm failed, 126/127 if the command could not be run).
"""


def usage(prog: str) -> str:
    """The list of subcommands: 0.42's text, its forms kept, with the additions."""
    forms = "".join(
        f"{prog} {c.name}{' ' + c.synopsis if c.synopsis else ''}\n\n" for c in COMMAND_LIST
    )
    return "Usage:\n\n" + forms + _USAGE_NOTES.format(p=prog, sock=DEFAULT_SOCKET)


def suggestions(word: str) -> list[str]:
    """Subcommands *word* may have meant: a known alias, else close spellings; never a
    destructive subcommand (``run`` must not become ``prune``)."""
    alias = ALIASES.get(word)
    if alias is not None:
        return [alias]
    import difflib  # only on this error path

    safe = [c.name for c in COMMAND_LIST if not c.destructive]
    return difflib.get_close_matches(word, safe, n=3, cutoff=0.6)


def unknown(word: str) -> str:
    """What a mistyped subcommand prints on stderr."""
    close = suggestions(word)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    return f"cgm: unknown subcommand {word!r}{hint}\nRun 'cgm help' for the list of subcommands.\n"
