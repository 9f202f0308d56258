"""The fast, kernel-level target behind tests/kernel/test_fuzz_names.py (issue 12's long run).

One input is a cgroup name (or a path of two names) drawn from the whole Unicode range, raw
bytes, and the shapes attackers use (``x<U+2028>8:pids:``).  For each:

1. ``names.py`` against the kernel: a name the API accepts must be one the kernel makes (and
   shows back byte for byte); a name the API refuses but the kernel makes must have one
   escaped form that ``names.split`` accepts and that decodes back to the very bytes;
2. the kernel makes it under this run's root (``mkdir`` as a delegatee would), a child
   process moves in, and its ``/proc/<pid>/cgroup`` — read by the daemon's own parser
   (``Layout.cgroups_in``, with its fail-closed checks) — must say exactly where the kernel put
   it, line for line: the new path (escaped) in that hierarchy, the old path in every other;
3. the daemon's cgroupfs layer lists the name escaped, resolves the escaped form to the very
   directory (same inode), and removes it by that form.

No daemon: this is the parser and the validation layer against the kernel, thousands of
inputs a second, so a long run of millions is affordable.
"""

from __future__ import annotations

import errno
import os
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

from cgmanager import escapes, names
from cgmanager.cgroupfs import CgroupTree
from cgmanager.errors import CgmError, InvalidArgument
from cgmanager.hierarchy import Hierarchy, Layout

#: characters some program takes for a line or field break, or that hide text
HOSTILE = (
    "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029\u00a0\u2003\u3000\u202e\u2066\u200b\ufeff\ufffd\t :,"
)


@dataclass
class Stats:
    inputs: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0


def draw(rng: random.Random, shape: str) -> bytes:
    """One name component as bytes (never ``/`` or NUL: no kernel name can hold those)."""
    n = rng.choice((1, 1, 2, 3, 5, 8, 16, 40, 120, rng.randint(200, 260)))
    if shape == "unicode":  # any code point (surrogates become raw bytes, as on disk)
        cps = [rng.randrange(0x110000) for _ in range(n)]
        s = "".join(chr(c) if not 0xD800 <= c < 0xE000 else chr(0xDC80 + (c & 0x7F)) for c in cps)
        raw = s.encode("utf-8", "surrogateescape")
    elif shape == "bmp":
        raw = "".join(chr(rng.randrange(0x20, 0x3000)) for _ in range(n)).encode(
            "utf-8", "surrogatepass"
        )
    elif shape == "bytes":
        raw = bytes(rng.randrange(1, 256) for _ in range(n))
    elif shape == "hostile":
        raw = "".join(rng.choice(HOSTILE + "ab8") for _ in range(n)).encode()
    else:  # "forge": a name posing as a line of /proc/<pid>/cgroup
        brk = rng.choice(HOSTILE[:12])
        hid = rng.choice(("0", "1", "8", "9", "12"))
        ctrl = rng.choice(("", "pids", "cpu", "name=systemd", "memory"))
        raw = f"x{brk}{hid}:{ctrl}:{rng.choice(('', '/', 'evil'))}".encode("utf-8", "surrogatepass")
    raw = raw.replace(b"/", b"_").replace(b"\0", b"_")
    return raw or b"_"


SHAPES = ("unicode", "bmp", "bytes", "hostile", "forge")


def _mkdir(path: bytes) -> int:
    try:
        os.mkdir(path)
        return 0
    except OSError as e:
        return e.errno or -1


