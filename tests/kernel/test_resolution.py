"""T1: resolution beneath a root refuses symlinks and '..', on a real kernel filesystem.

cgroupfs itself cannot hold symlinks (test_v2_tree checks that premise), so the planted-link
cases run on a tmpfs tree built like a cgroup hierarchy: the resolution code is the same.
"""

import os

import pytest

from cgmanager._linux import _walk_beneath, open_beneath
from cgmanager.cgroupfs import CgroupTree
from cgmanager.errors import InvalidArgument, NotFound
from cgmanager.hierarchy import Hierarchy

pytestmark = pytest.mark.t1


@pytest.fixture
def planted(tmp_path):
    root = tmp_path / "root"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "pids.max").write_text("max\n")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_text("secret\n")
    os.symlink(tmp_path / "outside", root / "a" / "link")  # absolute link out
    os.symlink("../..", root / "a" / "b" / "up")  # relative link up
    os.symlink(tmp_path / "outside" / "secret", root / "a" / "key")  # key that is a link
    os.symlink("b", root / "a" / "inside")  # even a harmless link
    t = CgroupTree(Hierarchy(2, (), None, str(root)), delegate_files=("cgroup.procs",))
    yield t, tmp_path
    t.close()


@pytest.mark.parametrize("path", ["/a/link", "/a/b/up", "/a/inside", "/a/link/x"])
def test_symlinked_cgroups_are_not_followed(planted, path):
    t, _ = planted
    with pytest.raises(InvalidArgument):
        t.children(path)
    with pytest.raises(InvalidArgument):
        t.read(path, "secret")
    with pytest.raises(InvalidArgument):
        t.mkdir(path + "/new")
    with pytest.raises(InvalidArgument):
        t.chown(path, 1, 1)


def test_symlinked_key_is_not_followed(planted):
    t, tmp = planted
    with pytest.raises(NotFound):
        t.read("/a", "key")
    with pytest.raises(NotFound):
        t.write("/a", "key", "pwned")
    with pytest.raises(NotFound):
        t.chmod("/a", "key", 0o777)
    assert (tmp / "outside" / "secret").read_text() == "secret\n"
    assert oct((tmp / "outside" / "secret").stat().st_mode & 0o777) != "0o777"


def test_keys_lists_regular_files_only(planted):
    t, _ = planted
    assert [k.name for k in t.keys("/a")] == ["pids.max"]
    assert sorted(t.children("/a")) == ["b"]  # links are not child cgroups


@pytest.mark.parametrize("impl", [open_beneath, _walk_beneath])
def test_both_resolvers_refuse_dotdot_and_links(planted, impl):
    t, _ = planted
    for bad in ["a/../..", "..", "a/link", "a/b/up"]:
        with pytest.raises(OSError):
            os.close(impl(t.root_fd, bad, os.O_RDONLY | os.O_DIRECTORY))
    fd = impl(t.root_fd, "a/b", os.O_RDONLY | os.O_DIRECTORY)
    os.close(fd)


def test_mount_root_offset(tmp_path):
    """A hierarchy mounted from a subtree (mount root /lxc/c1) maps paths accordingly and
    refuses paths outside the mounted subtree."""
    (tmp_path / "x").mkdir()
    t = CgroupTree(Hierarchy(1, ("pids",), None, str(tmp_path), "/lxc/c1"))
    assert t.children("/lxc/c1") == ["x"]
    assert t.children("/lxc/c1/x") == []
    with pytest.raises(NotFound):
        t.children("/lxc/c2")
    with pytest.raises(NotFound):
        t.children("/")
    with pytest.raises(InvalidArgument):
        t.children("/lxc/c1/..")
    t.close()
