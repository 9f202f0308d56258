"""Process plumbing shared by the two long-running commands, ``cgmanager`` and ``cgproxy``:
their common options, the process title, and detaching with a readiness report."""

from __future__ import annotations

import argparse
import os

from . import __version__


def add_common_options(p: argparse.ArgumentParser, pidfile: str) -> None:
    """--daemon, --pidfile, --sigstop and the log options, as 0.42's libnih commands had."""
    p.add_argument("--daemon", action="store_true", help="detach once serving and write a pidfile")
    p.add_argument("--pidfile", default=pidfile, help="(default: %(default)s)")
    p.add_argument("--sigstop", action="store_true", help="raise SIGSTOP once ready (upstart)")
    p.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="(default: %(default)s)",
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
    the child reports ready (or failed), so ``cmd --daemon && use-it`` has no race.
    Returns the fd on which to report (:func:`report`)."""
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
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    return w


def report(fd: int | None, ok: bool) -> None:
    """Tell the waiting parent of :func:`daemonize` whether start-up succeeded (once)."""
    if fd is None:
        return
    try:
        os.write(fd, b"1" if ok else b"0")
    finally:
        os.close(fd)
