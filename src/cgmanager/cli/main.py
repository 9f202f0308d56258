"""``cgm``: command-line client for cgmanager, compatible with cgmanager 0.42's ``cgm``.

Every subcommand of 0.42 keeps its arguments, output lines, error-line shape
(``call to cgmanager_<fn>_sync failed: <message>``) and exit status, so scripts written for
0.42 keep working.  Additions: ``--socket PATH`` / ``$CGM_SOCKET``, ``--json``, ``cgm tree``,
``cgm help <subcommand>`` / ``cgm <subcommand> --help``, and error messages that say what
failed and why.

Start-up time matters (one process per shell command), so this module imports only
:mod:`sys` and the built-in :mod:`posix` at load time (not even :mod:`os`, ~0.8 ms) and the lean
blocking D-Bus client when it talks to the daemon.  No argparse, json, typing, dataclasses or enum: the dispatcher and the JSON writer are
hand-rolled.  Help texts (:mod:`.help`) and ``tree`` (:mod:`.tree`) are imported on demand.
"""

import posix
import sys

from .. import __version__
from ..contract import DEFAULT_SOCKET, INTERFACE, INTERFACE1, OBJECT_PATH, client_socket

INT32_MAX = 2147483647
#: seconds to wait for the daemon (libdbus' default, as 0.42's cgm used)
TIMEOUT = 25.0
#: while nothing listens on the socket (a daemon restarting), connecting is retried for this
#: long, after pauses of RETRY_FIRST_PAUSE seconds doubling up to RETRY_MAX_PAUSE
RETRY_SECONDS = 2.5
RETRY_FIRST_PAUSE = 0.02
RETRY_MAX_PAUSE = 0.2

USAGE = """\
Usage:

{p} ping

{p} create <controller> <cgroup>

{p} chown <controller> <cgroup> uid gid

{p} chmod <controller> <cgroup> mode

{p} chmodfile <controller> <cgroup> file mode

{p} remove <controller> <cgroup> [0|1]

{p} getpidcgroup <controller> pid

{p} getpidcgroupabs <controller> pid

{p} movepid <controller> <cgroup> pid

{p} movepidabs <controller> <cgroup> pid

{p} getvalue <controller> <cgroup> file

{p} setvalue <controller> <cgroup> file value

{p} gettasks <controller> [cgroup]

{p} gettasksrecursive <controller> [cgroup]

{p} listchildren <controller> [cgroup]

{p} removeonempty <controller> <cgroup>

{p} prune <controller> [cgroup]

{p} listcontrollers

{p} listkeys <controller> [cgroup]

{p} apiversion

{p} tree [controller] [cgroup]

{p} freeze <controller> <cgroup>

{p} thaw <controller> <cgroup>

{p} kill <controller> <cgroup>

{p} events <controller> [cgroup]

{p} stat <controller> [cgroup]

{p} setup <controller> <cgroup> [owner=uid:gid] [file=value]... [pid=pid]...

{p} help [subcommand]

 Replace '<controller>' with the desired controller, i.e.
 memory, and '<cgroup>' with the desired cgroup, i.e. x1.
 For create, chown, chmod, remove, prune, removeonempty,
 gettasksrecursive, movepid and setup, <controller> may be "all" or a
 comma-separated set of controllers.
 Remove by default is recursive.  Adding '0' as the last argument
 will perform non-recursive deletion.  Adding '1' is supported
 for legacy reasons.

 To refer to the current cgroup, use ''.

Options (anywhere before a '--'):
  --socket PATH  talk to the cgmanager listening on PATH
                 (default: $CGM_SOCKET, else {sock}
                 if present, else /run/cgmanager/sock);
                 while nothing listens there (a restart), connecting
                 is retried for up to 2.5 s
  --json         print results as JSON
  -h, --help     this text; '{p} help <subcommand>' or
                 '{p} <subcommand> --help' explains one subcommand
  --version      print the version
"""

