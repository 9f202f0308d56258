"""T0: kernel text read the way the kernel writes it (issue 12, finding 1)."""

from pathlib import Path

import pytest

from cgmanager import kerneltext as kt
from cgmanager.hierarchy import discover, parse_mountinfo
from cgmanager.procfs import IdMap, parse_status

pytestmark = pytest.mark.t0
SAMPLES = Path(__file__).parent.parent / "samples"

#: every character some program takes for a line break, and none of them is one to the kernel
LINE_BREAKS_BUT_NOT_TO_THE_KERNEL = "\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"


@pytest.mark.parametrize("brk", LINE_BREAKS_BUT_NOT_TO_THE_KERNEL)
def test_a_cgroup_name_cannot_pose_as_a_line(brk):
    """The attack of issue 12: ``x<brk>8:pids:`` in a hierarchy listed before pids."""
    text = f"9:name=systemd:/d/x{brk}8:pids:\n8:pids:/user\n0::/user\n"
    lines = kt.proc_cgroup(text)
    assert [(ln.hierarchy_id, ln.path) for ln in lines] == [
        (9, f"/d/x{brk}8:pids:"),
        (8, "/user"),
        (0, "/user"),
    ]
    assert f"x{brk}y".splitlines() == ["x", "y"]  # what the old parser did


@pytest.mark.parametrize(
    "text",
    [
        "8:pids:/a\n8:pids:/b\n",  # a hierarchy id twice
        "8:pids:/a\n7:pids:/b\n",  # a controller twice
        "0::/a\n0::/b\n",  # the v2 line twice
        "8:pids:\n",  # an empty path (the old parser read it as "/")
        "8:pids:a\n",  # not absolute
        "8:pids:/a",  # cut short
        "8:pids:/a\n\n0::/\n",  # an empty line
        "x:pids:/a\n",
        "٨:pids:/a\n",  # ARABIC-INDIC DIGIT EIGHT: int() takes it, the kernel never writes it
        "8:pids,:/a\n",
        "8::/a\n",  # a v1 line without controllers
        "0:pids:/a\n",  # a v2 line with controllers
        "8 :pids:/a\n",
        "garbage\n",
    ],
)
def test_proc_cgroup_fails_closed(text):
    with pytest.raises(kt.KernelTextError):
        kt.proc_cgroup(text)


def test_a_layout_refuses_text_listing_other_hierarchies_than_its_own():
    own = (SAMPLES / "hybrid/self-cgroup").read_text()
    L = discover(
        (SAMPLES / "hybrid/mountinfo").read_text(),
        (SAMPLES / "hybrid/cgroups").read_text(),
        lambda mp: (SAMPLES / "hybrid/v2-controllers").read_text(),
        self_cgroup=lambda: own,
    )
    assert L.cgroups_in(own)
    from cgmanager.errors import NotPermitted

    with pytest.raises(NotPermitted):  # one hierarchy more than the kernel lists: forged
        L.cgroups_in(own + "77:name=forged:/\n")
    with pytest.raises(NotPermitted):  # one less
        L.cgroups_in(own.split("\n", 1)[1])


def test_paths_are_shown_escaped_when_they_hold_refused_characters():
    own = (SAMPLES / "hybrid/self-cgroup").read_text()
    L = discover(
        (SAMPLES / "hybrid/mountinfo").read_text(),
        (SAMPLES / "hybrid/cgroups").read_text(),
        lambda mp: (SAMPLES / "hybrid/v2-controllers").read_text(),
    )
    text = own.replace("0::/", "0::/a/x\u20288:pids:/\udcff/")
    assert L.cgroups_in(text)["unified"] == "/a/x\ufffde2\ufffd80\ufffda88:pids:/\ufffdff/"


def test_lines_end_at_newline_only():
    assert kt.lines("") == []
    assert kt.lines("a\u2028b\rc\n") == ["a\u2028b\rc"]
    assert kt.lines("\n", blank=True) == [""]
    for bad in ("a", "a\n\nb\n", "\n"):
        with pytest.raises(kt.KernelTextError):
            kt.lines(bad)


def test_numbers_are_ascii_digits():
    assert kt.ids("1\n22\n") == [1, 22]
    for bad in ("١\n", "1 2\n", "+1\n", " 1\n", "1\u2028\n", "-1\n"):
        with pytest.raises(kt.KernelTextError):
            kt.ids(bad)
    assert kt.signed("-5") == -5