def one(
    rng: random.Random,
    layout: Layout,
    trees: dict[str, CgroupTree],
    roots: dict[str, bytes],
    child: int,
    home: dict[str, str],
    stats: Stats,
) -> None:
    key = rng.choice(sorted(roots))
    t, h = trees[key], layout.lookup(key)
    shape = rng.choice(SHAPES)
    comps = [draw(rng, shape) for _ in range(1 if rng.random() < 0.8 else 2)]
    root = roots[key]
    made: list[bytes] = []
    stats.inputs += 1
    try:
        path = root
        for raw in comps:
            name = raw.decode("utf-8", "surrogateescape")
            try:  # what Create takes: a valid new name (not an escaped form), <= NAME_MAX
                names.check_new_name(name)
                api = len(raw) <= names.NAME_MAX and not names.is_escaped(name)
            except InvalidArgument:
                api = False
            path = path + b"/" + raw
            err = _mkdir(path)
            if err == errno.EEXIST:  # a file of the kernel's (cgroup.procs, irq.pressure, ..)
                stats.outcomes[f"{shape}: exists (a kernel file or . ..)"] += 1
                return
            if err:
                # a name the API accepts is one the kernel makes (too long: both refuse)
                assert not api, (raw, err)
                stats.outcomes[f"{shape}: kernel refused, API refused"] += 1
                return
            made.append(path)
            shown = escapes.escape(name)
            if api:
                assert shown == name, raw
            else:  # refused: for a character (then escaped), a kernel name or the length
                assert shown != name or len(raw) > names.NAME_MAX or _kernel_like(name), raw
            assert names.split(shown) == (shown,), raw
            assert names.unescape(shown).encode("utf-8", "surrogateescape") == raw
            stats.outcomes[f"{shape}: {'API accepts' if api else 'escaped'}"] += 1
        _check_identity(h, t, layout, path, root, child, home, key)
    finally:
        for p in reversed(made):
            _rmdir_by_escaped_form(t, h, p)


def _kernel_like(name: str) -> bool:
    """Names check_new_name refuses for what they mean, not for a character they hold."""
    try:
        names.check_new_name("x" + name)  # the same characters, another meaning
        return True
    except InvalidArgument:
        return False


def _hpath(h: Hierarchy, abspath: bytes) -> str:
    rel = os.path.relpath(abspath, os.fsencode(h.mountpoint)).decode("utf-8", "surrogateescape")
    return escapes.escape_path("/" + rel)


def _check_identity(
    h: Hierarchy,
    t: CgroupTree,
    layout: Layout,
    path: bytes,
    root: bytes,
    child: int,
    home: dict[str, str],
    key: str,
) -> None:
    want = _hpath(h, path)
    # cgroupfs: the escaped form resolves to the very directory, and is how it is listed
    with t.dirfd(want) as fd:
        assert os.fstat(fd).st_ino == os.stat(path).st_ino
    parent = want.rsplit("/", 1)[0] or "/"
    assert want.rsplit("/", 1)[1] in t.children(parent)
    # move a child in; the daemon's parser must say what the kernel did
    with open(path + b"/cgroup.procs", "w") as f:
        f.write(str(child))
    try:
        with open(f"/proc/{child}/cgroup", "rb") as f:
            text = f.read().decode("utf-8", "surrogateescape")
        assert os.path.exists(f"/proc/{child}"), "the child process died: the run is void"
        believed = dict(layout.cgroups_in(text))
        expected = dict(home)
        expected[h.key] = want
        assert believed == expected, (path, believed, expected)
    finally:
        with open(root + b"/cgroup.procs", "w") as f:
            f.write(str(child))


def _rmdir_by_escaped_form(t: CgroupTree, h: Hierarchy, path: bytes) -> None:
    try:
        t.rmdir(_hpath(h, path))
    except CgmError:
        os.rmdir(path)  # (a failure is reported by the assertion below)
        raise
    assert not os.path.lexists(path)


def run(
    n: int,
    seed: int,
    layout: Layout,
    roots: dict[str, bytes],
    child: int,
    stats: Stats | None = None,
) -> Stats:
    """*n* inputs; *roots* maps served hierarchy keys to this run's directories, and *child*
    (a process of the caller's, sitting in those directories) is moved about."""
    stats = stats or Stats()
    rng = random.Random(seed)
    trees = {k: CgroupTree(layout.lookup(k)) for k in roots}
    with open(f"/proc/{child}/cgroup", "rb") as f:
        home = dict(layout.cgroups_in(f.read().decode("utf-8", "surrogateescape")))
    start = time.monotonic()
    try:
        for i in range(n):
            one(rng, layout, trees, roots, child, home, stats)
            if i % 100_000 == 99_999:
                rate = stats.inputs / (time.monotonic() - start)
                print(f"name fuzz: {i + 1} inputs, {rate:.0f}/s", file=sys.stderr, flush=True)
    finally:
        stats.seconds += time.monotonic() - start
        for t in trees.values():
            t.close()
    return stats
