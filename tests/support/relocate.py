"""Run the suite from a copy every user can reach, when the checkout is out of their reach.

Why: the suite runs programs as unprivileged test users and as containers' root (host uid
100000 and up): they execute this venv's interpreter and scripts and import the checkout's
code, and forked helpers import lazily.  A checkout below a 0700 directory (root's home, the
first place root clones to) is unreachable for them, and every such test would fail with
"Permission denied".

How: before anything else, a probe runs the interpreter as ``nobody`` and imports the code.
If that fails, the session copies the working tree (without ``.git``) and the venv to
``/var/tmp/cgtest-checkout-<hex>/`` (world-readable, marked with the owner's ``pid:starttime``),
rewrites the venv's absolute paths (script shebangs, ``cgm``'s launcher, the editable
install's ``.pth``), runs pytest there with the same arguments, copies its ``.pytest_cache``
back, removes the copy and exits with pytest's status.  A copy whose owner died (SIGKILL) is
removed by the next run.  ``CGTEST_RELOCATED_FROM`` tells the inner run where it came from.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

from . import marks

ENV_FROM = "CGTEST_RELOCATED_FROM"
COPY_PARENT = "/var/tmp"
COPY_PREFIX = "cgtest-checkout-"
OWNER_FILE = ".cgtest-owner"
NOBODY = 65534
#: not copied: version control, the venv (copied separately), caches a run rebuilds
SKIP = {".git", ".venv", ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis"}


class RelocateError(RuntimeError):
    """The checkout is unreachable and no usable copy could be made (message for the user)."""


def repo_dir() -> str:
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def unreachable(repo: str, python: str = sys.executable, uid: int = NOBODY) -> str | None:
    """Why *uid* cannot run *python* and import the checkout's code and tests (None: it
    can).  The kernel decides: a child becomes *uid* and tries."""
    probe = (
        "import sys, cgmanager; "
        "assert cgmanager.__file__.startswith(sys.argv[1] + '/'), cgmanager.__file__; "
        "open(sys.argv[1] + '/tests/conftest.py').close()"
    )
    try:
        p = subprocess.run(
            [python, "-c", probe, repo],
            user=uid,
            group=uid,
            extra_groups=[],
            cwd="/",
            capture_output=True,
            text=True,
            timeout=60,
        )
    except OSError as e:  # exec refused: the interpreter itself is out of reach
        return f"uid {uid} cannot run {python}: {e.strerror}"
    if p.returncode != 0:
        last = (p.stderr.strip().splitlines() or ["exit status %d" % p.returncode])[-1]
        return f"uid {uid} cannot use the checkout: {last}"
    return None


def sweep(parent: str = COPY_PARENT) -> list[str]:
    """Remove copies whose owner process is gone; the paths removed."""
    removed = []
    for path in glob.glob(os.path.join(parent, COPY_PREFIX + "*")):
        try:
            with open(os.path.join(path, OWNER_FILE)) as f:
                mark = f.read()
        except FileNotFoundError:
            mark = ""  # an unfinished copy: judged by its directory's age below
        except OSError:
            continue
        alive = marks.mark_alive(mark) if mark else None
        if alive is False or (alive is None and _older_than(path, 3600)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _older_than(path: str, seconds: float) -> bool:
    try:
        return time.time() - os.lstat(path).st_mtime > seconds
    except OSError:
        return False


def _readable(path: str) -> None:
    """Everyone may read (and traverse/execute where the owner may)."""
    for dirpath, _dirnames, filenames in os.walk(path):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode):
                mode = stat.S_IMODE(st.st_mode) | 0o444
                if mode & 0o100:
                    mode |= 0o111
                os.chmod(p, mode)


def _rewrite(path: str, old_new: Sequence[tuple[str, str]]) -> None:
    """Replace absolute path prefixes in a small text file (a new file: never in place, the
    original may be a hard link)."""
    try:
        with open(path, "rb") as f:
            data = f.read(1 << 20)
    except OSError:
        return
    if b"\0" in data:
        return
    new = data
    for old, rep in old_new:
        new = new.replace(old.encode(), rep.encode())
    if new == data:
        return
    st = os.stat(path)
    tmp = path + ".cgtest-tmp"
    with open(tmp, "wb") as f:
        f.write(new)
    os.chmod(tmp, stat.S_IMODE(st.st_mode))
    os.replace(tmp, path)


def copy_tree(repo: str, dest: str) -> None:
    """The working tree without version control, venv and caches."""
    shutil.copytree(
        repo,
        dest,
        symlinks=True,
        ignore=lambda d, names: [n for n in names if d == repo and n in SKIP],
    )


def copy_venv(prefix: str, dest: str, old_new: Sequence[tuple[str, str]]) -> None:
    """The venv at *prefix* copied to *dest*, its absolute paths moved by *old_new* (old
    prefix, new prefix): script shebangs, ``cgm``'s launcher, the editable install."""
    shutil.copytree(prefix, dest, symlinks=True)
    old_new = sorted(old_new, key=lambda p: -len(p[0]))  # the longest (innermost) first
    for script in glob.glob(os.path.join(dest, "bin", "*")):
        if not os.path.islink(script):
            _rewrite(script, old_new)
    for sp in glob.glob(os.path.join(dest, "lib", "python3*", "site-packages")):
        for name in os.listdir(sp):
            if name.endswith(".pth") or (name.startswith("__editable__") and name.endswith(".py")):
                _rewrite(os.path.join(sp, name), old_new)


