"""T0: the v1 → v2 key table, with the formulas peers use."""

import pytest

from cgmanager import translate
from cgmanager.errors import InvalidArgument, Unsupported

pytestmark = pytest.mark.t0


def reader(files):
    def read(k):
        if k not in files:
            raise KeyError(k)
        return files[k]

    return read


@pytest.mark.parametrize(
    "shares, weight", [(2, 1), (512, 59), (1024, 100), (2048, 174), (10240, 639), (262144, 10000)]
)
def test_shares_to_weight_matches_current_runtimes(shares, weight):
    assert translate.shares_to_weight(shares) == weight


@pytest.mark.parametrize("shares", [2, 512, 1024, 2048, 10240, 262144])
def test_weight_back_to_shares_round_trips_closely(shares):
    back = translate.weight_to_shares(translate.shares_to_weight(shares))
    assert abs(back - shares) / shares < 0.03 or shares == 2
    assert translate.weight_to_shares(100) == 1024


@pytest.mark.parametrize(
    "key, value, files, writes",
    [
        ("memory.limit_in_bytes", "1048576", {}, [("memory.max", "1048576")]),
        ("memory.limit_in_bytes", "-1", {}, [("memory.max", "max")]),
        ("memory.limit_in_bytes", translate.V1_UNLIMITED, {}, [("memory.max", "max")]),
        ("memory.soft_limit_in_bytes", "4096", {}, [("memory.low", "4096")]),
        (
            "memory.memsw.limit_in_bytes",
            "300",
            {"memory.max": "100\n"},
            [("memory.swap.max", "200")],
        ),
        ("memory.memsw.limit_in_bytes", "-1", {}, [("memory.swap.max", "max")]),
        ("cpu.shares", "1024", {}, [("cpu.weight", "100")]),
        ("cpu.cfs_quota_us", "50000", {"cpu.max": "max 100000\n"}, [("cpu.max", "50000 100000")]),
        ("cpu.cfs_quota_us", "-1", {"cpu.max": "20000 50000\n"}, [("cpu.max", "max 50000")]),
        ("cpu.cfs_period_us", "50000", {"cpu.max": "20000 100000\n"}, [("cpu.max", "20000 50000")]),
        ("freezer.state", "FROZEN", {}, [("cgroup.freeze", "1")]),
        ("freezer.state", "THAWED", {}, [("cgroup.freeze", "0")]),
        ("blkio.weight", "500", {}, [("io.weight", "default 4950")]),
        ("blkio.weight", "100", {}, [("io.weight", "default 910")]),
        ("hugetlb.2MB.limit_in_bytes", "-1", {}, [("hugetlb.2MB.max", "max")]),
        ("cpuset.cpu_exclusive", "1", {}, [("cpuset.cpus.partition", "root")]),
    ],
)
def test_set(key, value, files, writes):
    assert translate.set_(key, value, reader(files)) == writes


@pytest.mark.parametrize(
    "key, files, value",
    [
        ("memory.limit_in_bytes", {"memory.max": "max\n"}, translate.V1_UNLIMITED),
        ("memory.limit_in_bytes", {"memory.max": "1048576\n"}, "1048576"),
        ("memory.memsw.limit_in_bytes", {"memory.max": "100\n", "memory.swap.max": "200\n"}, "300"),
        (
            "memory.memsw.limit_in_bytes",
            {"memory.max": "100\n", "memory.swap.max": "max\n"},
            translate.V1_UNLIMITED,
        ),
        ("memory.usage_in_bytes", {"memory.current": "12345\n"}, "12345"),
        ("cpu.shares", {"cpu.weight": "100\n"}, "1024"),
        ("cpu.cfs_quota_us", {"cpu.max": "max 100000\n"}, "-1"),
        ("cpu.cfs_quota_us", {"cpu.max": "25000 100000\n"}, "25000"),
        ("cpu.cfs_period_us", {"cpu.max": "25000 50000\n"}, "50000"),
        ("cpuacct.usage", {"cpu.stat": "usage_usec 42\nuser_usec 40\n"}, "42000"),
        (
            "freezer.state",
            {"cgroup.freeze": "1\n", "cgroup.events": "populated 1\nfrozen 1\n"},
            "FROZEN",
        ),
        (
            "freezer.state",
            {"cgroup.freeze": "1\n", "cgroup.events": "populated 1\nfrozen 0\n"},
            "FREEZING",
        ),
        (
            "freezer.state",
            {"cgroup.freeze": "0\n", "cgroup.events": "populated 1\nfrozen 0\n"},
            "THAWED",
        ),
        ("blkio.weight", {"io.weight": "default 4950\n"}, "500"),
        ("hugetlb.1GB.limit_in_bytes", {"hugetlb.1GB.max": "max\n"}, translate.V1_UNLIMITED),
        ("hugetlb.1GB.usage_in_bytes", {"hugetlb.1GB.current": "0\n"}, "0"),
        ("tasks", {"cgroup.threads": "1\n2\n"}, "1\n2\n"),
        ("cpuset.cpu_exclusive", {"cpuset.cpus.partition": "member\n"}, "0"),
    ],
)
def test_get(key, files, value):
    assert translate.get(key, reader(files)) == value


@pytest.mark.parametrize(
    "key, hint",
    [
        ("devices.allow", "BPF"),
        ("net_cls.classid", "socket"),
        ("cpu.rt_runtime_us", "realtime"),
        ("memory.use_hierarchy", "always hierarchical"),
        ("blkio.throttle.read_bps_device", "io.max"),
        ("notify_on_release", "RemoveOnEmpty"),
        ("release_agent", "RemoveOnEmpty"),
    ],
)
def test_unmappable_keys_name_the_v2_way(key, hint):
    assert translate.applies(key)
    with pytest.raises(Unsupported, match=hint):
        translate.set_(key, "1", reader({}))
    with pytest.raises(Unsupported, match=hint):
        translate.get(key, reader({}))


@pytest.mark.parametrize(
    "key", ["memory.usage_in_bytes", "cpuacct.usage", "tasks", "hugetlb.2MB.usage_in_bytes"]
)
def test_read_only_translations(key):
    with pytest.raises(Unsupported, match="read-only"):
        translate.set_(key, "1", reader({}))


@pytest.mark.parametrize(
    "key, value, files",
    [
        ("memory.limit_in_bytes", "lots", {}),
        ("cpu.shares", "0", {}),
        ("cpu.shares", "x", {}),
        ("freezer.state", "MELTED", {}),
        ("blkio.weight", "5", {}),
        ("memory.memsw.limit_in_bytes", "50", {"memory.max": "100\n"}),
        ("memory.memsw.limit_in_bytes", "500", {"memory.max": "max\n"}),
    ],
)
def test_bad_values(key, value, files):
    with pytest.raises(InvalidArgument):
        translate.set_(key, value, reader(files))


def test_v2_names_are_not_translated():
    for key in ["memory.max", "pids.max", "cgroup.freeze", "cpu.weight", "io.max", "pids.current"]:
        assert not translate.applies(key)
