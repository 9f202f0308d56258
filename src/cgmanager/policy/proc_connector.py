"""The kernel's process events (the proc connector over ``NETLINK_CONNECTOR``).

Only the kernel is believed: a netlink message carries its sender's port id, which is 0 for
the kernel and the sending socket's for anyone else — and any local user may *unicast* to our
port.  libcgroup's cgrulesengd believed every message (CVE-2011-1022: a user forged events and
had processes reclassified); :func:`parse` is given the sender address and drops every
message whose port id is not 0.

Kernels since 6.6 filter events for us (``struct proc_input``: only exec, uid and gid events
reach the daemon, not every fork and exit of the host); older ones get the 0.42-era request
and their fork/exit events are dropped on arrival.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from dataclasses import dataclass

NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
NLMSG_DONE = 3
PROC_CN_MCAST_LISTEN = 1

PROC_EVENT_NONE = 0x0
PROC_EVENT_FORK = 0x1
PROC_EVENT_EXEC = 0x2
PROC_EVENT_UID = 0x4
PROC_EVENT_GID = 0x40
WANTED = PROC_EVENT_EXEC | PROC_EVENT_UID | PROC_EVENT_GID

NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
CN_MSG = struct.Struct("=IIIIHH")  # idx, val, seq, ack, len, flags
PROC_EVENT = struct.Struct("=IIQ")  # what, cpu, timestamp_ns
EXEC_DATA = struct.Struct("=ii")  # process_pid, process_tgid
ID_DATA = struct.Struct("=iiII")  # process_pid, process_tgid, ruid/rgid, euid/egid
ACK_DATA = struct.Struct("=I")  # err
RCVBUF = 4 << 20
SO_RCVBUFFORCE = 33  # (Python has no constant)


@dataclass(frozen=True, slots=True)
class Event:
    what: int  # PROC_EVENT_EXEC, _UID or _GID
    tgid: int
    timestamp_ns: int  # CLOCK_MONOTONIC, when the kernel sent it
    euid: int | None = None  # uid events (egid for gid events)


def listen_request(filtered: bool, seq: int = 1) -> bytes:
    """``PROC_CN_MCAST_LISTEN``, with the event filter (kernels >= 6.6) or without."""
    payload = (
        struct.pack("=II", PROC_CN_MCAST_LISTEN, WANTED)
        if filtered
        else struct.pack("=I", PROC_CN_MCAST_LISTEN)
    )
    cn = CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, seq, 0, len(payload), 0) + payload
    return NLMSGHDR.pack(NLMSGHDR.size + len(cn), NLMSG_DONE, 0, seq, 0) + cn


def parse(data: bytes, sender_port: int) -> tuple[list[Event], int, bool]:
    """The events in one datagram: (events, messages refused as not from the kernel, whether
    a listen acknowledgement came)."""
    if sender_port != 0:
        return [], 1, False
    events: list[Event] = []
    acked = False
    off = 0
    while off + NLMSGHDR.size <= len(data):
        length, _type, _flags, _seq, port = NLMSGHDR.unpack_from(data, off)
        if length < NLMSGHDR.size or off + length > len(data):
            break
        if port != 0:  # the header's own port id: the kernel writes 0
            return [], 1, False
        body = off + NLMSGHDR.size
        if body + CN_MSG.size + PROC_EVENT.size <= off + length:
            idx, val, _s, _a, _len, _f = CN_MSG.unpack_from(data, body)
            if (idx, val) == (CN_IDX_PROC, CN_VAL_PROC):
                ev = body + CN_MSG.size
                what, _cpu, ts = PROC_EVENT.unpack_from(data, ev)
                d = ev + PROC_EVENT.size
                if what == PROC_EVENT_NONE:
                    acked = True
                elif what == PROC_EVENT_EXEC and d + EXEC_DATA.size <= off + length:
                    _pid, tgid = EXEC_DATA.unpack_from(data, d)
                    events.append(Event(what, tgid, ts))
                elif what in (PROC_EVENT_UID, PROC_EVENT_GID) and d + ID_DATA.size <= off + length:
                    _pid, tgid, _r, e = ID_DATA.unpack_from(data, d)
                    events.append(Event(what, tgid, ts, e))
        off += (length + 3) & ~3
    return events, 0, acked


def kernel_filters(release: str) -> bool:
    """Whether a kernel release (``uname -r``) filters proc connector events (>= 6.6)."""
    try:
        major, minor = (int(x) for x in release.split("-")[0].split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (6, 6)


class ProcConnector:
    """A subscribed ``NETLINK_CONNECTOR`` socket (needs CAP_NET_ADMIN)."""

    def __init__(self) -> None:
        self.sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, NETLINK_CONNECTOR
        )
        try:
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
            except OSError:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            self.sock.bind((0, CN_IDX_PROC))
            self.filtered = self._subscribe()
            self.sock.setblocking(False)
        except BaseException:
            self.sock.close()
            raise

    def _subscribe(self) -> bool:
        """Ask for exec/uid/gid events only where the kernel can filter (6.6 and later: it
        sends no acknowledgement for a filtered request, and an older kernel silently ignores
        the longer request, so the release decides), else for everything."""
        filtered = kernel_filters(os.uname().release)
        self.sock.send(listen_request(filtered))
        return filtered

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self, budget: int = 256) -> tuple[list[Event], int, int]:
        """Up to *budget* datagrams: (events, refused messages, datagrams the kernel dropped
        because we were too slow — ENOBUFS)."""
        events: list[Event] = []
        refused = overruns = 0
        for _ in range(budget):
            try:
                data, addr = self.sock.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    overruns += 1
                    continue
                raise
            got, bad, _ = parse(data, addr[0])
            events += got
            refused += bad
        return events, refused, overruns

    def close(self) -> None:
        self.sock.close()
