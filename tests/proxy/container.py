"""A test "container" with a cgproxy inside, and the functions the tests run in it.

The container is a child in new user (``0 100000 65536``), pid, mount and cgroup namespaces,
placed into fresh per-test cgroups *before* it unshares its cgroup namespace.  Its pid 1 is an
agent: it mounts a tmpfs on ``/sys/fs/cgroup``, bind-mounts the host daemon's socket
*directory* on ``/sys/fs/cgroup/cgmanager`` (as LXC did), then runs requests from the test:
``container(fn, *args)`` pickles a reference to a module-level function, the agent calls it
inside and sends back its result (or re-raises its exception here).  Everything the agent
starts lives in the container's pid namespace and dies with it.

The functions below marked "inside" run in the agent (or in a nested container's agent).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import pickle
import select
import signal
import socket
import struct
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from support import ns

VENV_BIN = os.path.dirname(sys.executable)
CGPROXY = os.path.join(VENV_BIN, "cgproxy")
CG = "/sys/fs/cgroup"
SOCK_DIR = f"{CG}/cgmanager"
PROXY_SOCK = f"{SOCK_DIR}/sock"
LOWER_SOCK = f"{CG}/cgmanager.lower/sock"
PROXY_ADDRESS = f"unix:path={PROXY_SOCK}"
LOWER_ADDRESS = f"unix:path={LOWER_SOCK}"
PROXY_LOG = f"{CG}/cgproxy.log"
OBJ = "/org/linuxcontainers/cgmanager"
IFACE = "org.linuxcontainers.cgmanager0_0"
ERR = "org.linuxcontainers.cgmanager.Error."

_LEN = struct.Struct("!Q")
libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


# -- the channel between the test and an agent -------------------------------------------------


def _send(sock: socket.socket, obj: Any) -> None:
    try:
        data = pickle.dumps(obj)
    except Exception as e:  # noqa: BLE001 - report an unpicklable result as an error
        data = pickle.dumps(("err", None, f"unpicklable: {e!r}"))
    sock.sendall(_LEN.pack(len(data)) + data)


def _recv_exact(sock: socket.socket, n: int, deadline: float | None) -> bytes:
    buf = b""
    while len(buf) < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            r, _, _ = select.select([sock], [], [], max(0.0, left))
            if not r:
                raise TimeoutError("no answer from the container in time")
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("the container's agent is gone")
        buf += chunk
    return buf


def _recv(sock: socket.socket, deadline: float | None = None) -> Any:
    (n,) = _LEN.unpack(_recv_exact(sock, _LEN.size, deadline))
    return pickle.loads(_recv_exact(sock, n, deadline))


STATE: dict[str, Any] = {}  # the agent's own state (proxy, sleepers, nested containers)


def agent_main(chan: socket.socket, setup: Callable[..., None], setup_args: tuple) -> str:
    """pid 1 of a container: set up, then serve requests until told to stop."""
    STATE.clear()
    STATE.update(sleepers={}, nested={}, proxies=[])
    setup(*setup_args)
    _send(chan, ("ok", os.getpid()))
    while True:
        req = _recv(chan)
        if req is None:
            break
        fn, args, kwargs = req
        try:
            result = ("ok", fn(*args, **kwargs))
        except BaseException as e:  # noqa: BLE001 - sent back to the test
            result = ("err", e, traceback.format_exc())
        _send(chan, result)
    for p in STATE["proxies"]:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
    return "bye"


class Container:
    """Host-side (or parent-container-side) handle of a container's agent."""

    def __init__(self, child: ns.NsChild, chan: socket.socket, dirs: dict[str, str] | None = None):
        self.child = child
        self.chan = chan
        #: the container's cgroup per served hierarchy key, as absolute host paths
        self.dirs = dirs or {}
        try:
            self.pid1 = _recv(chan, time.monotonic() + 30)[1]
        except EOFError:
            child.wait(10)  # re-raises the set-up failure
            raise

    def __call__(self, fn: Callable[..., Any], *args: Any, timeout: float = 60, **kw: Any) -> Any:
        _send(self.chan, (fn, args, kw))
        try:
            kind, value, tb = (*_recv(self.chan, time.monotonic() + timeout), "")[:3]
        except (TimeoutError, EOFError):
            self.close()
            raise
        if kind == "ok":
            return value
        if isinstance(value, BaseException):
            value.add_note(f"--- raised inside the container ---\n{tb}")
            raise value
        raise RuntimeError(f"inside the container: {tb}")

    def close(self) -> None:
        if self.chan.fileno() >= 0:
            try:
                _send(self.chan, None)
                self.child.wait(10)
            except Exception:  # noqa: BLE001 - kill below
                pass
            self.chan.close()
        if self.child.alive():
            self.child.kill()


