"""The running daemon: event loop, socket, signals, pidfile."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import resource
import signal
import socket

from .. import names
from ..cgroupfs import CgroupTree
from ..dbus.limits import Limits
from ..dbus.server import Server
from ..errors import CgmError
from ..hierarchy import Layout, parse_mountinfo
from ..operations import Manager, open_trees
from ..process import daemonize, report
from ..requestor import Namespaces
from ..scm_server import ScmServer
from .api import Service, daemon_party
from .reaper import Reaper

log = logging.getLogger("cgmanager")


def prepare_socket_dir(sock_path: str) -> None:
    """Create the socket's directory (0755, as 0.42 did) — but never inside a cgroup
    filesystem: on a pure v2 host /sys/fs/cgroup *is* cgroup2, and a mkdir there would create
    a cgroup, not a directory."""
    directory = os.path.dirname(os.path.abspath(sock_path))
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        mounts = parse_mountinfo(f.read())
    probe = directory + "/"
    best = max(
        (m for m in mounts if probe.startswith(m.mountpoint.rstrip("/") + "/")),
        key=lambda m: len(m.mountpoint),
        default=None,
    )
    if best is not None and best.fstype in ("cgroup", "cgroup2"):
        raise CgmError(
            f"{directory} is inside a cgroup filesystem ({best.mountpoint}); choose another"
            " place with --socket (e.g. /run/cgmanager/sock)"
        )
    os.makedirs(directory, mode=0o755, exist_ok=True)


def raise_fd_limit(limits: Limits) -> None:
    """Each connection holds a socket, a pidfd, its peer's /proc directory, perhaps its user
    namespace, and up to ``max_fds_per_message`` pending fds; 0.42 raised RLIMIT_NOFILE to
    10000 for the same reason."""
    want = limits.max_connections * (4 + limits.max_fds_per_message) + 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        log.warning("RLIMIT_NOFILE limited to %d (wanted %d)", hard, want)


#: the leaf the daemon moves into when started in a delegated cgroup
LEAF = "cgmanager"


def is_delegation_point(tree: CgroupTree, path: str) -> bool:
    """systemd marks the cgroups it delegates (Delegate=yes) with a ``trusted.delegate``
    (system manager) or ``user.delegate`` (user manager) extended attribute."""
    with tree.dirfd(path) as fd:
        for name in ("trusted.delegate", "user.delegate"):
            try:
                if os.getxattr(fd, name).strip() == b"1":
                    return True
            except OSError:
                continue
    return False


def enter_leaf(
    args: argparse.Namespace, layout: Layout, trees: dict[str, CgroupTree], base: str
) -> dict[str, str]:
    """Under a delegating manager the daemon's start-up cgroup is the delegation point: it
    stays the bound of everything, but the daemon itself moves into a leaf below it (systemd's
    rule: no processes in inner nodes, and never act on the delegation point's attributes).
    Returns {hierarchy key: leaf} for the operations to keep out of clients' reach."""
    h = layout.v2
    if h is None or args.delegated == "no":
        return {}
    t = trees[h.key]
    if args.delegated == "auto" and not is_delegation_point(t, base):
        return {}
    leaf = names.join(base, LEAF)
    t.mkdir(leaf)
    t.move(leaf, os.getpid())
    log.info("delegated cgroup %s: moved into %s", base, leaf)
    return {h.key: leaf}


def notify_ready() -> None:
    """sd_notify(READY=1) for Type=notify units, once serving (and in the leaf)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.sendto(f"READY=1\nMAINPID={os.getpid()}".encode(), address)
    except OSError as e:
        log.warning("could not notify the service manager: %s", e)


async def serve(args: argparse.Namespace, layout: Layout, ready_fd: int | None = None) -> int:
    loop = asyncio.get_running_loop()
    ns = Namespaces.of_self()
    me = daemon_party(layout, ns)  # the start-up cgroups: the bound of everything
    trees = open_trees(layout)
    try:
        leaves = enter_leaf(args, layout, trees, me.cgroup(layout.v2)) if layout.v2 else {}
    except CgmError as e:
        log.error("cannot move into a leaf of the delegated cgroup: %s", e)
        return 1
    reaper = Reaper(
        loop,
        args.max_watches,
        max_watches_per_uid=args.max_watches_per_uid,
        max_processes=args.max_watched_processes,
        max_processes_per_uid=args.max_watched_processes_per_uid,
    )
    quota = {
        key: value
        for key, value in (
            ("cgroup.max.descendants", args.delegate_max_descendants),
            ("cgroup.max.depth", args.delegate_max_depth),
        )
        if value is not None
    }
    manager = Manager(
        layout, trees, me, max_depth=args.max_depth, reaper=reaper, leaves=leaves, quota=quota
    )
    scm_server = ScmServer(timeout=args.scm_timeout)
    service = Service(manager, layout, ns, me, scm_server)
    limits = Limits(
        max_connections=args.max_connections, max_connections_per_uid=args.max_connections_per_uid
    )
    raise_fd_limit(limits)
    server = Server(service.objects(), limits=limits)
    try:
        prepare_socket_dir(args.socket)
        await server.start(args.socket)
    except (OSError, CgmError) as e:
        log.error("cannot listen on %s: %s", args.socket, e)
        return 1
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("ready: serving %s", args.socket)
    report(ready_fd, True)
    notify_ready()
    if args.sigstop:
        os.kill(os.getpid(), signal.SIGSTOP)
    await stop.wait()
    log.info("stopping")
    await server.close()
    await scm_server.close()
    reaper.close()
    for t in trees.values():
        t.close()
    return 0


def run(args: argparse.Namespace, layout: Layout) -> int:
    ready_fd = daemonize(args.pidfile) if args.daemon else None
    return asyncio.run(serve(args, layout, ready_fd))
