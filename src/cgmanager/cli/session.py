"""``cgm``'s connection to the daemon, and its calls, derived from :mod:`cgmanager.contract`.

A call names a method of the contract and gives its arguments; the interface and D-Bus
signature come from the contract entry, never from here.  The function name of 0.42's error
line (``call to cgmanager_get_value_sync failed: …``) is derived from the method name too.

Which socket: ``--socket``, then ``$CGM_SOCKET``, then the standard socket.  While nothing
listens there and a daemon is plausibly restarting — a socket file nobody answers on (a
daemon that died), or none in a directory changed in the last :data:`RECENT` seconds (a
daemon that stopped and is starting again) — connecting is retried for up to
:data:`RETRY_SECONDS`; never otherwise, and a request is never sent twice.
"""

from __future__ import annotations

import posix

from ..contract import BY_NAME, INTERFACE, OBJECT_PATH, client_socket
from .output import CallFailed, Exit, to_json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ..dbus.client import Connection

#: seconds to wait for the daemon (libdbus' default, as 0.42's cgm used)
TIMEOUT = 25.0
#: while a daemon is plausibly restarting, connecting is retried for this long, after pauses
#: of RETRY_FIRST_PAUSE seconds doubling up to RETRY_MAX_PAUSE
RETRY_SECONDS = 2.5
RETRY_FIRST_PAUSE = 0.02
RETRY_MAX_PAUSE = 0.2
#: a socket directory changed this recently (seconds) may see its daemon come back
RECENT = 10.0

# libdbus' names for the usual connect() failures (0.42's cgm printed them)
_CONNECT_ERRORS = {
    2: "org.freedesktop.DBus.Error.FileNotFound",  # ENOENT
    111: "org.freedesktop.DBus.Error.NoServer",  # ECONNREFUSED
    13: "org.freedesktop.DBus.Error.AccessDenied",  # EACCES
    1: "org.freedesktop.DBus.Error.AccessDenied",  # EPERM
}
_ENOENT, _ECONNREFUSED = 2, 111
#: 0.42's name for MovePid and MovePidAbs alike
_FUNCTION_NAMES = {"MovePid": "move_pid_main", "MovePidAbs": "move_pid_main"}


def function_name(method: str) -> str:
    """``GetPidCgroupAbs`` -> ``cgmanager_get_pid_cgroup_abs_sync`` (0.42's libcgmanager)."""
    snake = _FUNCTION_NAMES.get(method)
    if snake is None:
        snake = "".join("_" + c.lower() if c.isupper() else c for c in method).lstrip("_")
    return f"cgmanager_{snake}_sync"


def getenv(name: str) -> str | None:
    v = posix.environ.get(name.encode())
    return None if v is None else v.decode("utf-8", "surrogateescape")


def socket_setting(option: str | None) -> tuple[str, str]:
    """(value, where it came from): --socket, then $CGM_SOCKET, then the standard socket
    (0.42's if present, else /run/cgmanager/sock: contract.client_socket)."""
    if option is not None:
        return option, "from --socket"
    env = getenv("CGM_SOCKET")
    if env:
        return env, "from $CGM_SOCKET"
    return client_socket(), "the standard socket"


