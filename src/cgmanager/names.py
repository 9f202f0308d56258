"""Validation of every cgroup path, cgroup name and key a client sends.

Pure functions, no I/O.  Paths inside a hierarchy are handled as *absolute hierarchy paths*:
strings that start with ``/`` (the hierarchy root is ``"/"``), with no empty, ``.`` or ``..``
components.  Anything a client sends is turned into that form only through this module, so
there is exactly one place that decides what a hostile spelling means (it means an error).
"""

from __future__ import annotations

import re

from .errors import InvalidArgument

#: Linux NAME_MAX and PATH_MAX, in bytes.
NAME_MAX = 255
PATH_MAX = 4096

#: Controllers whose ``<name>.*`` files the kernel may create in a cgroup directory, so a child
#: cgroup with such a name could later block enabling that controller (or be mistaken for a
#: knob).  Names read from /proc/cgroups at run time are added by the caller when newer.
KERNEL_CONTROLLERS = frozenset(
    {
        "blkio",
        "cpu",
        "cpuacct",
        "cpuset",
        "debug",
        "devices",
        "dmem",
        "freezer",
        "hugetlb",
        "io",
        "memory",
        "misc",
        "net_cls",
        "net_prio",
        "perf_event",
        "pids",
        "rdma",
    }
)

#: v1 core files that are not prefixed with ``cgroup.``.
_V1_CORE_FILES = frozenset({"tasks", "notify_on_release", "release_agent"})
#: the daemon's own v2 leaf (operations.V2_LEAF): never a client's cgroup
_RESERVED = frozenset({".cgm_leaf"})


#: NUL and the other control characters: newlines would make /proc/<pid>/cgroup ambiguous
_CONTROL = re.compile("[\x00-\x1f\x7f]")


def _check_text(s: str, what: str) -> None:
    m = _CONTROL.search(s)
    if m is not None:
        if m.group() == "\0" or "\0" in s:
            raise InvalidArgument(f"invalid {what}: contains a NUL byte")
        raise InvalidArgument(f"invalid {what}: contains a control character")


def _check_component(c: str, what: str) -> None:
    if c in (".", ".."):
        raise InvalidArgument(f"invalid {what}: '{c}' is not allowed as a path component")
    if len(c.encode("utf-8", "surrogateescape")) > NAME_MAX:
        raise InvalidArgument(f"invalid {what}: a component is longer than {NAME_MAX} bytes")


def split(path: str, what: str = "cgroup") -> tuple[str, ...]:
    """Split a client path into components: empty components (``//``, a leading or trailing
    ``/``) are dropped as in 0.42, ``.``/``..``, NUL and control characters are refused."""
    _check_text(path, what)
    if len(path.encode("utf-8", "surrogateescape")) > PATH_MAX:
        raise InvalidArgument(f"invalid {what}: longer than {PATH_MAX} bytes")
    parts = tuple(c for c in path.split("/") if c)
    for c in parts:
        _check_component(c, what)
    return parts


def join(base: str, *components: str) -> str:
    """Append already validated components to an absolute hierarchy path."""
    if not components:
        return base
    tail = "/".join(components)
    result = tail if base == "/" else base + "/" + tail
    result = "/" + result.lstrip("/")
    if len(result.encode("utf-8", "surrogateescape")) > PATH_MAX:
        raise InvalidArgument(f"invalid cgroup: the resulting path is longer than {PATH_MAX} bytes")
    return result


def resolve(base: str, path: str, *, absolute_allowed: bool) -> str:
    """The absolute hierarchy path a client means by *path* relative to *base*.

    With *absolute_allowed* (0.42's "lookup" methods), a leading ``/`` means "from the
    hierarchy root"; otherwise (the "relative" methods) the path is always below *base*.
    Whether the result is inside what the caller may reach is the permission model's call.
    """
    parts = split(path)
    if absolute_allowed and path.startswith("/"):
        return join("/", *parts)
    return join(base, *parts)


def components(abspath: str) -> tuple[str, ...]:
    """Components of an absolute hierarchy path (``"/"`` has none)."""
    return tuple(c for c in abspath.split("/") if c)


def depth(abspath: str) -> int:
    return len(components(abspath))


def parent(abspath: str) -> str:
    parts = components(abspath)
    return "/" + "/".join(parts[:-1])


def is_under(path: str, base: str) -> bool:
    """True if *path* is *base* or a descendant of it, with a ``/`` boundary (so ``/a2`` is not
    under ``/a``): the check 0.36 fixed in one place and 0.42 still lacked in others."""
    if base == "/":
        return path.startswith("/")
    return path == base or path.startswith(base + "/")


def relative_to(path: str, base: str) -> str:
    """*path* relative to *base* (``""`` when equal); *path* must be under *base*."""
    if not is_under(path, base):
        raise ValueError(f"{path!r} is not under {base!r}")
    if path == base:
        return ""
    return path[len(base) :].lstrip("/") if base != "/" else path.lstrip("/")


def check_new_name(name: str, extra_controllers: frozenset[str] = frozenset()) -> None:
    """Refuse a new cgroup name that collides with kernel attribute files.

    systemd escapes such names with a ``_`` prefix; we refuse them with a clear error instead,
    because an old client that creates ``cpu.x`` and then looks up ``cpu.x`` must not silently
    get ``_cpu.x``.  Refused: ``tasks``, ``notify_on_release``, ``release_agent``, ``cgroup.*``,
    and ``<controller>.*`` for every kernel controller.
    """
    _check_text(name, "cgroup name")
    if not name or "/" in name:
        raise InvalidArgument(f"invalid cgroup name {name!r}: must be one non-empty component")
    _check_component(name, "cgroup name")
    if name in _V1_CORE_FILES:
        raise InvalidArgument(f"invalid cgroup name '{name}': it is the name of a kernel file")
    if name in _RESERVED:
        raise InvalidArgument(f"invalid cgroup name '{name}': reserved for cgmanager itself")
    prefix, dot, _ = name.partition(".")
    if dot and (prefix == "cgroup" or prefix in KERNEL_CONTROLLERS or prefix in extra_controllers):
        raise InvalidArgument(
            f"invalid cgroup name '{name}': names starting with '{prefix}.' are reserved for"
            " kernel attribute files"
        )


def check_key(key: str) -> None:
    """A key is exactly one file name in a cgroup directory: no ``/``, no ``.``/``..``."""
    _check_text(key, "key")
    if not key:
        raise InvalidArgument("invalid key: empty")
    if "/" in key:
        raise InvalidArgument("invalid key: must be a file name, without '/'")
    _check_component(key, "key")
