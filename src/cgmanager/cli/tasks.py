"""Subcommands about processes and their cgroups (0.42): getpidcgroup(abs), movepid(abs),
gettasks, gettasksrecursive."""

from __future__ import annotations

from .arguments import parse_pid
from .commands import COMMANDS
from .info import ctl_cg
from .output import lines, to_json, usage_error

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .session import Session


def _pid(s: Session, sub: str, text: str) -> int:
    pid = parse_pid(text)
    if pid is None:
        raise usage_error(COMMANDS[sub], s.prog, f"Bad pid: {text!r} is not a process id")
    return pid


def _getpidcgroup(s: Session, sub: str, method: str, args: list[str]) -> str:
    pid = _pid(s, sub, args[1])
    (cgroup,) = s.call(method, args[0], pid)
    if s.json:
        return to_json({"pid": pid, "cgroup": cgroup}) + "\n"
    return f"{cgroup}\n"


def do_getpidcgroup(s: Session, args: list[str]) -> str:
    return _getpidcgroup(s, "getpidcgroup", "GetPidCgroup", args)


def do_getpidcgroupabs(s: Session, args: list[str]) -> str:
    return _getpidcgroup(s, "getpidcgroupabs", "GetPidCgroupAbs", args)


def do_movepid(s: Session, args: list[str]) -> str:
    s.call("MovePid", args[0], args[1], _pid(s, "movepid", args[2]))
    return ""


def do_movepidabs(s: Session, args: list[str]) -> str:
    s.call("MovePidAbs", args[0], args[1], _pid(s, "movepidabs", args[2]))
    return ""


def do_gettasks(s: Session, args: list[str]) -> str:
    (pids,) = s.call("GetTasks", *ctl_cg(args))
    return lines(pids, s.json)


def do_gettasksrecursive(s: Session, args: list[str]) -> str:
    (pids,) = s.call("GetTasksRecursive", *ctl_cg(args))
    return lines(pids, s.json)
