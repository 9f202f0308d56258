"""Login sessions in per-user cgroups: ``cgm pamsession``, run by ``pam_exec`` (0.42's
``pam_cgm`` semantics).

Why ``pam_exec`` and not a native module: the helper is the same Python code and client as
``cgm`` (no C, no second D-Bus implementation loaded into every login process), and a fault
in it cannot crash the login program.  The one thing a child cannot do — move its parent into
a cgroup delegated to the user (a delegatee never gets another user's processes, and the
login process is still root's) — is done as the parent itself: the helper runs as root, so
the kernel lets it state its parent's pid in ``SCM_CREDENTIALS`` and the daemon pins that
process with a pidfd (``MovePidScm`` with the parent as requestor and victim: "a process
moves itself", as pam_cgm's login process did).

open_session (``PAM_TYPE=open_session``): the login process and the helper leave for the
root of cgmanager's subtree (``MovePidAbs /``), the pattern's intermediate cgroups are
created, then the first free ``<pattern><n>`` (n = 0, 1, …), chowned to the user, given the
``--set`` values, and entered by the login process; every cgroup made is removed once empty.
close_session: the login process leaves its session cgroup, which is removed if nothing of
the user's is left in it (otherwise once it empties).
"""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass, field

from .. import scm_client
from ..contract import INTERFACE, OBJECT_PATH
from ..dbus.client import Connection
from ..dbus.errors import DBusError
from . import cgrules

DEFAULT_PATTERN = "user/%u/"


class SessionError(Exception):
    pass


@dataclass
class Options:
    controllers: str = "all"
    pattern: str = DEFAULT_PATTERN
    index_suffix: bool = True
    max_index: int = 100
    values: list[tuple[str, str, str]] = field(default_factory=list)  # controller, key, value


def parse_options(args: list[str]) -> Options:
    """0.42's pam_cgm options: -c/--controllers, -p/--pattern, --pattern-no-idx-suffix,
    -m/--max-idx, -s/--set-value controller,key,value."""
    o = Options()
    i = 0
    while i < len(args):
        a = args[i]
        name, eq, inline = a.partition("=")
        takes = name in ("-c", "--controllers", "-p", "--pattern", "-m", "--max-idx", "-s")
        takes = takes or name == "--set-value"
        value = None
        if takes:
            if eq:
                value = inline
            elif i + 1 < len(args):
                i += 1
                value = args[i]
            else:
                raise SessionError(f"{a} needs a value")
        if name in ("-c", "--controllers"):
            o.controllers = value or ""
        elif name in ("-p", "--pattern"):
            o.pattern = value or ""
        elif name == "--pattern-no-idx-suffix":
            o.index_suffix = False
        elif name in ("-m", "--max-idx"):
            if not (value or "").isdigit() or int(value or "0") < 1:
                raise SessionError(f"--max-idx {value!r}: a number of at least 1")
            o.max_index = int(value or "1")
        elif name in ("-s", "--set-value"):
            parts = (value or "").split(",", 2)
            if len(parts) != 3 or not all(parts[:2]):
                raise SessionError(f"--set-value {value!r}: give controller,key,value")
            o.values.append((parts[0], parts[1], parts[2]))
        else:
            raise SessionError(f"unknown option {a!r}")
        i += 1
    if not o.controllers:
        raise SessionError("--controllers: give a list or 'all'")
    return o


def session_base(pattern: str, user: pwd.struct_passwd, pid: int, ppid: int) -> str:
    """The pattern with 0.42's parameters: %u %U %g %G (user/group, names and ids), %p %P
    (pid and parent pid)."""
    try:
        group = grp.getgrgid(user.pw_gid).gr_name
    except KeyError:
        group = str(user.pw_gid)
    return cgrules.expand(
        pattern,
        {
            "u": user.pw_name,
            "U": str(user.pw_uid),
            "g": group,
            "G": str(user.pw_gid),
            "p": str(pid),
            "P": str(ppid),
        },
    )


def _call(conn: Connection, member: str, sig: str, *args: object) -> tuple[object, ...]:
    return tuple(conn.call(OBJECT_PATH, INTERFACE, member, sig, args))


def open_session(conn: Connection, o: Options, user: pwd.struct_passwd, login: int) -> str:
    """Put process *login* (the PAM application) into a new session cgroup; returns it."""
    me = os.getpid()
    for pid in (login, me):  # to the root of cgmanager's subtree, as pam_cgm did
        _call(conn, "MovePidAbs", "ssi", o.controllers, "/", pid)
    base = session_base(o.pattern, user, me, login)
    parts = [p for p in base.split("/") if p]
    last = "" if base.endswith("/") or not parts else parts.pop()
    made: list[str] = []
    for i in range(len(parts)):
        path = "/".join(parts[: i + 1])
        (existed,) = _call(conn, "Create", "ss", o.controllers, path)
        if existed != 1:
            made.append(path)
    prefix = "/".join(parts)
    session = None
    tries = range(o.max_index) if o.index_suffix else [None]
    for idx in tries:
        name = last + ("" if idx is None else str(idx))
        if not name:
            raise SessionError(f"the pattern {o.pattern!r} names no session cgroup")
        path = f"{prefix}/{name}" if prefix else name
        (existed,) = _call(conn, "Create", "ss", o.controllers, path)
        if existed != 1:
            session = path
            break
        if idx is None:
            session = path  # no suffix: a shared cgroup, reused
    if session is None:
        raise SessionError(f"no free session cgroup below {prefix or '/'} ({o.max_index} tried)")
    if user.pw_uid != 0:
        _call(conn, "Chown", "ssii", o.controllers, session, user.pw_uid, user.pw_gid)
    for controller, key, value in o.values:
        _call(conn, "SetValue", "ssss", controller, session, key, value)
    cred = (login, 0, 0)
    scm_client.call(conn, "MovePidScm", (o.controllers, session), cred, cred)
    for path in [session, *reversed(made)]:
        _call(conn, "RemoveOnEmpty", "ss", o.controllers, path)
    return session


def close_session(conn: Connection, o: Options, login: int) -> str | None:
    """Take process *login* out of its session cgroup and remove that if nothing is left."""
    first = o.controllers.split(",")[0]
    if first == "all":
        (names,) = _call(conn, "ListControllers", "")
        first = str(names[0]).split(",")[0] if names else "all"  # type: ignore[index]
    try:
        (where,) = _call(conn, "GetPidCgroupAbs", "si", first, login)
    except DBusError:
        where = None
    _call(conn, "MovePidAbs", "ssi", o.controllers, "/", login)
    _call(conn, "MovePidAbs", "ssi", o.controllers, "/", os.getpid())
    if isinstance(where, str) and where not in ("", "/"):
        try:
            _call(conn, "Remove", "ssi", o.controllers, where.lstrip("/"), 0)
        except DBusError:
            pass  # the user left processes behind: removed once they are gone
        return where
    return None


def login_process() -> int:
    """The PAM application: our parent (pam_exec waits for us, so it stays; were it gone we
    would have been re-parented, which is refused).  The daemon pins it by the pidfd the
    kernel attaches to the credential we send for it."""
    ppid = os.getppid()
    if ppid <= 1:
        raise SessionError("the PAM application exited")
    return ppid
