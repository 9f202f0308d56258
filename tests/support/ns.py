"""Run a Python callable in a forked child inside new namespaces.

    result = run_in_ns(fn, arg, userns=True, pidns=True, mountns=True, timeout=5)

The child is forked (so `fn` may be a closure; only its *result* must pickle). Its
exception is re-raised in the caller with the child's traceback as a note. Sequence in
the child (each step optional):

    wait for the parent's go (after `before(host_pid)` ran in the parent)
    -> become `uid`/`gid` (host ids)          -> unshare(all requested namespaces at once)
    -> [userns] parent writes setgroups/uid_map/gid_map, then the child becomes
       `ns_uid`/`ns_gid` inside                -> [mountns] make "/" rprivate
    -> [pidns] fork: the grandchild is pid 1 of the new pid namespace [mount /proc]
    -> fn(*args)

Gotchas handled (see docs/TESTING.md): the parent writes uid_map only
after the child has unshared CLONE_NEWUSER; "setgroups deny" is written before gid_map;
every id change makes a process non-dumpable (its /proc files become root-owned), so
the child sets PR_SET_DUMPABLE again; PR_SET_PDEATHSIG (cleared by id changes, so set
again too) kills the child if its parent dies.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import pickle
import select
import signal
import struct
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from . import procs as _procs

libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8
MS_BIND, MS_REC, MS_PRIVATE = 4096, 0x4000, 1 << 18
PR_SET_PDEATHSIG, PR_SET_DUMPABLE = 1, 4

_LEN = struct.Struct("!Q")


class NsChildError(RuntimeError):
    """The child died without a result, or its exception could not be transported."""


def _check(ret: int, what: str) -> None:
    if ret != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def unshare(flags: int) -> None:
    _check(libc.unshare(ctypes.c_int(flags)), "unshare")


def setns(fd: int, nstype: int = 0) -> None:
    _check(libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)), "setns")


def mount(
    source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None
) -> None:
    enc = lambda s: None if s is None else s.encode()
    _check(
        libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
        f"mount {target}",
    )


def umount(target: str, flags: int = 0) -> None:
    _check(libc.umount2(target.encode(), ctypes.c_int(flags)), f"umount {target}")


def make_mounts_private() -> None:
    """mount --make-rprivate /: call right after unshare(CLONE_NEWNS)."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)


def _prctl(option: int, arg: int) -> None:
    _check(
        libc.prctl(
            ctypes.c_int(option),
            ctypes.c_ulong(arg),
            ctypes.c_ulong(0),
            ctypes.c_ulong(0),
            ctypes.c_ulong(0),
        ),
        "prctl",
    )


def set_dumpable() -> None:
    _prctl(PR_SET_DUMPABLE, 1)


