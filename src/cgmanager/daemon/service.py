"""The running daemon: event loop, socket, signals, pidfile."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import resource
import signal
import sys

from .. import names
from ..cgroupfs import CgroupTree
from ..dbus import loop as event_loop
from ..dbus.limits import Limits
from ..dbus.server import Server
from ..errors import CgmError
from ..hierarchy import Layout, parse_mountinfo
from ..operations import Manager, open_trees
from ..policy.engine import Engine
from ..process import daemonize, notify_ready, report
from ..requestor import Namespaces
from ..scm_server import ScmServer
from .api import Service, daemon_party
from .events import Events
from .notify import PriorityWatch
from .policy import Policy
from .reaper import Reaper
from .scheduler import Scheduler
from .workers import WorkerPool, on_workers

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


def raise_fd_limit(limits: Limits, extra: int = 0) -> None:
    """Each connection holds a socket, a pidfd, its peer's /proc directory and perhaps its user
    namespace (4 fds), plus up to ``max_fds_per_message`` pending fds; 1024 more are kept for
    the daemon itself (0.42 raised RLIMIT_NOFILE to 10000 for the same reason).  The soft limit
    is raised to what the configured limits need, the hard one too where permitted
    (CAP_SYS_RESOURCE).  Where the hard limit is lower, it is used, and one line says what it
    allows: info while every configured connection can still be held, a warning if not.
    *extra*: fds held besides the connections' (event subscriptions)."""
    per_connection, reserve = 4, 1024
    pending = limits.max_fds_per_message
    want = limits.max_connections * (per_connection + pending) + reserve + extra
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return
    for new in ((want, max(hard, want)), (hard, hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, new)
        except (ValueError, OSError):
            continue
        if new[0] >= want:
            return
        break
    have = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    usable = max(0, have - reserve)
    held, full = usable // per_connection, usable // (per_connection + pending)
    if held >= limits.max_connections:
        log.info(
            "RLIMIT_NOFILE is %d (its hard limit; %d would cover everything): every one of the "
            "%d connections (--max-connections) can be held, %d of them with %d pending fds "
            "each",
            have,
            want,
            limits.max_connections,
            full,
            pending,
        )
    else:
        log.warning(
            "RLIMIT_NOFILE is %d (its hard limit), too low for --max-connections %d: about %d "
            "clients can be connected at once (%d with %d pending fds each); raise the hard "
            "limit to %d (LimitNOFILE=, ulimit -Hn) or lower --max-connections",
            have,
            limits.max_connections,
            held,
            full,
            pending,
            want,
        )


#: the GIL switch interval while workers run (seconds): bounds how long Python code on a worker
#: can keep the event loop waiting
SWITCH_INTERVAL = 0.0005

#: the reaper's share of the workers is its own (not any client's uid)
REAPER_KEY = -1

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


async def serve(args: argparse.Namespace, layout: Layout, ready_fd: int | None = None) -> int:
    loop = asyncio.get_running_loop()
    ns = Namespaces.of_self()
    me = daemon_party(layout, ns)  # the start-up cgroups: the bound of everything
    trees = open_trees(layout)
    try:
        base = me.cgroup(layout.v2) if layout.v2 else None
    except CgmError as e:  # e.g. started outside the cgroup namespace its /proc shows
        log.error("cannot tell the daemon's own cgroup in the v2 tree: %s", e)
        return 1
    try:
        leaves = enter_leaf(args, layout, trees, base) if base is not None else {}
    except CgmError as e:
        log.error("cannot move into a leaf of the delegated cgroup: %s", e)
        return 1
    quota = {
        key: value
        for key, value in (
            ("cgroup.max.descendants", args.delegate_max_descendants),
            ("cgroup.max.depth", args.delegate_max_depth),
        )
        if value is not None
    }
    pool = WorkerPool(loop, args.workers)
    reaper = Reaper(
        loop,
        args.max_watches,
        max_watches_per_uid=args.max_watches_per_uid,
        max_processes=args.max_watched_processes,
        max_processes_per_uid=args.max_watched_processes_per_uid,
        kernel=on_workers(pool, REAPER_KEY),  # its listings and removals off the loop
    )
    manager = Manager(
        layout,
        trees,
        me,
        max_depth=args.max_depth,
        reaper=reaper,
        leaves=leaves,
        quota=quota,
    )
    # a worker running Python code gives the loop the GIL back within this (default 5 ms)
    sys.setswitchinterval(SWITCH_INTERVAL)
    scm_server = ScmServer(timeout=args.scm_timeout)
    watch = PriorityWatch(loop)
    policy = Policy(manager, me, args.config_dir)
    engine = policy.engine = Engine(loop, manager, me, args.rules, lambda: policy)
    policy.reload_logged()  # configuration and rules, before the first client is served
    events = Events(loop, manager)
    service = Service(
        manager, layout, ns, me, Scheduler(pool), scm_server, watch, policy=policy, events=events
    )
    limits = Limits(
        max_connections=args.max_connections, max_connections_per_uid=args.max_connections_per_uid
    )
    raise_fd_limit(limits, extra=events.max_fds)
    server = Server(service.objects(), limits=limits)
    server.on_connect = service.on_connect
    events.bind(server.connection)
    try:
        prepare_socket_dir(args.socket)
        await server.start(args.socket)
    except (OSError, CgmError) as e:
        log.error("cannot listen on %s: %s", args.socket, e)
        return 1
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, policy.reload_logged)
    # what start-up made lives as long as the daemon: out of the collector's way, so a full
    # collection (which holds the GIL against the loop) scans only what serving makes
    gc.freeze()
    log.info("ready: serving %s", args.socket)
    report(ready_fd, True)
    notify_ready()
    if args.sigstop:
        os.kill(os.getpid(), signal.SIGSTOP)
    await stop.wait()
    log.info("stopping")
    await server.close()
    await scm_server.close()
    pool.close()
    events.close()
    engine.close()
    reaper.close()
    watch.close()
    pool.join(timeout=5)
    manager.close()
    return 0


def run(args: argparse.Namespace, layout: Layout) -> int:
    ready_fd = daemonize(args.pidfile) if args.daemon else None
    return event_loop.run(serve(args, layout, ready_fd))  # uvloop when installed
