"""T0: the one validation layer for client paths, names and keys."""

import pytest

from cgmanager import names
from cgmanager.errors import InvalidArgument

pytestmark = pytest.mark.t0


@pytest.mark.parametrize(
    "path, expected",
    [
        ("", ()),
        ("/", ()),
        ("a", ("a",)),
        ("a/b", ("a", "b")),
        ("//a///b/", ("a", "b")),
        ("a..b", ("a..b",)),  # a harmless name; only '..' as a component is refused
        ("x\\y", ("x\\y",)),  # backslashes allowed since 0.35
    ],
)
def test_split_accepts(path, expected):
    assert names.split(path) == expected


@pytest.mark.parametrize(
    "path",
    [
        "..",
        "../x",
        "a/../../b",
        "a/..",
        "/..",
        ".",
        "a/./b",
        "a\0b",
        "a\nb",
        "a\x7fb",
        "x" * 256,
        "a/" + "y" * 256,
        "/".join(["abcdefgh"] * 500),
    ],
)
def test_split_refuses_hostile(path):
    with pytest.raises(InvalidArgument):
        names.split(path)


def test_resolve_families():
    assert names.resolve("/base", "a/b", absolute_allowed=False) == "/base/a/b"
    # family B: a leading slash has no absolute meaning
    assert names.resolve("/base", "/a", absolute_allowed=False) == "/base/a"
    # family A: it does
    assert names.resolve("/base", "/a", absolute_allowed=True) == "/a"
    assert names.resolve("/base", "", absolute_allowed=True) == "/base"
    assert names.resolve("/", "a", absolute_allowed=False) == "/a"
    with pytest.raises(InvalidArgument):
        names.resolve("/base", "../sibling", absolute_allowed=True)


@pytest.mark.parametrize(
    "path, base, under",
    [
        ("/a", "/a", True),
        ("/a/b", "/a", True),
        ("/a2", "/a", False),  # the sibling-prefix escape fixed in 0.36
        ("/a-foo/b", "/a", False),
        ("/", "/a", False),
        ("/anything", "/", True),
        ("/", "/", True),
    ],
)
def test_is_under_has_a_slash_boundary(path, base, under):
    assert names.is_under(path, base) is under


def test_relative_to_and_parent():
    assert names.relative_to("/a/b/c", "/a") == "b/c"
    assert names.relative_to("/a", "/a") == ""
    assert names.relative_to("/a", "/") == "a"
    assert names.parent("/a/b") == "/a"
    assert names.parent("/a") == "/"
    assert names.depth("/") == 0 and names.depth("/a/b") == 2
    with pytest.raises(ValueError):
        names.relative_to("/a2", "/a")


@pytest.mark.parametrize(
    "name",
    [
        "tasks",
        "cgroup.procs",
        "cgroup.foo",
        "memory.max",
        "cpu.weight",
        "pids.x",
        "notify_on_release",
        "release_agent",
        "..",
        ".",
        "",
        "a/b",
        "a\0",
    ],
)
def test_new_names_colliding_with_kernel_files_are_refused(name):
    with pytest.raises(InvalidArgument):
        names.check_new_name(name)


@pytest.mark.parametrize(
    "name", ["foo", "lxc", "user-1000", "cgroupx", "memoryhog", "a.b", "_cpu.x"]
)
def test_ordinary_new_names_pass(name):
    names.check_new_name(name)


def test_extra_controllers_from_the_running_kernel_are_reserved_too():
    names.check_new_name("newctl.x")
    with pytest.raises(InvalidArgument):
        names.check_new_name("newctl.x", frozenset({"newctl"}))


@pytest.mark.parametrize("key", ["pids.max", "cgroup.procs", "tasks", "memory.limit_in_bytes"])
def test_keys_pass(key):
    names.check_key(key)


@pytest.mark.parametrize(
    "key", ["", ".", "..", "../release_agent", "a/b", "/pids.max", "x\0", "k" * 256]
)
def test_hostile_keys_are_refused(key):
    with pytest.raises(InvalidArgument):
        names.check_key(key)


def test_join_refuses_overlong_result():
    with pytest.raises(InvalidArgument):
        names.join("/" + "a" * 4000, "b" * 200)
