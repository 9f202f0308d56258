"""The permission model: who may do what, decided from kernel-supplied facts only.

Pure: no I/O.  Inputs are credentials the kernel gave the daemon (SO_PEERCRED,
SCM_CREDENTIALS — already translated into the daemon's namespaces), id maps and namespace
identities read from /proc, and ``stat`` results of cgroup files.  The operations layer gathers
those facts and asks these functions; nothing here trusts a value a client typed.

Model (0.42 §4, with its open holes fixed):

* **access** (``may_access``): host root may do anything; root of a user namespace may act on
  files whose owner is mapped into its namespace; otherwise the owner, then group, then other
  permission bits decide — owner and group *match* decides, never falls through (0.42's
  40cd3f7 lesson).
* **victims** (``may_move``): a process may be moved by itself, by host root, by a requestor of
  the same uid, or by root of a user namespace into which the victim's uid is mapped.
* **reach** (``require_reach``): every target lies below the bound that applies (the
  requestor's, the proxy's or the daemon's cgroup) with a ``/`` boundary; a target outside is
  reported as *not found*, so a caller learns nothing about cgroups it cannot reach.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from . import names
from .errors import InvalidArgument, LimitExceeded, NotFound, NotPermitted
from .procfs import IdMap

#: what an unmapped id looks like to a reader of ListKeys (0.42: (uint32)-1)
UNMAPPED_ID = 0xFFFFFFFF


class Access(enum.IntFlag):
    READ = 4
    WRITE = 2
    READ_WRITE = 6


@dataclass(frozen=True, slots=True)
class Credentials:
    """pid/uid/gid as the kernel reported them, in the daemon's namespaces."""

    pid: int
    uid: int
    gid: int

    def __str__(self) -> str:
        return f"pid={self.pid} uid={self.uid} gid={self.gid}"


@dataclass(frozen=True, slots=True)
class Identity:
    """A requestor or proxy: its credentials and what /proc says about its namespaces."""

    cred: Credentials
    uid_map: IdMap
    gid_map: IdMap
    same_pidns: bool  # as the daemon
    same_userns: bool

    @property
    def uid(self) -> int:
        return self.cred.uid

    @property
    def gid(self) -> int:
        return self.cred.gid

    @property
    def pid(self) -> int:
        return self.cred.pid

    @property
    def is_host_root(self) -> bool:
        return self.cred.uid == 0

    @property
    def root_in_userns(self) -> bool:
        """Root of its own user namespace (host root included)."""
        return self.uid_map.to_inside(self.cred.uid) == 0

    def maps_uid(self, host_uid: int) -> bool:
        return self.uid_map.to_inside(host_uid) is not None

    def uid_as_seen(self, host_uid: int) -> int:
        """A host uid as this identity's namespace shows it (unmapped: 4294967295)."""
        inside = self.uid_map.to_inside(host_uid)
        return UNMAPPED_ID if inside is None else inside

    def gid_as_seen(self, host_gid: int) -> int:
        inside = self.gid_map.to_inside(host_gid)
        return UNMAPPED_ID if inside is None else inside


@dataclass(frozen=True, slots=True)
class FileOwner:
    """The ownership facts of a file or cgroup directory (from stat)."""

    uid: int
    gid: int
    mode: int


def may_access(who: Identity, f: FileOwner, want: Access) -> bool:
    """Whether *who* may open *f* for *want*; see the module docstring for the order."""
    if who.is_host_root:
        return True
    if who.root_in_userns and who.maps_uid(f.uid):
        return True
    if who.uid == f.uid:
        bits = (f.mode >> 6) & 7
    elif who.gid == f.gid:
        bits = (f.mode >> 3) & 7
    else:
        bits = f.mode & 7
    return (bits & int(want)) == int(want)


def may_move(who: Identity, victim_pid: int, victim_uid: int | Callable[[], int]) -> bool:
    """Whether *who* may move the process *victim_pid* (whose real uid is *victim_uid*, or
    what it returns: learning it costs a /proc read that most moves do not need)."""
    if who.pid == victim_pid or who.is_host_root:
        return True
    uid = victim_uid() if callable(victim_uid) else victim_uid
    return who.uid == uid or (who.root_in_userns and who.maps_uid(uid))


def may_chown(who: Identity) -> bool:
    """Chown hands a cgroup to another uid: only root (of the host or of its namespace)."""
    return who.is_host_root or who.root_in_userns


def require_access(who: Identity, f: FileOwner, want: Access, what: str) -> None:
    if not may_access(who, f, want):
        verb = {Access.READ: "read", Access.WRITE: "write", Access.READ_WRITE: "read and write"}
        raise NotPermitted(
            f"not permitted: {what} is owned by uid {who.uid_as_seen(f.uid)}"
            f" (mode {f.mode & 0o777:o}); {verb[want]} access denied for uid"
            f" {who.uid_as_seen(who.uid)}"
        )


