"""Client processes for the reliability tests (tests/daemon/test_reliability.py) and the
reliability bench: run as a script, as root or as a test user, inside a test's place.

``hold ADDRESS N``
    Opens N authenticated connections, prints ``open N``, then obeys commands on stdin, one
    JSON reply line each: ``calls`` (Ping pipelined over every connection at once, then
    GetValue and ListChildren of the own cgroup on each), ``more K`` (K more connections, each
    making a call), ``probe`` (one more connection: refused or not), ``drop K``.  EOF: exit.
``idle ADDRESS K``
    Opens K connections of each idle or half-open kind (:data:`KINDS`), prints ``open``;
    ``status`` reports how many of each the daemon has closed.  EOF: exit.
``measure ADDRESS N``
    Prints the latencies of N one-shot clients (:func:`measure`) as a JSON list.
``work ADDRESS JOURNAL TAG UID GID AFTER``
    Loops Create / SetValue / Chown / MovePid / Remove in ``TAG`` (below its own cgroup in
    pids), journaling each request before it is sent and each reply after it came (see
    :func:`work`).  When the connection is lost it reconnects and goes on for AFTER more
    rounds (AFTER 0: exit at once; -1: reconnect every time); ``stop`` on stdin ends it
    after the current round.  :func:`check_kernel` compares the journals with cgroupfs.
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import time

from cgmanager.dbus.client import Connection, connect, method_call
from cgmanager.dbus.codec import serialise_message
from cgmanager.dbus.errors import DBusError

OBJ = "/org/linuxcontainers/cgmanager"
IFACE = "org.linuxcontainers.cgmanager0_0"
DISCONNECTED = "org.freedesktop.DBus.Error.Disconnected"
#: the idle or half-open connections: no byte sent; SASL line started and never finished;
#: authenticated and silent; authenticated and half a method call sent
KINDS = ("silent", "sasl", "idle", "half")
#: a transport failure (the daemon went away), as opposed to an error reply
LOST = (DISCONNECTED, "org.freedesktop.DBus.Error.NoReply", "org.freedesktop.DBus.Error.AuthFailed")


def sockets_of(pid: int) -> int:
    """How many sockets process *pid* holds (a daemon: its connections and its listener)."""
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            n += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except FileNotFoundError:
            pass
    return n


def socket_path(address: str) -> str:
    return address.split("=", 1)[1] if address.startswith("unix:path=") else address


def reply(obj: object) -> None:
    print(json.dumps(obj), flush=True)


# -------------------------------------------------------------------------------------- hold


def calls_on(conns: list[Connection]) -> dict:
    """Ping sent on every connection before any reply is read (the daemon has all of them
    pending at once), then two real calls on each, one connection after the other."""
    ok, errors = 0, []
    serials = []
    for c in conns:
        try:
            serials.append(c.send(method_call(OBJ, IFACE, "Ping", "i", (0,), None, False)))
        except DBusError as e:
            serials.append(None)
            errors.append(f"send: {e.name}: {e.message}")
    for c, serial in zip(conns, serials, strict=True):
        if serial is None:
            continue
        try:
            c.wait_reply(serial, 30)
            ok += 1
        except DBusError as e:
            errors.append(f"Ping: {e.name}: {e.message}")
    for c in conns:
        try:
            (value,) = c.call(OBJ, IFACE, "GetValue", "sss", ("pids", "", "pids.max"))
            (children,) = c.call(OBJ, IFACE, "ListChildren", "ss", ("pids", ""))
            if isinstance(value, str) and isinstance(children, list):
                ok += 2
            else:
                errors.append(f"odd replies: {value!r} {children!r}")
        except DBusError as e:
            errors.append(f"{e.name}: {e.message}")
    return {"ok": ok, "errors": errors[:5], "n_errors": len(errors), "conns": len(conns)}


def hold(address: str, n: int) -> int:
    conns = [connect(address, timeout=30) for _ in range(n)]
    for c in conns:  # the client reads the handshake's replies lazily: wait for all of them
        assert c.unix_fd
    print(f"open {len(conns)}", flush=True)
    for line in sys.stdin:
        cmd, *arg = line.split()
        if cmd == "calls":
            reply(calls_on(conns))
        elif cmd == "more":
            new, errors = [], []
            for _ in range(int(arg[0])):
                try:
                    c = connect(address, timeout=30)
                    c.call(OBJ, IFACE, "Ping", "i", (0,))
                    new.append(c)
                except DBusError as e:
                    errors.append(f"{e.name}: {e.message}")
            conns += new
            reply({"opened": len(new), "errors": errors, "conns": len(conns)})
        elif cmd == "probe":
            try:
                c = connect(address, timeout=30)
                c.call(OBJ, IFACE, "Ping", "i", (0,))
            except DBusError as e:
                reply({"refused": True, "error": f"{e.name}: {e.message}", "conns": len(conns)})
            else:
                conns.append(c)
                reply({"refused": False, "conns": len(conns)})
        elif cmd == "drop":
            for _ in range(int(arg[0])):
                conns.pop().close()
            reply({"conns": len(conns)})
    for c in conns:
        c.close()
    return 0


# -------------------------------------------------------------------------------------- idle


def open_kind(path: str, kind: str) -> socket.socket:
    """One idle or half-open connection of ``kind`` (see :data:`KINDS`)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    if kind == "sasl":
        s.sendall(b"\0AUTH EXTERNAL 30")  # no CRLF: the line never ends
    elif kind in ("idle", "half"):
        s.sendall(b"\0AUTH EXTERNAL\r\nDATA\r\nBEGIN\r\n")
        s.settimeout(10)
        got = b""
        while not (b"OK " in got and got.endswith(b"\r\n")):  # DATA, then OK <guid>
            chunk = s.recv(4096)
            if not chunk or b"REJECTED" in got + chunk:
                raise ConnectionError(f"handshake refused: {got + chunk!r}")
            got += chunk
        if kind == "half":
            data, _fds = serialise_message(
                method_call(OBJ, IFACE, "Ping", "i", (0,), None, False), 1
            )
            s.sendall(data[: len(data) // 2])
    s.setblocking(False)
    return s


def closed_by_peer(s: socket.socket) -> bool:
    """EOF (or a reset) is waiting on a connection we never expect data on."""
    r, _, _ = select.select([s], [], [], 0)
    if not r:
        return False
    try:
        return s.recv(1, socket.MSG_PEEK) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except BlockingIOError:
        return False


def open_idle(path: str, per_kind: int) -> dict[str, list[socket.socket]]:
    return {kind: [open_kind(path, kind) for _ in range(per_kind)] for kind in KINDS}


def idle_status(held: dict[str, list[socket.socket]]) -> dict[str, int]:
    return {kind: sum(closed_by_peer(s) for s in socks) for kind, socks in held.items()}


def idle(address: str, per_kind: int) -> int:
    held = open_idle(socket_path(address), per_kind)
    print("open", flush=True)
    for line in sys.stdin:
        if line.strip() == "status":
            reply(idle_status(held))
    return 0


# ----------------------------------------------------------------------------------- measure


def measure(address: str, n: int) -> list[float]:
    """Seconds for each of n rounds of: connect (handshake), Ping, GetValue of the own
    cgroup's pids.max, close -- what a well-behaved one-shot client such as cgm does."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        with connect(address, timeout=30) as c:
            c.call(OBJ, IFACE, "Ping", "i", (0,))
            c.call(OBJ, IFACE, "GetValue", "sss", ("pids", "", "pids.max"))
        out.append(time.perf_counter() - t0)
    return out


# -------------------------------------------------------------------------------------- work


class Journal:
    """One line per event, written (unbuffered, one write each) before a request is sent and
    after its reply came: a request with ``send`` but no ``ok`` was in flight."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.seq = 0

    def write(self, **event: object) -> None:
        os.write(self.fd, (json.dumps(event) + "\n").encode())


def _die_with_parent() -> None:
    import ctypes

    PR_SET_PDEATHSIG = 1  # noqa: N806
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, 9)  # SIGKILL


def work(address: str, journal: str, tag: str, uid: int, gid: int, after: int) -> int:
    """Each round n (cgroup TAG/e<epoch>c<n>, pids): Create, SetValue pids.max 100+n, Chown to
    uid:gid, MovePid of a sleeper of that uid into it, Remove (not recursive) of the round
    before's cgroup, which the sleeper has just left.  A lost connection starts a new epoch
    (an unacknowledged request leaves its round's cgroups to whatever the daemon did).
    ``after``: rounds after a reconnection, then stop; 0: stop when the connection is lost;
    -1: reconnect every time, until ``stop``."""
    j = Journal(journal)
    sleeper = subprocess.Popen(
        ["sleep", "3600"], user=uid, group=gid, extra_groups=[], preexec_fn=_die_with_parent
    )  # noqa: PLW1509 - single-threaded
    j.write(ev="sleeper", pid=sleeper.pid)
    conn = connect(address, timeout=10)
    stop = False
    rounds_left = None  # counts down after a reconnection

    def call(op: str, cg: str, method: str, sig: str, args: tuple, arg: object = None) -> None:
        j.seq += 1
        j.write(ev="send", seq=j.seq, op=op, cg=cg, arg=arg)
        conn.call(OBJ, IFACE, method, sig, args)
        j.write(ev="ok", seq=j.seq)

    epoch, n, prev = 0, 0, None
    try:
        call("create", tag, "Create", "ss", ("pids", tag))
        while not stop:
            cg = f"{tag}/e{epoch}c{n}"
            try:
                call("create", cg, "Create", "ss", ("pids", cg))
                call("set", cg, "SetValue", "ssss", ("pids", cg, "pids.max", str(100 + n)), 100 + n)
                call("chown", cg, "Chown", "ssii", ("pids", cg, uid, gid), uid)
                call("move", cg, "MovePid", "ssi", ("pids", cg, sleeper.pid))
                if prev is not None:
                    call("remove", prev, "Remove", "ssi", ("pids", prev, 0))
                prev, n = cg, n + 1
            except DBusError as e:
                if e.name not in LOST:
                    raise
                j.write(ev="lost", seq=j.seq, error=f"{e.name}: {e.message}", t=time.time())
                conn.close()
                if after == 0 or rounds_left is not None:
                    return 0
                conn = reconnect(address, j)
                epoch, n, prev = epoch + 1, 0, None
                rounds_left = after if after > 0 else None
                continue
            if rounds_left is not None:
                rounds_left -= 1
                stop = rounds_left <= 0
            if select.select([sys.stdin], [], [], 0)[0]:
                stop = stop or sys.stdin.readline().strip() in ("stop", "")
    except DBusError as e:
        j.write(ev="error", seq=j.seq, error=f"{e.name}: {e.message}")
        return 3
    finally:
        conn.close()
        sleeper.kill()
        sleeper.wait()
    j.write(ev="done", rounds=n, epoch=epoch)
    return 0


def reconnect(address: str, j: Journal, timeout: float = 60.0) -> Connection:
    """Retry every 10 ms until the daemon is back (each attempt is a fresh connection; no
    request is ever resent)."""
    deadline = time.monotonic() + timeout
    attempts = 0
    while True:
        attempts += 1
        try:
            c = connect(address, timeout=10)
            c.call(OBJ, IFACE, "Ping", "i", (0,))
        except DBusError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)
            continue
        j.write(ev="reconnected", attempts=attempts, t=time.time())
        return c


