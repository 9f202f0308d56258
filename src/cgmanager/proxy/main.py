"""The ``cgproxy`` command: options, start-up, the event loop.

Runs inside a container whose cgmanager socket directory is bind-mounted from the host, serves
plain D-Bus at ``<dir>/sock`` and forwards every call to the host cgmanager as an ``*Scm``
call (see :mod:`.service`).  ``--check-master`` only probes and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from .. import logs
from ..contract import RUN_SOCKET, daemon_socket
from ..process import add_common_options, daemonize, notify_ready, report, set_process_name
from .setup import DEFAULT_SOCKET_DIR, SetupError, check_master, prepare, sock_path

log = logging.getLogger("cgproxy")

DEFAULT_PIDFILE = "/run/cgproxy.pid"
DEFAULT_TIMEOUT = 5.0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cgproxy",
        description="The cgmanager proxy: serves org.linuxcontainers.cgmanager0_0 inside a "
        "container and forwards each call to the host's cgmanager with the caller's "
        "credentials, translated by the kernel.",
    )
    p.add_argument(
        "--socket-dir",
        default=os.path.dirname(daemon_socket()),
        help="the bind-mounted cgmanager socket directory; moved to DIR.lower, and the proxy's "
        "socket served at DIR/sock (default: the directory of cgmanager's default socket, "
        f"{os.path.dirname(RUN_SOCKET)} where /sys/fs/cgroup is cgroup2, else "
        f"{DEFAULT_SOCKET_DIR}; here %(default)s)",
    )
    p.add_argument(
        "--check-master",
        action="store_true",
        help="exit 0 if a cgmanager answers at DIR.lower/sock or DIR/sock, else 1; do nothing else",
    )
    p.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=float,
        default=DEFAULT_TIMEOUT,
        help="longest wait for the host cgmanager per forwarded call (default: %(default)s)",
    )
    add_common_options(p, DEFAULT_PIDFILE)
    return p


async def serve(args: argparse.Namespace, upstream_sock: str, ready_fd: int | None) -> int:
    # imported here: --help and --check-master need none of the D-Bus server stack
    from ..dbus.server import Server
    from ..requestor import Namespaces
    from ..scm_server import ScmServer
    from .service import ProxyService
    from .upstream import Unavailable, Upstream

    loop = asyncio.get_running_loop()
    upstream = Upstream(f"unix:path={upstream_sock}", timeout=args.timeout)
    try:
        await upstream.connection()
    except Unavailable as e:
        log.warning("%s; will retry on the first request", e)
    service = ProxyService(upstream, Namespaces.of_self(), ScmServer(timeout=args.timeout))
    server = Server(service.objects())
    path = sock_path(args.socket_dir)
    try:
        await server.start(path)
    except OSError as e:
        log.error("cannot listen on %s: %s", path, e)
        upstream.close()
        report(ready_fd, False)
        return 1
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("ready: serving %s, forwarding to %s", path, upstream_sock)
    report(ready_fd, True)
    notify_ready()
    if args.sigstop:
        os.kill(os.getpid(), signal.SIGSTOP)
    await stop.wait()
    log.info("stopping")
    await server.close()
    await service.close()
    upstream.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        logs.setup("cgproxy", args.log_level, args.log_target, detach=args.daemon)
    except OSError as e:
        print(f"cgproxy: cannot log to {args.log_target}: {e.strerror}", file=sys.stderr)
        return 1
    if args.check_master:
        return 0 if check_master(args.socket_dir) else 1
    if os.geteuid() != 0:
        log.error("Cgmanager proxy must be run as root")
        return 1
    if args.timeout <= 0:
        log.error("--timeout must be positive")
        return 2

    set_process_name("cgproxy")
    try:
        upstream_sock = prepare(args.socket_dir)
    except (SetupError, OSError) as e:
        log.error("%s", e)
        return 1
    ready_fd = None
    if args.daemon:
        try:
            ready_fd = daemonize(args.pidfile)
        except OSError as e:
            log.error("cannot daemonize: %s", e)
            return 1
    return asyncio.run(serve(args, upstream_sock, ready_fd))


if __name__ == "__main__":
    sys.exit(main())