def spawn_container(
    setup: Callable[..., None],
    setup_args: tuple,
    *,
    uid_map: str = "0 100000 65536",
    before: Callable[[int], None] | None = None,
    dirs: dict[str, str] | None = None,
) -> Container:
    """Start a container whose agent runs ``setup(*setup_args)`` first."""
    parent, child_end = socket.socketpair()
    try:
        child = ns.spawn_in_ns(
            agent_main,
            child_end,
            setup,
            setup_args,
            userns=True,
            uid_map=uid_map,
            pidns=True,
            mountns=True,
            mount_proc=True,
            cgroupns=True,
            before=before,
            timeout=20,
        )
    finally:
        child_end.close()
    try:
        return Container(child, parent, dirs)
    except BaseException:
        parent.close()
        raise


# -- inside: set-up ---------------------------------------------------------------------------

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND = 1, 2, 4, 8, 32, 4096


def setup_cgroup_dir(source: str) -> None:
    """inside: tmpfs on /sys/fs/cgroup, and *source* (the host daemon's socket directory, or
    the parent container's ``cgmanager.lower``) bind-mounted on /sys/fs/cgroup/cgmanager.
    The source is opened first: the tmpfs hides a source below /sys/fs/cgroup."""
    fd = os.open(source, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        ns.mount("tmpfs", CG, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=755")
        os.mkdir(SOCK_DIR, 0o755)
        ns.mount(f"/proc/self/fd/{fd}", SOCK_DIR, None, MS_BIND)
    finally:
        os.close(fd)


def setup_cgroup_dir_readonly(source: str) -> None:
    """inside: as :func:`setup_cgroup_dir`, then /sys/fs/cgroup remounted read-only (as some
    container managers leave it)."""
    setup_cgroup_dir(source)
    ns.mount(None, CG, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)


# -- inside: the proxy ------------------------------------------------------------------------


def connectable(address: str, timeout: float = 2.0) -> bool:
    from cgmanager.dbus.client import connect

    try:
        connect(address, timeout=timeout).close()
        return True
    except Exception:  # noqa: BLE001
        return False


def start_proxy(*extra: str, wait: bool = True) -> int:
    """inside: start cgproxy (its log in the container's tmpfs); wait until it answers."""
    start = os.path.getsize(PROXY_LOG) if os.path.exists(PROXY_LOG) else 0
    log = open(PROXY_LOG, "ab")  # noqa: SIM115 - handed to the child
    p = subprocess.Popen(
        [CGPROXY, "--log-level", "debug", *extra],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    log.close()
    STATE["proxies"].append(p)
    STATE["proxy"] = p
    if not wait:
        return p.pid
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise RuntimeError(f"cgproxy exited {p.returncode}:\n{proxy_log()}")
        with open(PROXY_LOG, errors="replace") as f:
            f.seek(start)
            if "ready: serving" in f.read():
                return p.pid
        time.sleep(0.02)
    raise RuntimeError(f"cgproxy did not come up:\n{proxy_log()}")


def stop_proxy() -> int | None:
    """inside: SIGTERM the proxy started last; its exit status."""
    p = STATE.get("proxy")
    if p is None:
        return None
    p.terminate()
    return p.wait(10)


def proxy_alive() -> bool:
    p = STATE.get("proxy")
    return p is not None and p.poll() is None


def proxy_log() -> str:
    try:
        with open(PROXY_LOG, errors="replace") as f:
            return f.read()
    except OSError as e:
        return f"(no log: {e})"


# -- inside: processes ------------------------------------------------------------------------


def spawn_sleeper(uid: int | None = None) -> int:
    """inside: a `sleep` (as container uid *uid*); its pid as the container sees it."""
    kw: dict[str, Any] = {}
    if uid is not None:
        kw = {"user": uid, "group": uid, "extra_groups": []}
    p = subprocess.Popen(["sleep", "300"], stdin=subprocess.DEVNULL, **kw)
    STATE["sleepers"][p.pid] = p
    return p.pid


def my_pid() -> int:
    return os.getpid()


def pid_exists(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")


def cgroup_of(pid: int) -> dict[str, str]:
    """inside: /proc/<pid>/cgroup as the container sees it: {controllers-or-'unified': path}."""
    out = {}
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _h, ctrls, path = line.rstrip("\n").split(":", 2)
            out[ctrls or "unified"] = path
    return out


def run(argv: list[str], uid: int | None = None, timeout: float = 30) -> tuple[int, str, str]:
    """inside: run a command (as container uid *uid*)."""
    kw: dict[str, Any] = {}
    if uid is not None:
        kw = {"user": uid, "group": uid, "extra_groups": []}
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    return p.returncode, p.stdout, p.stderr


def sh(script: str, uid: int | None = None) -> tuple[int, str, str]:
    return run(["sh", "-c", script], uid=uid)


def dbus_send(method: str, *args: str, uid: int | None = None, address: str = PROXY_ADDRESS):
    """inside: plain ``dbus-send`` to the proxy."""
    return run(
        [
            "dbus-send",
            f"--address={address}",
            "--print-reply",
            "--type=method_call",
            OBJ,
            f"{IFACE}.{method}",
            *args,
        ],
        uid=uid,
    )


def _as_uid(uid: int | None, fn: Callable[[], Any]) -> Any:
    """Run *fn* in a forked child as container uid *uid* (None: as we are); its result."""
    if uid is None:
        return fn()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(r)
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            # as after an exec: without it the proxy (root only in the container, while this
            # forked mm still belongs to the host user namespace) may not inspect us
            ns.set_dumpable()
            try:
                res: Any = ("ok", fn())
            except BaseException as e:  # noqa: BLE001
                res = ("err", e, traceback.format_exc())
            data = pickle.dumps(res)
            os.write(w, data)
        except BaseException:  # noqa: BLE001
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    os.waitpid(pid, 0)
    kind, value, *tb = pickle.loads(b"".join(chunks))
    if kind == "ok":
        return value
    raise value


def py_call(
    method: str,
    signature: str = "",
    args: tuple = (),
    *,
    uid: int | None = None,
    address: str = PROXY_ADDRESS,
) -> tuple:
    """inside: our Python client → ("ok", body) or ("err", name, message)."""

    def call() -> tuple:
        from cgmanager.dbus.client import connect
        from cgmanager.dbus.errors import DBusError

        try:
            with connect(address, timeout=20) as c:
                return ("ok", c.call(OBJ, IFACE, method, signature, args))
        except DBusError as e:
            return ("err", e.name, e.message)

    return _as_uid(uid, call)


def scm_call(
    member: str,
    args: tuple,
    requestor: tuple[int, int, int] | None,
    second: tuple[int, int, int] | None = None,
    *,
    uid: int | None = None,
    address: str = PROXY_ADDRESS,
) -> tuple:
    """inside: a ``*Scm`` call with the blocking client, stating *requestor* (None: our own
    pid/uid/gid).  → ("ok", result) | ("oserror", errno) | ("err", name, message) |
    ("scm", text)."""

    def call() -> tuple:
        from cgmanager import scm_client
        from cgmanager.dbus.client import connect
        from cgmanager.dbus.errors import DBusError

        r = requestor or (os.getpid(), os.getuid(), os.getgid())
        try:
            with connect(address, timeout=20) as c:
                return ("ok", scm_client.call(c, member, args, r, second, timeout=5))
        except DBusError as e:
            return ("err", e.name, e.message)
        except scm_client.ScmError as e:
            return ("scm", str(e))
        except OSError as e:
            return ("oserror", e.errno)

    return _as_uid(uid, call)


def proc_status_field(pid: int, field: str) -> str:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return line.split(":", 1)[1].strip()
    return ""


def mountinfo() -> str:
    with open("/proc/self/mountinfo") as f:
        return f.read()


def listdir(path: str) -> list[str]:
    return sorted(os.listdir(path))


def in_new_namespaces(fn: Callable[..., Any], *args: Any, **options: Any) -> Any:
    """inside: run *fn* in a child in further namespaces (e.g. pidns=True) of this container."""
    return ns.run_in_ns(fn, *args, timeout=20, **options)


# -- inside: a nested container ---------------------------------------------------------------


def spawn_nested(uid_map: str, move: tuple[str, str]) -> int:
    """inside: start a container in this container, mapping *uid_map* (a subrange of ours),
    moved by *this* container's proxy into cgroup ``move[1]`` of controllers ``move[0]``
    before it unshares its cgroup namespace; the bind-mounted host socket directory
    (``cgmanager.lower`` here) is passed down.  Returns an id for :func:`nested`."""
    controllers, cgroup = move

    def before(pid: int) -> None:
        for c in controllers.split(","):
            res = py_call("MovePid", "ssi", (c, cgroup, pid))
            if res[0] != "ok":
                raise RuntimeError(f"moving the nested container failed: {res}")

    child = spawn_container(
        setup_cgroup_dir, (f"{CG}/cgmanager.lower",), uid_map=uid_map, before=before
    )
    nid = len(STATE["nested"]) + 1
    STATE["nested"][nid] = child
    return nid


def nested(nid: int, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    """inside: run *fn* in nested container *nid*."""
    return STATE["nested"][nid](fn, *args, **kw)


def nested_pid1(nid: int) -> int:
    """inside: the nested container's pid 1 as this container sees it."""
    return STATE["nested"][nid].child.inner_pid


def close_nested(nid: int) -> None:
    STATE["nested"].pop(nid).close()


def kill(pid: int, sig: int = signal.SIGTERM) -> None:
    os.kill(pid, sig)


# -- inside: timing and stalls ------------------------------------------------------------------


def timed_calls(calls: list[tuple[str, str, tuple]]) -> list[tuple[float, tuple]]:
    """inside: run the py_calls at once, one thread each; (seconds, result) per call."""
    import threading

    out: list[Any] = [None] * len(calls)

    def one(i: int, method: str, sig: str, args: tuple) -> None:
        t0 = time.monotonic()
        res = py_call(method, sig, args)
        out[i] = (time.monotonic() - t0, res)

    threads = [threading.Thread(target=one, args=(i, *c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


def stall_scm_client() -> None:
    """inside: start a CreateScm towards the proxy and never send the credentials."""
    from cgmanager.dbus.client import connect

    c = connect(PROXY_ADDRESS, timeout=10)
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    c.call(OBJ, IFACE, "CreateScm", "ssh", ("pids", "stalled", theirs.fileno()))
    theirs.close()
    STATE["stalled"] = (c, mine)


def start_stopped_proxy() -> dict[str, Any]:
    """inside: cgproxy --sigstop; report whether it stopped itself once listening, then
    continue it."""
    p = subprocess.Popen(
        [CGPROXY, "--sigstop"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    STATE["proxies"].append(p)
    STATE["proxy"] = p
    deadline = time.monotonic() + 20
    stopped = None
    while time.monotonic() < deadline:
        info = os.waitid(os.P_PID, p.pid, os.WSTOPPED | os.WNOHANG | os.WNOWAIT)
        if info is not None and info.si_code == os.CLD_STOPPED:
            stopped = True
            break
        time.sleep(0.02)
    listening = os.path.exists(PROXY_SOCK) and os.path.exists(LOWER_SOCK)
    state = proc_status_field(p.pid, "State")
    os.kill(p.pid, signal.SIGCONT)
    return {"stopped": stopped, "listening": listening, "state": state}


def read_file(path: str) -> str:
    with open(path) as f:
        return f.read()
