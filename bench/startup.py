"""Connection start-up: connect + authenticate + first call, against the same call on a
persistent connection, in-process (interpreter start-up is bench/oneshot.py's and
bench/cli_startup.py's business).

Timing (daemon and client pinned to CPU 0, as in the core run; variants in interleaved
batches, A B … then reversed): per iteration wall time, the daemon's CPU (schedstat) and the
client's CPU, for

* the blocking client (``cgmanager.dbus.client``): ``connect()`` + ``close()``; ``connect()`` +
  Ping / GetValue + ``close()``; the same with a ``Hello`` first (what bus clients send: our
  client does not); Ping / GetValue on one persistent connection;
* the asyncio client (``cgmanager.dbus.aio_client``): connect + Ping + close, and persistent Ping
  (one event loop per batch, so loop creation is not counted);
* a one-round-trip prototype (here, not in src/): the same handshake bytes and the first call
  in **one** write (``AUTH EXTERNAL`` … ``BEGIN`` + the call), then read the handshake replies
  and the call's reply.  The D-Bus specification lets a client send messages right after
  ``BEGIN``, and the daemon's SASL code keeps the bytes after ``BEGIN`` (sd-bus does this).

Round trips: a relay in this process sits between a client and the daemon and records who
sent what; bytes one side sends within 5 ms are one burst (a client that waits for an answer
sends nothing meanwhile), and a round trip is a client burst answered by a daemon burst.
Counted up to the reply to the first call that is not ``Hello``, for our two clients, the
prototype and ``dbus-send`` (libdbus, the library cgmanager 0.42's clients used).
"""

from __future__ import annotations

import _socket
import argparse
import asyncio
import os
import select
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

from cgmanager.dbus import aio_client
from cgmanager.dbus.client import (
    Connection,
    HandshakeReader,
    connect,
    handshake_request,
    method_call,
)
from cgmanager.dbus.codec import (
    ERROR,
    METHOD_CALL,
    METHOD_RETURN,
    message_size,
    parse_message,
    serialise_message,
)

from .harness import IFACE, OBJ, BenchError, Daemon, Harness, cpu_ns, expect
from .stats import median, percentile

REL = "startup"
#: a burst: what one side sends with no gap longer than this (s)
BURST_GAP = 0.005
#: what bus clients (sd-bus, libdbus in bus mode) send first; the daemon answers it
HELLO = ("/org/freedesktop/DBus", "org.freedesktop.DBus", "Hello")
#: 0.42 per its author and the spec (§16): "4 round trips per connection"
C_ROUND_TRIPS = 4


# ------------------------------------------------------------------------------------------
# the one-round-trip prototype