# ------------------------------------------------------------------- checking the journals


def read_journal(path: str) -> list[dict]:
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.endswith("\n")]
    except FileNotFoundError:  # the client has not started yet
        return []


def allowed_states(events: list[dict]) -> tuple[dict[str, dict[str, set]], set[str], int]:
    """What the kernel may hold after these journal events: per cgroup the possible values of
    exists/pids.max/owner, and the possible cgroups of the sleeper.  An acknowledged request
    fixes a value; the request in flight when the connection was lost allows old or new.
    -> (states, sleeper cgroups, requests in flight)"""
    done = {e["seq"] for e in events if e["ev"] == "ok"}
    states: dict[str, dict[str, set]] = {}
    sleeper: set[str] = {""}
    inflight = 0
    for e in events:
        if e["ev"] != "send":
            continue
        cg, op, ok = e["cg"], e["op"], e["seq"] in done
        inflight += not ok
        st = states.setdefault(cg, {"exists": {False}, "max": {"max"}, "uid": {0}})
        new = {
            "create": ("exists", True),
            "remove": ("exists", False),
            "set": ("max", str(e["arg"])),
            "chown": ("uid", e["arg"]),
        }.get(op)
        if new is not None:
            key, value = new
            st[key] = {value} if ok else st[key] | {value}
        elif op == "move":
            sleeper = {cg} if ok else sleeper | {cg}
    return states, sleeper, inflight