class Session:
    """One run of cgm: its options, and its connection once a command needs it."""

    def __init__(self, prog: str, opts: dict[str, Any]) -> None:
        self.prog = prog
        self.opts = opts
        self.json: bool = bool(opts.get("json"))
        self.human: bool = bool(opts.get("human"))
        self.socket, self.source = socket_setting(opts.get("socket"))
        self._conn: Connection | None = None

    def conn(self) -> Connection:
        if self._conn is None:
            self._conn = open_connection(self.socket, self.source, self.json)
        return self._conn

    def call(self, method: str, *args: object, fn: str | None = None) -> tuple[Any, ...]:
        """Call *method* of the contract; its reply body.  CallFailed names *fn* (default:
        derived from the method) for 0.42's error line."""
        return self.reply(self.send(method, *args), method, fn=fn)

    def send(self, method: str, *args: object) -> int:
        """Send a call without waiting (pipelining); :meth:`reply` reads its answer."""
        from ..dbus.client_common import method_call
        from ..dbus.errors import DBusError

        m = BY_NAME[method]
        msg = method_call(OBJECT_PATH, m.interface, method, m.signature, args, None, False)
        try:
            return self.conn().send(msg)
        except DBusError as e:
            raise CallFailed(function_name(method), e) from None

    def reply(self, serial: int, method: str, fn: str | None = None) -> tuple[Any, ...]:
        from ..dbus.errors import DBusError

        conn = self.conn()
        try:
            return tuple(conn.wait_reply(serial, conn.timeout).body)
        except DBusError as e:
            raise CallFailed(fn or function_name(method), e) from None

    def api_version(self) -> int:
        from ..dbus.errors import DBusError

        try:
            return int(self.conn().get_property(OBJECT_PATH, INTERFACE, "api_version"))
        except DBusError as e:
            raise CallFailed("cgmanager_get_api_version_sync", e) from None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def open_connection(setting: str, source: str, json: bool) -> Connection:
    import time  # already loaded by the client

    from ..dbus.client import connect, parse_address
    from ..dbus.errors import DBusError

    path: str | None
    if setting[:1] not in ("/", ".") and ":" in setting and "=" in setting:
        address = setting  # a D-Bus address such as unix:path=/run/x/sock
        try:
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
    deadline: float | None = None
    pause = RETRY_FIRST_PAUSE
    while True:
        errno: int | None = None
        try:
            # cgmanager and cgproxy take the first call with the handshake: one round trip
            return connect(address, timeout=TIMEOUT, pipeline=True)
        except DBusError as e:
            name, detail = e.name, e.message
        except (OSError, ValueError, UnicodeError) as e:  # e.g. a path too long for sun_path
            name, detail = "org.freedesktop.DBus.Error.Failed", str(e)
        # the client folds the reason into its message: ask the kernel again for the errno
        if path is not None and name == "org.freedesktop.DBus.Error.Disconnected":
            errno, strerror = _probe(path)
            if errno is not None:
                name = _CONNECT_ERRORS.get(errno, "org.freedesktop.DBus.Error.Failed")
                detail = f"Failed to connect to socket {path}: {strerror}"
        # nothing was sent yet (connect() itself failed), so trying again is safe
        if errno not in (_ENOENT, _ECONNREFUSED) or not may_be_restarting(path, errno):
            break
        now = time.monotonic()
        if deadline is None:
            deadline = now + RETRY_SECONDS
        if now >= deadline:
            break
        time.sleep(min(pause, deadline - now))
        pause = min(pause * 2, RETRY_MAX_PAUSE)
    shown = path if path is not None else setting
    if errno in (_ENOENT, _ECONNREFUSED):
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


def may_be_restarting(path: str | None, errno: int | None) -> bool:
    """Whether a daemon may soon listen at *path*: a socket file nobody answers on (its daemon
    died; a supervisor restarts it), or no socket in a directory changed in the last
    :data:`RECENT` seconds (a daemon removes its socket when it stops; a restart makes it
    again).  No directory, or one left alone for longer: nothing is coming."""
    if path is None or path.startswith("\0"):
        return True  # an abstract socket has no directory
    if errno == _ECONNREFUSED:
        return True
    import time

    cut = path.rfind("/")
    directory = "." if cut < 0 else path[:cut] or "/"
    try:
        st = posix.stat(directory)
    except OSError:
        return False
    return time.time() - st.st_mtime < RECENT


def _probe(path: str) -> tuple[int | None, str | None]:
    import _socket

    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError as e:
        return e.errno, e.strerror
    finally:
        s.close()
    return None, None
