"""The socket-directory dance (0.42 §9.3) and ``--check-master``.

Inside a container the manager bind-mounts the host's socket *directory*
(``/sys/fs/cgroup/cgmanager``) into the container.  The proxy moves that mount aside to
``<dir>.lower`` and serves its own socket at ``<dir>/sock``:

* both sockets answer        → another proxy runs here: refuse;
* only ``<dir>.lower`` does  → a proxy ran before (the move is done): use it;
* only ``<dir>`` does        → move-mount ``<dir>`` onto ``<dir>.lower``; if that fails
  (``<dir>`` is no mount point, e.g. on a host) rename the directory instead;
* neither                    → no cgmanager to talk to: refuse.

Blocking and synchronous: it runs before the event loop (and before ``--daemon`` forks).
"""

from __future__ import annotations

import logging
import os
import stat

from .. import _linux
from ..dbus.client import connect
from ..dbus.errors import DBusError

log = logging.getLogger(__name__)

DEFAULT_SOCKET_DIR = "/sys/fs/cgroup/cgmanager"
SOCKET_NAME = "sock"
PROBE_TIMEOUT = 2.0
MS_REMOUNT = 32
MS_RELATIME = 1 << 21
#: per-mount flags a remount must repeat: nosuid, nodev, noexec, noatime, nodiratime (their
#: ST_ and MS_ values are equal)
_KEEP = 2 | 4 | 8 | 1024 | 2048


class SetupError(Exception):
    """The proxy cannot start (message for the log)."""


def lower_dir(socket_dir: str) -> str:
    return socket_dir.rstrip("/") + ".lower"


def sock_path(directory: str) -> str:
    return os.path.join(directory, SOCKET_NAME)


def can_connect(path: str, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether a D-Bus connection (handshake included) to the socket at *path* works."""
    try:
        connect(f"unix:path={path}", timeout=timeout).close()
    except (DBusError, OSError, ValueError):
        return False
    return True


def check_master(socket_dir: str = DEFAULT_SOCKET_DIR) -> bool:
    """``--check-master``: does a cgmanager (or proxy) answer at ``<dir>.lower/sock`` or
    ``<dir>/sock``?  Init scripts start cgproxy when it does, cgmanager when not."""
    return can_connect(sock_path(lower_dir(socket_dir))) or can_connect(sock_path(socket_dir))


def _read_only(directory: str) -> tuple[bool, int]:
    """Whether *directory*'s mount is read-only, and its other per-mount flags (as MS_*) to
    keep across a remount."""
    flags = os.statvfs(directory).f_flag
    keep = flags & _KEEP
    if flags & os.ST_RELATIME:  # the one flag whose MS_ value differs
        keep |= MS_RELATIME
    return bool(flags & os.ST_RDONLY), keep


def ensure_writable(directory: str) -> None:
    """0.42 remounted ``/sys/fs/cgroup`` read-write when a container had it read-only: the
    superblock (a tmpfs of the container), then the mount point itself if it is a read-only
    bind.  The mount's other flags (nosuid, nodev, noexec, atime) are kept."""
    try:
        ro, keep = _read_only(directory)
    except OSError:
        return
    if not ro:
        return
    problem: OSError | None = None
    for flags in (MS_REMOUNT, MS_REMOUNT | _linux.MS_BIND):
        try:
            _linux.mount(None, directory, None, flags | keep)
        except OSError as e:
            problem = e
            continue
        if not _read_only(directory)[0]:
            log.info("remounted %s read-write", directory)
            return
    log.warning("%s is read-only and could not be remounted: %s", directory, problem)


def _remove_stale_socket(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise SetupError(f"{path} exists and is not a socket")
    os.unlink(path)


def move_aside(socket_dir: str, lower: str) -> None:
    """Move the bind-mounted directory to *lower*: a move-mount; under a shared mount (systemd
    makes every mount shared, and the kernel refuses MS_MOVE there) a bind of the same
    directory on *lower*, then the original detached; a rename when the directory is not a
    mount point."""
    os.makedirs(lower, mode=0o755, exist_ok=True)
    try:
        _linux.mount(socket_dir, lower, None, _linux.MS_MOVE)
        log.info("moved the mount %s to %s", socket_dir, lower)
    except OSError as e:
        if not _bind_then_detach(socket_dir, lower):
            log.info("cannot move-mount %s (%s); renaming it", socket_dir, e)
            _remove_stale_socket(sock_path(lower))
            os.rmdir(lower)
            os.rename(socket_dir, lower)
    os.makedirs(socket_dir, mode=0o755, exist_ok=True)


def _bind_then_detach(socket_dir: str, lower: str) -> bool:
    """A move-mount by other means; False (and nothing changed) if *socket_dir* is no mount
    point."""
    try:
        _linux.mount(socket_dir, lower, None, _linux.MS_BIND)
    except OSError:
        return False
    try:
        _linux.umount(socket_dir, _linux.MNT_DETACH)
    except OSError:  # EINVAL: not a mount point
        _linux.umount(lower, _linux.MNT_DETACH)
        return False
    log.info("moved the mount %s to %s (bind, then detach: a shared mount)", socket_dir, lower)
    return True


def check_proc() -> None:
    """Client pids are looked up in /proc: it must be this pid namespace's (a container that
    did not mount its own /proc would show the host's processes under those numbers)."""
    try:
        mine = os.readlink("/proc/self")
    except OSError as e:
        raise SetupError(f"/proc is not usable: {e}") from None
    if mine != str(os.getpid()):
        raise SetupError("/proc does not belong to this pid namespace; mount it first")


def prepare(socket_dir: str = DEFAULT_SOCKET_DIR) -> str:
    """Set up as described above; return the socket path of the cgmanager to talk to."""
    check_proc()
    socket_dir = socket_dir.rstrip("/") or "/"
    ensure_writable(os.path.dirname(socket_dir))
    lower = lower_dir(socket_dir)
    upper_ok = can_connect(sock_path(socket_dir))
    lower_ok = can_connect(sock_path(lower))
    if upper_ok and lower_ok:
        raise SetupError(f"cgproxy already running ({sock_path(socket_dir)} answers)")
    if not upper_ok and not lower_ok:
        raise SetupError(f"no cgmanager answers at {sock_path(lower)} or {sock_path(socket_dir)}")
    if upper_ok:
        try:
            move_aside(socket_dir, lower)
        except OSError as e:
            raise SetupError(f"cannot move {socket_dir} to {lower}: {e}") from None
        if not can_connect(sock_path(lower)):
            raise SetupError(f"cgmanager no longer answers at {sock_path(lower)}")
    else:
        os.makedirs(socket_dir, mode=0o755, exist_ok=True)
    return sock_path(lower)
