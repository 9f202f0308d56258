"""``cgm`` commands for policy: ``config check|diff``, ``reload``, ``classify``, ``monitor``
(also ``events … --follow``) and ``pamsession`` (for pam_exec).  Imported only when one of
them runs, so ``cgm``'s start-up stays as lean as before; their entries are in
:mod:`.commands`, their help texts in :data:`HELP` (found by :mod:`.help`)."""

from __future__ import annotations

import os
import sys
from typing import Any

from ..contract import OBJECT_PATH
from .commands import COMMANDS
from .output import CallFailed, Exit, to_json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .session import Session

INT32_MAX = 2147483647
_D1 = "org.linuxcontainers.cgmanager1."


# name: (synopsis, description, arguments, output, examples, D-Bus call) — as cli/help.py
HELP: dict[str, tuple[str, str, str, str, list[str], str]] = {
    "config": (
        COMMANDS["config"].synopsis,
        "check: parse each cgconfig.conf file and check it against this host's\n"
        "hierarchies and users, without a daemon; every problem names its file and line.\n"
        "diff: what applying cgmanager's configuration directory (or FILE) would change\n"
        "now (host root).",
        "  FILE  a file in libcgroup's cgconfig.conf syntax.",
        "check prints 'FILE: ok (N groups)' and notes; diff prints one change per line.",
        ["{p} config check /etc/cgmanager/cgconfig.d/*.conf", "{p} config diff"],
        _D1 + "ConfigDiff (diff only)",
    ),
    "reload": (
        "",
        "Re-read and apply the configuration directory and the rules file (as SIGHUP\n"
        "does), host root only.  A file with an error changes nothing.",
        "",
        "What was changed, one line each; the error (file:line) if a file is bad.",
        ["{p} reload"],
        _D1 + "Reload",
    ),
    "classify": (
        COMMANDS["classify"].synopsis,
        "Apply the placement rules (cgrules.conf) to these processes now, as if they had\n"
        "just started.  Host root may name any process; others only their own.",
        "  pid  a process id.",
        "One line per process: 'pid: what happened'.",
        ["{p} classify $$"],
        _D1 + "Classify",
    ),
    "monitor": (
        COMMANDS["monitor"].synopsis,
        "Print the cgroup's events as they happen (populated, frozen, memory and pids\n"
        "events on v2; populated and frozen polled on v1), and pressure when a psi=\n"
        "trigger is given, until interrupted.  'cgm events ... --follow' is the same.",
        "  <controller>  any hierarchy.\n  [cgroup]      as for events.\n"
        "  psi=R:K:S:W   a PSI trigger: resource cpu|memory|io, some|full, stall and window\n"
        "                in microseconds (others than root: windows of 2 s multiples).",
        "One line per event: 'cgroup kind key=value...' ('lost=N' once signals were lost).",
        ["{p} monitor unified build", "{p} monitor unified build psi=cpu:some:150000:2000000"],
        _D1 + "Subscribe, WatchPressure; signal CgroupEvent",
    ),
    "pamsession": (
        COMMANDS["pamsession"].synopsis,
        "For pam_exec in a PAM session stack: at open_session put the login process\n"
        "into a new per-user cgroup (pattern, then 0, 1, ...) chowned to the user; at\n"
        "close_session take it out and remove the cgroup if it is empty.",
        "  -c LIST   controllers (default all)\n  -p PAT    pattern (default user/%u/;"
        " %u %U %g %G %p %P)\n  --pattern-no-idx-suffix, -m N (max index, 100),"
        " -s ctrl,key,value",
        "Nothing; errors on stderr (pam_exec logs them).",
        ["session optional pam_exec.so quiet /usr/bin/cgm pamsession -c pids,unified"],
        "MovePidAbs, Create, Chown, SetValue, MovePidScm, RemoveOnEmpty",
    ),
}


def _out(s: Session, lines: list[str], obj: object) -> str:
    if s.json:
        return to_json(obj) + "\n"
    return "".join(f"{line}\n" for line in lines)


def do_config(s: Session, args: list[str]) -> str:
    sub, rest = args[0], args[1:]
    if sub == "check":
        if not rest:
            raise Exit(1, "cgm: config check needs at least one FILE\n")
        return _check(s, rest)
    if sub == "diff":
        if len(rest) > 1:
            raise Exit(1, "cgm: config diff takes at most one FILE\n")
        text = ""
        if rest:
            try:
                with open(rest[0], encoding="utf-8") as f:
                    text = f.read()
            except (OSError, UnicodeDecodeError) as e:
                raise Exit(1, f"cgm: {rest[0]}: {e}\n") from None
        (changes,) = s.call("ConfigDiff", text)
        return _out(s, list(changes), list(changes))
    raise Exit(1, f"cgm: config {sub!r}: use 'config check FILE...' or 'config diff [FILE]'\n")


