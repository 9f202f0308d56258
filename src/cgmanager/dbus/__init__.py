"""Peer-to-peer D-Bus transport: SASL, message I/O over a Unix socket, dispatch, clients.

There is no bus daemon: the daemon listens on its own socket and clients connect to it directly,
as with cgmanager 0.42.  Modules (import the one you need; this package imports nothing, so the
CLI's ``import cgmanager.dbus.client`` stays cheap):

* the wire format, the only modules that know the byte layout (the adapter to swap for a faster
  codec): :mod:`.message` (``Message``, header fields, parse/serialise), over :mod:`.unmarshal`
  (validating readers), :mod:`.marshal` (writers) and :mod:`.signature` (type signatures, names);
  :mod:`.codec` re-exports their public names;
* :mod:`.sasl` — the server's SASL handshake as a pure state machine;
* :mod:`.objects` — what the daemon registers (``Interface``, ``Method``, ``Property``) and what a
  handler receives (``MethodCall``, ``PeerCredentials``); :mod:`.errors` — ``DBusError`` and names;
* :mod:`.dispatch` — routing, strict signatures, built-in interfaces (bus-driver stubs such as
  ``Hello``, ``Peer``, ``Introspectable``, ``Properties``);
* :mod:`.connection` / :mod:`.server` — asyncio accept loop, per-connection handshake and
  message I/O with fds, limits (``Limits``), shutdown;
* :mod:`.client` — blocking client (fast import, no asyncio); :mod:`.aio_client` — asyncio client.

Identity is only ever ``SO_PEERCRED``/``SO_PEERPIDFD`` of the connection, never what a client says.
"""