def test_flat_keyed_files():
    assert kt.flat_keyed("populated 1\nfrozen 0\n") == {"populated": 1, "frozen": 0}
    assert kt.flat_keyed("max 3\nlimit max\n") == {"max": 3}  # non-integers left out
    for bad in ("populated\n", "populated  1\n", "a 1 2\n", "populated 1"):
        with pytest.raises(kt.KernelTextError):
            kt.flat_keyed(bad)
    assert kt.keyed("default 100\n8:0 200\n") == [("default", "100"), ("8:0", "200")]


def test_words_of_one_line_files():
    assert kt.words("\n") == []
    assert kt.words("cpu io hugetlb\n") == ["cpu", "io", "hugetlb"]
    assert kt.words("a\u00a0b\n") == ["a\u00a0b"]  # not a field break to the kernel
    with pytest.raises(kt.KernelTextError):
        kt.words("a\nb\n")


def test_status_name_cannot_hide_a_uid_line():
    """comm is set by the process (15 bytes); the kernel escapes its newline, not U+2028."""
    text = "Name:\tx\u2028Uid:\t0\t0\t0\t0\nUmask:\t0022\nTgid:\t7\nUid:\t1000\t1000\t1000\t1000\nGid:\t1000\t1000\t1000\t1000\n"
    st = parse_status(text)
    assert st.uids == (1000,) * 4
    with pytest.raises(ValueError):  # a key twice is nothing the kernel writes
        parse_status(text + "Uid:\t0\t0\t0\t0\n")


def test_stat_fields_after_the_last_parenthesis():
    text = "42 (a) b) (c\nd) R 1 42 42 0 -1 4194564 0 0 0 0 0 0 0 0 20 0 1 0 987654 0 0\n"
    f = kt.stat_fields(text)
    assert f[0] == "R" and f[19] == "987654"
    with pytest.raises(kt.KernelTextError):
        kt.stat_fields("42 (a) R  1\n")


def test_id_maps():
    assert kt.id_map("         0     100000      65536\n") == [(0, 100000, 65536)]
    with pytest.raises(ValueError):
        IdMap.parse("0\u2028100000 65536\n")
    with pytest.raises(ValueError):
        IdMap.parse("0 100000 65536")  # cut short


def test_mountinfo_octal_escapes_and_exact_fields():
    line = (
        "166 161 0:25 /lxc/c\\0401 /sys/fs/cgroup/cpu\\040copy\\134x rw - cgroup cg\\011x rw,cpu\n"
    )
    [m] = kt.mountinfo(line)
    assert (m.root, m.mountpoint, m.source) == ("/lxc/c 1", "/sys/fs/cgroup/cpu copy\\x", "cg\tx")
    assert m.super_options == ("rw", "cpu")
    # a mount point holding U+2028 or U+00A0 is one field to the kernel
    [m] = kt.mountinfo("1 2 0:1 / /mnt/a\u2028b\u00a0c rw shared:1 - tmpfs none rw\n")
    assert m.mountpoint == "/mnt/a\u2028b\u00a0c"
    for bad in (
        "1 2 0:1 / /mnt\\x rw - tmpfs none rw\n",  # a backslash the kernel would have escaped
        "1 2 0:1 / /mnt\\999 rw - tmpfs none rw\n",
        "1 2 0:1 / /mnt rw tmpfs none rw\n",  # no separator
        "1 2 0:1 / /mnt rw - tmpfs none\n",
        "1 2 0:1 / /mnt rw - tmpfs none rw",
    ):
        with pytest.raises(kt.KernelTextError):
            kt.mountinfo(bad)
    assert parse_mountinfo(line)[0].mountpoint == "/sys/fs/cgroup/cpu copy\\x"


@pytest.mark.parametrize("sample", ["container", "hybrid", "legacy", "unified", "disabled"])
def test_every_recorded_sample_parses(sample):
    d = SAMPLES / sample
    assert kt.mountinfo((d / "mountinfo").read_text())
    assert kt.proc_cgroups((d / "cgroups").read_text())
    if (d / "self-cgroup").exists():
        assert kt.proc_cgroup((d / "self-cgroup").read_text())


def test_this_machines_own_files_parse():
    with open("/proc/self/cgroup") as f:
        assert kt.proc_cgroup(f.read())
    with open("/proc/self/mountinfo", "rb") as f:
        assert kt.mountinfo(kt.decode(f.read()))
    with open("/proc/self/status") as f:
        assert parse_status(f.read()).tgid > 0
    with open("/proc/self/stat") as f:
        assert len(kt.stat_fields(f.read())) > 20
    with open("/proc/cgroups") as f:
        assert kt.proc_cgroups(f.read())