def check_kernel(base: str, hpath: str, journals: list[str], sleepers: bool) -> int:
    """The kernel holds exactly what the work clients were told (see allowed_states): every
    cgroup acknowledged as created still exists with its acknowledged pids.max and owner (on
    the directory and its delegated files alike), every acknowledged removal is gone, there is
    no cgroup no client asked for, and (``sleepers``) each sleeper is where it was last moved.
    ``base``: the clients' cgroup in pids (host path), ``hpath``: the same as a hierarchy path.
    Raises AssertionError on a difference.  -> requests in flight"""
    total_inflight = 0
    for path in journals:
        events = read_journal(path)
        states, sleeper, inflight = allowed_states(events)
        total_inflight += inflight
        for cg, st in states.items():
            d = os.path.join(base, cg)
            exists = os.path.isdir(d)
            assert exists in st["exists"], (path, cg, st)
            if not exists or "/" not in cg:
                continue
            with open(f"{d}/pids.max") as f:
                assert f.read().strip() in st["max"], (path, cg, st)
            for name in ("", "tasks", "cgroup.procs"):
                assert os.stat(os.path.join(d, name)).st_uid in st["uid"], (path, cg, name, st)
        for tag in {cg for cg in states if "/" not in cg}:
            for child in os.listdir(os.path.join(base, tag)):
                full = os.path.join(base, tag, child)
                if os.path.isdir(full):
                    assert True in states.get(f"{tag}/{child}", {}).get("exists", set()), full
        if sleepers:
            pid = next(e["pid"] for e in events if e["ev"] == "sleeper")
            with open(f"/proc/{pid}/cgroup") as f:
                line = next(ln for ln in f if "pids" in ln.split(":")[1].split(","))
            where = os.path.relpath(line.strip().split(":", 2)[2], hpath)
            assert ("" if where == "." else where) in sleeper, (path, where, sleeper)
    return total_inflight


def main(argv: list[str]) -> int:
    mode, address, *rest = argv
    if mode == "hold":
        return hold(address, int(rest[0]))
    if mode == "idle":
        return idle(address, int(rest[0]))
    if mode == "measure":
        reply(measure(address, int(rest[0])))
        return 0
    if mode == "work":
        journal, tag, uid, gid, after = rest
        return work(address, journal, tag, int(uid), int(gid), int(after))
    raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
