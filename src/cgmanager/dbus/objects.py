"""What the daemon registers: interfaces, methods, properties — and what a handler receives.

An object registry is a plain mapping ``{object_path: [Interface, …]}`` given to
:class:`cgmanager.dbus.server.Server`.  Definitions are validated when the server is built, so a
typo in a signature fails at start-up, not on the first call.

Handlers
    ``handler(call: MethodCall) -> tuple | None`` — a plain function or a coroutine function (or
    anything returning an awaitable).  Return the out-args as a tuple (``None`` or ``()`` when
    there are none), or a :class:`~.marshal.Marshalled` body of the method's out signature (a
    large reply marshalled on a worker thread).  Raise :class:`DBusError` for a specific error reply; any other exception is
    logged and answered with ``org.freedesktop.DBus.Error.Failed`` — the daemon keeps running.
    A coroutine handler delays only its own connection's next message.

File descriptors
    Received fds are ints, both in ``call.body`` (at the ``h`` positions) and in ``call.fds``.
    They stay open for the duration of the handler and are **closed by the server when the handler
    returns** (or raises, or is cancelled).  To keep one — or to close it yourself — first call
    ``call.take_fd(fd)``; never ``os.close`` an fd you did not take, or the server's close could hit
    a recycled descriptor number.  Fds you *return* (``h`` out-args) are owned by the server from
    then on: it closes them after sending (or when the connection dies); pass ``os.dup(fd)`` to
    keep your copy.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import DBusError
from .marshal import Marshalled
from .message import NO_REPLY_EXPECTED

__all__ = [
    "DBusError",
    "Interface",
    "Method",
    "MethodCall",
    "PeerCredentials",
    "Property",
]

Reply = tuple[Any, ...] | Marshalled | None
Handler = Callable[["MethodCall"], "Reply | Awaitable[Reply]"]
Getter = Callable[["MethodCall"], Any]
Setter = Callable[["MethodCall", Any], Any]


@dataclass(frozen=True, slots=True)
class PeerCredentials:
    """``SO_PEERCRED`` of the connection, as the kernel translated it into the daemon's
    namespaces at ``connect()`` time.  ``pid`` is 0 when the peer's pid is not visible and
    ``uid``/``gid`` 65534 when unmapped — treat those as "unknown", never as an identity."""

    pid: int
    uid: int
    gid: int


@dataclass(frozen=True, slots=True)
class Method:
    """A method: member ``name``, ``in_args``/``out_args`` as ``[(arg_name, signature), …]``."""

    name: str
    handler: Handler
    in_args: Sequence[tuple[str, str]] = ()
    out_args: Sequence[tuple[str, str]] = ()


@dataclass(frozen=True, slots=True)
class Property:
    """A property.  ``getter(call)`` returns the value; ``setter(call, value)`` makes it writable
    (read-only when ``None``: ``Set`` answers ``PropertyReadOnly``).  Either may be a coroutine."""

    name: str
    signature: str
    getter: Getter
    setter: Setter | None = None


@dataclass(frozen=True, slots=True)
class Interface:
    """An interface: its D-Bus ``name``, methods and properties, and the signals it may emit
    (``(name, [(arg_name, signature), …])``: declared for introspection; sending them is the
    server owner's business)."""

    name: str
    methods: Sequence[Method] = ()
    properties: Sequence[Property] = field(default_factory=tuple)
    signals: Sequence[tuple[str, Sequence[tuple[str, str]]]] = ()


class MethodCall:
    """One incoming method call, as given to a handler.

    Attributes: ``peer`` (:class:`PeerCredentials`), ``pidfd`` (pidfd of the peer taken at accept
    via ``SO_PEERPIDFD``, or ``None``; owned by the connection — ``os.dup`` it to keep it beyond the
    call), ``sender`` (the unique name the connection was given), ``path``, ``interface`` (``None``
    if the caller sent none), ``member``, ``signature``, ``body`` (tuple), ``fds`` (received fds),
    ``flags``, ``serial``, ``no_reply`` (the caller does not want a success reply), ``state``
    (a dict the handlers may keep facts in for the connection's life; values with a
    ``close()`` method are closed with the connection).
    """

    __slots__ = (
        "peer",
        "pidfd",
        "sender",
        "path",
        "interface",
        "member",
        "signature",
        "body",
        "fds",
        "flags",
        "serial",
        "state",
        "_taken",
    )

    def __init__(
        self,
        *,
        peer: PeerCredentials,
        pidfd: int | None,
        sender: str,
        path: str,
        interface: str | None,
        member: str,
        signature: str,
        body: tuple[Any, ...],
        fds: list[int],
        flags: int,
        serial: int,
        state: dict[str, Any] | None = None,
    ) -> None:
        self.peer = peer
        self.pidfd = pidfd
        self.state = {} if state is None else state
        self.sender = sender
        self.path = path
        self.interface = interface
        self.member = member
        self.signature = signature
        self.body = body
        self.fds = fds
        self.flags = flags
        self.serial = serial
        self._taken: set[int] = set()

    @property
    def no_reply(self) -> bool:
        return bool(self.flags & NO_REPLY_EXPECTED)

    def take_fd(self, fd: int) -> int:
        """Take ownership of received fd ``fd`` (the server will no longer close it)."""
        if fd not in self.fds:
            raise ValueError(f"fd {fd} did not arrive with this call")
        self._taken.add(fd)
        return fd

    def take_fds(self) -> list[int]:
        """Take ownership of every received fd."""
        self._taken.update(self.fds)
        return list(self.fds)

    def untaken_fds(self) -> list[int]:
        """The received fds the server still owns (closed after the handler)."""
        return [fd for fd in self.fds if fd not in self._taken]

    def __repr__(self) -> str:
        return (
            f"MethodCall({self.interface}.{self.member} at {self.path} "
            f"sig={self.signature!r} peer={self.peer})"
        )
