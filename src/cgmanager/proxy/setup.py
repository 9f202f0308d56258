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


def proc_is_ours() -> bool:
    """Whether /proc shows this pid namespace.  The proxy reads its clients' namespaces from
    ``/proc/<pid>``, with the pid the kernel gives it (``SO_PEERCRED``) — a number in the
    proxy's own pid namespace.  A /proc of an ancestor namespace (``unshare --pid --fork``
    without ``--mount-proc``) shows other processes under those numbers.  ``NSpid`` lists
    our pid in every namespace from /proc's down to ours: one entry means they are the same
    (a /proc of an unrelated namespace has no ``self`` at all)."""
    try:
        with open("/proc/self/status", "rb") as f:
            status = f.read()
    except OSError:
        return False
    for line in status.split(b"\n"):
        if line.startswith(b"NSpid:"):
            return line.split()[1:] == [str(os.getpid()).encode()]
    # a kernel without pid namespaces: /proc is necessarily this (the only) one
    return True


def mount_private_proc() -> None:
    """Give this process its own mount namespace (a slave of the current one: later mounts
    there still reach us, ours never go back) with a /proc of its own pid namespace.  Only
    this process and its children see it; the container keeps its /proc."""
    _linux.unshare(_linux.CLONE_NEWNS)
    _linux.mount(None, "/", None, _linux.MS_REC | _linux.MS_SLAVE)
    _linux.mount("proc", "/proc", "proc", _linux.MS_NOSUID | _linux.MS_NODEV | _linux.MS_NOEXEC)


def _probe_private_proc() -> None:
    """Try :func:`mount_private_proc` in a throw-away child, so that a proxy which cannot
    have its own /proc refuses before it moves the socket directory."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's status says how it went
        code = 0
        try:
            mount_private_proc()
            code = 0 if proc_is_ours() else 255
        except OSError as e:
            code = e.errno or 254
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code == 0:
        return
    why = "still not this pid namespace's" if code == 255 else os.strerror(code)
    raise SetupError(
        "/proc shows another pid namespace's processes, and cgproxy could not mount a private "
        f"/proc of its own ({why}): it reads its clients' namespaces from /proc/<pid>, where "
        "those numbers would name other processes; mount /proc for this pid namespace first "
        "(e.g. unshare --pid --fork --mount-proc)"
    )


def prepare(socket_dir: str = DEFAULT_SOCKET_DIR) -> str:
    """Set up as described above; return the socket path of the cgmanager to talk to.

    When /proc is not this pid namespace's (:func:`proc_is_ours`), the proxy mounts a private
    one once the socket directory is in place (in its own mount namespace: the move of the
    socket directory must happen in the container's)."""
    private_proc = not proc_is_ours()
    if private_proc:
        _probe_private_proc()
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
    if private_proc:
        try:
            mount_private_proc()
        except OSError as e:
            raise SetupError(f"cannot mount a private /proc: {e}") from None
        if not proc_is_ours():
            raise SetupError("the private /proc does not show this pid namespace")
        log.info(
            "/proc showed another pid namespace: using a private /proc of this one "
            "(in cgproxy's own mount namespace)"
        )
    return sock_path(lower)