def pipelined_call(path: str, member: str, sig: str, body: tuple, timeout: float = 10.0) -> tuple:
    """Connect, and send the whole handshake and the call in one write; return the reply body."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
        data, _ = serialise_message(method_call(OBJ, IFACE, member, sig, body, None, False), 1)
        sock.sendall(handshake_request("EXTERNAL", True) + data)
        reader = HandshakeReader("EXTERNAL", True)
        done = None
        while done is None:
            chunk = sock.recv(4096)
            if not chunk:
                raise BenchError("pipelined client: closed during the handshake")
            done = reader.feed(chunk)
        buf = bytearray(done[1])
        while True:
            if len(buf) >= 16 and len(buf) >= message_size(buf):
                size = message_size(buf)
                msg = parse_message(bytes(buf[:size]))
                del buf[:size]
                if msg.reply_serial == 1:
                    if msg.type != METHOD_RETURN:
                        raise BenchError(f"pipelined client: {msg.error_name} {msg.body!r}")
                    return msg.body
                continue
            chunk = sock.recv(65536)
            if not chunk:
                raise BenchError("pipelined client: closed before the reply")
            buf += chunk
    finally:
        sock.close()


# ------------------------------------------------------------------------------------------
# round trips


class Relay:
    """A listening socket that forwards one client connection to the daemon, recording bursts
    as ``("C"|"S", bytes)``."""

    def __init__(self, upstream: str, path: str) -> None:
        self.upstream = upstream
        self.path = path
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(1)
        self.listener.settimeout(20)

    @property
    def address(self) -> str:
        return f"unix:path={self.path}"

    def session(self, client: Callable[[str], object]) -> list[tuple[str, bytes]]:
        events: list[tuple[str, bytes]] = []
        failure: list[BaseException] = []

        def serve() -> None:
            try:
                self._serve(events)
            except BaseException as e:  # reported by the caller
                failure.append(e)

        t = threading.Thread(target=serve, daemon=True)
        t.start()
        client(self.address)
        t.join(30)
        if t.is_alive() or failure:
            raise BenchError(f"relay: {failure[0] if failure else 'session did not end'}")
        return events

    def _serve(self, events: list[tuple[str, bytes]]) -> None:
        c, _ = self.listener.accept()
        u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        u.connect(self.upstream)
        peer = {c: u, u: c}
        label = {c: "C", u: "S"}
        live = [c, u]
        try:
            while live:
                ready, _, _ = select.select(live, [], [], 20)
                if not ready:
                    raise BenchError("relay: idle for 20 s")
                src = ready[0]
                data, eof = self._burst(src)
                if data:
                    peer[src].sendall(data)
                    events.append((label[src], data))
                if eof:
                    live.remove(src)
                    try:
                        peer[src].shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
        finally:
            c.close()
            u.close()

    @staticmethod
    def _burst(src: socket.socket) -> tuple[bytes, bool]:
        data = b""
        while True:
            try:
                more = src.recv(65536)
            except ConnectionResetError:
                return data, True
            if not more:
                return data, True
            data += more
            if not select.select([src], [], [], BURST_GAP)[0]:
                return data, False

    def close(self) -> None:
        self.listener.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def describe(events: list[tuple[str, bytes]]) -> tuple[int, list[str]]:
    """(round trips up to the reply to the first non-Hello call, the bursts in words)."""
    words: list[str] = []
    client_sasl = True  # the client speaks SASL lines until BEGIN
    owed = 0  # SASL replies the daemon owes (one per client command but BEGIN)
    buf = {"C": b"", "S": b""}
    target: int | None = None
    trips = 0
    last = ""
    answered = None
    for side, data in events:
        if side == "S" and last == "C":
            trips += 1
        last = side
        parts = []
        b = buf[side] + data
        while b:
            if client_sasl if side == "C" else owed > 0:
                b = b.lstrip(b"\0") if side == "C" else b
                end = b.find(b"\r\n")
                if end < 0:
                    break
                line = b[:end].decode("ascii", "replace")
                b = b[end + 2 :]
                toks = line.split(" ")
                parts.append(" ".join(toks[:2]) if toks[0] == "AUTH" else toks[0])
                if side == "S":
                    owed -= 1
                elif line == "BEGIN":
                    client_sasl = False
                else:
                    owed += 1
                continue
            if len(b) < 16 or len(b) < message_size(b):
                break
            size = message_size(b)
            msg = parse_message(b[:size])
            b = b[size:]
            if msg.type == METHOD_CALL:
                parts.append(f"call {msg.member}")
                if target is None and msg.member != "Hello":
                    target = msg.serial
            elif msg.type in (METHOD_RETURN, ERROR):
                parts.append("reply" if msg.type == METHOD_RETURN else f"error {msg.error_name}")
                if target is not None and msg.reply_serial == target and answered is None:
                    answered = trips
            else:
                parts.append(f"message type {msg.type}")
        buf[side] = b
        words.append(f"{'client' if side == 'C' else 'daemon'}: {', '.join(parts) or '…'}")
    if answered is None:
        raise BenchError(f"relay: the first call was never answered: {words}")
    return answered, words


def count_round_trips(h: Harness, daemon: Daemon, gv: str) -> dict[str, dict[str, Any]]:
    relay = Relay(daemon.socket, os.path.join(h.tmp, "relay.sock"))
    sock_of = relay.path

    def blocking(addr: str, pipeline: bool = False) -> None:
        with connect(addr, timeout=10, pipeline=pipeline) as c:
            expect(c.call(OBJ, IFACE, "Ping", "i", (0,)) == (), "Ping via relay")

    def with_hello(addr: str) -> None:
        with connect(addr, timeout=10) as c:
            c.call(*HELLO)
            expect(c.call(OBJ, IFACE, "Ping", "i", (0,)) == (), "Ping after Hello via relay")

    def aio(addr: str) -> None:
        async def go() -> None:
            c = await aio_client.connect(addr, timeout=10)
            try:
                expect(await c.call(OBJ, IFACE, "Ping", "i", (0,)) == (), "aio Ping via relay")
            finally:
                c.close()

        asyncio.run(go())

    def prototype(addr: str) -> None:
        expect(pipelined_call(sock_of, "Ping", "i", (0,)) == (), "pipelined Ping via relay")

    def dbus_send(addr: str) -> None:
        r = subprocess.run(
            [
                "dbus-send",
                f"--address={addr}",
                "--print-reply",
                "--type=method_call",
                OBJ,
                f"{IFACE}.Ping",
                "int32:0",
            ],
            capture_output=True,
            text=True,
            timeout=20,
        )
        if r.returncode != 0:
            raise BenchError(f"dbus-send via relay exited {r.returncode}: {r.stderr}")

    clients = {
        "blocking client (cgmanager.dbus.client)": blocking,
        "blocking client, pipeline=True (as cgm)": lambda addr: blocking(addr, True),
        "blocking client sending Hello first (as bus clients do)": with_hello,
        "asyncio client (cgmanager.dbus.aio_client)": aio,
        "one-write prototype (bench/startup.py)": prototype,
        "dbus-send (libdbus)": dbus_send,
    }
    out: dict[str, dict[str, Any]] = {}
    try:
        for name, fn in clients.items():
            if name.startswith("dbus-send") and not _have("dbus-send"):
                out[name] = {"round_trips": None, "bursts": ["dbus-send not installed"]}
                continue
            trips, words = describe(relay.session(fn))
            out[name] = {"round_trips": trips, "bursts": words}
    finally:
        relay.close()
    return out


def _have(prog: str) -> bool:
    return any(
        os.access(os.path.join(d, prog), os.X_OK)
        for d in os.environ.get("PATH", "").split(os.pathsep)
    )


# ------------------------------------------------------------------------------------------
# timing


def variants(daemon: Daemon, gv: str) -> tuple[dict[str, Callable[[int], list[int]]], Connection]:
    """(name -> a batch runner ``run(n) -> list of per-iteration ns``, the persistent
    connection the runners share)."""
    address, path = daemon.address, daemon.socket
    ping = (OBJ, IFACE, "Ping", "i", (0,))
    getv = (OBJ, IFACE, "GetValue", "sss", ("pids", gv, "pids.max"))
    persistent = connect(address, timeout=10)

    def loop(op: Callable[[], object]) -> Callable[[int], list[int]]:
        def run(n: int) -> list[int]:
            clock = time.perf_counter_ns
            out = []
            for _ in range(n):
                t0 = clock()
                op()
                out.append(clock() - t0)
            return out

        return run

    def fresh(
        args: tuple | None, hello: bool = False, pipeline: bool = False
    ) -> Callable[[], object]:
        def op() -> object:
            with connect(address, timeout=10, pipeline=pipeline) as c:
                if hello:
                    c.call(*HELLO)
                return c.call(*args) if args else None

        return op

    def aio_batch(persistent_conn: bool) -> Callable[[int], list[int]]:
        def run(n: int) -> list[int]:
            async def go() -> list[int]:
                clock = time.perf_counter_ns
                out = []
                pc = await aio_client.connect(address, timeout=10) if persistent_conn else None
                try:
                    for _ in range(n):
                        t0 = clock()
                        if pc is not None:
                            await pc.call(*ping)
                        else:
                            c = await aio_client.connect(address, timeout=10)
                            await c.call(*ping)
                            c.close()
                        out.append(clock() - t0)
                finally:
                    if pc is not None:
                        pc.close()
                return out

            return asyncio.run(go())

        return run

    return {
        "connect + close (no call)": loop(fresh(None)),
        "connect + Ping + close": loop(fresh(ping)),
        "connect + Ping + close, pipelined (cgm)": loop(fresh(ping, pipeline=True)),
        "connect + Hello + Ping + close": loop(fresh(ping, hello=True)),
        "persistent Ping": loop(lambda: persistent.call(*ping)),
        "connect + GetValue + close": loop(fresh(getv)),
        "connect + GetValue + close, pipelined (cgm)": loop(fresh(getv, pipeline=True)),
        "persistent GetValue": loop(lambda: persistent.call(*getv)),
        "one-write prototype: connect + Ping": loop(lambda: pipelined_call(path, *ping[2:])),
        "one-write prototype: connect + GetValue": loop(lambda: pipelined_call(path, *getv[2:])),
        "aio: connect + Ping + close": aio_batch(False),
        "aio: persistent Ping": aio_batch(True),
    }, persistent


def run(h: Harness, a: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    h.mkdir(REL, ("pids",))
    gv = h.hpath(REL)
    daemon = h.start_daemon(label="startup")
    h.enter()
    expect(
        pipelined_call(daemon.socket, "GetValue", "sss", ("pids", gv, "pids.max")) == ("max",),
        "one-write prototype GetValue",
    )
    trips = count_round_trips(h, daemon, gv)
    vs, persistent = variants(daemon, gv)
    for fn in vs.values():  # warm-up
        fn(min(20, a.startup_calls))
    lat: dict[str, list[int]] = {k: [] for k in vs}
    dcpu: dict[str, list[float]] = {k: [] for k in vs}
    ccpu: dict[str, list[float]] = {k: [] for k in vs}
    med: dict[str, list[float]] = {k: [] for k in vs}
    n = a.startup_calls
    for r in range(a.startup_rounds):
        order = list(vs) if r % 2 == 0 else list(vs)[::-1]
        for name in order:
            d0, c0 = cpu_ns(daemon.pid), cpu_ns("self")
            got = vs[name](n)
            c1, d1 = cpu_ns("self"), cpu_ns(daemon.pid)
            lat[name] += got
            med[name].append(median(got) / 1000)
            dcpu[name].append((d1 - d0) / n / 1000)
            ccpu[name].append((c1 - c0) / n / 1000)
        log(f"startup: round {r + 1}/{a.startup_rounds} done")
    persistent.close()
    daemon.check_alive()
    h.stop_daemon(daemon)
    results = {}
    for name in vs:
        s = sorted(lat[name])
        results[name] = {
            "median_us": median(s) / 1000,
            "p90_us": percentile(s, 90) / 1000,
            "p99_us": percentile(s, 99) / 1000,
            "round_medians_us": med[name],
            "daemon_cpu_us": median(dcpu[name]),
            "client_cpu_us": median(ccpu[name]),
            "n": len(s),
        }
    return {
        "calls_per_batch": n,
        "rounds": a.startup_rounds,
        "results": results,
        "round_trips": trips,
        "c_round_trips": C_ROUND_TRIPS,
    }


def print_summary(doc: dict[str, Any]) -> None:
    res = doc["results"]
    print(
        f"Connection start-up: daemon and client on CPU 0, {doc['rounds']} rounds × "
        f"{doc['calls_per_batch']} per variant; µs"
    )
    head = ("variant", "median", "p90", "p99", "daemon CPU", "client CPU", "− persistent")
    base = {
        "Ping": res["persistent Ping"]["median_us"],
        "GetValue": res["persistent GetValue"]["median_us"],
    }
    rows = [head]
    for name, r in res.items():
        extra = "–"
        for op, b in base.items():
            if op in name and "persistent" not in name:
                extra = f"+{r['median_us'] - b:.0f}"
        rows.append(
            (
                name,
                f"{r['median_us']:.1f}",
                f"{r['p90_us']:.1f}",
                f"{r['p99_us']:.1f}",
                f"{r['daemon_cpu_us']:.1f}",
                f"{r['client_cpu_us']:.1f}",
                extra,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    print("\n".join(lines))
    print(f"  round trips before the first call's reply (cgmanager 0.42: {doc['c_round_trips']}):")
    for name, t in doc["round_trips"].items():
        print(f"    {name}: {t['round_trips']}  [{' | '.join(t['bursts'])}]")