def require_reach(path: str, bound: str, shown: str) -> None:
    """*path* must be *bound* or below it.  The refusal says "not found" and names only what
    the caller asked for (*shown*), never what lies outside its reach."""
    if not names.is_under(path, bound):
        raise NotFound(f"cgroup {shown}: not found")


def require_same_pidns(who: Identity, method: str) -> None:
    """Plain calls that carry pids are meaningful only in the daemon's pid namespace; other
    callers must go through a proxy, whose Scm calls let the kernel translate pids."""
    if not who.same_pidns:
        raise NotPermitted(f"{method} called from a different pid namespace: use cgproxy")


def require_same_userns(who: Identity, method: str) -> None:
    if not who.same_userns:
        raise NotPermitted(f"{method} called from a different user namespace: use cgproxy")


def require_valid_id(value: int, what: str) -> None:
    """uid/gid arguments: 0..2^32-2 (-1 means "unchanged" to chown(2) and is refused here)."""
    if value < 0 or value >= UNMAPPED_ID:
        raise InvalidArgument(f"invalid {what} {value}")


#: v2 core files a cgroup's owner may write through SetValue; everything else must belong to a
#: controller of the hierarchy (``<controller>.*``).  Moves go through MovePid (victim checks);
#: ``release_agent``, ``notify_on_release`` and ``cgroup.clone_children`` are never writable.
CORE_WRITABLE = frozenset(
    {
        "cgroup.subtree_control",
        "cgroup.max.depth",
        "cgroup.max.descendants",
        "cgroup.freeze",
        "cgroup.type",
        "cgroup.kill",
        "cgroup.pressure",
    }
)


def require_settable_key(key: str, controllers: tuple[str, ...]) -> None:
    """SetValue's allowlist (0.42 had a blacklist with two names misspelled)."""
    prefix, dot, rest = key.partition(".")
    if key in CORE_WRITABLE or (dot and rest and prefix in controllers):
        return
    if key in ("tasks", "cgroup.procs", "cgroup.threads"):
        raise NotPermitted(f"not permitted: {key} cannot be set; use MovePid to move processes")
    raise NotPermitted(f"not permitted: {key} is not a settable key of this hierarchy")


def require_may_chown(who: Identity) -> None:
    if not may_chown(who):
        raise NotPermitted(
            "not permitted: only root (of the host or of a user namespace) may chown"
        )


def require_outside(path: str, fence: str, shown: str) -> None:
    """The daemon's own leaf (the cgroup it moved into when started delegated) is out of every
    client's reach: it is *not found*, like anything else the caller cannot reach."""
    if names.is_under(path, fence):
        raise NotFound(f"cgroup {shown}: not found")


def require_not_base(path: str, base: str, shown: str) -> None:
    """The cgroup the daemon was started in bounds everything it does, but its own attributes
    belong to whoever delegated it (under systemd: the unit's cgroup, which systemd owns): they
    are never written, removed, frozen or killed through the API."""
    if path == base:
        raise NotPermitted(
            f"not permitted: {shown} is the cgroup this cgmanager was started in;"
            " it is not changed through cgmanager"
        )


def require_depth(depth: int, limit: int, shown: str) -> None:
    """``--max-depth``: how deep below the daemon's own cgroup a new cgroup may be."""
    if depth > limit:
        raise LimitExceeded(f"{shown}: deeper than this cgmanager allows ({limit})")


def require_mode(mode: int) -> None:
    """Chmod takes permission bits only: no setuid/setgid/sticky, no file type."""
    if not 0 <= mode <= 0o777:
        raise InvalidArgument(f"invalid mode {mode:o}: permission bits (0 to 777) only")


def delegatee_accepts(
    who: Identity, owner_uid: int, victim_pid: int, victim_uid: int | Callable[[], int]
) -> bool:
    """Whether a process may be placed in a cgroup delegated to uid *owner_uid*: never another
    user's process (the delegatee could then freeze, kill or starve it — the kernel lets the
    owner of cgroup.kill and cgroup.procs do so) — unless the delegatee itself (or root of a
    namespace mapping both) asks, or the process moves itself (pam_cgm does, before setuid)."""
    if owner_uid == 0 or victim_pid == who.pid or who.uid == owner_uid:
        return True
    uid = victim_uid() if callable(victim_uid) else victim_uid
    if uid == owner_uid:
        return True
    return (
        who.root_in_userns
        and not who.is_host_root
        and who.maps_uid(owner_uid)
        and who.maps_uid(uid)
    )


def may_hand_over(new_owner: int, requestor_pid: int, pid: int, process_uid: int) -> bool:
    """Whether a cgroup holding process *pid* may be delegated (chowned) to *new_owner*: a
    delegatee never gets another user's processes.  The requestor's own process is exempt: it
    hands over its own cgroup knowingly (0.42's nstest; a login manager about to drop
    privileges)."""
    return new_owner == 0 or pid == requestor_pid or process_uid == new_owner
