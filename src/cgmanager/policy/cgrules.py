"""libcgroup's ``cgrules.conf``: placement rules, parsed and matched (pure).

One rule per line::

    <user>[:<process>]   <controllers>   <destination>   [options]

* ``user``: a user name or uid, ``@group`` (the process's effective group or one of its
  supplementary groups), ``*`` (anyone), or ``%`` (the same user as the rule above: that rule
  continues in more hierarchies);
* ``process``: a command name (the basename of the executable, or its ``comm``), a full path
  (the executable's path), or ``*``;
* ``controllers``: ``*`` (every served hierarchy) or a comma list;
* ``destination``: a cgroup path from cgmanager's own cgroup, with ``%u``/``%U`` (user name /
  uid), ``%g``/``%G`` (group name / gid), ``%p``/``%P`` (process name / pid) and ``%%``.

The first rule that matches a process decides (with its ``%`` continuations); libcgroup's
``ignore_rt`` option is accepted; ``ignore`` as a destination's only option makes the rule stop
the search without moving anything.  Every substituted value must be a valid cgroup name
(:mod:`cgmanager.names`): a process named ``..`` or ``cgroup.procs`` matches nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .. import names
from ..errors import InvalidArgument
from .lexer import ConfigError

MAX_RULES = 4096
OPTIONS = frozenset({"ignore_rt", "ignore"})


@dataclass(frozen=True)
class Rule:
    line: int
    user: str  # "*", a name, a uid as text, or "@group"
    process: str | None  # None: any process
    controllers: str  # "*" or a comma list
    destination: str
    options: frozenset[str] = frozenset()
    continues: bool = False  # a "%" line

    def __str__(self) -> str:
        who = self.user + (f":{self.process}" if self.process else "")
        return f"line {self.line}: {who} {self.controllers} {self.destination}"


@dataclass(frozen=True)
class Process:
    """What the kernel says about a process (read from /proc, pinned by a pidfd)."""

    pid: int
    uid: int  # effective
    gid: int  # effective
    groups: frozenset[int]
    exe: str  # path of the executable ("" if unknown, e.g. a kernel thread)
    comm: str

    @property
    def name(self) -> str:
        return self.exe.rpartition("/")[2] if self.exe else self.comm


@dataclass(frozen=True)
class Resolved:
    """A rule's user part with names turned into ids (at load time)."""

    rule: Rule
    uid: int | None  # None: any user
    gid: int | None  # "@group": the group's id


def parse(text: str, source: str = "cgrules.conf") -> list[Rule]:
    """The rules of a file; :class:`ConfigError` names the line of the first problem."""
    rules: list[Rule] = []
    for n, raw in enumerate(text.split("\n"), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if any(ord(c) < 0x20 and c != "\t" for c in line):
            raise ConfigError(source, n, "control character in a rule")
        fields = line.split()
        if len(fields) not in (3, 4):
            raise ConfigError(
                source, n, "a rule is '<user>[:<process>] <controllers> <destination> [options]'"
            )
        who, controllers, dest = fields[:3]
        options = frozenset(fields[3].split(",")) if len(fields) == 4 else frozenset()
        bad = options - OPTIONS
        if bad:
            raise ConfigError(source, n, f"unknown option {sorted(bad)[0]!r}")
        user, _, process = who.partition(":")
        if not user or (":" in who and not process):
            raise ConfigError(source, n, f"invalid user {who!r}")
        continues = user == "%"
        if continues and not rules:
            raise ConfigError(source, n, "'%' continues the rule above, and there is none")
        if user.startswith("@") and len(user) == 1:
            raise ConfigError(source, n, "'@' needs a group name")
        if controllers != "*":
            for c in controllers.split(","):
                if not c:
                    raise ConfigError(source, n, f"empty controller name in {controllers!r}")
        try:
            check_template(dest)
        except InvalidArgument as e:
            raise ConfigError(source, n, f"destination {dest!r}: {e.message}") from None
        rules.append(
            Rule(n, user, process or None, controllers, dest, options, continues=continues)
        )
        if len(rules) > MAX_RULES:
            raise ConfigError(source, n, f"more than {MAX_RULES} rules")
    return rules


def check_template(dest: str) -> None:
    """A destination with its ``%`` parameters replaced by a plain name must be a valid path."""
    i = 0
    while (i := dest.find("%", i)) >= 0:
        if i + 1 >= len(dest) or dest[i + 1] not in "uUgGpP%":
            raise InvalidArgument("'%' must be followed by u, U, g, G, p, P or %")
        i += 2
    parts = names.split(expand(dest, {c: "x" for c in "uUgGpP"}))
    if not parts:
        raise InvalidArgument("names cgmanager's own cgroup")
    for p in parts:
        names.check_new_name(p)


def expand(template: str, values: dict[str, str]) -> str:
    out, i = [], 0
    while i < len(template):
        c = template[i]
        if c == "%" and i + 1 < len(template):
            nxt = template[i + 1]
            out.append("%" if nxt == "%" else values[nxt])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def resolve(
    rules: list[Rule], uid_of: Callable[[str], int], gid_of: Callable[[str], int]
) -> tuple[list[Resolved], list[str]]:
    """Names to ids.  A name unknown on this host makes its rule (and its ``%`` lines) inert
    until the next reload, with a warning — as libcgroup does, so a rules file naming a user
    created later does not stop every other rule."""
    out: list[Resolved] = []
    warnings: list[str] = []
    prev: Resolved | None = None
    for r in rules:
        if r.continues:
            if prev is not None:
                out.append(Resolved(r, prev.uid, prev.gid))
            continue
        uid = gid = None
        try:
            if r.user.startswith("@"):
                g = r.user[1:]
                gid = int(g) if g.isdigit() else gid_of(g)
            elif r.user != "*":
                uid = int(r.user) if r.user.isdigit() else uid_of(r.user)
        except (KeyError, OSError):
            warnings.append(f"line {r.line}: no user or group {r.user!r} here; rule inert")
            prev = None
            continue
        prev = Resolved(r, uid, gid)
        out.append(prev)
    return out, warnings


def _matches(r: Resolved, p: Process) -> bool:
    if r.uid is not None and r.uid != p.uid:
        return False
    if r.gid is not None and r.gid != p.gid and r.gid not in p.groups:
        return False
    want = r.rule.process
    if want is None or want == "*":
        return True
    if "/" in want:
        return want == p.exe
    return want in (p.name, p.comm)


def match(rules: list[Resolved], p: Process) -> list[Resolved]:
    """The first matching rule and its ``%`` continuations ([] when none matches)."""
    for i, r in enumerate(rules):
        if r.rule.continues or not _matches(r, p):
            continue
        out = [r]
        for nxt in rules[i + 1 :]:
            if not nxt.rule.continues:
                break
            out.append(nxt)
        return out
    return []


def destination(
    r: Resolved, p: Process, user_name: Callable[[int], str], group_name: Callable[[int], str]
) -> str:
    """The rule's destination for *p*; InvalidArgument if a substituted value is not a valid
    cgroup name (process names are chosen by whoever runs them)."""
    values = {
        "u": user_name(p.uid),
        "U": str(p.uid),
        "g": group_name(p.gid),
        "G": str(p.gid),
        "p": p.name,
        "P": str(p.pid),
    }
    for k in "ugp":
        if "%" + k in r.rule.destination:
            names.check_new_name(values[k])
    path = expand(r.rule.destination, values)
    for part in names.split(path):
        names.check_new_name(part)
    return path
