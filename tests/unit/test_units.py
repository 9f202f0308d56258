"""units.py: values with units converted exactly per key, raw values untouched; human.py:
the way back for --human."""

import pytest

from cgmanager import human, units
from cgmanager.human import to_human
from cgmanager.units import UnitError, to_kernel

pytestmark = pytest.mark.t0

G = 1 << 30

IN = [
    # sizes: binary units, exact, fraction of a byte dropped
    ("memory.max", "512M", str(512 << 20)),
    ("memory.max", "1.5G", str(3 * G // 2)),
    ("memory.max", "1.5GiB", str(3 * G // 2)),
    ("memory.max", "1.5Gi", str(3 * G // 2)),
    ("memory.high", "64k", "65536"),
    ("memory.low", "0.1K", "102"),  # 102.4 bytes: the fraction is dropped
    ("memory.swap.max", "2T", str(2 << 40)),
    ("memory.limit_in_bytes", "1E", str(1 << 60)),
    ("memory.limit_in_bytes", ".5K", "512"),
    ("hugetlb.2MB.max", "4M", str(4 << 20)),
    ("hugetlb.1GB.limit_in_bytes", "2G", str(2 * G)),
    ("hugetlb.2MB.rsvd.max", "2M", str(2 << 20)),
    # times: microseconds, exact
    ("cpu.cfs_period_us", "100ms", "100000"),
    ("cpu.cfs_period_us", "1s", "1000000"),
    ("cpu.cfs_period_us", "1.5ms", "1500"),
    ("cpu.rt_runtime_us", "950ms", "950000"),
    ("cpu.max.burst", "500000ns", "500"),
    ("cpu.cfs_burst_us", "2min", "120000000"),
    ("cpu.cfs_period_us", "100µs", "100"),
    ("cpu.cfs_period_us", "100usec", "100"),
    # v1 quota: a time; max means -1
    ("cpu.cfs_quota_us", "50ms", "50000"),
    ("cpu.cfs_quota_us", "max", "-1"),
    # counts: decimal
    ("pids.max", "1K", "1000"),
    ("pids.max", "2.5K", "2500"),
    ("pids.max", "1M", "1000000"),
    ("cgroup.max.descendants", "10k", "10000"),
    ("cgroup.max.depth", "1G", "1000000000"),
    # cpu.max: shares of CPUs with the default or a given period, times, raw
    ("cpu.max", "50%", "50000 100000"),
    ("cpu.max", "0.5", "50000 100000"),
    ("cpu.max", "1.5", "150000 100000"),
    ("cpu.max", "2cpus", "200000 100000"),
    ("cpu.max", "0.25cpu", "25000 100000"),
    ("cpu.max", "200%", "200000 100000"),
    ("cpu.max", "50% 20ms", "10000 20000"),
    ("cpu.max", "0.5 50000", "25000 50000"),
    ("cpu.max", "33.3333%", "33333 100000"),  # a fraction of a µs is dropped
    ("cpu.max", "50ms", "50000"),
    ("cpu.max", "50ms 100ms", "50000 100000"),
    ("cpu.max", "max 10ms", "max 10000"),
    # io limits
    (
        "io.max",
        "8:0 rbps=1M wbps=512K riops=1K wiops=max",
        "8:0 rbps=1048576 wbps=524288 riops=1000 wiops=max",
    ),
    ("blkio.throttle.read_bps_device", "8:0 10M", "8:0 10485760"),
    ("blkio.throttle.write_iops_device", "8:0 2K", "8:0 2000"),
]


@pytest.mark.parametrize("key,given,kernel", IN, ids=lambda v: str(v))
def test_converted_exactly(key, given, kernel):
    assert to_kernel(key, given) == kernel


RAW = [
    ("memory.max", "max"),
    ("memory.max", "1073741824"),
    ("memory.limit_in_bytes", "-1"),
    ("memory.max", "12Q"),  # not ours to judge: the kernel refuses it
    ("memory.max", "1.5"),
    ("memory.max", ""),
    ("pids.max", "max"),
    ("pids.max", "100"),
    ("cpu.cfs_quota_us", "-1"),
    ("cpu.cfs_quota_us", "50000"),
    ("cpu.max", "max"),
    ("cpu.max", "max 100000"),
    ("cpu.max", "50000 100000"),
    ("cpu.max", "1"),  # an integer is the kernel's microseconds, not CPUs
    ("cpu.max", "a b c"),
    ("cpu.weight", "100"),
    ("cpu.shares", "1.5K"),  # no unit for this key: untouched
    ("pids.max", "1 K"),
    ("io.max", "8:0"),
    ("freezer.state", "FROZEN"),
    ("memory.max", "٣K"),  # not ASCII digits
    ("memory.max", "1..5G"),
    ("memory.max", "K"),
]


@pytest.mark.parametrize("key,value", RAW, ids=lambda v: str(v))
def test_raw_values_pass_unchanged(key, value):
    assert to_kernel(key, value) == value


@pytest.mark.parametrize(
    "key,value,why",
    [
        (
            "cpu.cfs_period_us",
            "1.5us",
            "cpu.cfs_period_us: 1.5us is not a whole number of microseconds",
        ),
        ("cpu.cfs_period_us", "1ns", "not a whole number of microseconds"),
        ("pids.max", "1.2345K", "pids.max: 1.2345K is not a whole number"),
        ("cpu.cfs_quota_us", "50%", "depends on cpu.cfs_period_us"),
        ("cpu.cfs_quota_us", "0.5", "depends on cpu.cfs_period_us"),
        ("cpu.max", "50% 1.5us", "not a whole number of microseconds"),
    ],
)
def test_refused_when_not_exact(key, value, why):
    with pytest.raises(UnitError, match=why.replace(".", r"\.").replace("(", r"\(")):
        to_kernel(key, value)


def test_kinds():
    assert units.kind("memory.max") == "size"
    assert units.kind("hugetlb.1GB.rsvd.limit_in_bytes") == "size"
    assert units.kind("hugetlb.max") is None
    assert units.kind("cpu.cfs_period_us") == "time"
    assert units.kind("pids.max") == "count"
    assert units.kind("cpu.max") == "cpu.max"
    assert units.kind("cpu.weight") is None


@pytest.mark.parametrize(
    "n,text",
    [
        (0, "0B"),
        (1023, "1023B"),
        (1024, "1K"),
        (1536, "1.5K"),
        (512 << 20, "512M"),
        (3 * G // 2, "1.5G"),
        (123456789, "117.7M"),
        (1048535, "1M"),  # 1023.96K rounds up into the next unit
        (1 << 60, "1E"),
    ],
)
def test_format_size(n, text):
    assert human.format_size(n) == text


@pytest.mark.parametrize(
    "us,text",
    [
        (0, "0us"),
        (999, "999us"),
        (1500, "1.5ms"),
        (50000, "50ms"),
        (2250000, "2.25s"),
        (184500000, "3min 4.5s"),
        (180000000, "3min"),
        (7380000000, "2h 3min"),
    ],
)
def test_format_time(us, text):
    assert human.format_time_us(us) == text


def test_human_output():
    assert to_human("memory.max", "1610612736") == "1.5G"
    assert to_human("memory.max", "max") == "max"
    assert to_human("memory.limit_in_bytes", "9223372036854771712") == "max"
    assert to_human("memory.current", "4096\n") == "4K"
    assert to_human("hugetlb.2MB.current", "2097152") == "2M"
    assert to_human("cpuacct.usage", "1500000") == "1.5ms"
    assert to_human("cpu.cfs_quota_us", "-1") == "-1"
    assert to_human("cpu.cfs_quota_us", "50000") == "50ms"
    assert to_human("cpu.max", "50000 100000") == "50ms 100ms (0.5 CPUs)"
    assert to_human("cpu.max", "max 100000") == "max 100ms"
    assert to_human("pids.max", "1000") == "1000"
    assert to_human("cpu.stat", "usage_usec 2500000\nnr_periods 3") == (
        "usage_usec 2.5s\nnr_periods 3"
    )
    assert to_human("memory.stat", "anon 1048576\npgfault 12\ntotal_pgmajfault 3") == (
        "anon 1M\npgfault 12\ntotal_pgmajfault 3"
    )
    assert to_human("io.stat", "8:0 rbytes=2048 wbytes=0 rios=2") == (
        "8:0 rbytes=2K wbytes=0B rios=2"
    )
    assert to_human("freezer.state", "FROZEN") == "FROZEN"


def test_round_trip_of_shown_sizes():
    for n in (1024, 512 << 20, 3 * G // 2, 7 << 40):
        assert to_kernel("memory.max", to_human("memory.max", str(n))) == str(n)


def test_documentation_table_names_every_key():
    documented = {k for _, keys, _ in units.table() for k in keys}
    assert set(units.SIZE_KEYS + units.TIME_KEYS + units.COUNT_KEYS + units.SPECIAL_KEYS) <= (
        documented
    )
