"""Who is asking: the facts about a requestor (or proxy) the permission model needs.

Credentials come only from the kernel (SO_PEERCRED at connect, SCM_CREDENTIALS for Scm calls);
everything else — id maps, namespaces, cgroups — is read from ``/proc/<pid>`` pinned by a pidfd
when one is available.  Any failure to read these facts fails the request (a requestor that
exited is never mistaken for anyone, cf. CVE-2021-3560).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .errors import NotFound
from .hierarchy import Hierarchy, Layout
from .permission import Credentials, Identity
from .procfs import ProcDir


@dataclass(frozen=True)
class Party:
    """A requestor, proxy or the daemon itself: identity plus its cgroup in each hierarchy
    (only cgroups inside the daemon's cgroup namespace are recorded)."""

    identity: Identity
    cgroups: dict[str, str] = field(default_factory=dict)

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


def cgroups_of(d: ProcDir, layout: Layout) -> dict[str, str]:
    return {
        h.key: path
        for h, path in layout.for_lines(
            line for line in d.cgroups() if not line.outside_namespace
        ).items()
    }


def identify(cred: Credentials, layout: Layout, ns: Namespaces, pidfd: int | None = None) -> Party:
    """Read the facts about the process *cred* names.  pid 0 (not visible to the daemon) is
    "unknown", never an identity."""
    if cred.pid <= 0:
        raise NotFound("requestor not visible in the daemon's pid namespace")
    with ProcDir(cred.pid, pidfd) as d:
        identity = Identity(
            cred,
            d.uid_map(),
            d.gid_map(),
            same_pidns=d.namespace("pid") == ns.pid,
            same_userns=d.namespace("user") == ns.user,
        )
        return Party(identity, cgroups_of(d, layout))
