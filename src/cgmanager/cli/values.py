"""Subcommands that read and write one cgroup file (0.42): getvalue, setvalue, listkeys.

Values given to setvalue may carry units (:mod:`cgmanager.units`); getvalue shows them with
``--human``."""

from __future__ import annotations

from .commands import COMMANDS
from .info import ctl_cg
from .output import to_json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .session import Session


def do_getvalue(s: Session, args: list[str]) -> str:
    (value,) = s.call("GetValue", args[0], args[1], args[2])
    if s.json:
        return to_json({"value": value}) + "\n"
    if s.human:
        from ..human import to_human

        value = to_human(args[2], value)
    return f"{value}\n"


def kernel_value(s: Session, sub: str, key: str, value: str) -> str:
    """*value* with its units converted for *key* (unchanged when it has none)."""
    if value.isdigit() or value == "-1":
        return value  # the kernel's own syntax: nothing to convert
    from .. import units

    try:
        return units.to_kernel(key, value)
    except units.UnitError as e:
        from .output import usage_error

        raise usage_error(COMMANDS[sub], s.prog, f"Bad value: {e}") from None


def do_setvalue(s: Session, args: list[str]) -> str:
    value = kernel_value(s, "setvalue", args[2], args[3])
    s.call("SetValue", args[0], args[1], args[2], value)
    return ""


def do_listkeys(s: Session, args: list[str]) -> str:
    (keys,) = s.call("ListKeys", *ctl_cg(args))
    if s.json:
        return (
            to_json(
                [
                    {"name": n, "uid": u, "gid": g, "mode": m, "mode_octal": f"{m:o}"}
                    for n, u, g, m in keys
                ]
            )
            + "\n"
        )
    return "".join([f"{n} {u} {g} {m:o}\n" for n, u, g, m in keys])