# name: (min args, max args, argument synopsis, handler name)
COMMANDS = {
    "ping": (0, None, "", "ping"),
    "create": (2, 2, "<controller> <cgroup>", "create"),
    "chown": (4, 4, "<controller> <cgroup> uid gid", "chown"),
    "chmod": (3, 3, "<controller> <cgroup> mode", "chmod"),
    "chmodfile": (4, 4, "<controller> <cgroup> file mode", "chmodfile"),
    "remove": (2, 3, "<controller> <cgroup> [0|1]", "remove"),
    "getpidcgroup": (2, 2, "<controller> pid", "getpidcgroup"),
    "getpidcgroupabs": (2, 2, "<controller> pid", "getpidcgroupabs"),
    "movepid": (3, 3, "<controller> <cgroup> pid", "movepid"),
    "movepidabs": (3, 3, "<controller> <cgroup> pid", "movepidabs"),
    "getvalue": (3, 3, "<controller> <cgroup> file", "getvalue"),
    "setvalue": (4, 4, "<controller> <cgroup> file value", "setvalue"),
    "gettasks": (1, 2, "<controller> [cgroup]", "gettasks"),
    "gettasksrecursive": (1, 2, "<controller> [cgroup]", "gettasksrecursive"),
    "listchildren": (1, 2, "<controller> [cgroup]", "listchildren"),
    "removeonempty": (2, 2, "<controller> <cgroup>", "removeonempty"),
    "prune": (1, 2, "<controller> [cgroup]", "prune"),
    "listcontrollers": (0, None, "", "listcontrollers"),
    "listkeys": (1, 2, "<controller> [cgroup]", "listkeys"),
    "apiversion": (0, None, "", "apiversion"),
    "tree": (0, 2, "[controller] [cgroup]", "tree"),
    "freeze": (2, 2, "<controller> <cgroup>", "freeze"),
    "thaw": (2, 2, "<controller> <cgroup>", "thaw"),
    "kill": (2, 2, "<controller> <cgroup>", "kill"),
    "events": (1, 2, "<controller> [cgroup]", "events"),
    "stat": (1, 2, "<controller> [cgroup]", "stat"),
    "setup": (
        2,
        None,
        "<controller> <cgroup> [owner=uid:gid] [file=value]... [pid=pid]...",
        "setup",
    ),
    "help": (0, 1, "[subcommand]", "help"),
}


# --------------------------------------------------------------------------------------------
# failures


class Exit(Exception):
    """Stop with this status after the lines on stderr (and stdout) have been written."""

    def __init__(self, status, err="", out=""):
        Exception.__init__(self, status)
        self.status = status
        self.err = err
        self.out = out


class CallFailed(Exception):
    """A D-Bus call failed; ``fn`` is 0.42's libcgmanager function name for the error line."""

    def __init__(self, fn, error):
        Exception.__init__(self, fn)
        self.fn = fn
        self.error = error


# --------------------------------------------------------------------------------------------
# JSON output (the json module would import re, decoder, scanner: ~5 ms)

_JSON_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
}


def json_string(s):
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


def to_json(o):
    if o is None:
        return "null"
    if o is True:
        return "true"
    if o is False:
        return "false"
    t = type(o)
    if t is int:
        return str(o)
    if t is str:
        return json_string(o)
    if t is list or t is tuple:
        return "[" + ", ".join([to_json(v) for v in o]) + "]"
    if t is dict:
        return "{" + ", ".join([json_string(k) + ": " + to_json(v) for k, v in o.items()]) + "}"
    raise TypeError(f"cannot write {t.__name__} as JSON")


# --------------------------------------------------------------------------------------------
# the connection


def _getenv(name):
    v = posix.environ.get(name.encode())
    return None if v is None else v.decode("utf-8", "surrogateescape")


def socket_setting(option):
    """(value, where it came from): --socket, then $CGM_SOCKET, then the standard socket
    (0.42's if present, else /run/cgmanager/sock: contract.client_socket)."""
    if option is not None:
        return option, "from --socket"
    env = _getenv("CGM_SOCKET")
    if env:
        return env, "from $CGM_SOCKET"
    return client_socket(), "the standard socket"