def make_copy(repo: str, prefix: str, parent: str = COPY_PARENT) -> str:
    """Copy the working tree and the venv (*prefix*) into a new reachable directory; its
    path (the tree is ``<path>/checkout``, the venv ``<path>/checkout/.venv``)."""
    top = tempfile.mkdtemp(prefix=COPY_PREFIX, dir=parent)
    try:
        with open(os.path.join(top, OWNER_FILE), "w") as f:
            f.write(marks.my_mark())
        tree = os.path.join(top, "checkout")
        venv = os.path.join(tree, ".venv")
        copy_tree(repo, tree)
        copy_venv(prefix, venv, ((repo, tree), (prefix, venv)))
        _readable(top)
    except BaseException:
        shutil.rmtree(top, ignore_errors=True)
        raise
    return top


def _args_for(args: Sequence[str], repo: str, tree: str) -> list[str]:
    """The arguments with absolute paths into the checkout pointed at the copy."""
    out = []
    for a in args:
        for head in ("", "--rootdir=", "--confcutdir="):
            if a.startswith(head + repo + "/") or a == head + repo:
                a = head + tree + a[len(head) + len(repo) :]
                break
        out.append(a)
    return out


def _die_with_parent() -> None:
    """In the copy's pytest: a SIGTERM (an orderly teardown) if this process dies."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG


def rerun(args: Sequence[str], repo: str, reason: str) -> int:
    """Copy, run pytest in the copy, clean up; pytest's exit status."""
    prefix = sys.prefix
    if prefix == sys.base_prefix:
        raise RelocateError(
            f"{reason}: the test users cannot reach this checkout, and this interpreter is no "
            "venv that could be copied for them; run `make test`, or clone into a directory "
            "every user may traverse (e.g. /srv or /opt)"
        )
    sweep()
    try:
        top = make_copy(repo, prefix)
    except OSError as e:
        raise RelocateError(
            f"{reason}: the test users cannot reach this checkout, and a copy for them could "
            f"not be made in {COPY_PARENT} ({e}); clone into a directory every user may "
            "traverse (e.g. /srv or /opt), or make its parents searchable (chmod o+x)"
        ) from None
    tree = os.path.join(top, "checkout")
    cwd = os.getcwd()
    rel = os.path.relpath(cwd, repo)
    inner_cwd = tree if rel == "." else os.path.join(tree, rel) if not rel.startswith("..") else cwd
    python = os.path.join(tree, ".venv", "bin", os.path.basename(sys.executable))
    env = dict(os.environ, **{ENV_FROM: repo})
    print(
        f"cgtest: {reason}\ncgtest: running the suite from a copy the test users can reach: "
        f"{tree} (removed afterwards)",
        file=sys.stderr,
        flush=True,
    )
    child = subprocess.Popen(
        [python, "-m", "pytest", *_args_for(args, repo, tree)],
        cwd=inner_cwd,
        env=env,
        preexec_fn=_die_with_parent,
    )

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signum)

    # SIGTERM (e.g. from `timeout`) reaches only us: pass it on.  Ctrl-C reaches the whole
    # foreground process group, the copy's pytest included: a second one would cut its
    # teardown short, so it is not passed on.
    old = {
        signal.SIGTERM: signal.signal(signal.SIGTERM, forward),
        signal.SIGHUP: signal.signal(signal.SIGHUP, forward),
        signal.SIGINT: signal.signal(signal.SIGINT, signal.SIG_IGN),
    }
    try:
        code = child.wait()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        cache = os.path.join(tree, ".pytest_cache")
        if os.path.isdir(cache):
            with contextlib.suppress(OSError):
                shutil.copytree(cache, os.path.join(repo, ".pytest_cache"), dirs_exist_ok=True)
        shutil.rmtree(top, ignore_errors=True)
    return code


def reason_to_relocate() -> str | None:
    """Why the suite must run from a copy, or None: run here (reachable, already a copy, or
    not root — then the tiers that need users skip anyway)."""
    if os.environ.get(ENV_FROM) or os.geteuid() != 0:
        return None
    return unreachable(repo_dir())
