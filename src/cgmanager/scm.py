"""The ``*Scm`` fd protocol of cgmanager 0.42 (spec §6): what both ends share.

D-Bus cannot carry ancillary credentials, so a caller in another pid or user namespace passes
one end of a ``SOCK_DGRAM`` socketpair as the ``sockfd`` argument and the two ends run a small
protocol over it in which the **kernel** validates and translates every pid, uid and gid:

1. the server sets ``SO_PASSCRED`` on its end and sends the kick byte ``b"1"``;
2. the client sends one byte with an ``SCM_CREDENTIALS`` message: the *requestor*;
3. for methods that name a victim (pid methods) or target ids (Chown) the server kicks again
   and the client sends the second credential;
4. the server runs the operation and writes the result (encodings below), then closes.

An unprivileged sender can only state its own pid and ids; root of a container can state any
pid of its pid namespace and any id mapped into its user namespace; the receiver sees them
translated (pid 0 when not visible, 65534 when unmapped — "unknown", never an identity).

This module is pure (``struct`` only): constants, encoders and decoders; which methods have
twins, and their arguments, second credential and result encoding, come from
:mod:`cgmanager.contract`.
"""

from __future__ import annotations

import struct

from . import contract

#: struct ucred {pid_t pid; uid_t uid; gid_t gid;}
UCRED = struct.Struct("iII")
KICK = b"1"
CRED_BYTE = b"p"
_I32 = struct.Struct("i")
_U32 = struct.Struct("I")

#: Status bytes of CreateScm/RemoveScm and of the one-status methods.
FAILED, OK, EXISTED = b"0", b"1", b"2"


class Result:
    """How a twin encodes its result (the contract's ``RESULT_*``)."""

    STATUS = contract.RESULT_STATUS  # one byte
    STRING = contract.RESULT_STRING  # the string with its NUL; an empty datagram on failure
    PIDS = contract.RESULT_PIDS  # int32 count (-1: failure), then one credential per pid
    NAMES = contract.RESULT_NAMES  # int32 n (-1/0), uint32 length, NUL-terminated names
    KEYS = contract.RESULT_KEYS  # int32 n (-1/0), uint32 length, "name\nuid\ngid\nmode\n" each


class Second:
    """What the second credential carries (the contract's ``SECOND_*``)."""

    NONE = contract.SECOND_NONE
    PID = contract.SECOND_PID  # a victim: its pid counts, uid/gid are ignored
    IDS = contract.SECOND_IDS  # Chown's target: its uid/gid count, the pid is ignored


#: the twins, derived from the contract (never written out twice)
ScmMethod = contract.ScmTwin
SCM_METHODS: tuple[ScmMethod, ...] = contract.SCM_TWINS
BY_NAME = contract.SCM_BY_NAME
BY_PLAIN = {m.plain.name: m for m in SCM_METHODS}

#: (interface, property) a daemon (or proxy) sets to true when it accepts, with a credential,
#: the sender's pidfd of the process the credential names (SCM_RIGHTS, one fd; see
#: scm_server): a proxy re-stating its client's credential then pins it end to end.  0.42
#: has no such property, and is never sent an fd.
PIDFD_PROPERTY = (contract.INTERFACE1, "scm_pidfd")


# -- encoders (server side) ------------------------------------------------------------------


def encode_status(method: ScmMethod, reply: tuple[object, ...] | None) -> bytes:
    """Create/Remove: ``2`` when the cgroup existed (existed == 1), ``1`` otherwise; the other
    status methods ``1``; every failure ``0``."""
    if reply is None:
        return FAILED
    if method.plain.name in ("Create", "Remove"):
        return EXISTED if reply and reply[0] == 1 else OK
    return OK


def encode_string(value: str | None) -> bytes:
    return b"" if value is None else value.encode("utf-8", "surrogateescape") + b"\0"


def encode_count(n: int) -> bytes:
    return _I32.pack(n)


def encode_names(names: list[str] | None) -> list[bytes]:
    if names is None:
        return [_I32.pack(-1)]
    if not names:
        return [_I32.pack(0)]
    blob = b"".join(n.encode("utf-8", "surrogateescape") + b"\0" for n in names)
    return [_I32.pack(len(names)), _U32.pack(len(blob)), blob]


def _signed(v: int) -> int:
    """0.42 printed ids as signed ints: an unmapped 4294967295 appears as -1."""
    return v - (1 << 32) if v >= 1 << 31 else v


def encode_keys(keys: list[tuple[str, int, int, int]] | None) -> list[bytes]:
    if keys is None:
        return [_I32.pack(-1)]
    if not keys:
        return [_I32.pack(0)]
    text = "".join(f"{n}\n{_signed(u)}\n{_signed(g)}\n{m}\n" for n, u, g, m in keys)
    blob = text.encode("utf-8", "surrogateescape")
    return [_I32.pack(len(keys)), _U32.pack(len(blob)), blob]


# -- decoders (client side) ------------------------------------------------------------------


def decode_status(data: bytes) -> bytes:
    """The status byte; anything but one byte is a protocol failure (returned as FAILED)."""
    return data if len(data) == 1 and data in (FAILED, OK, EXISTED) else FAILED


def decode_string(data: bytes) -> str | None:
    """None on failure (empty datagram or no terminating NUL)."""
    if not data or not data.endswith(b"\0"):
        return None
    return data[:-1].decode("utf-8", "surrogateescape")


def decode_count(data: bytes) -> int:
    if len(data) != 4:
        raise ValueError("malformed count")
    n: int = _I32.unpack(data)[0]
    return n


def decode_length(data: bytes) -> int:
    if len(data) != 4:
        raise ValueError("malformed length")
    n: int = _U32.unpack(data)[0]
    return n


def decode_names(blob: bytes, n: int) -> list[str]:
    parts = blob.split(b"\0")
    if len(parts) != n + 1 or parts[-1] != b"":
        raise ValueError("malformed name list")
    return [p.decode("utf-8", "surrogateescape") for p in parts[:-1]]


def decode_keys(blob: bytes, n: int) -> list[tuple[str, int, int, int]]:
    lines = blob.decode("utf-8", "surrogateescape").split("\n")
    if len(lines) != 4 * n + 1 or lines[-1] != "":
        raise ValueError("malformed key list")
    out = []
    for i in range(n):
        name, uid, gid, mode = lines[4 * i : 4 * i + 4]
        out.append((name, int(uid) & 0xFFFFFFFF, int(gid) & 0xFFFFFFFF, int(mode)))
    return out
