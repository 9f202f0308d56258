"""Who asks on a connection: its peer's facts as of each request, and when it has just exited.

A client may send a request and exit at once: ``dbus-send`` without ``--print-reply`` sends with
NO_REPLY_EXPECTED and exits, and a program may move itself and quit.  By the time the daemon
reads the request the sender may be exiting — and an exiting task shows ``/`` in every v1
hierarchy, which must never be believed (it would judge the client at the root) — or gone.

So the facts (:class:`~cgmanager.requestor.Peer`: cgroups, namespaces, id maps, read through
``/proc/<pid>`` pinned by the connection's pidfd) are read afresh for every request, and also
*remembered* each time they were read while the process was alive and not exiting: when it
connects (it then waits for the handshake's answer), at each request, and after each request
that moved the requestor itself (before its reply, which the client awaits).  A request whose sender is found exiting or gone is judged by the remembered facts if
they are at most :data:`REMEMBERED_FOR` seconds old, and refused otherwise.

What this allows, said plainly: a process moved by someone else less than that long before it
sent its last request and exited is judged where it was before the move — the same window a
live client has between sending a request and the daemon reading it, stretched to at most
REMEMBERED_FOR.  Nothing else is taken from anywhere but the kernel, and nothing the client
says.
"""

from __future__ import annotations

import logging
import time

from ..errors import NotFound, NotPermitted
from ..hierarchy import Layout
from ..permission import Credentials
from ..requestor import Namespaces, Party, Peer

log = logging.getLogger(__name__)

#: how old remembered facts may be when the sender has exited (see the module docstring)
REMEMBERED_FOR = 1.0


class ConnectionPeer:
    """The peer of one connection (kept in its state; closed with it)."""

    __slots__ = ("peer", "_party", "_at")

    def __init__(
        self, cred: Credentials, layout: Layout, ns: Namespaces, pidfd: int | None
    ) -> None:
        try:
            self.peer = Peer(cred, layout, ns, pidfd)
        except PermissionError:  # exiting already (see party)
            raise NotFound(f"process {cred.pid}: exiting") from None
        self._party: Party | None = None
        self._at = 0.0

    def party(self) -> Party:
        """The peer's facts as of now; remembered facts if it has just exited."""
        try:
            party = self.peer.party()
        except (NotFound, NotPermitted, PermissionError) as e:
            # gone, or exiting: its /proc entries refuse even root while the kernel tears the
            # task down (EACCES on ns/*, status...) — the facts cannot be read *now*
            remembered = self._party
            if remembered is None or time.monotonic() - self._at > REMEMBERED_FOR:
                if isinstance(e, PermissionError):
                    raise NotFound(f"process {self.peer.cred.pid}: exiting") from None
                raise
            log.debug(
                "pid %d has exited; judged by its facts of %.3f s ago",
                self.peer.cred.pid,
                time.monotonic() - self._at,
            )
            return remembered
        self._party, self._at = party, time.monotonic()
        return party

    def remember(self) -> None:
        """Read the facts now, while the peer is known to be waiting (alive): its Hello, or
        the reply to a request that moved it.  A failure is not an error here."""
        try:
            self.party()
        except (NotFound, NotPermitted, OSError):
            pass

    def close(self) -> None:
        self.peer.close()
