"""``cgm exec`` (cgexec, ``systemd-run --scope``): run a command in a cgroup.

``cgm exec [--create] [--remove-on-exit] <controller> <cgroup> [owner=uid:gid]
[file=value]... [--] command [arg]...``

* ``--create``: the cgroup is made for the command — in every hierarchy named, handed to
  ``owner``, each value written (units allowed), cgm itself moved in — by one Setup request,
  all or nothing, before the command starts.  Without it the cgroup must exist: the values
  and owner are set one request at a time, then cgm moves itself in (MovePid; MovePidAbs for
  a path starting with ``/``).
* Then cgm *becomes* the command (``execv``, no shell in between): same pid, same terminal,
  its exit status is cgm's.
* ``--remove-on-exit`` (with ``--create``): cgm stays as the parent instead.  It forks the
  command first, which waits until Setup has moved it in, then waits for it, and finally asks
  the daemon to remove the cgroup once empty (RemoveOnEmpty: at once if nothing is left in
  it).  Ctrl-C and Ctrl-\\ reach the command (cgm ignores them meanwhile); SIGTERM and SIGHUP
  sent to cgm are passed on.  The command's exit status (or its signal) becomes cgm's.

The command is looked up in ``$PATH`` before anything changes, so a typo changes nothing.
Exit status: the command's; 125 when cgm failed before running it, 126 when the command could
not be executed, 127 when it was not found (as env(1) and timeout(1)).
"""

from __future__ import annotations

import os
import signal
import stat
import sys

from .commands import COMMANDS
from .output import CallFailed, Exit, usage_error
from .readings import NO_METHOD
from .setup import Items, is_item, parse_items

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType

    from .session import Session

FAILED, CANNOT_RUN, NOT_FOUND = 125, 126, 127
_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: signals whose default action dumps core: reported as 128+n rather than raised on cgm
_CORE = frozenset(
    getattr(signal, n)
    for n in ("SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE", "SIGSEGV", "SIGSYS")
    if hasattr(signal, n)
)


def do_exec(s: Session, args: list[str]) -> str:
    try:
        return _exec(s, args)
    except Exit as e:
        if e.status == 1:  # cgm's own failure (e.g. no daemon): as env(1) reports its own
            raise Exit(FAILED, e.err, e.out) from None
        raise


def _exec(s: Session, args: list[str]) -> str:
    cmd = COMMANDS["exec"]
    controllers, cgroup, rest = args[0], args[1], args[2:]
    i = 0
    while i < len(rest) and rest[i] != "--" and is_item(rest[i], pids=False):
        i += 1
    items, command = rest[:i], rest[i + 1 :] if i < len(rest) and rest[i] == "--" else rest[i:]
    if not command:
        raise usage_error(cmd, s.prog, "cgm: exec: give the command to run")
    create, remove = bool(s.opts.get("create")), bool(s.opts.get("remove_on_exit"))
    if remove and not create:
        raise usage_error(
            cmd,
            s.prog,
            "cgm: exec: --remove-on-exit removes the cgroup made for the command:"
            " use it with --create",
        )
    if create and cgroup.startswith("/"):
        raise usage_error(
            cmd, s.prog, "cgm: exec: --create makes a cgroup below your own: give a relative path"
        )
    it = parse_items(s, "exec", items, pids=False)
    path = find(command[0])
    if remove:
        return _run_and_remove(s, controllers, cgroup, it, path, command)
    _enter(s, controllers, cgroup, it, os.getpid(), create)
    s.close()  # the daemon's connection is not the command's business
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execv(path, command)
    except OSError as e:
        err, status = f"cgm: exec: {command[0]}: {e.strerror}\n", _status(e)
    if create:  # cgm is in the cgroup made for nothing ('' now): gone once cgm has exited
        try:
            s.call("RemoveOnEmpty", controllers, "")
        except (CallFailed, Exit):
            err += f"cgm: exec: {controllers}:{cgroup} was made and is left\n"
    raise Exit(status, err)


def find(name: str) -> str:
    """The file execv will run for *name*, searched in $PATH as execvp does; 127/126 if
    there is none / it cannot be run."""
    if "/" in name:
        candidates = [name]
    else:
        path = os.environ.get("PATH", _DEFAULT_PATH)
        candidates = [os.path.join(d or ".", name) for d in path.split(":")]
    denied = False
    for c in candidates:
        try:
            st = os.stat(c)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and os.access(c, os.X_OK):
            return c
        denied = True
    if denied:
        raise Exit(CANNOT_RUN, f"cgm: exec: {name}: permission denied\n")
    raise Exit(NOT_FOUND, f"cgm: exec: {name}: command not found\n")


