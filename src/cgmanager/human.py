"""Values shown with units (``cgm --human``): the other direction of :mod:`cgmanager.units`.

Pure (it imports only :mod:`cgmanager.units`).  Sizes are shown in binary units with one decimal at most (``1.5G``),
times from microseconds (``100us``, ``1.5ms``, ``2.25s``, ``3min 4.5s``); keys and fields
of unknown unit are left as they are.  Lossy by design: raw values are the default output.
"""

from __future__ import annotations

from .units import KIB, SIZE_KEYS, TIME_KEYS

#: keys that report a size when read (besides the limits of units.SIZE_KEYS)
SIZE_READINGS = (
    "memory.current",
    "memory.peak",
    "memory.swap.current",
    "memory.swap.peak",
    "memory.zswap.current",
    "memory.usage_in_bytes",
    "memory.max_usage_in_bytes",
    "memory.memsw.usage_in_bytes",
    "memory.memsw.max_usage_in_bytes",
    "memory.kmem.usage_in_bytes",
    "memory.kmem.max_usage_in_bytes",
    "hugetlb.<size>.current",
    "hugetlb.<size>.rsvd.current",
    "hugetlb.<size>.usage_in_bytes",
    "hugetlb.<size>.max_usage_in_bytes",
)
#: keys that report nanoseconds when read
NSEC_READINGS = ("cpuacct.usage", "cpuacct.usage_user", "cpuacct.usage_sys")

_V1_UNLIMITED = "9223372036854771712"
_HUGETLB_LIMITS = (".rsvd.limit_in_bytes", ".limit_in_bytes", ".rsvd.max", ".max")
_HUGETLB_READINGS = (
    ".rsvd.current",
    ".current",
    ".rsvd.usage_in_bytes",
    ".max_usage_in_bytes",
    ".usage_in_bytes",
)


def format_size(n: int) -> str:
    """``1.5G``, ``512M``, ``100B``: binary units, one decimal at most."""
    if n < KIB:
        return f"{n}B"
    for i, u in enumerate("KMGTPE", 1):
        scale = KIB**i
        if n < scale * KIB or u == "E":
            whole, rest = divmod(n, scale)
            if rest == 0:
                return f"{whole}{u}"
            tenths = (rest * 10 + scale // 2) // scale
            if tenths == 10:
                whole, tenths = whole + 1, 0
                if whole == KIB and u != "E":
                    continue
            return f"{whole}.{tenths}{u}" if tenths else f"{whole}{u}"
    return f"{n}B"  # pragma: no cover


def format_time_us(us: int) -> str:
    """``100us``, ``1.5ms``, ``2.25s``, ``3min 4.5s``, ``2h 3min``."""
    if us < 1000:
        return f"{us}us"
    if us < 1000**2:
        return _trim(us / 1000) + "ms"
    s = us / 1000**2
    if s < 60:
        return _trim(s) + "s"
    minutes, sec = divmod(int(s), 60)
    if minutes < 60:
        return f"{minutes}min {_trim(s - minutes * 60)}s" if sec else f"{minutes}min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes}min" if minutes else f"{hours}h"


def _trim(x: float) -> str:
    """Three decimals at most, trailing zeros dropped."""
    t = f"{x:.3f}".rstrip("0").rstrip(".")
    return t or "0"


def _is_int(text: str) -> bool:
    return text.isdigit() and text.isascii()


def _human_size(token: str) -> str:
    if token == _V1_UNLIMITED:
        return "max"
    return format_size(int(token)) if _is_int(token) else token


def _human_us(token: str) -> str:
    return format_time_us(int(token)) if _is_int(token) else token


#: memory.stat fields that count events or pages rather than bytes
_MEMSTAT_COUNTS = ("pg", "thp_", "workingset_", "numa_", "zswp", "hierarchical_", "total_pg")


def _reads_size(key: str) -> bool:
    return (
        key in SIZE_KEYS
        or key in SIZE_READINGS
        or (key.startswith("hugetlb.") and key.endswith(_HUGETLB_READINGS + _HUGETLB_LIMITS))
    )


def to_human(key: str, value: str) -> str:
    """*value* as read from *key*, with sizes and times in units (``--human``).  Keys and
    fields of unknown unit are left as they are."""
    if _reads_size(key):
        return _human_size(value.strip())
    if key in NSEC_READINGS:
        v = value.strip()
        return format_time_us(int(v) // 1000) if _is_int(v) else value
    if key in TIME_KEYS or key == "cpu.cfs_quota_us":
        return _human_us(value.strip())
    if key == "cpu.max":
        return _human_cpu_max(value.strip())
    if key in ("memory.stat", "cpu.stat", "io.stat", "io.max"):
        return "\n".join(_human_line(key, line) for line in value.split("\n"))
    return value


def _human_cpu_max(value: str) -> str:
    words = value.split()
    if len(words) != 2 or not _is_int(words[1]):
        return value
    period = int(words[1])
    if not _is_int(words[0]):
        return f"{words[0]} {format_time_us(period)}"
    quota = int(words[0])
    cpus = _trim(quota / period) if period else "?"
    return f"{format_time_us(quota)} {format_time_us(period)} ({cpus} CPUs)"


def _human_line(key: str, line: str) -> str:
    words = line.split(" ")
    if key == "memory.stat" and len(words) == 2:
        name = words[0].removeprefix("total_")
        if not name.startswith(_MEMSTAT_COUNTS) and _is_int(words[1]):
            return f"{words[0]} {format_size(int(words[1]))}"
        return line
    if key == "cpu.stat" and len(words) == 2 and _is_int(words[1]):
        if words[0].endswith("_usec"):
            return f"{words[0]} {format_time_us(int(words[1]))}"
        if words[0] in ("throttled_time", "wait_sum"):  # v1: nanoseconds
            return f"{words[0]} {format_time_us(int(words[1]) // 1000)}"
        return line
    if key in ("io.stat", "io.max"):
        out = []
        for w in words:
            name, eq, v = w.partition("=")
            if eq and name in ("rbytes", "wbytes", "dbytes", "rbps", "wbps") and _is_int(v):
                w = f"{name}={format_size(int(v))}"
            out.append(w)
        return " ".join(out)
    return line
