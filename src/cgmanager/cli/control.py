"""Subcommands that stop or end a subtree's processes (cgmanager1): freeze, thaw, kill."""

from __future__ import annotations

from .output import to_json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .session import Session


def do_freeze(s: Session, args: list[str]) -> str:
    s.call("Freeze", args[0], args[1])
    return ""


def do_thaw(s: Session, args: list[str]) -> str:
    s.call("Thaw", args[0], args[1])
    return ""


def do_kill(s: Session, args: list[str]) -> str:
    (n,) = s.call("Kill", args[0], args[1])
    if s.json:
        return to_json({"killed": n}) + "\n"
    return f"{n}\n"