def _status(e: OSError) -> int:
    import errno

    return NOT_FOUND if e.errno == errno.ENOENT else CANNOT_RUN


def _enter(s: Session, controllers: str, cgroup: str, it: Items, pid: int, create: bool) -> None:
    """Put *pid* into the cgroup: Setup (one request) for a new one, else the values, the
    owner and a move, in that order."""
    if create:
        try:
            s.call("Setup", controllers, cgroup, it.uid, it.gid, it.values, [pid])
            return
        except CallFailed as e:
            if e.name not in NO_METHOD:
                raise
        _setup_step_by_step(s, controllers, cgroup, it, pid)
        return
    for key, value in it.values.items():
        h, colon, file = key.partition(":")
        s.call("SetValue", h if colon else key.partition(".")[0], cgroup, file or key, value)
    if it.uid != -1:
        s.call("Chown", controllers, cgroup, it.uid, it.gid)
    s.call("MovePidAbs" if cgroup.startswith("/") else "MovePid", controllers, cgroup, pid)


def _setup_step_by_step(s: Session, controllers: str, cgroup: str, it: Items, pid: int) -> None:
    """A daemon without Setup (cgmanager 0.42, a cgproxy): the same steps one by one, the
    cgroup removed again if one fails."""
    (existed,) = s.call("Create", controllers, cgroup)
    if existed == 1:
        raise Exit(
            FAILED, f"cgm: exec: {controllers}:{cgroup} exists already (--create makes a new one)\n"
        )
    try:
        _enter(s, controllers, cgroup, it, pid, False)
    except (CallFailed, Exit):
        try:
            s.call("Remove", controllers, cgroup, 1)
        except CallFailed:
            pass
        raise


def _run_and_remove(
    s: Session, controllers: str, cgroup: str, it: Items, path: str, command: list[str]
) -> str:
    go_r, go_w = os.pipe()
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    child = os.fork()
    if child == 0:  # the command: waits until it is in its cgroup
        os.close(go_w)
        os.close(err_r)
        if os.read(go_r, 1) != b"g":
            os._exit(FAILED)
        os.close(go_r)
        try:
            os.execv(path, command)
        except OSError as e:
            os.write(err_w, str(e.errno).encode())
            os._exit(_status(e))
    os.close(go_r)
    os.close(err_w)
    try:
        _enter(s, controllers, cgroup, it, child, True)
    except BaseException:
        os.close(go_w)  # the child reads EOF and exits without running anything
        os.waitpid(child, 0)
        os.close(err_r)
        raise
    s.close()
    passed = {sig: signal.signal(sig, _pass_on(child)) for sig in (signal.SIGTERM, signal.SIGHUP)}
    ignored = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGQUIT)}
    os.write(go_w, b"g")
    os.close(go_w)
    failed_exec = os.read(err_r, 16)
    os.close(err_r)
    _, wstatus = os.waitpid(child, 0)
    for sig, old in {**passed, **ignored}.items():
        signal.signal(sig, old)
    warning = ""
    try:
        s.call("RemoveOnEmpty", controllers, cgroup)
    except CallFailed as e:
        warning = f"cgm: exec: {controllers}:{cgroup} was not removed: {e.message}\n"
    except Exit as e:
        warning = e.err
    if failed_exec:
        err = os.strerror(int(failed_exec))
        raise Exit(os.waitstatus_to_exitcode(wstatus), f"cgm: exec: {command[0]}: {err}\n{warning}")
    if warning:
        sys.stderr.write(warning)
    if os.WIFSIGNALED(wstatus):
        died = os.WTERMSIG(wstatus)
        if died not in _CORE:
            sys.stdout.flush()
            sys.stderr.flush()
            signal.signal(died, signal.SIG_DFL)
            os.kill(os.getpid(), died)  # the command's death becomes cgm's, as the shell sees it
        raise Exit(128 + died)
    raise Exit(os.waitstatus_to_exitcode(wstatus))


def _pass_on(child: int) -> Callable[[int, FrameType | None], None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        try:
            os.kill(child, signum)
        except ProcessLookupError:
            pass

    return handler
