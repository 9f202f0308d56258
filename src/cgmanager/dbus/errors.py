"""D-Bus error names and the exception that carries one.

Shared by the server (a handler raises :class:`DBusError` to send an error reply) and the clients
(an error reply is raised as :class:`DBusError`).  Deliberately free of imports so the CLI's client
path stays cheap to import.
"""

from __future__ import annotations

FAILED = "org.freedesktop.DBus.Error.Failed"
INVALID_ARGS = "org.freedesktop.DBus.Error.InvalidArgs"
UNKNOWN_METHOD = "org.freedesktop.DBus.Error.UnknownMethod"
UNKNOWN_INTERFACE = "org.freedesktop.DBus.Error.UnknownInterface"
UNKNOWN_OBJECT = "org.freedesktop.DBus.Error.UnknownObject"
UNKNOWN_PROPERTY = "org.freedesktop.DBus.Error.UnknownProperty"
PROPERTY_READ_ONLY = "org.freedesktop.DBus.Error.PropertyReadOnly"
NO_REPLY = "org.freedesktop.DBus.Error.NoReply"
DISCONNECTED = "org.freedesktop.DBus.Error.Disconnected"
TIMEOUT = "org.freedesktop.DBus.Error.Timeout"
AUTH_FAILED = "org.freedesktop.DBus.Error.AuthFailed"
LIMITS_EXCEEDED = "org.freedesktop.DBus.Error.LimitsExceeded"


class DBusError(Exception):
    """A D-Bus error: ``name`` is the error name, ``message`` the human-readable text.

    On the server, raise it from a method handler to send exactly this error reply.  On the client,
    an error reply from the peer is raised as this exception.  Transport failures on the client side
    (connection lost, timeout, authentication refused) use the standard names above so callers only
    need one ``except`` clause.
    """

    def __init__(self, name: str, message: str = "") -> None:
        super().__init__(name, message)
        self.name = name
        self.message = message

    def __str__(self) -> str:
        return f"{self.name}: {self.message}" if self.message else self.name
