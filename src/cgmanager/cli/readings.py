"""Reading many cgroup files at once, for ``top``, ``tree``, ``get`` and ``dump``.

One ``cgmanager1.Snapshot`` per hierarchy, all sent before the first reply is read (one round
trip in all).  A daemon without Snapshot (cgmanager 0.42, a cgproxy) is read the old way:
ListChildren and GetValue for every cgroup, pipelined one level at a time, with the same
result; so every subcommand built on this works against both.
"""

from __future__ import annotations

import posix

from ..contract import BY_NAME
from .output import CallFailed

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .session import Session

#: the errors of a daemon that has no such method (or interface)
NO_METHOD = (
    "org.freedesktop.DBus.Error.UnknownMethod",
    "org.freedesktop.DBus.Error.UnknownInterface",
    "org.freedesktop.DBus.Error.UnknownObject",
)
NOT_FOUND = "org.linuxcontainers.cgmanager.Error.NotFound"
#: Snapshot's own bound on keys per request
MAX_KEYS = 32
#: Snapshots in flight at once: their replies (up to 2 MiB each) must not pile up in the
#: daemon's output buffer while cgm reads the first
SNAPSHOTS_IN_FLIGHT = 2
#: cgroups whose calls are in flight at once without Snapshot (the daemon drops a client
#: whose unread replies pile up)
WINDOW = 32

#: (path relative to the start, "" for the start; readable; {key: value})
Row = tuple[str, bool, dict[str, str]]


class Reading:
    """One hierarchy's answer for a subtree."""

    __slots__ = ("hierarchy", "rows", "complete", "error")

    def __init__(
        self,
        hierarchy: str,
        rows: list[Row],
        complete: bool = True,
        error: CallFailed | None = None,
    ) -> None:
        self.hierarchy = hierarchy
        self.rows = rows
        self.complete = complete
        self.error = error


class Request:
    __slots__ = ("hierarchy", "cgroup", "keys", "depth")

    def __init__(self, hierarchy: str, cgroup: str, keys: list[str], depth: int = -1) -> None:
        self.hierarchy = hierarchy
        self.cgroup = cgroup
        self.keys = keys[:MAX_KEYS]
        self.depth = depth


def read_all(s: Session, requests: list[Request]) -> list[Reading]:
    """Each request's reading, in order (its ``error`` set when the daemon refused it)."""
    serials: list[int] = []

    def send_next() -> None:
        if len(serials) < len(requests):
            r = requests[len(serials)]
            serials.append(s.send("Snapshot", r.hierarchy, r.cgroup, r.keys, r.depth))

    for _ in range(SNAPSHOTS_IN_FLIGHT):
        send_next()
    out: list[Reading] = []
    for i, r in enumerate(requests):
        serial = serials[i]
        send_next()
        try:
            rows, complete = s.reply(serial, "Snapshot")
        except CallFailed as e:
            if e.name in NO_METHOD:
                out.append(_fallback(s, r))
                continue
            out.append(Reading(r.hierarchy, [], False, e))
            continue
        out.append(
            Reading(
                r.hierarchy,
                [(p, bool(ok), {r.keys[i]: v for i, v in vals.items()}) for p, ok, vals in rows],
                bool(complete),
            )
        )
    return out


def _fallback(s: Session, r: Request) -> Reading:
    """The same reading through ListChildren and GetValue, one level at a time."""
    rows: list[Row] = []
    level: list[str] = [""]
    depth = 0
    files = sorted({k.partition("/")[0] for k in r.keys})
    while level:
        following: list[str] = []
        for start in range(0, len(level), WINDOW):
            sent = []
            for rel in level[start : start + WINDOW]:
                cg = join(r.cgroup, rel)
                calls = [s.send("GetValue", r.hierarchy, cg, f) for f in files]
                sent.append((rel, calls, s.send("ListChildren", r.hierarchy, cg)))
            failed = _answers(s, r, sent, files, depth, rows, following)
            if failed is not None:
                return failed
        level = following
        depth += 1
    rows.sort(key=lambda row: row[0].split("/"))  # pre-order, as Snapshot answers
    return Reading(r.hierarchy, rows, True)


