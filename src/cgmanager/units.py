"""Values with units, in and out: sizes, times, counts and CPU quotas of cgroup files.

Pure and import-free: ``cgm`` uses it for every value it writes (``setvalue``, ``setup``,
``exec``) and with ``--human`` for what it prints; the configuration files can use the same
rules later.  The kernel's own syntax always passes through unchanged (``max``, ``-1``, plain
numbers, several fields): only a number *with a unit* is converted, and only for a key whose
unit is known.  Anything else is left for the kernel to judge.

Per kind (the keys of each are in :data:`SIZE_KEYS`, :data:`TIME_KEYS`, … and in
``cgm help units``):

* **size** (bytes): ``512M``, ``1.5G``, ``64K``; the units are binary (K = 1024, as the
  kernel's own ``memparse`` and systemd's ``MemoryMax=``), ``KiB`` … ``EiB`` mean the same;
  a fraction of a byte is dropped (the kernel rounds memory limits to pages anyway).
* **time** (microseconds, the unit of every ``*_us`` file and of ``cpu.max``): ``100us``,
  ``50ms``, ``1.5s``, ``2min``, ``500000ns``; the result must be a whole number of µs.
* **count** (tasks, cgroups): ``1K`` = 1000, ``2.5K`` = 2500, ``1M`` = 1000000 (decimal:
  these are counts, not bytes); the result must be whole.
* **cpu.max**: ``50%`` or ``0.5`` (a decimal point, or ``0.5cpu``/``2cpus``) is a share of
  CPUs and becomes ``<quota> <period>`` with the period given after it (``50% 20ms``) or the
  kernel's default 100 ms; ``50ms`` (a time) sets the quota and keeps the period;
  ``max`` keeps its meaning.  A fraction of a µs is dropped.
* **cpu.cfs_quota_us** (v1): a time; ``max`` means ``-1``.  A share is refused: it depends on
  ``cpu.cfs_period_us``, which may not be the default.
* fields of ``io.max`` (``rbps=``/``wbps=`` sizes, ``riops=``/``wiops=`` counts) and the
  value after ``MAJ:MIN`` of ``blkio.throttle.*_device``.

The other direction (``--human``: ``1.5G``, ``2.25s``) is :mod:`cgmanager.human`.
"""

from __future__ import annotations

KIB = 1 << 10

#: binary size units (bytes)
SIZE_UNITS: dict[str, int] = {}
for _i, _u in enumerate("KMGTPE", 1):
    SIZE_UNITS[_u] = SIZE_UNITS[_u + "i"] = SIZE_UNITS[_u + "iB"] = KIB**_i
