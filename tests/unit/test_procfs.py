"""T0: /proc parsers over recorded samples."""

from pathlib import Path

import pytest

from cgmanager.procfs import (
    PF_EXITING,
    IdMap,
    parse_cgroup,
    parse_real_uid,
    parse_starttime,
    parse_stat_flags,
    parse_status,
)

pytestmark = pytest.mark.t0
SAMPLES = Path(__file__).parent.parent / "samples"


def test_cgroup_lines_of_a_legacy_host():
    lines = parse_cgroup((SAMPLES / "legacy/self-cgroup").read_text())
    by_ctrls = {l.controllers: l for l in lines}
    assert by_ctrls[("cpu", "cpuacct")].path == "/user.slice"
    assert by_ctrls[("name=systemd",)].hierarchy_id == 1
    assert by_ctrls[("net_cls", "net_prio")].path == "/"
    assert all(not l.outside_namespace for l in lines)


def test_cgroup_line_v2_and_colons_in_paths():
    [line] = parse_cgroup("0::/a:b/c\n")
    assert (line.hierarchy_id, line.controllers, line.path) == (0, (), "/a:b/c")


def test_cgroup_paths_outside_the_namespace_are_flagged():
    lines = parse_cgroup("0::/../sibling/x\n1:pids:/..\n2:cpu:/\n")
    assert [l.outside_namespace for l in lines] == [True, True, False]


def test_malformed_cgroup_line():
    with pytest.raises(ValueError):
        parse_cgroup("garbage\n")


def test_id_map_of_a_container():
    m = IdMap.parse((SAMPLES / "container/uid_map").read_text())
    assert m.to_inside(100000) == 0
    assert m.to_inside(165535) == 65535
    assert m.to_inside(165536) is None
    assert m.to_inside(0) is None
    assert m.to_outside(0) == 100000
    assert m.to_outside(65536) is None
    assert not m.is_identity()


def test_identity_map_of_the_host():
    m = IdMap.parse((SAMPLES / "hybrid/uid_map").read_text())
    assert m.is_identity()
    assert m.to_inside(4294967294) == 4294967294
    assert m.to_inside(0) == 0


@pytest.mark.parametrize(
    "text",
    ["0 4294967295 2\n", "4294967295 0 2\n", "-1 0 1\n", "0 0\n", "a b c\n", "0 0 0\n"],
)
def test_id_map_refuses_overflow_and_garbage(text):
    with pytest.raises(ValueError):
        IdMap.parse(text)


def test_status_with_nested_pid_namespace():
    st = parse_status((SAMPLES / "container/status-nspid").read_text())
    assert st.tgid == 4242
    assert st.uids == (100000,) * 4
    assert st.nspids == (4242, 1)


def test_status_of_this_machine_sample():
    st = parse_status((SAMPLES / "hybrid/self-status").read_text())
    assert st.uids[0] == 0 and len(st.gids) == 4


def test_starttime_survives_parentheses_in_comm():
    assert parse_starttime((SAMPLES / "container/stat").read_text()) == 987654


def test_status_missing_fields():
    with pytest.raises(ValueError):
        parse_status("Name: x\n")


@pytest.mark.parametrize("sample", ["container/status-nspid", "hybrid/self-status"])
def test_real_uid_agrees_with_the_full_parse(sample):
    text = (SAMPLES / sample).read_text()
    assert parse_real_uid(text) == parse_status(text).uids[0]


def test_real_uid_is_the_first_of_four_fields():
    assert parse_real_uid("Name:\tx\nUid:\t1000\t0\t0\t0\nGid:\t0\t0\t0\t0\n") == 1000


@pytest.mark.parametrize(
    "text",
    ["Name: x\n", "Name: x\nUid:\t1 2\n", "Name: x\nUid:\t-1\t0\t0\t0\n", "Uid:\t1\t1\t1\t1\n"],
)
def test_real_uid_refuses_what_it_cannot_read(text):
    with pytest.raises(ValueError):
        parse_real_uid(text)


def test_stat_flags_survive_parentheses_in_comm():
    text = "42 (a) b) (c) R 1 42 42 0 -1 4194564 0 0 0 0 0 0 0 0 20 0 1 0 987654 0 0\n"
    assert parse_stat_flags(text) == 4194564
    assert parse_stat_flags(text) & PF_EXITING
    assert not parse_stat_flags(text.replace("4194564", "4194560")) & PF_EXITING
