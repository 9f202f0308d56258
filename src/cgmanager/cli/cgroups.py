"""Subcommands that make, remove, list and hand over cgroups (0.42): create, remove,
removeonempty, prune, listchildren, chown, chmod, chmodfile."""

from __future__ import annotations

from .arguments import INT32_MAX, parse_id, parse_mode
from .commands import COMMANDS
from .info import ctl_cg
from .output import lines, to_json, usage_error

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .session import Session


def do_create(s: Session, args: list[str]) -> str:
    (existed,) = s.call("Create", args[0], args[1])
    if s.json:
        return to_json({"existed": existed == 1}) + "\n"
    return "Path existed\n" if existed == 1 else ""


def do_remove(s: Session, args: list[str]) -> str:
    """0.42 took any value but 0 as "recursive"; a typo there removes a whole subtree, so only
    0 and 1 are accepted."""
    flag = args[2] if len(args) == 3 else "1"
    if flag not in ("0", "1"):
        raise usage_error(
            COMMANDS["remove"],
            s.prog,
            f"Bad recursive flag: {flag!r}; give 0 (only an empty cgroup without children)"
            " or 1 (with its descendants, the default)",
        )
    recursive = flag == "1"
    fn = (
        "cgmanager_remove_sync (recursive)"
        if recursive
        else "cgmanager_remove_sync (non-recursive)"
    )
    (existed,) = s.call("Remove", args[0], args[1], int(recursive), fn=fn)
    if s.json:
        return to_json({"existed": existed != -1}) + "\n"
    return "Path did not exist\n" if existed == -1 else ""


def do_removeonempty(s: Session, args: list[str]) -> str:
    s.call("RemoveOnEmpty", args[0], args[1])
    return ""


def do_prune(s: Session, args: list[str]) -> str:
    s.call("Prune", *ctl_cg(args))
    return ""


def do_listchildren(s: Session, args: list[str]) -> str:
    (names,) = s.call("ListChildren", *ctl_cg(args))
    return lines(names, s.json)


def do_chown(s: Session, args: list[str]) -> str:
    uid, gid = parse_id(args[2]), parse_id(args[3])
    if uid is None or gid is None:
        bad = args[2] if uid is None else args[3]
        raise usage_error(
            COMMANDS["chown"],
            s.prog,
            f"Bad uid or gid: {bad!r} is not a number from 0 to {INT32_MAX - 1}",
        )
    s.call("Chown", args[0], args[1], uid, gid)
    return ""


def _chmod(s: Session, sub: str, controller: str, cgroup: str, file: str, text: str) -> str:
    mode = parse_mode(text)
    if mode is None:
        raise usage_error(
            COMMANDS[sub], s.prog, f"Bad mode: {text!r} is not an octal number such as 0755"
        )
    s.call("Chmod", controller, cgroup, file, mode)
    return ""


def do_chmod(s: Session, args: list[str]) -> str:
    return _chmod(s, "chmod", args[0], args[1], "", args[2])


def do_chmodfile(s: Session, args: list[str]) -> str:
    return _chmod(s, "chmodfile", args[0], args[1], args[2], args[3])
