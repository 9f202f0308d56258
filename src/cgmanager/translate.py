"""Old clients on v2 hosts: v1 keys translated to v2 files and back.

Pure: each translation is given a ``read(key) -> str`` for the v2 files it needs and returns
what to write, so the operations layer performs every read and write under the usual
permission checks.  The table (also in the README):

=============================  ==========================  ======================================
v1 key                         v2 file                     conversion
=============================  ==========================  ======================================
memory.limit_in_bytes          memory.max                  -1 / 9223372036854771712 ↔ ``max``
memory.soft_limit_in_bytes     memory.low                  identity (runc/crun's choice)
memory.memsw.limit_in_bytes    memory.swap.max             swap = memsw − memory.max (runc)
memory.usage_in_bytes          memory.current              read-only
memory.max_usage_in_bytes      memory.peak                 read-only
cpu.shares                     cpu.weight                  runc ≥ 1.3.2 / crun ≥ 1.23 quadratic-log
cpu.cfs_quota_us               cpu.max (first field)       -1 ↔ ``max``; period kept
cpu.cfs_period_us              cpu.max (second field)      quota kept
cpuacct.usage                  cpu.stat usage_usec         ×1000, read-only
freezer.state                  cgroup.freeze, .events      FROZEN/THAWED ↔ 1/0; FREEZING while
                                                           ``frozen`` lags ``freeze``
blkio.weight                   io.weight (``default N``)   runc: 1 + (x − 10)·9999/990
pids.*                         pids.*                      identical
hugetlb.<size>.limit_in_bytes  hugetlb.<size>.max          as memory.limit_in_bytes
cpuset.effective_cpus/_mems    cpuset.cpus/mems.effective  read-only
cpuset.cpu_exclusive           cpuset.cpus.partition       1 ↔ ``root``, 0 ↔ ``member``
tasks                          cgroup.threads              read-only here (moves: MovePid)
=============================  ==========================  ======================================

v1 keys with no v2 counterpart fail with an error naming the v2 way (devices → BPF programs,
net_cls/net_prio → socket-cgroup matching, RT throttling → none, …).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from . import kerneltext
from .errors import CgmError, InvalidArgument, Unsupported

Reader = Callable[[str], str]
#: v1's "unlimited" for memory limits (PAGE_COUNTER_MAX pages, 4 KiB pages)
V1_UNLIMITED = "9223372036854771712"


def _bytes_to_v2(value: str) -> str:
    v = value.strip()
    if v in ("-1", V1_UNLIMITED, "max"):
        return "max"
    if not v.isdigit():
        raise InvalidArgument(f"invalid value {value!r}: a number of bytes or -1")
    return v


def _bytes_from_v2(value: str) -> str:
    v = value.strip()
    return V1_UNLIMITED if v == "max" else v


def shares_to_weight(shares: int) -> int:
    """runc ≥ 1.3.2 / crun ≥ 1.23: 2→1, 1024→100, 262144→10000 (clamped)."""
    if shares <= 0:
        raise InvalidArgument(f"invalid cpu.shares {shares}")
    shares = min(max(shares, 2), 262144)
    lg = math.log2(shares)
    w = math.ceil(10 ** ((lg * lg + 125 * lg) / 612.0 - 7.0 / 34.0))
    return min(max(w, 1), 10000)


def weight_to_shares(weight: int) -> int:
    """The inverse of :func:`shares_to_weight` (exact at 100 ↔ 1024)."""
    weight = min(max(weight, 1), 10000)
    c = 612.0 * (math.log10(weight) + 7.0 / 34.0)
    lg = (-125.0 + math.sqrt(125.0 * 125.0 + 4.0 * c)) / 2.0
    return min(max(round(2**lg), 2), 262144)


def _int(value: str, what: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise InvalidArgument(f"invalid {what} {value!r}: an integer") from None


def _cpu_max(read: Reader) -> tuple[str, str]:
    fields = kerneltext.words(read("cpu.max"), "cpu.max")
    if len(fields) not in (1, 2):
        raise kerneltext.KernelTextError("malformed cpu.max")
    return fields[0], fields[1] if len(fields) == 2 else "100000"


def _memsw_to_swap(value: str, read: Reader) -> list[tuple[str, str]]:
    v = value.strip()
    if v in ("-1", V1_UNLIMITED, "max"):
        return [("memory.swap.max", "max")]
    memsw = _int(v, "memory.memsw.limit_in_bytes")
    mem = _value(read("memory.max"))
    if mem == "max":
        raise InvalidArgument("memory.memsw.limit_in_bytes needs memory.limit_in_bytes set first")
    limit = kerneltext.decimal(mem, "memory.max")
    if memsw < limit:
        raise InvalidArgument("memory.memsw.limit_in_bytes must not be below memory.limit_in_bytes")
    return [("memory.swap.max", str(memsw - limit))]


def _value(text: str) -> str:
    """A one-word kernel file (``max``, a number)."""
    fields = kerneltext.words(text)
    if len(fields) != 1:
        raise kerneltext.KernelTextError("malformed one-value file")
    return fields[0]


def _swap_to_memsw(read: Reader) -> str:
    mem, swap = _value(read("memory.max")), _value(read("memory.swap.max"))
    if mem == "max" or swap == "max":
        return V1_UNLIMITED
    return str(kerneltext.decimal(mem) + kerneltext.decimal(swap))


def _freezer_state(read: Reader) -> str:
    wanted = read("cgroup.freeze").strip() == "1"
    frozen = kerneltext.flat_keyed(read("cgroup.events"), "cgroup.events").get("frozen") == 1
    if wanted:
        return "FROZEN" if frozen else "FREEZING"
    return "THAWED"


def _freezer_set(value: str) -> list[tuple[str, str]]:
    v = value.strip()
    if v not in ("FROZEN", "THAWED"):
        raise InvalidArgument(f"invalid freezer.state {value!r}: FROZEN or THAWED")
    return [("cgroup.freeze", "1" if v == "FROZEN" else "0")]


def _blkio_weight(value: str) -> list[tuple[str, str]]:
    x = _int(value, "blkio.weight")
    if not 10 <= x <= 1000:
        raise InvalidArgument(f"invalid blkio.weight {x}: 10 to 1000")
    return [("io.weight", f"default {1 + (x - 10) * 9999 // 990}")]


def _io_weight_to_blkio(read: Reader) -> str:
    for k, v in kerneltext.keyed(read("io.weight"), "io.weight"):
        if k == "default":
            w = kerneltext.decimal(v, "io.weight")
            return str(min(max(10 + (w - 1) * 990 // 9999, 10), 1000))
    raise Unsupported("io.weight has no default line")


#: v1 key → (read translator, write translator); None: that direction is not possible
Get = Callable[[Reader], str]
Set = Callable[[str, Reader], list[tuple[str, str]]]
_TABLE: dict[str, tuple[Get | None, Set | None]] = {
    "memory.limit_in_bytes": (
        lambda r: _bytes_from_v2(r("memory.max")),
        lambda v, r: [("memory.max", _bytes_to_v2(v))],
    ),
    "memory.soft_limit_in_bytes": (
        lambda r: _bytes_from_v2(r("memory.low")),
        lambda v, r: [("memory.low", _bytes_to_v2(v))],
    ),
    "memory.memsw.limit_in_bytes": (_swap_to_memsw, _memsw_to_swap),
    "memory.usage_in_bytes": (lambda r: r("memory.current").strip(), None),
    "memory.max_usage_in_bytes": (lambda r: r("memory.peak").strip(), None),
    "cpu.shares": (
        lambda r: str(weight_to_shares(_int(r("cpu.weight"), "cpu.weight"))),
        lambda v, r: [("cpu.weight", str(shares_to_weight(_int(v, "cpu.shares"))))],
    ),
    "cpu.cfs_quota_us": (
        lambda r: "-1" if _cpu_max(r)[0] == "max" else _cpu_max(r)[0],
        lambda v, r: [
            (
                "cpu.max",
                f"{'max' if _int(v, 'cpu.cfs_quota_us') < 0 else _int(v, 'q')} {_cpu_max(r)[1]}",
            )
        ],
    ),
    "cpu.cfs_period_us": (
        lambda r: _cpu_max(r)[1],
        lambda v, r: [("cpu.max", f"{_cpu_max(r)[0]} {_int(v, 'cpu.cfs_period_us')}")],
    ),
    "cpuacct.usage": (
        lambda r: str(1000 * kerneltext.flat_keyed(r("cpu.stat"), "cpu.stat")["usage_usec"]),
        None,
    ),
    "freezer.state": (_freezer_state, lambda v, r: _freezer_set(v)),
    "blkio.weight": (_io_weight_to_blkio, lambda v, r: _blkio_weight(v)),
    "cpuset.effective_cpus": (lambda r: r("cpuset.cpus.effective").strip(), None),
    "cpuset.effective_mems": (lambda r: r("cpuset.mems.effective").strip(), None),
    "cpuset.cpu_exclusive": (
        lambda r: "1" if _value(r("cpuset.cpus.partition")) == "root" else "0",
        lambda v, r: [
            ("cpuset.cpus.partition", "root" if _int(v, "cpuset.cpu_exclusive") else "member")
        ],
    ),
    "tasks": (lambda r: r("cgroup.threads"), None),
}

#: v1 keys (or prefixes) with no v2 counterpart, and what to use instead
_UNMAPPABLE: dict[str, str] = {
    "devices.": "v2 controls device access with BPF programs attached to the cgroup",
    "net_cls.": "use socket-cgroup matching (nftables 'socket cgroupv2') instead of classids",
    "net_prio.": "use socket-cgroup matching or tc instead of net_prio",
    "cpu.rt_": "the v2 cpu controller cannot throttle realtime tasks",
    "memory.use_hierarchy": "v2 is always hierarchical",
    "memory.swappiness": "v2 has no per-cgroup swappiness",
    "memory.oom_control": "use memory.events (oom, oom_kill) and memory.oom.group",
    "memory.kmem.": "v2 accounts kernel memory in memory.max",
    "memory.move_charge_at_immigrate": "v2 never moves charges",
    "blkio.throttle.": "use io.max (MAJ:MIN rbps= wbps= riops= wiops=)",
    "cpuset.mem_exclusive": "no v2 counterpart",
    "cpuset.memory_migrate": "no v2 counterpart",
    "cpuset.sched_": "no v2 counterpart",
    "notify_on_release": "use RemoveOnEmpty (v2 reports emptiness in cgroup.events)",
    "release_agent": "use RemoveOnEmpty (v2 reports emptiness in cgroup.events)",
    "cgroup.clone_children": "v2 has no clone_children",
}


def _hugetlb_v1(key: str) -> str | None:
    """``hugetlb.<size>.limit_in_bytes`` → ``hugetlb.<size>.max`` (and the usage files)."""
    parts = key.split(".")
    if len(parts) == 3 and parts[0] == "hugetlb":
        renames = {"limit_in_bytes": "max", "usage_in_bytes": "current"}
        if parts[2] in renames:
            return f"hugetlb.{parts[1]}.{renames[parts[2]]}"
    return None


def applies(key: str) -> bool:
    """Whether *key* is a v1 name this module knows (translatable or not)."""
    return (
        key in _TABLE or _hugetlb_v1(key) is not None or any(key.startswith(p) for p in _UNMAPPABLE)
    )


def _unmappable(key: str) -> Unsupported:
    hint = next(h for p, h in _UNMAPPABLE.items() if key.startswith(p))
    return Unsupported(f"{key} has no cgroup v2 counterpart: {hint}")


def get(key: str, read: Reader) -> str:
    """The v1 value of *key*, computed from v2 files read with *read*."""
    hv2 = _hugetlb_v1(key)
    if hv2 is not None:
        return _bytes_from_v2(read(hv2)) if hv2.endswith(".max") else read(hv2).strip()
    if key not in _TABLE:
        raise _unmappable(key)
    getter = _TABLE[key][0]
    if getter is None:
        raise Unsupported(f"{key} cannot be read on cgroup v2")
    try:
        return getter(read)
    except (kerneltext.KernelTextError, KeyError) as e:
        raise CgmError(f"{key}: unexpected text in its v2 file(s) ({e})") from None


def set_(key: str, value: str, read: Reader) -> list[tuple[str, str]]:
    """The v2 writes (key, value) that set v1 *key* to *value*."""
    hv2 = _hugetlb_v1(key)
    if hv2 is not None:
        if not hv2.endswith(".max"):
            raise Unsupported(f"{key} is read-only")
        return [(hv2, _bytes_to_v2(value))]
    if key not in _TABLE:
        raise _unmappable(key)
    setter = _TABLE[key][1]
    if setter is None:
        raise Unsupported(f"{key} is read-only")
    try:
        return setter(value, read)
    except kerneltext.KernelTextError as e:
        raise CgmError(f"{key}: unexpected text in its v2 file(s) ({e})") from None


def table() -> list[tuple[str, str]]:
    """(v1 key, v2 file) rows for documentation and ``cgm``."""
    rows = [
        ("memory.limit_in_bytes", "memory.max"),
        ("memory.soft_limit_in_bytes", "memory.low"),
        ("memory.memsw.limit_in_bytes", "memory.swap.max"),
        ("memory.usage_in_bytes", "memory.current"),
        ("memory.max_usage_in_bytes", "memory.peak"),
        ("cpu.shares", "cpu.weight"),
        ("cpu.cfs_quota_us", "cpu.max"),
        ("cpu.cfs_period_us", "cpu.max"),
        ("cpuacct.usage", "cpu.stat"),
        ("freezer.state", "cgroup.freeze"),
        ("blkio.weight", "io.weight"),
        ("hugetlb.<size>.limit_in_bytes", "hugetlb.<size>.max"),
        ("tasks", "cgroup.threads"),
    ]
    return rows
