"""The one place where failures get their kind.

Every layer raises a subclass of :class:`CgmError`; transports map the *kind* (not the message
text) to their own error names (D-Bus error names, CLI exit codes).  Messages are written for a
person and must only mention paths the caller may see: layers below the permission model speak
in paths relative to a hierarchy root, and the operations layer rewrites or withholds them.
"""

from __future__ import annotations

import errno as _errno

from .escapes import printable


class CgmError(Exception):
    """Base class: a request failed for a reason the caller should be told."""

    #: short machine-readable kind, stable across releases (used in D-Bus error names)
    kind = "Failed"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        message = _printable(message)
        super().__init__(message)
        self.message = message
        #: the failure without any path in it, for callers that re-word the subject
        self.reason = _printable(reason) if reason else message

    def __str__(self) -> str:
        return self.message


class InvalidArgument(CgmError):
    """A name, path, key, controller or value is malformed (nothing was changed)."""

    kind = "InvalidArgument"


class NotFound(CgmError):
    """A cgroup, key, controller or process does not exist (or is not visible to the caller)."""

    kind = "NotFound"


class NotPermitted(CgmError):
    """The requestor may not do this."""

    kind = "NotPermitted"


class Busy(CgmError):
    """The kernel refused because the cgroup is in use (populated, or the no-internal-process
    rule)."""

    kind = "Busy"


class LimitExceeded(CgmError):
    """A quota or limit was hit: cgroup.max.depth/max.descendants, our own depth limit, sizes."""

    kind = "LimitExceeded"


class KernelRejected(CgmError):
    """The kernel refused a write for another reason (e.g. EINVAL for a malformed value)."""

    kind = "KernelRejected"


class Unsupported(CgmError):
    """The host cannot do this (controller not mounted or disabled, feature missing)."""

    kind = "Unsupported"


class Unavailable(CgmError):
    """The host cgmanager cannot be reached or did not answer in time (seen by cgproxy)."""

    kind = "Unavailable"


def _printable(text: str) -> str:
    """Messages travel into D-Bus strings, logs and audit lines: no character in them may
    break a line or hide what it shows, and no undecodable byte may make one fail to encode
    (:func:`cgmanager.escapes.printable`)."""
    if text.isascii() and text.isprintable():
        return text
    return printable(text)


_ERRNO_KINDS: dict[int, type[CgmError]] = {
    _errno.ENOENT: NotFound,
    _errno.ESRCH: NotFound,
    _errno.ENOTDIR: NotFound,
    _errno.ENODEV: NotFound,  # a file of a cgroup removed meanwhile (kernfs)
    _errno.ELOOP: InvalidArgument,  # a symlink where a cgroup or key was expected
    _errno.EACCES: NotPermitted,
    _errno.EPERM: NotPermitted,
    _errno.EBUSY: Busy,
    _errno.ENOTEMPTY: Busy,
    _errno.EAGAIN: LimitExceeded,
    # the daemon's own fds (or the host's) ran out: say so, never a generic failure
    _errno.EMFILE: LimitExceeded,
    _errno.ENFILE: LimitExceeded,
    _errno.ENOSPC: KernelRejected,  # e.g. cpuset without cpus/mems
    _errno.EINVAL: KernelRejected,
    _errno.ERANGE: KernelRejected,
    _errno.E2BIG: KernelRejected,  # a value longer than the kernel file takes (v1: 4 KiB)
    _errno.EOPNOTSUPP: Unsupported,
    _errno.ENAMETOOLONG: InvalidArgument,
    _errno.EXDEV: InvalidArgument,  # crossed a mount while resolving beneath a root
}

_ERRNO_WORDS: dict[type[CgmError], str] = {
    NotFound: "not found",
    NotPermitted: "not permitted",
    Busy: "busy",
    LimitExceeded: "limit reached",
    KernelRejected: "rejected by the kernel",
    Unsupported: "not supported",
    InvalidArgument: "invalid",
}


def from_oserror(exc: OSError, what: str) -> CgmError:
    """Translate a kernel error about *what* (a caller-visible description) into our kinds.

    Only the errno is used: strerror text and file names from the OSError are dropped, because
    they may name paths the caller must not see.
    """
    if exc.errno in (_errno.EMFILE, _errno.ENFILE):
        reason = "cgmanager is out of file descriptors; try again later"
        return LimitExceeded(f"{what}: {reason}", reason=reason)
    cls = _ERRNO_KINDS.get(exc.errno or 0, CgmError)
    reason = os_strerror(exc.errno)
    word = _ERRNO_WORDS.get(cls, "failed")
    return cls(f"{what}: {word} ({reason})", reason=f"{word} ({reason})")


def os_strerror(code: int | None) -> str:
    import os

    return os.strerror(code) if code else "unknown error"