class Context:
    def __init__(self, prog, socket, source, json):
        self.prog = prog
        self.socket = socket
        self.source = source
        self.json = json
        self._conn = None

    def conn(self):
        if self._conn is None:
            self._conn = open_connection(self.socket, self.source, self.json)
        return self._conn

    def call(self, fn, member, signature="", body=(), interface=None):
        from ..dbus.errors import DBusError

        conn = self.conn()
        try:
            return conn.call(OBJECT_PATH, interface or INTERFACE, member, signature, body)
        except DBusError as e:
            raise CallFailed(fn, e) from None

    def api_version(self):
        from ..dbus.errors import DBusError

        conn = self.conn()
        try:
            return conn.get_property(OBJECT_PATH, INTERFACE, "api_version")
        except DBusError as e:
            raise CallFailed("cgmanager_get_api_version_sync", e) from None

    def close(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None


# libdbus' names for the usual connect() failures (0.42's cgm printed them)
_CONNECT_ERRORS = {
    2: "org.freedesktop.DBus.Error.FileNotFound",  # ENOENT
    111: "org.freedesktop.DBus.Error.NoServer",  # ECONNREFUSED
    13: "org.freedesktop.DBus.Error.AccessDenied",  # EACCES
    1: "org.freedesktop.DBus.Error.AccessDenied",  # EPERM
}


def open_connection(setting, source, json):
    import time  # already loaded by the client

    from ..dbus.client import connect
    from ..dbus.errors import DBusError

    if setting[:1] not in ("/", ".") and ":" in setting and "=" in setting:
        address, path = setting, None  # a D-Bus address such as unix:path=/run/x/sock
        try:
            from ..dbus.client import parse_address

            path = parse_address(setting)[0]
        except ValueError:
            raise Exit(
                1,
                f"cgm: {setting!r} ({source}) is not a usable D-Bus address; give a "
                "socket path or unix:path=PATH\n",
            ) from None
    else:
        path = setting
        address = setting if setting[:1] in ("/", ".") else "./" + setting
    deadline = None
    pause = RETRY_FIRST_PAUSE
    while True:
        try:
            # cgmanager and cgproxy take the first call with the handshake: one round trip
            return connect(address, timeout=TIMEOUT, pipeline=True)
        except DBusError as e:
            name, detail, errno = e.name, e.message, None
        except (OSError, ValueError, UnicodeError) as e:  # e.g. a path too long for sun_path
            name, detail, errno = "org.freedesktop.DBus.Error.Failed", str(e), None
        # the client folds the reason into its message: ask the kernel again for the errno
        if path is not None and name == "org.freedesktop.DBus.Error.Disconnected":
            errno, strerror = _probe(path)
            if errno is not None:
                name = _CONNECT_ERRORS.get(errno, "org.freedesktop.DBus.Error.Failed")
                detail = f"Failed to connect to socket {path}: {strerror}"
        # nothing was sent yet (connect() itself failed), so trying again is safe
        if errno not in (2, 111) or not _may_be_restarting(path):
            break
        now = time.monotonic()
        if deadline is None:
            deadline = now + RETRY_SECONDS
        if now >= deadline:
            break
        time.sleep(min(pause, deadline - now))
        pause = min(pause * 2, RETRY_MAX_PAUSE)
    shown = path if path is not None else setting
    if errno in (2, 111):
        why = f"cgmanager is not running (nothing listens on {shown}, {source})"
    elif errno in (1, 13):
        why = f"not allowed to connect to {shown} ({source})"
    else:
        why = f"could not talk to cgmanager at {shown} ({source})"
    hint = "use --socket PATH or CGM_SOCKET to reach a cgmanager listening elsewhere"
    if json:
        raise Exit(
            1, to_json({"error": name, "message": detail, "socket": shown, "reason": why}) + "\n"
        )
    raise Exit(1, f"Failed opening dbus connection: {name}: {detail}\ncgm: {why}; {hint}\n")


def _may_be_restarting(path):
    """A daemon restarting leaves its socket's directory in place (a stale socket after a
    crash, none after a clean stop): worth waiting for.  No directory: nothing to wait for."""
    if path.startswith("\0"):
        return True  # an abstract socket has no directory
    cut = path.rfind("/")
    directory = "." if cut < 0 else path[:cut] or "/"
    try:
        posix.stat(directory)
    except OSError:
        return False
    return True


def _probe(path):
    import _socket

    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError as e:
        return e.errno, e.strerror
    finally:
        s.close()
    return None, None


# --------------------------------------------------------------------------------------------
# argument parsing helpers


def parse_id(text):
    """A uid or gid as 0.42 accepted it: decimal, 0 <= id < INT32_MAX."""
    if text.isascii() and text.isdigit():
        v = int(text)
        if v < INT32_MAX:
            return v
    return None


def parse_mode(text):
    """A mode in octal, as 0.42 (strtol base 8), but refusing anything that is not octal."""
    t = text[1:] if text[:1] == "+" else text
    if t and t.isascii() and all(c in "01234567" for c in t):
        v = int(t, 8)
        if v < INT32_MAX:
            return v
    return None


def parse_pid(text):
    if text.isascii() and text.isdigit():
        v = int(text)
        if v <= INT32_MAX:
            return v
    return None


def bad_value(ctx, sub, line):
    raise Exit(
        1,
        f"{line}\nUsage: {ctx.prog} {sub} {COMMANDS[sub][2]}\n"
        f"Try '{ctx.prog} help {sub}' for details and examples.\n",
    )


# --------------------------------------------------------------------------------------------
# the subcommands: each returns what to print on stdout


def do_ping(ctx, args):
    ctx.call("cgmanager_ping_sync", "Ping", "i", (0,))
    return ""


def do_create(ctx, args):
    (existed,) = ctx.call("cgmanager_create_sync", "Create", "ss", (args[0], args[1]))
    if ctx.json:
        return to_json({"existed": existed == 1}) + "\n"
    return "Path existed\n" if existed == 1 else ""


def do_chown(ctx, args):
    uid, gid = parse_id(args[2]), parse_id(args[3])
    if uid is None or gid is None:
        bad = args[2] if uid is None else args[3]
        bad_value(
            ctx, "chown", f"Bad uid or gid: {bad!r} is not a number from 0 to {INT32_MAX - 1}"
        )
    ctx.call("cgmanager_chown_sync", "Chown", "ssii", (args[0], args[1], uid, gid))
    return ""


def _chmod(ctx, sub, controller, cgroup, file, text):
    mode = parse_mode(text)
    if mode is None:
        bad_value(
            ctx, sub, f"Bad uid or gid: the mode {text!r} is not an octal number such as 0755"
        )
    ctx.call("cgmanager_chmod_sync", "Chmod", "sssi", (controller, cgroup, file, mode))
    return ""


def do_chmod(ctx, args):
    return _chmod(ctx, "chmod", args[0], args[1], "", args[2])


def do_chmodfile(ctx, args):
    return _chmod(ctx, "chmodfile", args[0], args[1], args[2], args[3])


def do_remove(ctx, args):
    recursive = not (len(args) == 3 and args[2] == "0")
    fn = (
        "cgmanager_remove_sync (recursive)"
        if recursive
        else "cgmanager_remove_sync (non-recursive)"
    )
    (existed,) = ctx.call(fn, "Remove", "ssi", (args[0], args[1], 1 if recursive else 0))
    if ctx.json:
        return to_json({"existed": existed != -1}) + "\n"
    return "Path did not exist\n" if existed == -1 else ""


def do_removeonempty(ctx, args):
    ctx.call("cgmanager_remove_on_empty_sync", "RemoveOnEmpty", "ss", (args[0], args[1]))
    return ""


def _getpidcgroup(ctx, sub, member, fn, args):
    pid = parse_pid(args[1])
    if pid is None:
        bad_value(ctx, sub, f"Bad pid: {args[1]!r} is not a process id")
    (cgroup,) = ctx.call(fn, member, "si", (args[0], pid))
    if ctx.json:
        return to_json({"pid": pid, "cgroup": cgroup}) + "\n"
    return cgroup + "\n"


def do_getpidcgroup(ctx, args):
    return _getpidcgroup(ctx, "getpidcgroup", "GetPidCgroup", "cgmanager_get_pid_cgroup_sync", args)


def do_getpidcgroupabs(ctx, args):
    return _getpidcgroup(
        ctx, "getpidcgroupabs", "GetPidCgroupAbs", "cgmanager_get_pid_cgroup_abs_sync", args
    )


def _movepid(ctx, sub, member, args):
    pid = parse_pid(args[2])
    if pid is None:
        bad_value(ctx, sub, f"Bad pid: {args[2]!r} is not a process id")
    # 0.42 printed the same (misnamed) function for both
    ctx.call("cgmanager_move_pid_main_sync", member, "ssi", (args[0], args[1], pid))
    return ""


def do_movepid(ctx, args):
    return _movepid(ctx, "movepid", "MovePid", args)


def do_movepidabs(ctx, args):
    return _movepid(ctx, "movepidabs", "MovePidAbs", args)


def do_getvalue(ctx, args):
    (value,) = ctx.call("cgmanager_get_value_sync", "GetValue", "sss", tuple(args))
    if ctx.json:
        return to_json({"value": value}) + "\n"
    return value + "\n"


def do_setvalue(ctx, args):
    ctx.call("cgmanager_set_value_sync", "SetValue", "ssss", tuple(args))
    return ""


def _lines(ctx, items):
    if ctx.json:
        return to_json(items) + "\n"
    return "".join([f"{i}\n" for i in items])


def _ctl_cg(args):
    return (args[0], args[1] if len(args) > 1 else "")


def do_gettasks(ctx, args):
    (pids,) = ctx.call("cgmanager_get_tasks_sync", "GetTasks", "ss", _ctl_cg(args))
    return _lines(ctx, pids)


def do_gettasksrecursive(ctx, args):
    (pids,) = ctx.call(
        "cgmanager_get_tasks_recursive_sync", "GetTasksRecursive", "ss", _ctl_cg(args)
    )
    return _lines(ctx, pids)


def do_listchildren(ctx, args):
    (names,) = ctx.call("cgmanager_list_children_sync", "ListChildren", "ss", _ctl_cg(args))
    return _lines(ctx, names)


def do_prune(ctx, args):
    ctx.call("cgmanager_prune_sync", "Prune", "ss", _ctl_cg(args))
    return ""


def do_listcontrollers(ctx, args):
    (names,) = ctx.call("cgmanager_list_controllers_sync", "ListControllers")
    return _lines(ctx, names)


def do_listkeys(ctx, args):
    (keys,) = ctx.call("cgmanager_list_keys_sync", "ListKeys", "ss", _ctl_cg(args))
    if ctx.json:
        return (
            to_json(
                [
                    {"name": n, "uid": u, "gid": g, "mode": m, "mode_octal": f"{m:o}"}
                    for n, u, g, m in keys
                ]
            )
            + "\n"
        )
    return "".join([f"{n} {u} {g} {m:o}\n" for n, u, g, m in keys])


def do_apiversion(ctx, args):
    v = ctx.api_version()
    if ctx.json:
        return to_json({"api_version": v}) + "\n"
    return f"{v}\n"


def do_freeze(ctx, args):
    ctx.call("cgmanager_freeze_sync", "Freeze", "ss", tuple(args), INTERFACE1)
    return ""


def do_thaw(ctx, args):
    ctx.call("cgmanager_thaw_sync", "Thaw", "ss", tuple(args), INTERFACE1)
    return ""


def do_kill(ctx, args):
    (n,) = ctx.call("cgmanager_kill_sync", "Kill", "ss", tuple(args), INTERFACE1)
    if ctx.json:
        return to_json({"killed": n}) + "\n"
    return f"{n}\n"


def _flat(ctx, fn, member, args):
    (d,) = ctx.call(fn, member, "ss", _ctl_cg(args), INTERFACE1)
    if ctx.json:
        return to_json(d) + "\n"
    return "".join([f"{k} {v}\n" for k, v in d.items()])


def do_events(ctx, args):
    return _flat(ctx, "cgmanager_get_events_sync", "GetEvents", args)


def do_stat(ctx, args):
    return _flat(ctx, "cgmanager_get_stat_sync", "GetStat", args)


def do_setup(ctx, args):
    """``owner=`` and ``pid=`` are words without a dot; every cgroup file name a value can be
    written to has one (``pids.max``, ``unified:cgroup.max.depth``)."""
    controllers, cgroup, items = args[0], args[1], args[2:]
    uid = gid = -1
    values, pids = {}, []
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            bad_value(ctx, "setup", f"{item!r} is not owner=uid:gid, file=value or pid=pid")
        if name == "owner":
            u, colon, g = value.partition(":")
            if not colon:
                bad_value(ctx, "setup", f"owner={value!r}: give uid:gid")
            uid, gid = parse_id(u), parse_id(g)
            if uid is None or gid is None:
                bad_value(ctx, "setup", f"owner={value!r}: uid and gid are decimal numbers")
        elif name == "pid":
            pid = parse_pid(value)
            if pid is None or pid == 0:
                bad_value(ctx, "setup", f"pid={value!r}: not a process id")
            pids.append(pid)
        elif "." in name:
            if name in values:
                bad_value(ctx, "setup", f"{name} given twice")
            values[name] = value
        else:
            bad_value(ctx, "setup", f"{item!r}: unknown item {name!r} (owner=, pid= or a file)")
    (created,) = ctx.call(
        "cgmanager_setup_sync",
        "Setup",
        "ssiia{ss}ai",
        (controllers, cgroup, uid, gid, values, pids),
        INTERFACE1,
    )
    return _lines(ctx, created)


def do_tree(ctx, args):
    from .tree import tree

    return tree(ctx, args)


def do_help(ctx, args):
    if not args:
        return usage(ctx.prog)
    return subcommand_help(ctx, args[0])


# --------------------------------------------------------------------------------------------
# dispatch


def usage(prog):
    return USAGE.format(p=prog, sock=DEFAULT_SOCKET)


def subcommand_help(ctx, sub):
    from .help import text

    t = text(sub, ctx.prog)
    if t is None:
        raise Exit(1, _unknown_hint(sub), f"Unknown command: {sub}\n" + usage(ctx.prog))
    return t


def _unknown_hint(word):
    import difflib  # only on this error path

    close = difflib.get_close_matches(word, list(COMMANDS), n=3, cutoff=0.6)
    if close:
        return f"cgm: unknown subcommand {word!r}; did you mean {' or '.join(close)}?\n"
    return f"cgm: unknown subcommand {word!r}\n"


def prog_name(argv0):
    me = argv0.rpartition("/")[2] or "cgm"
    if me.startswith("lt-") and len(me) > 3:
        me = me[3:]
    return me


def parse(argv):
    """Split argv into (words, options); options are recognised anywhere before ``--``.

    Only the exact option words below are options: anything else that starts with ``-``
    (``-1`` as a cfs quota, say) is an argument, as in 0.42 where every argument was one.
    """
    words = []
    opts = {"json": False, "help": False, "version": False, "socket": None}
    i, n = 0, len(argv)
    while i < n:
        a = argv[i]
        i += 1
        if a[:1] != "-" or a == "-":
            words.append(a)
        elif a == "--":
            words.extend(argv[i:])
            break
        elif a == "--json":
            opts["json"] = True
        elif a in ("-h", "--help"):
            opts["help"] = True
        elif a == "--version":
            opts["version"] = True
        elif a == "--socket":
            if i >= n or not argv[i]:
                raise Exit(1, f"cgm: {a} needs a path (e.g. {a} /run/cgmanager/sock)\n")
            opts["socket"] = argv[i]
            i += 1
        elif a.startswith("--socket="):
            if len(a) == 9:
                raise Exit(1, "cgm: --socket needs a path (e.g. --socket=/run/cgmanager/sock)\n")
            opts["socket"] = a[9:]
        else:
            words.append(a)
    return words, opts


def run(argv, prog):
    words, opts = parse(argv)
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
    socket, source = socket_setting(opts["socket"])
    ctx = Context(prog, socket, source, opts["json"])
    spec = COMMANDS.get(sub)
    if spec is None:
        return 1, f"Unknown command: {sub}\n" + usage(prog), _unknown_hint(sub)
    if opts["help"]:
        return 0, subcommand_help(ctx, sub if sub != "help" or not args else args[0]), ""
    lo, hi, synopsis, handler = spec
    if len(args) < lo or (hi is not None and len(args) > hi):
        if hi is None:
            want = f"at least {lo}"
        else:
            want = f"{lo}" if lo == hi else f"{lo} or {hi}" if hi == lo + 1 else f"{lo} to {hi}"
        err = (
            f"cgm: {sub} takes {want} arguments ({synopsis}), got {len(args)}\n"
            f"Usage: {prog} {sub} {synopsis}\n"
        )
        return 1, usage(prog), err
    try:
        out = globals()["do_" + handler](ctx, args)
    except CallFailed as e:
        return 1, "", _call_failed(ctx, e)
    finally:
        ctx.close()
    return 0, out, ""


def _call_failed(ctx, e):
    err = e.error
    message = err.message or err.name
    if ctx.json:
        return to_json({"error": err.name, "message": message, "call": e.fn}) + "\n"
    return f"call to {e.fn} failed: {message}\n"


def main(argv=None):
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
        if _getenv("CGM_DEBUG"):
            raise
        sys.stderr.write(
            f"cgm: internal error: {type(e).__name__}: {e} (run with CGM_DEBUG=1 for a traceback)\n"
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
