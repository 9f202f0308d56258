"""Process plumbing shared by the two long-running commands, ``cgmanager`` and ``cgproxy``:
their common options, the process title, and detaching with a readiness report."""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import socket

from . import __version__, logs


def add_common_options(p: argparse.ArgumentParser, pidfile: str) -> None:
    """--daemon, --pidfile, --sigstop and the log options, as 0.42's libnih commands had,
    plus --log-target (see :mod:`cgmanager.logs`)."""
    p.add_argument("--daemon", action="store_true", help="detach once serving and write a pidfile")
    p.add_argument("--pidfile", default=pidfile, help="(default: %(default)s)")
    p.add_argument("--sigstop", action="store_true", help="raise SIGSTOP once ready (upstart)")
    p.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="(default: %(default)s)",
    )
    p.add_argument(
        "--log-target",
        metavar="TARGET",
        type=logs.target_arg,
        default="auto",
        help="where log lines go: syslog, stderr or an absolute file name; auto (the default): "
        "syslog with --daemon, else stderr (with <N> priority prefixes when stderr is the "
        "systemd journal)",
    )
    p.add_argument("-v", "--verbose", dest="log_level", action="store_const", const="debug")
    p.add_argument("-q", "--quiet", dest="log_level", action="store_const", const="warning")
    p.add_argument(
        "--debug", dest="log_level", action="store_const", const="debug", help=argparse.SUPPRESS
    )
    p.add_argument("--version", action="version", version=__version__)


def set_process_name(name: str) -> None:
    """Show as *name* to pidof/ps (argv[0]), as the C programs did; init scripts and 0.42's
    tests find them with ``pidof``."""
    try:
        import setproctitle
    except ImportError:  # still findable with `pidof -x`
        return
    setproctitle.setproctitle(name)


def daemonize(pidfile: str) -> int:
    """Detach (fork, setsid, fork) and record the pid.  The original parent exits only when
    the child reports ready (or failed), so ``cmd --daemon && use-it`` has no race.  Until
    then stderr stays the caller's, so a start-up that fails says why where it was started
    (an init script's output); :func:`report` then closes it.  Returns the fd on which to
    report."""
    r, w = os.pipe()
    if os.fork() > 0:
        os.close(w)
        ok = os.read(r, 1) == b"1"
        os._exit(0 if ok else 1)
    os.close(r)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    with open(pidfile, "w") as f:
        f.write(f"{os.getpid()}\n")
    atexit.register(_remove_pidfile, pidfile, os.getpid())
    _to_devnull(0, 1)
    return w


def _to_devnull(*fds: int) -> None:
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in fds:
        os.dup2(devnull, fd)
    os.close(devnull)


def notify_ready() -> None:
    """sd_notify(READY=1) for a Type=notify unit (nothing without $NOTIFY_SOCKET)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.sendto(f"READY=1\nMAINPID={os.getpid()}".encode(), address)
    except OSError as e:
        logging.getLogger(__name__).warning("could not notify the service manager: %s", e)


def _remove_pidfile(pidfile: str, pid: int) -> None:
    """At a clean exit: remove the pidfile if it still names this process."""
    try:
        with open(pidfile) as f:
            if f.read().strip() != str(pid) or os.getpid() != pid:
                return
        os.unlink(pidfile)
    except OSError:
        pass


def report(fd: int | None, ok: bool) -> None:
    """Tell the waiting parent of :func:`daemonize` whether start-up succeeded (once); from
    now on the detached process has no stderr (its log lines go to syslog or a file)."""
    if fd is None:
        return
    try:
        os.write(fd, b"1" if ok else b"0")
    finally:
        os.close(fd)
        _to_devnull(2)
        logs.detached()
