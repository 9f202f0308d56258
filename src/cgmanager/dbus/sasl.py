"""Server side of the D-Bus SASL handshake, as a pure state machine (no I/O, no clock).

Feed it the bytes the client sent, get back the bytes to send and what happened.  Keeping it free
of sockets makes every robustness rule testable with plain bytes and fuzzable.

**The identity a client claims here is never used for authorisation.**  EXTERNAL is accepted with
any claimed uid — or none (the ``DATA`` flow) — and ANONYMOUS is accepted too, because clients in a
user namespace claim their *namespaced* uid, which differs from the kernel-translated peer uid a
strict EXTERNAL would compare against (cgmanager 0.42 accepted every uid and ANONYMOUS as well).
Callers authorise solely from ``SO_PEERCRED``/``SO_PEERPIDFD`` taken at accept time;
:attr:`ServerSasl.claimed_identity` exists only for logging.

Behaviour (matching what libdbus does, and what real clients rely on):

* the leading NUL byte the client sends first is skipped; its absence is tolerated;
* lines end with ``\\r\\n``; a line longer than ``max_line`` (or a buffer growing past it without
  a line end) closes the connection, as do more than ``max_commands`` commands;
* ``AUTH`` without a mechanism or with an unknown one → ``REJECTED EXTERNAL ANONYMOUS``;
* ``AUTH EXTERNAL <hex uid>`` / ``AUTH ANONYMOUS [<hex trace>]`` → ``OK <guid>``;
  ``AUTH EXTERNAL`` / ``AUTH ANONYMOUS`` without initial response → ``DATA``, then the client's
  ``DATA`` or ``DATA <hex>`` → ``OK <guid>``;
* ``CANCEL`` and ``ERROR`` → ``REJECTED …`` and back to the start; anything else → ``ERROR``;
* ``NEGOTIATE_UNIX_FD`` after ``OK`` → ``AGREE_UNIX_FD`` (``ERROR`` before, or when fd passing is
  disabled);
* ``BEGIN`` after ``OK`` ends the handshake; the bytes after ``BEGIN\\r\\n`` are returned untouched
  (clients such as sd-bus pipeline ``AUTH … NEGOTIATE_UNIX_FD … BEGIN`` plus their first message
  in one write).  ``BEGIN`` before ``OK`` closes the connection (as the specification says).
"""

from __future__ import annotations

from dataclasses import dataclass

MECHANISMS = (b"EXTERNAL", b"ANONYMOUS")
_REJECTED = b"REJECTED EXTERNAL ANONYMOUS\r\n"
_HEX = frozenset(b"0123456789abcdefABCDEF")

# states
_WAIT_AUTH = "waiting-for-auth"
_WAIT_DATA = "waiting-for-data"
_WAIT_BEGIN = "waiting-for-begin"
_DONE = "authenticated"
_CLOSED = "closed"


@dataclass(slots=True)
class SaslStep:
    """What one :meth:`ServerSasl.feed` produced.

    ``reply``: bytes to send to the client now (possibly empty; send them even when ``close``).
    ``done``: ``BEGIN`` was received; switch to D-Bus messages, starting with ``leftover``.
    ``close``: drop the connection (``ServerSasl.close_reason`` says why).
    """

    reply: bytes = b""
    done: bool = False
    close: bool = False
    leftover: bytes = b""