def _check(s: Session, files: list[str]) -> str:
    from ..hierarchy import discover_host
    from ..policy.cgconfig import load_file
    from ..policy.lexer import ConfigError
    from ..policy.plan import resolve

    layout = discover_host()
    lines: list[str] = []
    errors: list[str] = []
    report: list[dict[str, object]] = []
    for path in files:
        try:
            cfg = load_file(path)
            groups = resolve(cfg, layout)
        except ConfigError as e:
            errors.append(str(e))
            report.append({"file": path, "error": str(e)})
            continue
        lines.append(f"{path}: ok ({len(groups)} groups, {len(cfg.templates)} templates)")
        lines += cfg.notes
        report.append({"file": path, "groups": len(groups), "notes": cfg.notes})
    if errors:
        out = _out(s, lines, report) if s.json else "".join(f"{x}\n" for x in lines)
        raise Exit(1, "" if s.json else "".join(f"{e}\n" for e in errors), out)
    return _out(s, lines, report)


def do_reload(s: Session, args: list[str]) -> str:
    (report,) = s.call("Reload")
    return _out(s, list(report), list(report))


def do_classify(s: Session, args: list[str]) -> str:
    pids = []
    for a in args:
        if not (a.isascii() and a.isdigit()) or not 0 < int(a) <= INT32_MAX:
            raise Exit(1, f"cgm: classify: {a!r} is not a process id\n")
        pids.append(int(a))
    (results,) = s.call("Classify", pids)
    return _out(
        s, [f"{p}: {what}" for p, what in results], [{"pid": p, "result": w} for p, w in results]
    )


def _event_line(s: Session, body: tuple[Any, ...]) -> str:
    _sid, _controller, cgroup, kind, values, lost = body
    if s.json:
        return to_json({"cgroup": cgroup, "kind": kind, "values": values, "lost": lost})
    tail = f" lost={lost}" if lost else ""
    kv = " ".join(f"{k}={v}" for k, v in values.items())
    return f"{cgroup or '.'} {kind} {kv}{tail}".rstrip()


def do_monitor(s: Session, args: list[str]) -> str:
    from ..dbus.errors import DBusError

    plain = [a for a in args if not a.startswith("psi=")]
    psi = [a[4:] for a in args if a.startswith("psi=")]
    if not 1 <= len(plain) <= 2:
        raise Exit(1, "cgm: monitor takes <controller> [cgroup] and psi= items\n")
    controller, cgroup = plain[0], plain[1] if len(plain) > 1 else ""
    s.call("Subscribe", controller, cgroup)
    for spec in psi:
        parts = spec.split(":")
        if len(parts) != 4:
            raise Exit(1, f"cgm: psi={spec!r}: give resource:some|full:stall:window\n")
        s.call("WatchPressure", controller, cgroup, parts[0], " ".join(parts[1:]))
    (state,) = s.call("GetEvents", controller, cgroup)
    write = sys.stdout.write
    for key, value in state.items():
        write(_event_line(s, (0, controller, cgroup, key, {key: value}, 0)) + "\n")
    sys.stdout.flush()
    conn = s.conn()
    while True:
        try:
            msg = conn.receive(None)
        except DBusError as e:
            raise CallFailed("cgmanager_monitor", e) from None
        if msg is None or msg.member != "CgroupEvent" or msg.path != OBJECT_PATH:
            continue
        write(_event_line(s, tuple(msg.body)) + "\n")
        sys.stdout.flush()
        if msg.body[3] == "removed":
            return ""


def do_pamsession(s: Session, args: list[str]) -> str:
    """pam_exec's helper: PAM_TYPE and PAM_USER come from pam_exec's environment."""
    import pwd

    from ..dbus.errors import DBusError
    from ..policy import session
    from ..scm_client import ScmError

    kind = os.environ.get("PAM_TYPE", "")
    if kind not in ("open_session", "close_session"):
        return ""  # other PAM phases (auth, account, password): nothing to do
    try:
        o = session.parse_options(args)
        login = session.login_process()
        conn = s.conn()
        if kind == "open_session":
            user = pwd.getpwnam(os.environ.get("PAM_USER", ""))
            session.open_session(conn, o, user, login)
        else:
            session.close_session(conn, o, login)
    except (session.SessionError, DBusError, ScmError, KeyError, OSError) as e:
        msg = e.message if isinstance(e, DBusError) else str(e)
        raise Exit(1, f"cgm pamsession ({kind}): {msg}\n") from None
    return ""