def _die_with(parent_pidfd: int) -> None:
    """PR_SET_PDEATHSIG=SIGKILL, then close the race where the parent already died."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if _procs.pidfd_exited(parent_pidfd):
        os._exit(125)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _send_result(fd: int, payload: tuple) -> None:
    try:
        data = pickle.dumps(payload)
    except Exception as e:  # noqa: BLE001 - unpicklable result or exception
        kind = payload[0]
        text = payload[2] if kind == "err" else ""
        data = pickle.dumps(
            ("err", None, f"{text}\n(result not picklable: {e!r}; {payload[1]!r:.500})")
        )
    _write_all(fd, _LEN.pack(len(data)) + data)


def _read_byte(fd: int) -> bytes:
    try:
        return os.read(fd, 1)
    except OSError:
        return b""


class NsChild:
    """A running namespaced child (see `spawn_in_ns`). `.pid` is its host pid."""

    def __init__(self, pid: int, pidfd: int, ctl_r: int, ctl_w: int, res_r: int, desc: str):
        self.pid = pid
        self.pidfd = pidfd
        self.inner_pid: int | None = None  # host pid of the pid-ns init (pidns=True)
        self._ctl_r, self._ctl_w, self._res_r = ctl_r, ctl_w, res_r
        self._buf = b""
        self._status: int | None = None
        self.desc = desc

    # -- process-handle protocol shared with procs.Proc (used by the run registry) --
    def alive(self) -> bool:
        return self.pidfd >= 0 and not _procs.pidfd_exited(self.pidfd)

    def kill(self, timeout: float = 5.0) -> int | None:
        """SIGKILL (its pid-ns init dies with it, via PDEATHSIG) and reap."""
        if self.pidfd >= 0:
            _procs.pidfd_kill(self.pidfd)
            self._reap(timeout)
        return self._status

    def _reap(self, timeout: float) -> None:
        if self._status is None and _procs.pidfd_wait_exit(self.pidfd, timeout):
            try:
                _pid, status = os.waitpid(self.pid, 0)
            except ChildProcessError:  # reaped elsewhere
                status = -1
            self._status = status
            self._close()

    def _close(self) -> None:
        for attr in ("_ctl_r", "_ctl_w", "_res_r", "pidfd"):
            fd = getattr(self, attr)
            if fd >= 0:
                os.close(fd)
                setattr(self, attr, -1)

    # -- handshake --
    def _expect(self, want: bytes, deadline: float) -> None:
        r, _, _ = select.select([self._ctl_r], [], [], max(0.0, deadline - time.monotonic()))
        got = _read_byte(self._ctl_r) if r else None
        if got == want:
            return
        if got is None:
            self.kill()
            raise TimeoutError(f"{self.desc}: no handshake {want!r} in time")
        # the child failed before the handshake: its result explains why
        self.wait(max(0.5, deadline - time.monotonic()))
        raise NsChildError(f"{self.desc}: handshake got {got!r}, expected {want!r}")

    def _go(self, byte: bytes = b"G") -> None:
        try:
            os.write(self._ctl_w, byte)
        except BrokenPipeError:  # the child died: its result says why
            self.wait(1.0)
            raise NsChildError(f"{self.desc}: child gone before {byte!r}") from None

    # -- result --
    def wait(self, timeout: float = 10.0) -> Any:
        """Wait for fn's result: return it, or re-raise fn's exception; TimeoutError kills."""
        deadline = time.monotonic() + timeout
        need = None
        while True:
            if need is None and len(self._buf) >= _LEN.size:
                need = _LEN.size + _LEN.unpack(self._buf[: _LEN.size])[0]
            if need is not None and len(self._buf) >= need:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise TimeoutError(f"{self.desc}: no result within {timeout}s (killed)")
            fds = [self._res_r] if self._res_r >= 0 else []
            if self.pidfd >= 0:
                fds.append(self.pidfd)
            if not fds:
                break
            r, _, _ = select.select(fds, [], [], left)
            if self._res_r in r:
                chunk = os.read(self._res_r, 1 << 20)
                if chunk:
                    self._buf += chunk
                    continue
                os.close(self._res_r)  # EOF: every writer gone
                self._res_r = -1
            elif self.pidfd in r and self._res_r >= 0:
                # child ended; drain whatever is still buffered in the pipe
                select_r, _, _ = select.select([self._res_r], [], [], 0.05)
                if not select_r:
                    break
        self._reap(max(0.1, deadline - time.monotonic()))
        if self._status is None:
            self.kill()
        if need is None or len(self._buf) < need:
            raise NsChildError(f"{self.desc}: exited without a result (wait status {self._status})")
        kind, value, tb = pickle.loads(self._buf[_LEN.size : need])
        if kind == "ok":
            return value
        if isinstance(value, BaseException):
            value.add_note(f"--- raised in namespaced child {self.pid} ---\n{tb}")
            raise value
        raise NsChildError(f"{self.desc} failed:\n{tb}")

    @property
    def status(self) -> int | None:
        """Raw wait status once reaped."""
        return self._status

    def __repr__(self) -> str:
        return f"NsChild(pid={self.pid}, {self.desc})"


def _flags(
    userns: bool, pidns: bool, mountns: bool, cgroupns: bool, netns: bool, utsns: bool, ipcns: bool
) -> int:
    f = 0
    for on, flag in (
        (userns, CLONE_NEWUSER),
        (pidns, CLONE_NEWPID),
        (mountns, CLONE_NEWNS),
        (cgroupns, CLONE_NEWCGROUP),
        (netns, CLONE_NEWNET),
        (utsns, CLONE_NEWUTS),
        (ipcns, CLONE_NEWIPC),
    ):
        if on:
            f |= flag
    return f


def spawn_in_ns(
    fn: Callable[..., Any],
    *args: Any,
    userns: bool = False,
    uid_map: str = "0 100000 65536",
    gid_map: str | None = None,
    setgroups: str = "allow",
    ns_uid: int | None = 0,
    ns_gid: int | None = 0,
    pidns: bool = False,
    mount_proc: bool = False,
    mountns: bool = False,
    cgroupns: bool = False,
    netns: bool = False,
    utsns: bool = False,
    ipcns: bool = False,
    uid: int | None = None,
    gid: int | None = None,
    groups: list[int] | None = None,
    before: Callable[[int], None] | None = None,
    timeout: float = 10.0,
) -> NsChild:
    """Fork a child that runs `fn(*args)` in new namespaces; see the module docstring.

    userns: new user namespace; the parent (root) writes `uid_map`/`gid_map`
        (gid_map defaults to uid_map) and "deny"/"allow" to /proc/<pid>/setgroups;
        then the child becomes `ns_uid`/`ns_gid` inside (None: keep the overflow ids).
    pidns: `fn` runs as pid 1 of a new pid namespace, in a grandchild (`.inner_pid`
        is its host pid); mount_proc (needs mountns) mounts a fresh /proc there.
    uid/gid/groups: host ids the child takes *before* unsharing (e.g. a test user's).
    before(host_pid): runs in the parent before the child changes anything, e.g. to
        move it into a cgroup before it unshares CLONE_NEWCGROUP.
    timeout: for the handshake (the result has its own timeout in `.wait`).
    """
    if mount_proc and not (pidns and mountns):
        raise ValueError("mount_proc needs pidns=True and mountns=True")
    if setgroups not in ("allow", "deny"):
        raise ValueError("setgroups must be 'allow' or 'deny'")
    flags = _flags(userns, pidns, mountns, cgroupns, netns, utsns, ipcns)
    gid_map = uid_map if gid_map is None else gid_map
    desc = f"ns child {getattr(fn, '__name__', fn)!s:.40} flags={flags:#x}"

    p2c_r, p2c_w = os.pipe()
    c2p_r, c2p_w = os.pipe()
    res_r, res_w = os.pipe()
    parent_pidfd = os.pidfd_open(os.getpid())
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # ------------------------------------------------------------- child
        code = 0
        try:
            os.close(p2c_w), os.close(c2p_r), os.close(res_r)
            code = _child(
                fn,
                args,
                flags,
                p2c_r,
                c2p_w,
                res_w,
                parent_pidfd,
                userns,
                setgroups,
                ns_uid,
                ns_gid,
                pidns,
                mount_proc,
                mountns,
                uid,
                gid,
                groups,
            )
        except BaseException:  # noqa: BLE001 - a forked child must never unwind into pytest
            code = 126
        finally:
            os._exit(code)
    # ------------------------------------------------------------------------- parent
    os.close(parent_pidfd), os.close(p2c_r), os.close(c2p_w), os.close(res_w)
    child = NsChild(pid, os.pidfd_open(pid), c2p_r, p2c_w, res_r, desc)
    _track(child)
    deadline = time.monotonic() + timeout
    try:
        if before is not None:
            before(pid)
        child._go()
        if userns:
            child._expect(b"U", deadline)
            _write_maps(pid, uid_map, gid_map, setgroups)
            child._go(b"M")
        if pidns:
            child._expect(b"P", deadline)
            raw = _read_exact(child._ctl_r, 4, deadline)
            child.inner_pid = struct.unpack("!i", raw)[0]
    except BaseException:
        child.kill()
        raise
    return child


def _read_exact(fd: int, n: int, deadline: float) -> bytes:
    buf = b""
    while len(buf) < n:
        r, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not r:
            raise TimeoutError("namespaced child: handshake timed out")
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            raise NsChildError("namespaced child: handshake pipe closed")
        buf += chunk
    return buf


def _write_maps(pid: int, uid_map: str, gid_map: str, setgroups: str) -> None:
    """As root in the parent namespace: no newuidmap needed, any mapping allowed."""
    if setgroups == "deny":
        with open(f"/proc/{pid}/setgroups", "w") as f:
            f.write("deny")
    for name, text in (("uid_map", uid_map), ("gid_map", gid_map)):
        with open(f"/proc/{pid}/{name}", "w") as f:
            f.write(text.strip() + "\n")


def _child(
    fn: Callable[..., Any],
    args: tuple,
    flags: int,
    ctl_r: int,
    ctl_w: int,
    res_w: int,
    parent_pidfd: int,
    userns: bool,
    setgroups: str,
    ns_uid: int | None,
    ns_gid: int | None,
    pidns: bool,
    mount_proc: bool,
    mountns: bool,
    uid: int | None,
    gid: int | None,
    groups: list[int] | None,
) -> int:
    """The forked child's body; returns its exit code. Never returns into pytest."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM):
        signal.signal(sig, signal.SIG_DFL)
    try:
        _die_with(parent_pidfd)
        if _read_byte(ctl_r) != b"G":
            return 125
        if gid is not None or uid is not None:
            if os.geteuid() == 0:
                os.setgroups(groups or [])
            if gid is not None:
                os.setresgid(gid, gid, gid)
            if uid is not None:
                os.setresuid(uid, uid, uid)
            set_dumpable()
            _die_with(parent_pidfd)
        if flags:
            unshare(flags)
        if userns:
            os.write(ctl_w, b"U")
            if _read_byte(ctl_r) != b"M":
                return 125
            if setgroups == "allow" and ns_gid is not None:
                os.setgroups([])
            if ns_gid is not None:
                os.setresgid(ns_gid, ns_gid, ns_gid)
            if ns_uid is not None:
                os.setresuid(ns_uid, ns_uid, ns_uid)
            set_dumpable()
            _die_with(parent_pidfd)
        if mountns:
            make_mounts_private()
        if pidns:
            my_pidfd = os.pidfd_open(os.getpid())
            inner = os.fork()
            if inner == 0:
                code = 0
                try:
                    _die_with(my_pidfd)
                    if mount_proc:
                        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
                    _run_fn(fn, args, res_w)
                except BaseException as e:  # noqa: BLE001 - a forked child must never unwind into pytest
                    _send_result(res_w, ("err", e, traceback.format_exc()))
                    code = 1
                finally:
                    os._exit(code)
            os.write(ctl_w, b"P" + struct.pack("!i", inner))
            os.close(res_w)
            _pid, status = os.waitpid(inner, 0)
            return os.waitstatus_to_exitcode(status) & 0xFF
        _run_fn(fn, args, res_w)
        return 0
    except BaseException as e:  # noqa: BLE001 - a forked child must never unwind into pytest
        _send_result(res_w, ("err", e, traceback.format_exc()))
        return 1


def _run_fn(fn: Callable[..., Any], args: tuple, res_w: int) -> None:
    try:
        value = fn(*args)
    except BaseException as e:  # noqa: BLE001 - a forked child must never unwind into pytest
        _send_result(res_w, ("err", e, traceback.format_exc()))
        return
    _send_result(res_w, ("ok", value, ""))


def _track(child: NsChild) -> None:
    """Register with the run (for SIGTERM cleanup and the leftover check), if there is one."""
    try:
        from . import run
    except ImportError:  # pragma: no cover
        return
    r = run.current()
    if r is not None:
        r.track_process(child)


def run_in_ns(fn: Callable[..., Any], *args: Any, timeout: float = 10.0, **options: Any) -> Any:
    """spawn_in_ns(...) then wait: returns fn's result or re-raises its exception."""
    child = spawn_in_ns(fn, *args, timeout=timeout, **options)
    return child.wait(timeout)
