"""T0: layout discovery and controller resolution over recorded layouts."""

from pathlib import Path

import pytest

from cgmanager.errors import InvalidArgument, NotFound, Unsupported
from cgmanager.hierarchy import discover, parse_mountinfo
from cgmanager.procfs import parse_cgroup

pytestmark = pytest.mark.t0
SAMPLES = Path(__file__).parent.parent / "samples"


def layout_of(kind, **kw):
    d = SAMPLES / kind
    ctrl = d / "v2-controllers"
    return discover(
        (d / "mountinfo").read_text(),
        (d / "cgroups").read_text(),
        (lambda _mp: ctrl.read_text()) if ctrl.exists() else None,
        **kw,
    )


def keys(hs):
    return [h.key for h in hs]


class TestHybridThisMachine:
    """The recorded layout of these development and CI machines."""

    def test_mode_and_hierarchies(self):
        L = layout_of("hybrid")
        assert L.mode == "hybrid"
        assert keys(L.all()) == [
            "blkio",
            "cpu",
            "cpuacct",
            "cpuset",
            "devices",
            "freezer",
            "memory",
            "name=systemd",
            "pids",
            "unified",
        ]
        assert L.v2.controllers == ("hugetlb",)
        assert L.v2.mountpoint == "/sys/fs/cgroup/unified"
        # bound to no hierarchy: neither mounted on v1 nor available on v2
        assert L.unbound == {"net_cls", "net_prio", "perf_event"}
        assert L.disabled == frozenset()

    def test_names(self):
        L = layout_of("hybrid")
        assert L.lookup("systemd") is L.lookup("name=systemd")
        assert L.lookup("hugetlb") is L.v2
        assert L.lookup("unified") is L.v2
        # freezer is a v1 hierarchy here, so the v2 alias must not shadow it
        assert L.lookup("freezer").version == 1
        assert L.lookup("pids").hierarchy_id == 8

    def test_proc_lines_map_to_hierarchies(self):
        L = layout_of("hybrid")
        paths = {
            h.key: p
            for h, p in L.for_lines(
                parse_cgroup((SAMPLES / "hybrid/self-cgroup").read_text())
            ).items()
        }
        assert paths["unified"] == "/"
        assert paths["name=systemd"] == "/"
        assert paths["memory"].startswith("/process_api/")
        assert len(paths) == 10

    def test_proc_text_maps_like_its_lines_and_is_memoised_read_only(self):
        L = layout_of("hybrid")
        text = (SAMPLES / "hybrid/self-cgroup").read_text()
        want = {h.key: p for h, p in L.for_lines(parse_cgroup(text)).items()}
        got = L.cgroups_in(text)
        assert dict(got) == want
        assert L.cgroups_in(text) is got
        with pytest.raises(TypeError):
            got["pids"] = "/elsewhere"  # type: ignore[index]
        # a line outside the reader's cgroup namespace names nothing it can reach
        outside = text.replace("0::/", "0::/../x")
        assert "unified" not in L.cgroups_in(outside) and len(L.cgroups_in(outside)) == 9

    def test_a_served_v1_root_is_noticed(self):
        """What an exiting task shows (v1 at "/"): the daemon must then ask whether it is."""
        L = layout_of("hybrid")
        text = (SAMPLES / "hybrid/self-cgroup").read_text()
        # the sample sits at / in most v1 hierarchies; memory is elsewhere
        assert L.shows_v1_root(text)
        moved = "".join(
            (line if line.startswith("0::") else line.rpartition(":")[0] + ":/job") + "\n"
            for line in text[:-1].split("\n")
        )
        assert not L.shows_v1_root(moved)  # the v2 line stays at "0::/": v2 roots do not count
        assert L.shows_v1_root(moved.replace(":pids:/job", ":pids:/"))


class TestUnified:
    def test_pure_v2_host(self):
        L = layout_of("unified")
        assert L.mode == "unified"
        [v2] = L.all()
        assert v2.mountpoint == "/sys/fs/cgroup"
        for name in ["memory", "pids", "cpu", "io", "cpuset", "hugetlb", "unified", "misc"]:
            assert L.lookup(name) is v2
        # v1 names v2 provides differently
        assert L.lookup("freezer") is v2
        assert L.lookup("cpuacct") is v2
        assert L.lookup("blkio") is v2
        assert L.lookup("name=systemd") is v2
        # v1-only controllers are bound to nothing here; those v2 provides differently are
        # served by the v2 tree, not "unbound"
        assert L.unbound == {"net_cls", "net_prio", "perf_event", "devices"}
        assert keys(L.resolve("all")) == ["unified"]
        # a list of many v2 controllers is one hierarchy (all comounted)
        assert keys(L.resolve("memory,pids,cpu")) == ["unified"]
        assert L.resolve_one("memory,pids") is v2

    def test_mount_names(self):
        [v2] = layout_of("unified").all()
        assert v2.mount_names[0] == "unified"
        assert "memory" in v2.mount_names


