"""The few Linux system calls Python 3.11 does not wrap: openat2, unshare, setns, mount.

Kept in one module so the ctypes surface is small and auditable.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.syscall.restype = ctypes.c_long

# x86_64, aarch64 and the other generic-table architectures share this number.
SYS_OPENAT2 = 437

RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MNT_DETACH = 2


class _OpenHow(ctypes.Structure):
    _fields_ = [
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    ]


_HOW_SIZE = ctypes.sizeof(_OpenHow)
_openat2_available: bool | None = None


def _raise(what: str, path: str | None = None) -> None:
    e = ctypes.get_errno()
    raise OSError(e, os.strerror(e), path) if path else OSError(e, f"{what}: {os.strerror(e)}")


#: the few (flags, mode, resolve) combinations in use, each built once: a new structure per
#: call cost more than the system call's own work
_hows: dict[tuple[int, int, int], ctypes._Pointer[_OpenHow]] = {}


def openat2(dirfd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
    """openat2(2); raises OSError (ENOSYS where the kernel lacks it)."""
    key = (flags, mode, resolve)
    how = _hows.get(key)
    if how is None:
        if len(_hows) > 64:
            _hows.clear()
        how = _hows[key] = ctypes.pointer(_OpenHow(flags | os.O_CLOEXEC, mode, resolve))
    fd = _libc.syscall(SYS_OPENAT2, dirfd, os.fsencode(path), how, _HOW_SIZE)
    if fd < 0:
        _raise("openat2", path)
    return int(fd)


def open_beneath(dirfd: int, path: str, flags: int) -> int:
    """Open *path* (relative) beneath *dirfd* without following any symlink and without
    leaving the directory or its mount.

    Uses openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|RESOLVE_NO_XDEV) in one system call; on
    kernels without openat2 (< 5.6), walks the components with O_NOFOLLOW, refusing ``..``.
    """
    global _openat2_available
    if _openat2_available is not False:
        try:
            return openat2(
                dirfd,
                path or ".",
                flags,
                RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV,
            )
        except OSError as exc:
            if exc.errno != errno.ENOSYS:
                raise
            _openat2_available = False
    return _walk_beneath(dirfd, path, flags)


def _walk_beneath(dirfd: int, path: str, flags: int) -> int:
    parts = [p for p in path.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise OSError(errno.EXDEV, "path component '..' refused", path)
    cur = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dirfd)
    try:
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            nflags = (flags if last else os.O_PATH | os.O_DIRECTORY) | os.O_NOFOLLOW | os.O_CLOEXEC
            nxt = os.open(part, nflags, dir_fd=cur)
            os.close(cur)
            cur = nxt
        if not parts:
            nxt = os.open(".", flags | os.O_CLOEXEC, dir_fd=cur)
            os.close(cur)
            cur = nxt
        return cur
    except BaseException:
        os.close(cur)
        raise


def unshare(flags: int) -> None:
    if _libc.unshare(ctypes.c_int(flags)) != 0:
        _raise("unshare")


def setns(fd: int, nstype: int = 0) -> None:
    if _libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)) != 0:
        _raise("setns")


def mount(
    source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None
) -> None:
    def enc(s: str | None) -> bytes | None:
        return None if s is None else os.fsencode(s)

    if _libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)) != 0:
        _raise(f"mount {target}")


def umount(target: str, flags: int = 0) -> None:
    if _libc.umount2(os.fsencode(target), ctypes.c_int(flags)) != 0:
        _raise(f"umount {target}")