def _answers(
    s: Session,
    r: Request,
    sent: list[tuple[str, list[int], int]],
    files: list[str],
    depth: int,
    rows: list[Row],
    following: list[str],
) -> Reading | None:
    """Read the replies to one window of calls; a Reading when the start itself failed."""
    for rel, calls, kids in sent:
        texts: dict[str, str] = {}
        for f, serial in zip(files, calls):
            try:
                texts[f] = str(s.reply(serial, "GetValue")[0])
            except CallFailed:
                continue  # missing or unreadable: left out, as Snapshot does
        try:
            names = sorted(str(n) for n in s.reply(kids, "ListChildren")[0])
        except CallFailed as e:
            if not rel:
                return Reading(r.hierarchy, [], False, e)
            if e.name != NOT_FOUND:  # (gone meanwhile: dropped)
                rows.append((rel, False, {}))
            continue
        rows.append((rel, True, _pick(texts, r.keys)))
        if r.depth < 0 or depth < r.depth:
            following.extend(join(rel, n) for n in names)
    return None


def _pick(texts: dict[str, str], keys: list[str]) -> dict[str, str]:
    out = {}
    for k in keys:
        file, slash, field = k.partition("/")
        text = texts.get(file)
        if text is None:
            continue
        if slash:
            head = field + " "
            for line in text.split("\n"):
                if line.startswith(head):
                    out[k] = line[len(head) :]
                    break
        else:
            out[k] = text
    return out


def join(base: str, rel: str) -> str:
    """A cgroup argument below another (either may be empty)."""
    if not rel:
        return base
    if not base:
        return rel
    return base.rstrip("/") + "/" + rel


def absolute_starts(s: Session, hierarchies: list[str], cgroup: str) -> dict[str, str]:
    """Each hierarchy's starting cgroup as an absolute path (GetPidCgroupAbs of cgm itself
    for a relative one; a hierarchy that will not say is left out)."""
    if cgroup.startswith("/"):
        return dict.fromkeys(hierarchies, "/" + cgroup.strip("/"))
    pid = posix.getpid()
    serials = [s.send("GetPidCgroupAbs", h, pid) for h in hierarchies]
    out = {}
    for h, serial in zip(hierarchies, serials):
        try:
            mine = str(s.reply(serial, "GetPidCgroupAbs")[0])
        except CallFailed:
            continue
        out[h] = mine if not cgroup else mine.rstrip("/") + "/" + cgroup.strip("/")
    return out


def below(base: str, rel: str) -> str:
    """The absolute path of *rel* below the absolute *base*."""
    if not rel:
        return base
    return base.rstrip("/") + "/" + rel


def where(args: list[str]) -> tuple[str | None, str]:
    """``[controller] [cgroup]`` of tree and top: a lone argument starting with ``/`` is the
    cgroup (no controller name starts with one)."""
    if len(args) == 1 and args[0].startswith("/"):
        return None, args[0]
    return (args[0] if args else None), (args[1] if len(args) > 1 else "")


def hierarchies(s: Session, controller: str | None) -> list[str]:
    """The hierarchies to read: those named (a comma list, or "all"), else every one served."""
    if controller and controller != "all":
        return [c for c in controller.split(",") if c]
    if "ListHierarchies" in BY_NAME:  # every served hierarchy, v2 included (cgmanager1)
        try:
            (listed,) = s.call("ListHierarchies")
            return [str(entry[0]) for entry in listed]
        except CallFailed as e:
            if e.name not in NO_METHOD:
                raise
    # 0.42 and cgproxy: ListControllers (which may leave the v2 tree out on hybrid hosts)
    (listed,) = s.call("ListControllers")
    return [str(h) for h in listed]
