"""``cgm setup``: a container's set-up in one request (cgmanager1.Setup), and the
``owner=``/``file=value``/``pid=`` items it shares with ``cgm exec``."""

from __future__ import annotations

from .arguments import parse_id, parse_pid
from .commands import COMMANDS
from .output import lines, usage_error

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .session import Session


class Items:
    """What the items of a setup or exec command line ask for."""

    def __init__(self) -> None:
        self.uid = -1
        self.gid = -1
        self.values: dict[str, str] = {}
        self.pids: list[int] = []


def is_item(word: str, pids: bool) -> bool:
    """``owner=``, ``pid=`` (setup) or ``<file>=`` where the file has a dot: every cgroup file
    a value can be written to has one (``pids.max``, ``unified:cgroup.max.depth``)."""
    name, sep, _ = word.partition("=")
    return bool(sep) and (name == "owner" or (pids and name == "pid") or "." in name)


def parse_items(s: Session, sub: str, words: list[str], pids: bool) -> Items:
    """The items, values with their units converted (:mod:`cgmanager.units`)."""
    from .values import kernel_value

    cmd = COMMANDS[sub]
    it = Items()
    for item in words:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise usage_error(cmd, s.prog, f"{item!r} is not owner=uid:gid, file=value or pid=pid")
        if name == "owner":
            u, colon, g = value.partition(":")
            if not colon:
                raise usage_error(cmd, s.prog, f"owner={value!r}: give uid:gid")
            uid, gid = parse_id(u), parse_id(g)
            if uid is None or gid is None:
                raise usage_error(cmd, s.prog, f"owner={value!r}: uid and gid are decimal numbers")
            it.uid, it.gid = uid, gid
        elif name == "pid" and pids:
            pid = parse_pid(value)
            if pid is None or pid == 0:
                raise usage_error(cmd, s.prog, f"pid={value!r}: not a process id")
            it.pids.append(pid)
        elif "." in name:
            if name in it.values:
                raise usage_error(cmd, s.prog, f"{name} given twice")
            it.values[name] = kernel_value(s, sub, name.partition(":")[2] or name, value)
        else:
            known = "owner=, pid= or a file" if pids else "owner= or a file"
            raise usage_error(cmd, s.prog, f"{item!r}: unknown item {name!r} ({known})")
    return it


def do_setup(s: Session, args: list[str]) -> str:
    it = parse_items(s, "setup", args[2:], pids=True)
    (created,) = s.call("Setup", args[0], args[1], it.uid, it.gid, it.values, it.pids)
    return lines(created, s.json)
