"""The D-Bus wire format in one name: a facade over the modules that implement it.

* :mod:`.signature` — type codes, the signature grammar and its limits, header name syntax;
* :mod:`.unmarshal` — the validating readers (why not jeepney's parser: see there);
* :mod:`.marshal` — the writers;
* :mod:`.message` — :class:`Message`, header fields, ``message_size``/``parse_message``/
  ``serialise_message`` (the four names the transport uses).

The package's own modules import from those directly (one module less to load when ``cgm``
starts); this facade keeps ``cgmanager.dbus.codec`` working for the tests, the benchmarks and
code outside the package.
"""

from __future__ import annotations

from .marshal import MarshalError, Marshalled, marshal_body
from .message import (
    ALLOW_INTERACTIVE_AUTHORIZATION,
    ERROR,
    METHOD_CALL,
    METHOD_RETURN,
    NO_AUTO_START,
    NO_REPLY_EXPECTED,
    PROTOCOL_MAX_MESSAGE,
    SIGNAL,
    Message,
    MessageTooLarge,
    message_size,
    parse_message,
    serialise_message,
)
from .signature import (
    SignatureError,
    is_valid_signature,
    parse_signature,
    split_signature,
    valid_bus_name,
    valid_interface_name,
    valid_member_name,
    valid_object_path,
)
from .unmarshal import ProtocolError, unmarshal_body

__all__ = [
    "ALLOW_INTERACTIVE_AUTHORIZATION",
    "ERROR",
    "METHOD_CALL",
    "METHOD_RETURN",
    "NO_AUTO_START",
    "NO_REPLY_EXPECTED",
    "PROTOCOL_MAX_MESSAGE",
    "SIGNAL",
    "MarshalError",
    "Marshalled",
    "Message",
    "MessageTooLarge",
    "ProtocolError",
    "SignatureError",
    "is_valid_signature",
    "marshal_body",
    "message_size",
    "parse_message",
    "parse_signature",
    "serialise_message",
    "split_signature",
    "unmarshal_body",
    "valid_bus_name",
    "valid_interface_name",
    "valid_member_name",
    "valid_object_path",
]