class ServerSasl:
    """One connection's handshake.  Call :meth:`feed` with each chunk received until a step
    returns ``done`` or ``close``; do not feed it afterwards."""

    def __init__(
        self,
        guid: str,
        *,
        unix_fd: bool = True,
        max_line: int = 8192,
        max_commands: int = 64,
    ) -> None:
        if len(guid) != 32 or guid.strip("0123456789abcdef"):  # (one C call per connection)
            raise ValueError("guid must be 32 lowercase hex digits")
        self._ok = b"OK " + guid.encode("ascii") + b"\r\n"
        self._allow_unix_fd = unix_fd
        self._max_line = max_line
        self._max_commands = max_commands
        self._buf = bytearray()
        self._first_byte_seen = False
        self._commands = 0
        self._mech: bytes | None = None
        self.state = _WAIT_AUTH
        #: ``"EXTERNAL"`` or ``"ANONYMOUS"`` once authenticated.
        self.mechanism: str | None = None
        #: What the client claimed (decoded EXTERNAL uid text or ANONYMOUS trace).  Logging only.
        self.claimed_identity: str | None = None
        #: True once ``NEGOTIATE_UNIX_FD`` was agreed.
        self.unix_fd_negotiated = False
        #: Why the handshake ended in ``close``.
        self.close_reason: str | None = None

    @property
    def done(self) -> bool:
        return self.state == _DONE

    def feed(self, data: bytes) -> SaslStep:
        """Consume ``data``; return the reply and the outcome (see :class:`SaslStep`)."""
        if self.state in (_DONE, _CLOSED):
            raise RuntimeError(f"SASL handshake already {self.state}")
        buf = self._buf
        buf += data
        if not self._first_byte_seen and buf:
            self._first_byte_seen = True
            if buf[0] == 0:
                del buf[0]
        replies: list[bytes] = []
        while True:
            end = buf.find(b"\r\n")
            if end < 0:
                if len(buf) > self._max_line:
                    return self._close(replies, "handshake line too long")
                return SaslStep(reply=b"".join(replies))
            if end > self._max_line:
                return self._close(replies, "handshake line too long")
            line = bytes(buf[:end])
            del buf[: end + 2]
            self._commands += 1
            if self._commands > self._max_commands:
                return self._close(replies, "too many handshake commands")
            reply = self._command(line)
            if self.state == _CLOSED:
                return self._close(replies, self.close_reason or "handshake aborted")
            if self.state == _DONE:
                leftover = bytes(buf)
                buf.clear()
                return SaslStep(reply=b"".join(replies), done=True, leftover=leftover)
            replies.append(reply)

    # ----------------------------------------------------------------------------------------

    def _close(self, replies: list[bytes], reason: str) -> SaslStep:
        self.state = _CLOSED
        self.close_reason = reason
        self._buf.clear()
        return SaslStep(reply=b"".join(replies), close=True)

    def _command(self, line: bytes) -> bytes:
        if not line.isascii() or b"\0" in line:
            return _error("Invalid characters")
        cmd, _, arg = line.partition(b" ")
        state = self.state
        if cmd == b"CANCEL" or cmd == b"ERROR":
            if state == _WAIT_AUTH and cmd == b"CANCEL":
                return _error("Nothing to cancel")
            self._reset()
            return _REJECTED
        if cmd == b"BEGIN":
            if state == _WAIT_BEGIN and not arg:
                self.state = _DONE
                return b""
            if state == _WAIT_BEGIN:
                return _error("BEGIN takes no argument")
            self.state = _CLOSED
            self.close_reason = "BEGIN before authentication"
            return b""
        if state == _WAIT_AUTH:
            if cmd == b"AUTH":
                return self._auth(arg)
            if cmd == b"NEGOTIATE_UNIX_FD":
                return _error("Need to authenticate first")
            return _error("Unknown command")
        if state == _WAIT_DATA:
            if cmd == b"DATA":
                return self._response(arg)
            return _error("Expected DATA, CANCEL or ERROR")
        # _WAIT_BEGIN
        if cmd == b"NEGOTIATE_UNIX_FD":
            if arg:
                return _error("NEGOTIATE_UNIX_FD takes no argument")
            if not self._allow_unix_fd:
                return _error("Unix fd passing is not supported")
            self.unix_fd_negotiated = True
            return b"AGREE_UNIX_FD\r\n"
        return _error("Expected BEGIN, NEGOTIATE_UNIX_FD, CANCEL or ERROR")

    def _reset(self) -> None:
        self.state = _WAIT_AUTH
        self._mech = None
        self.mechanism = None
        self.claimed_identity = None
        self.unix_fd_negotiated = False

    def _auth(self, arg: bytes) -> bytes:
        mech, sp, initial = arg.partition(b" ")
        if mech not in MECHANISMS:
            return _REJECTED  # covers "AUTH" alone and unknown mechanisms
        self._mech = mech
        if not sp:
            self.state = _WAIT_DATA
            return b"DATA\r\n"
        return self._response(initial)

    def _response(self, hexdata: bytes) -> bytes:
        """Handle an initial response or DATA payload (hex) for the chosen mechanism."""
        hexdata = hexdata.strip(b" ")
        if len(hexdata) % 2 or not _HEX.issuperset(hexdata):
            return _error("Could not decode response as hex")
        raw = bytes.fromhex(hexdata.decode("ascii"))
        if self._mech == b"EXTERNAL":
            # Any claimed uid, or none; it is never used for authorisation.
            if raw and not raw.isdigit():
                self._reset()
                return _REJECTED
        else:  # ANONYMOUS: trace information, must be UTF-8 per RFC 4505
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                self._reset()
                return _REJECTED
        self.mechanism = self._mech.decode("ascii") if self._mech else None
        self.claimed_identity = raw.decode("utf-8", "replace")
        self.state = _WAIT_BEGIN
        return self._ok


def _error(text: str) -> bytes:
    return b'ERROR "' + text.encode("ascii") + b'"\r\n'
