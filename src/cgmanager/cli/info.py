"""Subcommands that ask the daemon about itself and about a cgroup's state: ping,
listcontrollers, apiversion (0.42), events and stat (cgmanager1)."""

from __future__ import annotations

from .output import lines, to_json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .session import Session


def ctl_cg(args: list[str]) -> tuple[str, str]:
    """<controller> [cgroup]: the cgroup defaults to the caller's own ('')."""
    return (args[0], args[1] if len(args) > 1 else "")


def do_ping(s: Session, args: list[str]) -> str:
    s.call("Ping", 0)
    return ""


def do_listcontrollers(s: Session, args: list[str]) -> str:
    (names,) = s.call("ListControllers")
    return lines(names, s.json)


def do_apiversion(s: Session, args: list[str]) -> str:
    v = s.api_version()
    if s.json:
        return to_json({"api_version": v}) + "\n"
    return f"{v}\n"


def _flat(s: Session, method: str, args: list[str]) -> str:
    (d,) = s.call(method, *ctl_cg(args))
    if s.json:
        return to_json(d) + "\n"
    return "".join([f"{k} {v}\n" for k, v in d.items()])


def do_events(s: Session, args: list[str]) -> str:
    if s.opts.get("follow"):  # cgm events ... --follow: cgm monitor
        from .policy import do_monitor

        return do_monitor(s, args)
    return _flat(s, "GetEvents", args)


def do_stat(s: Session, args: list[str]) -> str:
    return _flat(s, "GetStat", args)