class TestLegacy:
    def test_comounted_and_named(self):
        L = layout_of("legacy")
        assert L.mode == "legacy"
        assert L.v2 is None
        assert "cpu,cpuacct" in keys(L.all())
        assert "net_cls,net_prio" in keys(L.all())
        assert L.lookup("cpuacct") is L.lookup("cpu")
        assert L.lookup("cpu").hierarchy_id == 4
        assert L.lookup("systemd").key == "name=systemd"
        # freezer is v1 here; no v2 alias anywhere
        assert L.lookup("freezer").version == 1
        with pytest.raises(NotFound):
            L.lookup("unified")

    def test_comounted_duplicates_dropped_in_order(self):
        L = layout_of("legacy")
        assert keys(L.resolve("cpuacct,memory,cpu,")) == ["cpu,cpuacct", "memory"]
        assert L.resolve_one("cpu,cpuacct").key == "cpu,cpuacct"
        assert L.resolve_one("cpu,").key == "cpu,cpuacct"  # trailing comma tolerated

    def test_single_hierarchy_methods_refuse_lists_and_all(self):
        L = layout_of("legacy")
        with pytest.raises(InvalidArgument):
            L.resolve_one("cpu,memory")
        with pytest.raises(InvalidArgument):
            L.resolve_one("all")

    def test_proc_lines(self):
        L = layout_of("legacy")
        paths = {
            h.key: p
            for h, p in L.for_lines(
                parse_cgroup((SAMPLES / "legacy/self-cgroup").read_text())
            ).items()
        }
        assert paths["cpu,cpuacct"] == "/user.slice"
        assert paths["name=systemd"] == "/user.slice/user-1000.slice/session-2.scope"
        assert paths["net_cls,net_prio"] == "/"


class TestContainer:
    def test_bind_mounted_subtrees(self):
        L = layout_of("container")
        pids = L.lookup("pids")
        # the mount showing the whole hierarchy is preferred over the /lxc/c1 subtree
        assert pids.mount_root == "/" and pids.mountpoint == "/sys/fs/cgroup/pids-whole"
        cpu = L.lookup("cpu")
        assert cpu.mount_root == "/lxc/c1"
        assert cpu.mountpoint == "/sys/fs/cgroup/cpu,cpuacct"  # the older of two equal mounts
        assert L.lookup("systemd").mount_root == "/lxc/c1"

    def test_escaped_mountpoints(self):
        entries = parse_mountinfo((SAMPLES / "container/mountinfo").read_text())
        assert "/sys/fs/cgroup/cpu copy" in [e.mountpoint for e in entries]

    def test_v2_without_controllers_gets_v1_aliases_only_where_free(self):
        L = layout_of("container")
        assert L.v2.controllers == ()
        assert L.lookup("freezer") is L.v2  # no v1 freezer mounted in this container
        with pytest.raises(NotFound):
            L.lookup("memory")  # enabled in /proc/cgroups but not mounted here


class TestDisabledAndSkipped:
    def test_disabled_controller(self):
        L = layout_of("disabled")
        assert L.disabled == {"memory"}
        with pytest.raises(Unsupported, match="disabled"):
            L.lookup("memory")

    def test_skip_and_missing_extra(self):
        L = layout_of("hybrid", skip=["memory", "systemd"], extra=["name=systemd", "name=foo"])
        assert "memory" not in keys(L.all())
        assert "name=systemd" not in keys(L.all())
        assert set(L.skipped) == {"memory", "name=systemd"}
        assert L.missing == ("name=foo",)
        with pytest.raises(NotFound, match="not served"):
            L.lookup("memory")

    def test_skip_v2(self):
        L = layout_of("hybrid", skip=["unified"])
        assert L.v2 is None and L.mode == "legacy"
        with pytest.raises(NotFound):
            L.lookup("hugetlb")


@pytest.mark.parametrize("arg", ["", ",", "no-such", "pids\0", " pids", "a" * 5000])
def test_bad_controller_arguments(arg):
    L = layout_of("hybrid")
    with pytest.raises((InvalidArgument, NotFound)):
        L.resolve(arg)


def test_all_on_a_host_with_nothing_served_is_empty():
    L = layout_of("hybrid", skip=[h.key for h in layout_of("hybrid").all()])
    assert L.resolve("all") == []


def test_malformed_inputs():
    with pytest.raises(ValueError):
        parse_mountinfo("1 2 3\n")
    with pytest.raises(ValueError):
        discover("", "cpu 1\n")
