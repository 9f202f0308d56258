"""The server's resource limits: a module of their own so option parsing need not import the
server."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """Per-server resource limits.  Hitting one ends (or refuses) only the offending client.

    ``max_message_size``: largest message accepted, checked from its first 16 bytes (the
    protocol allows 128 MiB; our requests are tiny).  ``max_fds_per_message``: fds that may be
    pending on a connection (libdbus's default is 16).  ``max_connections`` /
    ``max_connections_per_uid``: further connections are accepted and closed at once (the client
    sees EOF before its handshake completes).  ``sasl_timeout``: seconds to finish the handshake.
    ``message_timeout``: seconds a started message may take to arrive completely (``None``: no
    limit); idle connections between messages are never timed out (cgproxy keeps one open).
    ``max_output_buffer``: bytes of unsent replies before a client that does not read is dropped.
    ``max_sasl_line``: longest handshake line.
    """

    max_message_size: int = 1 << 20
    max_fds_per_message: int = 16
    max_connections: int = 2048
    max_connections_per_uid: int = 256
    sasl_timeout: float = 10.0
    message_timeout: float | None = 30.0
    max_output_buffer: int = 4 << 20
    max_sasl_line: int = 8192
