"""T0: the one validation layer for client paths, names and keys."""

import pytest

from cgmanager import escapes, names
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
        "x" * 4097,
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


# -- characters no name may hold, and the escaped form of names made on cgroupfs (issue 12) ----

#: one of each refused class: C0, DEL, C1 (NEL), the Unicode line and paragraph separators, a
#: non-ASCII space, bidi overrides and isolates, zero-width characters, BOM, soft hyphen, a tag
#: character, an unassigned code point, a lone surrogate (a byte that is not UTF-8), U+FFFD
REFUSED = [
    "\x01",
    "\r",
    "\x1c",
    "\x7f",
    "\x85",
    "\u2028",
    "\u2029",
    "\u00a0",
    "\u2003",
    "\u3000",
    "\u202e",
    "\u2066",
    "\u200b",
    "\u200d",
    "\ufeff",
    "\u00ad",
    "\U000e0041",
    "\U000e0fff",
    "\udcff",
    "\ufffd",
]


@pytest.mark.parametrize("c", REFUSED)
def test_characters_that_break_lines_or_hide_text_are_refused_everywhere(c):
    for check in (names.split, names.check_new_name, names.check_key):
        with pytest.raises(InvalidArgument):
            check(f"a{c}b")


@pytest.mark.parametrize("name", ["a b", "ümlaut", "名前", "😀", "a\\x2db", "emoji\U0001f9d1"])
def test_ordinary_unicode_names_pass(name):
    names.check_new_name(name)
    assert escapes.escape(name) == name


@pytest.mark.parametrize(
    "raw, shown",
    [
        ("a\u2028b", "a\ufffde2\ufffd80\ufffda8b"),
        ("\udcff\udcfe", "\ufffdff\ufffdfe"),  # bytes that are not UTF-8
        ("x\r", "x\ufffd0d"),
        ("\ufffd", "\ufffdef\ufffdbf\ufffdbd"),  # the marker itself
        ("ok", "ok"),
    ],
)
def test_escaped_form_round_trips_and_is_accepted_as_a_path(raw, shown):
    assert escapes.escape(raw) == shown
    assert names.unescape(shown) == raw
    assert names.split(f"p/{shown}") == ("p", shown)
    names.check_new_name(shown)  # it names what exists; cgroupfs refuses to create it


@pytest.mark.parametrize(
    "spelling",
    [
        "\ufffd61",  # 'a' needs no escape: not the one form
        "\ufffdc3\ufffda9",  # 'é' neither
        "\ufffd2f",  # '/'
        "\ufffd00",  # NUL
        "\ufffdFF",  # upper-case hex
        "a\ufffd",
        "\ufffdzz",
        "\ufffdff\u2028",  # half escaped
    ],
)
def test_only_the_canonical_escaped_form_is_accepted(spelling):
    with pytest.raises(InvalidArgument):
        names.split(spelling)


def test_no_escaped_form_collides_with_a_name_the_api_accepts():
    """Every escaped form holds U+FFFD, which no accepted name holds; and escaping is
    injective (distinct raw names, distinct forms)."""
    import random

    rng = random.Random(12)
    seen: dict[str, str] = {}
    for _ in range(3000):
        raw = bytes(rng.choice(b"ab/\x85\xe2\x80\xa8\xff\xc2\xa0\xef\xbf\xbd.") for _ in range(6))
        raw = raw.replace(b"/", b"")
        name = raw.decode("utf-8", "surrogateescape")
        shown = escapes.escape(name)
        assert seen.setdefault(shown, name) == name
        if shown != name:
            assert "\ufffd" in shown
            with pytest.raises(InvalidArgument):
                names.check_new_name(name)
        assert names.unescape(shown) == name


def test_messages_carry_no_line_breaks():
    from cgmanager.errors import NotFound

    e = NotFound("cgroup a\u2028b\x85c\udcff and x\ufffde2 stay")
    assert (
        e.message == "cgroup a\ufffde2\ufffd80\ufffda8b\ufffdc2\ufffd85c\ufffdff and x\ufffde2 stay"
    )
    assert e.message.encode("utf-8")  # always encodable