SIZE_UNITS["k"] = KIB
#: time units, in nanoseconds (so that microseconds come out exactly)
TIME_UNITS: dict[str, int] = {
    "ns": 1,
    "nsec": 1,
    "us": 1000,
    "µs": 1000,
    "usec": 1000,
    "ms": 1000**2,
    "msec": 1000**2,
    "s": 1000**3,
    "sec": 1000**3,
    "min": 60 * 1000**3,
}
#: decimal count units
COUNT_UNITS: dict[str, int] = {"k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9}
#: the kernel's default CFS period (µs), used for a CPU share given without a period
DEFAULT_PERIOD_US = 100000

#: keys whose value is one size (plus ``max`` / ``-1``)
SIZE_KEYS = (
    "memory.max",
    "memory.high",
    "memory.low",
    "memory.min",
    "memory.swap.max",
    "memory.swap.high",
    "memory.zswap.max",
    "memory.limit_in_bytes",
    "memory.soft_limit_in_bytes",
    "memory.memsw.limit_in_bytes",
    "memory.kmem.limit_in_bytes",
    "memory.kmem.tcp.limit_in_bytes",
    "hugetlb.<size>.max",
    "hugetlb.<size>.rsvd.max",
    "hugetlb.<size>.limit_in_bytes",
    "hugetlb.<size>.rsvd.limit_in_bytes",
)
#: keys whose value is one time in µs
TIME_KEYS = (
    "cpu.cfs_period_us",
    "cpu.cfs_burst_us",
    "cpu.rt_runtime_us",
    "cpu.rt_period_us",
    "cpu.max.burst",
)
#: keys whose value is one count
COUNT_KEYS = ("pids.max", "cgroup.max.descendants", "cgroup.max.depth")
#: keys with a value of their own shape
SPECIAL_KEYS = (
    "cpu.max",
    "cpu.cfs_quota_us",
    "io.max",
    "blkio.throttle.read_bps_device",
    "blkio.throttle.write_bps_device",
    "blkio.throttle.read_iops_device",
    "blkio.throttle.write_iops_device",
)

_HUGETLB_SUFFIXES = (".rsvd.limit_in_bytes", ".limit_in_bytes", ".rsvd.max", ".max")


class UnitError(ValueError):
    """A value with a unit that cannot be converted exactly (the message says why)."""


# -- numbers ---------------------------------------------------------------------------------


def _split(token: str) -> tuple[str, str]:
    """``"1.5G"`` -> (``"1.5"``, ``"G"``): the leading decimal number and what follows."""
    i = 0
    n = len(token)
    while i < n and (token[i].isdigit() and token[i].isascii() or token[i] == "."):
        i += 1
    return token[:i], token[i:]


def _decimal(text: str) -> tuple[int, int] | None:
    """``"1.25"`` -> (125, 100): an exact fraction; None unless digits with at most one dot."""
    whole, dot, frac = text.partition(".")
    if not (whole or frac) or (dot and not frac) or "." in frac:
        return None
    if not (whole + frac).isdigit() or not (whole + frac).isascii():
        return None
    return int(whole + frac), 10 ** len(frac)


def _scaled(token: str, units: dict[str, int]) -> tuple[int, int] | None:
    """(numerator, denominator) of *token* in the base unit, or None when *token* is not a
    number followed by one of *units*."""
    number, unit = _split(token)
    factor = units.get(unit)
    if factor is None or not number:
        return None
    d = _decimal(number)
    if d is None:
        return None
    return d[0] * factor, d[1]


def size_bytes(token: str) -> int | None:
    """Bytes for ``512M``/``1.5G`` (a fraction of a byte dropped); None if no size unit."""
    s = _scaled(token, SIZE_UNITS)
    return None if s is None else s[0] // s[1]


def time_us(token: str) -> int | None:
    """Microseconds for ``50ms``/``1.5s``; None if no time unit; UnitError if not whole."""
    s = _scaled(token, TIME_UNITS)
    if s is None:
        return None
    num, den = s[0], s[1] * 1000
    if num % den:
        raise UnitError(f"{token} is not a whole number of microseconds")
    return num // den


def count(token: str) -> int | None:
    """The number for ``1K``/``2.5K``/``1M``; None if no count unit; UnitError if not whole."""
    s = _scaled(token, COUNT_UNITS)
    if s is None:
        return None
    if s[0] % s[1]:
        raise UnitError(f"{token} is not a whole number")
    return s[0] // s[1]


def cpu_share(token: str) -> tuple[int, int] | None:
    """CPUs as a fraction for ``50%``, ``0.5``, ``0.5cpu``, ``2cpus``; None otherwise (a plain
    integer is the kernel's µs, not CPUs)."""
    number, unit = _split(token)
    d = _decimal(number) if number else None
    if d is None:
        return None
    if unit == "%":
        return d[0], d[1] * 100
    if unit.lower() in ("cpu", "cpus") or (unit == "" and "." in number):
        return d
    return None


# -- input -----------------------------------------------------------------------------------


def kind(key: str) -> str | None:
    """``size``, ``time``, ``count`` or the key itself for the special shapes; None when the
    key takes no units."""
    if key in SPECIAL_KEYS:
        return key
    if key in COUNT_KEYS:
        return "count"
    if key in TIME_KEYS:
        return "time"
    if key in SIZE_KEYS or (
        key.startswith("hugetlb.") and key.endswith(_HUGETLB_SUFFIXES) and key.count(".") >= 2
    ):
        return "size"
    return None


def to_kernel(key: str, value: str) -> str:
    """*value* as the kernel reads *key*: units converted, everything else unchanged.

    Raises :class:`UnitError` (naming the key) for a value with a unit that cannot be
    converted exactly or makes no sense for the key."""
    k = kind(key)
    if k is None:
        return value
    try:
        return _convert(k, value)
    except UnitError as e:
        raise UnitError(f"{key}: {e}") from None


def _one(k: str, token: str) -> str:
    """One token of a size, time or count field."""
    if k == "size":
        v = size_bytes(token)
    elif k == "time":
        v = time_us(token)
    else:
        v = count(token)
    return token if v is None else str(v)


def _convert(k: str, value: str) -> str:
    if k in ("size", "time", "count"):
        return _one(k, value)
    words = value.split()
    if k == "cpu.max":
        return _cpu_max(value, words)
    if k == "cpu.cfs_quota_us":
        if value == "max":
            return "-1"
        if cpu_share(value) is not None and time_us(value) is None:
            raise UnitError(
                f"{value} is a share of CPUs, which depends on cpu.cfs_period_us; "
                "give a time such as 50ms (or use cpu.max on cgroup v2)"
            )
        return _one("time", value)
    if k == "io.max":
        if len(words) < 2:
            return value
        fields = [words[0]]
        for w in words[1:]:
            name, eq, v = w.partition("=")
            unit_kind = {"rbps": "size", "wbps": "size", "riops": "count", "wiops": "count"}
            if eq and name in unit_kind and v != "max":
                w = f"{name}={_one(unit_kind[name], v)}"
            fields.append(w)
        return " ".join(fields)
    # blkio.throttle.*_device: "MAJ:MIN VALUE"
    if len(words) != 2:
        return value
    return f"{words[0]} {_one('size' if k.endswith('bps_device') else 'count', words[1])}"


def _cpu_max(value: str, words: list[str]) -> str:
    if len(words) not in (1, 2):
        return value
    quota = words[0]
    period: int | None = None
    if len(words) == 2:
        p = time_us(words[1])
        if p is None:
            if not (words[1].isdigit() and words[1].isascii()):
                return value  # not ours to judge
            p = int(words[1])
        period = p
    share = cpu_share(quota)
    if share is not None:
        per = DEFAULT_PERIOD_US if period is None else period
        return f"{share[0] * per // share[1]} {per}"
    q = time_us(quota)
    q_text = quota if q is None else str(q)
    return q_text if period is None else f"{q_text} {period}"


# -- documentation ---------------------------------------------------------------------------


def table() -> list[tuple[str, tuple[str, ...], str]]:
    """(kind, keys, what is accepted) for ``cgm help units`` and the man page."""
    return [
        ("size", SIZE_KEYS, "bytes; 512M, 1.5G, 64K (K = 1024; KiB also), max"),
        ("time", TIME_KEYS, "microseconds; 100us, 50ms, 1.5s, 2min, 500000ns"),
        ("count", COUNT_KEYS, "1K = 1000, 2.5K, 1M; max"),
        (
            "cpu.max",
            ("cpu.max",),
            "50% or 0.5 (CPUs; 2cpus) [period]; a time (50ms) [period]; max",
        ),
        ("v1 quota", ("cpu.cfs_quota_us",), "a time (50ms); max = -1"),
        ("io limits", ("io.max",), "MAJ:MIN rbps=1M wbps=512K riops=1K wiops=max"),
        (
            "blkio limits",
            SPECIAL_KEYS[3:],
            "MAJ:MIN then a size (bps files) or a count (iops files)",
        ),
    ]
