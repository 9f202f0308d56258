"""Who is asking: the facts about a requestor (or proxy) the permission model needs.

Credentials come only from the kernel (SO_PEERCRED at connect, SCM_CREDENTIALS for Scm calls);
everything else — id maps, namespaces, cgroups — is read from ``/proc/<pid>`` pinned by a pidfd
when one is available.  Any failure to read these facts fails the request (a requestor that
exited is never mistaken for anyone, cf. CVE-2021-3560).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import NotFound, NotPermitted
from .hierarchy import Hierarchy, Layout
from .permission import Credentials, Identity
from .procfs import IdMap, ProcDir


@dataclass(frozen=True)
class Party:
    """A requestor, proxy or the daemon itself: identity plus its cgroup in each hierarchy
    (only cgroups inside the daemon's cgroup namespace are recorded)."""

    identity: Identity
    cgroups: Mapping[str, str] = field(default_factory=dict)

    @property
    def cred(self) -> Credentials:
        return self.identity.cred

    def cgroup(self, h: Hierarchy) -> str:
        path = self.cgroups.get(h.key)
        if path is None:
            raise NotFound(f"process {self.cred.pid} is in no {h.key} cgroup this daemon can reach")
        return path


@dataclass(frozen=True)
class Namespaces:
    """The daemon's own pid and user namespaces, captured at start."""

    pid: tuple[int, int]
    user: tuple[int, int]

    @classmethod
    def of_self(cls) -> Namespaces:
        with ProcDir(os.getpid()) as d:
            return cls(d.namespace("pid"), d.namespace("user"))


def cgroups_of(d: ProcDir, layout: Layout) -> Mapping[str, str]:
    return layout.cgroups_in(live_cgroup_text(d, layout))


def live_cgroup_text(d: ProcDir, layout: Layout) -> str:
    """The process's /proc/<pid>/cgroup — refused if it shows a served v1 root only because
    the process is exiting (v1 shows every exiting task at ``/``: a client that exits right
    after its request must not be judged as if it sat at the root)."""
    text = d.read("cgroup", whole=True)
    try:
        v1_root = layout.shows_v1_root(text)
    except NotPermitted as e:
        raise NotPermitted(f"process {d.pid}: {e.message}") from None
    if v1_root and d.exiting():
        raise NotFound(f"process {d.pid}: exiting")
    return text


def identify(cred: Credentials, layout: Layout, ns: Namespaces, pidfd: int | None = None) -> Party:
    """The facts about the process *cred* names, once (an Scm credential: a :class:`Peer` that
    lives for one request).  pid 0 (not visible to the daemon) is "unknown", never an
    identity.  A process whose /proc entries refuse even the daemon is exiting (the kernel
    refuses access while it tears the task down): not found, like one that is gone."""
    try:
        peer = Peer(cred, layout, ns, pidfd)
        try:
            return peer.party()
        finally:
            peer.close()
    except PermissionError:
        raise NotFound(f"process {cred.pid}: exiting") from None


class Peer:
    """The peer of one connection, identified once and re-checked cheaply on every request.

    Why: reading a requestor's facts from /proc costs more than most requests' real work.
    What may change during a connection, and how each is handled:

    * the process — never: ``/proc/<pid>`` is opened once, pinned by the connection's pidfd;
      once the process exits every read through it fails, so a reused pid is never read;
    * its pid namespace — never (a process's own pid namespace is fixed for its life);
    * its user namespace (setns/unshare) — ``ns/user`` is stat'ed on every request; id maps
      are kept only for a namespace held open by an fd, so its inode cannot be reused, and only
      once written (an empty map may still be written, a written one never changes);
    * its cgroups (the client, or anyone, may move it) — ``/proc/<pid>/cgroup`` is read on
      every request; only its parse is reused when the text is unchanged.
    """

    __slots__ = (
        "cred",
        "layout",
        "ns",
        "proc",
        "same_pidns",
        "_userns",
        "_nsfd",
        "_maps",
        "_cgroup_text",
        "_party",
    )

    def __init__(
        self, cred: Credentials, layout: Layout, ns: Namespaces, pidfd: int | None
    ) -> None:
        if cred.pid <= 0:
            raise NotFound("requestor not visible in the daemon's pid namespace")
        self.cred = cred
        self.layout = layout
        self.ns = ns
        self.proc = ProcDir(cred.pid, pidfd)
        try:
            self.same_pidns = self.proc.namespace("pid") == ns.pid
        except BaseException:
            self.proc.close()
            raise
        self._userns: tuple[int, int] | None = None
        self._nsfd = -1
        self._maps: tuple[IdMap, IdMap] | None = None
        self._cgroup_text: str | None = None
        self._party: Party | None = None

    def party(self) -> Party:
        """The requestor's facts as of now."""
        proc = self.proc
        userns = proc.namespace("user")
        text = live_cgroup_text(proc, self.layout)
        party = self._party
        if party is not None and userns == self._userns and text == self._cgroup_text:
            return party
        maps = self._maps if userns == self._userns else None
        if maps is None:
            maps = self._pin_maps(userns)
        identity = Identity(
            self.cred,
            maps[0],
            maps[1],
            same_pidns=self.same_pidns,
            same_userns=userns == self.ns.user,
        )
        party = Party(identity, self.layout.cgroups_in(text))
        if self._userns == userns:  # maps pinned: the whole party may be reused
            self._party, self._cgroup_text = party, text
        return party

    def _pin_maps(self, userns: tuple[int, int]) -> tuple[IdMap, IdMap]:
        self._unpin()
        maps = (self.proc.uid_map(), self.proc.gid_map())
        if not maps[0].ranges or not maps[1].ranges:
            return maps  # not written yet: read again next time
        if userns == self.ns.user:  # the daemon's own namespace: the daemon pins it
            self._userns, self._maps = userns, maps
            return maps
        try:
            fd = os.open("ns/user", os.O_RDONLY | os.O_CLOEXEC, dir_fd=self.proc.fd)
        except OSError:
            return maps
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != userns:  # it changed namespace meanwhile: don't keep
            os.close(fd)
            return maps
        self._nsfd, self._userns, self._maps = fd, userns, maps
        return maps

    def _unpin(self) -> None:
        if self._nsfd >= 0:
            os.close(self._nsfd)
            self._nsfd = -1
        self._userns = self._maps = self._party = self._cgroup_text = None

    def close(self) -> None:
        self._unpin()
        self.proc.close()
