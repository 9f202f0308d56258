"""A Python client process for the client matrix: the project's blocking client or jeepney,
speaking the line protocol of ``libdbus_client.c`` on stdin/stdout (one command, one answer).

    python -m bench.clients.py_client ours|jeepney ADDRESS

Neither sends ``Hello`` (the original daemon does not answer it).  Only the client library
and this loop run in the process; its latencies are measured here, the daemon's CPU by the
driver around each command.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

OBJ = "/org/linuxcontainers/cgmanager"
IFACE = "org.linuxcontainers.cgmanager0_0"

Call = tuple[str, str, tuple[object, ...]]


def ours(address: str) -> Callable[[Call], object]:
    from cgmanager.dbus.client import connect

    conn = connect(address, timeout=10)

    def call(c: Call) -> object:
        return conn.call(OBJ, IFACE, c[0], c[1], c[2])

    return call


def jeepney(address: str) -> Callable[[Call], object]:
    """jeepney's blocking connection without its ``Hello`` (sent by its constructor), and
    calls without a destination header: the bytes our client sends."""
    from jeepney.bus import get_bus
    from jeepney.io.blocking import DBusConnection, DBusConnectionBase, prep_socket
    from jeepney.io.common import MessageFilters
    from jeepney.low_level import HeaderFields, Message, MessageType
    from jeepney.wrappers import new_header, unwrap_msg

    class NoHello(DBusConnection):
        def __init__(self, sock: object) -> None:
            DBusConnectionBase.__init__(self, sock)
            self._filters = MessageFilters()

    conn = NoHello(prep_socket(get_bus(address), enable_fds=False, timeout=10))

    def call(c: Call) -> object:
        header = new_header(MessageType.method_call)
        header.fields[HeaderFields.path] = OBJ
        header.fields[HeaderFields.interface] = IFACE
        header.fields[HeaderFields.member] = c[0]
        if c[1]:
            header.fields[HeaderFields.signature] = c[1]
        return unwrap_msg(conn.send_and_get_reply(Message(header, c[2])))

    return call


def parse_call(text: str) -> Call:
    method, sig, *args = text.split()
    sig = "" if sig == "-" else sig
    values = tuple(int(a) if t == "i" else ("" if a == "''" else a) for t, a in zip(sig, args))
    if len(values) != len(sig):
        raise ValueError(f"bad call {text!r}")
    return method, sig, values


def main() -> int:
    kind, address = sys.argv[1], sys.argv[2]
    call = {"ours": ours, "jeepney": jeepney}[kind](address)
    clock, sleep = time.perf_counter_ns, time.sleep
    for line in sys.stdin:
        head, *alts = line.rstrip("\n").split("|")
        n_text, think_text = head.split()
        n, think = int(n_text), int(think_text) / 1e6
        plans = [[parse_call(c) for c in alt.split(";")] for alt in alts]
        out = [0] * n
        try:
            for i in range(n):
                plan = plans[i % len(plans)]
                t0 = clock()
                for c in plan:
                    call(c)
                out[i] = clock() - t0
                if think:
                    sleep(think)
        except Exception as e:  # a D-Bus error: the driver fails the run
            print(f"err {type(e).__name__} {e}".replace("\n", " "), flush=True)
            continue
        print("ok " + " ".join(map(str, out)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
