"""The ``cgmanager`` command: options, start-up and shutdown of the daemon."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from .. import logs, mounts
from ..contract import DEFAULT_SOCKET, RUN_SOCKET, daemon_socket
from ..dbus.limits import Limits
from ..hierarchy import Layout, discover_host
from ..process import add_common_options, set_process_name
from .reaper import (
    DEFAULT_MAX_PROCESSES,
    DEFAULT_MAX_PROCESSES_PER_UID,
    DEFAULT_MAX_WATCHES,
    DEFAULT_MAX_WATCHES_PER_UID,
)
from .workers import DEFAULT_WORKERS

log = logging.getLogger("cgmanager")

DEFAULT_PIDFILE = "/run/cgmanager.pid"
DEFAULT_MAX_DEPTH = 16


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cgmanager",
        description="The cgroup manager daemon: serves org.linuxcontainers.cgmanager0_0 on a "
        "private D-Bus socket and acts on cgroups for its clients, within their own subtrees.",
    )
    p.add_argument(
        "-s",
        "--socket",
        default=daemon_socket(),
        help=f"socket path to listen on (default: {RUN_SOCKET} where /sys/fs/cgroup is "
        f"cgroup2, else 0.42's {DEFAULT_SOCKET}; here %(default)s)",
    )
    p.add_argument(
        "-m",
        "--mount",
        metavar="LIST",
        type=_csv,
        action="extend",
        default=[],
        help="hierarchies expected besides the discovered ones (e.g. name=systemd); "
        "served if mounted on the host, else reported — never created",
    )
    p.add_argument(
        "-M",
        "--skip",
        metavar="LIST",
        type=_csv,
        action="extend",
        default=[],
        help="hierarchies not to serve, by any of their names (e.g. memory,unified)",
    )
    p.add_argument(
        "--max-depth",
        metavar="N",
        type=int,
        default=DEFAULT_MAX_DEPTH,
        help="deepest cgroup a client may create, counted below the daemon's own cgroup "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--delegate-max-descendants",
        metavar="N",
        type=int,
        help="on cgroup v2, set cgroup.max.descendants to N on every cgroup chowned to a "
        "non-root user (a quota its new owner cannot raise)",
    )
    p.add_argument(
        "--delegate-max-depth",
        metavar="N",
        type=int,
        help="likewise cgroup.max.depth",
    )
    p.add_argument(
        "--delegated",
        choices=["auto", "yes", "no"],
        default="auto",
        help="whether the start-up cgroup is a delegation point (systemd Delegate=yes): then "
        "the daemon moves itself into a leaf 'cgmanager' below it and never changes it; auto "
        "looks for systemd's trusted.delegate/user.delegate mark (default: %(default)s)",
    )
    p.add_argument(
        "--scm-timeout",
        metavar="SECONDS",
        type=float,
        default=5.0,
        help="how long an Scm request may wait for its client's credentials (default: %(default)s)",
    )
    p.add_argument(
        "--max-connections",
        metavar="N",
        type=int,
        default=Limits.max_connections,
        help="client connections open at once; further ones are closed at once "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--max-connections-per-uid",
        metavar="N",
        type=int,
        default=Limits.max_connections_per_uid,
        help="likewise per client uid, as the kernel reports it (default: %(default)s)",
    )
    for flag, default, what in (
        ("--max-watches", DEFAULT_MAX_WATCHES, "cgroups awaiting RemoveOnEmpty/Prune, in all"),
        ("--max-watches-per-uid", DEFAULT_MAX_WATCHES_PER_UID, "likewise per requestor uid"),
        (
            "--max-watched-processes",
            DEFAULT_MAX_PROCESSES,
            "processes watched for RemoveOnEmpty on cgroup v1 (one pidfd each), in all",
        ),
        (
            "--max-watched-processes-per-uid",
            DEFAULT_MAX_PROCESSES_PER_UID,
            "likewise per requestor uid",
        ),
    ):
        p.add_argument(
            flag, metavar="N", type=int, default=default, help=f"{what} (default: %(default)s)"
        )
    p.add_argument(
        "--workers",
        metavar="N",
        type=int,
        default=DEFAULT_WORKERS,
        help="threads for requests whose work grows with a subtree (recursive Remove, Prune, "
        "GetTasksRecursive, big listings and Setups); one uid uses at most half of them "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--fs-dir",
        default=mounts.DEFAULT_FS_DIR,
        help="where the private hierarchy mounts go (default: %(default)s)",
    )
    p.add_argument(
        "--no-private-mounts",
        action="store_true",
        help="use the host's cgroup mounts directly instead of private ones",
    )
    p.add_argument(
        "--config-dir",
        metavar="DIR",
        default="/etc/cgmanager/cgconfig.d",
        help="cgconfig.conf files (*.conf, in name order) applied at start, on SIGHUP and on "
        "'cgm reload'; '' for none (default: %(default)s)",
    )
    p.add_argument(
        "--rules",
        metavar="FILE",
        default="/etc/cgmanager/cgrules.conf",
        help="cgrules.conf placement rules, applied on the kernel's exec/uid/gid events and "
        "re-read on SIGHUP and 'cgm reload'; '' for none (default: %(default)s)",
    )
    p.add_argument(
        "--print-layout", action="store_true", help="print the discovered hierarchies and exit"
    )
    add_common_options(p, DEFAULT_PIDFILE)
    return p


def describe(layout: Layout) -> str:
    """A human summary of the layout (``--print-layout`` and the start-up log)."""
    lines = [f"mode: {layout.mode}"]
    for h in layout.hierarchies:
        ctrls = ",".join(h.controllers) or "-"
        extra = f" aliases={','.join(h.aliases)}" if h.aliases else ""
        lines.append(
            f"  {h.key:<16} v{h.version} controllers={ctrls} mount={h.mountpoint}"
            f" root={h.mount_root}{extra}"
        )
    for label, items in (
        ("skipped", layout.skipped),
        ("not mounted (--mount)", layout.missing),
        ("disabled", sorted(layout.disabled)),
        ("bound to no hierarchy", sorted(layout.unbound)),
    ):
        if items:
            lines.append(f"  {label}: {', '.join(items)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        logs.setup("cgmanager", args.log_level, args.log_target, detach=args.daemon)
    except OSError as e:
        print(f"cgmanager: cannot log to {args.log_target}: {e.strerror}", file=sys.stderr)
        return 1
    if args.max_depth < 1:
        log.error("--max-depth must be at least 1")
        return 2
    if args.workers < 1:
        log.error("--workers must be at least 1")
        return 2
    for opt in (
        "max_connections",
        "max_connections_per_uid",
        "max_watches",
        "max_watches_per_uid",
        "max_watched_processes",
        "max_watched_processes_per_uid",
    ):
        if getattr(args, opt) < 1:
            log.error("--%s must be at least 1", opt.replace("_", "-"))
            return 2
    for opt in ("delegate_max_descendants", "delegate_max_depth"):
        if getattr(args, opt) is not None and getattr(args, opt) < 0:
            log.error("--%s must not be negative", opt.replace("_", "-"))
            return 2
    layout = discover_host(skip=args.skip, extra=args.mount)
    if args.print_layout:
        print(describe(layout))
        return 0
    if os.geteuid() != 0:
        log.error("cgmanager must run as root")
        return 1
    set_process_name("cgmanager")
    for name in layout.missing:
        log.warning("%s is not mounted on this host; not served", name)
    if not args.no_private_mounts:
        layout = mounts.setup(layout, args.fs_dir)
    log.info("serving:\n%s", describe(layout))
    from .service import run  # imported late: the D-Bus stack is not needed for --help

    return run(args, layout)


if __name__ == "__main__":
    sys.exit(main())
