"""What the blocking and the asyncio D-Bus clients share: addresses, the SASL handshake as the
client speaks it, and how calls and error replies look.  Import-free beyond this package, like
the blocking client (the CLI loads it at every start)."""

from __future__ import annotations

from . import errors
from ._unix import close_fds
from .errors import DBusError
from .message import METHOD_CALL, NO_REPLY_EXPECTED, Message

TYPE_CHECKING = False  # (typing is not imported at run time: start-up cost)
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

#: Default seconds to wait for a reply (libdbus uses 25 s too).
DEFAULT_TIMEOUT = 25.0
_MAX_HANDSHAKE = 4096
_EXTERNAL = b"\0AUTH EXTERNAL\r\nDATA\r\n"
_ANONYMOUS = b"\0AUTH ANONYMOUS 63676d\r\n"  # trace "cgm"
_NEGOTIATE = b"NEGOTIATE_UNIX_FD\r\n"
_BEGIN = b"BEGIN\r\n"
PROPERTIES = "org.freedesktop.DBus.Properties"


def parse_address(address: str) -> list[str]:
    """Socket paths to try for a D-Bus address.

    Accepts a plain path, ``unix:path=…``, ``unix:abstract=…`` (returned with a leading NUL) and
    ``;``-separated lists; other transports are ignored.  Raises ValueError if nothing usable.
    """
    if address.startswith("/") or address.startswith("."):
        return [address]
    paths = []
    for entry in address.split(";"):
        transport, _, params = entry.partition(":")
        if transport != "unix":
            continue
        for kv in params.split(","):
            key, _, value = kv.partition("=")
            value = _unescape(value)
            if key == "path":
                paths.append(value)
            elif key == "abstract":
                paths.append("\0" + value)
    if not paths:
        raise ValueError(f"no usable unix address in {address!r}")
    return paths


def _unescape(value: str) -> str:
    if "%" not in value:
        return value
    out = bytearray()
    raw = value.encode("utf-8")
    i = 0
    while i < len(raw):
        if raw[i] == 0x25 and i + 2 < len(raw):  # "%"
            out.append(int(raw[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(raw[i])
            i += 1
    return out.decode("utf-8")


# --------------------------------------------------------------------------------------------
# Handshake helpers (pure; shared with the asyncio client)


def handshake_request(mechanism: str, unix_fd: bool) -> bytes:
    """The whole pipelined client side of the handshake for ``EXTERNAL`` or ``ANONYMOUS``."""
    head = _EXTERNAL if mechanism == "EXTERNAL" else _ANONYMOUS
    return head + (_NEGOTIATE if unix_fd else b"") + _BEGIN


class HandshakeReader:
    """Interprets the server's handshake replies to :func:`handshake_request`.

    ``feed(data)`` returns ``None`` while more is needed, then ``(unix_fd, leftover)``; raises
    :class:`DBusError` (``AuthFailed``) on rejection (``rejected`` tells whether a fallback to
    another mechanism makes sense).
    """

    def __init__(self, mechanism: str, unix_fd: bool) -> None:
        # replies expected: [DATA,] OK, [AGREE_UNIX_FD | ERROR]
        self._expect = (["DATA"] if mechanism == "EXTERNAL" else []) + ["OK"]
        if unix_fd:
            self._expect.append("FD")
        self._buf = b""
        self.unix_fd = False
        self.rejected = False

    def feed(self, data: bytes) -> tuple[bool, bytes] | None:
        self._buf += data
        while self._expect:
            end = self._buf.find(b"\r\n")
            if end < 0:
                if len(self._buf) > _MAX_HANDSHAKE:
                    raise DBusError(errors.AUTH_FAILED, "handshake reply too long")
                return None
            line = self._buf[:end]
            self._buf = self._buf[end + 2 :]
            word = line.split(b" ", 1)[0]
            want = self._expect.pop(0)
            if want == "FD":
                self.unix_fd = word == b"AGREE_UNIX_FD"
                if word not in (b"AGREE_UNIX_FD", b"ERROR"):
                    raise DBusError(errors.AUTH_FAILED, f"unexpected {line[:80]!r}")
            elif word != want.encode():
                self.rejected = word == b"REJECTED"
                raise DBusError(
                    errors.AUTH_FAILED, f"server answered {line[:80].decode('ascii', 'replace')!r}"
                )
        return self.unix_fd, self._buf


def error_from_reply(msg: Message) -> DBusError:
    """The exception for an ERROR message (closes fds it carried)."""
    close_fds(msg.fds)
    text = msg.body[0] if msg.body and type(msg.body[0]) is str else ""
    return DBusError(msg.error_name or errors.FAILED, text)


def method_call(
    path: str,
    interface: str | None,
    member: str,
    signature: str,
    body: Iterable[Any],
    destination: str | None,
    no_reply: bool,
) -> Message:
    return Message(
        METHOD_CALL,
        flags=NO_REPLY_EXPECTED if no_reply else 0,
        path=path,
        interface=interface,
        member=member,
        signature=signature,
        body=tuple(body),
        destination=destination,
    )


# --------------------------------------------------------------------------------------------
