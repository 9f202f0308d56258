"""``cgm get`` and ``cgm dump`` (libcgroup's cgget, cgget -a): several files of a cgroup
across hierarchies at once, as a table or JSON.

``get <cgroup> <file>...``: each file names its hierarchy by its prefix (``pids.max`` is read
in pids) or explicitly (``unified:cgroup.procs``).  ``dump <controller> [cgroup]``: every file
of the cgroup the caller may read, in each hierarchy named (``all``: every one).  Both read
through GetValue (v1 names translated on v2, as getvalue does), every call sent before the
first answer is read.
"""

from __future__ import annotations

from .commands import COMMANDS
from .output import CallFailed, Exit, to_json, usage_error
from .readings import hierarchies

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .session import Session

#: (hierarchy, file, value or None, error message or None)
Result = tuple[str, str, str | None, str | None]


def _read(s: Session, cgroup: str, wanted: list[tuple[str, str]]) -> list[Result]:
    serials = [s.send("GetValue", h, cgroup, f) for h, f in wanted]
    out: list[Result] = []
    for (h, f), serial in zip(wanted, serials):
        try:
            out.append((h, f, str(s.reply(serial, "GetValue")[0]), None))
        except CallFailed as e:
            out.append((h, f, None, e.message))
    return out


def _text(s: Session, results: list[Result], headers: bool) -> str:
    """``file: value`` lines (continuation lines of a value indented, as cgget does), under a
    ``hierarchy:`` line per hierarchy when there are several."""
    from ..human import to_human

    width = max((len(f) for _, f, v, _ in results if v is not None), default=0) + 1
    out: list[str] = []
    current = None
    for h, f, v, _ in results:
        if v is None:
            continue
        if headers and h != current:
            if current is not None:
                out.append("")
            out.append(f"{h}:")
            current = h
        if s.human:
            v = to_human(f, v)
        first, *rest = v.split("\n")
        out.append(f"{f + ':':<{width}} {first}".rstrip())
        out.extend(f"{'':<{width}} {line}" for line in rest)
    return "".join(line + "\n" for line in out)


def _finish(s: Session, sub: str, cgroup: str, results: list[Result], headers: bool) -> str:
    failed = [(h, f, e) for h, f, v, e in results if e is not None]
    if s.json:
        values: dict[str, dict[str, str]] = {}
        errors: dict[str, dict[str, str]] = {}
        for h, f, v, e in results:
            values.setdefault(h, {})
            errors.setdefault(h, {})
            if v is not None:
                values[h][f] = v
            elif e is not None and sub == "get":
                errors[h][f] = e
        doc = {h: {"cgroup": cgroup, "values": values[h], "errors": errors[h]} for h in values}
        text = to_json(doc) + "\n"
    else:
        text = _text(s, results, headers)
    if failed and sub == "get":
        err = "".join(f"cgm: get {h}:{f}: {e}\n" for h, f, e in failed)
        raise Exit(1, err, text)
    return text


def _wanted(s: Session, spec: str) -> tuple[str, str]:
    """(hierarchy, file) of a ``file`` or ``controller:file`` argument."""
    controller, colon, file = spec.partition(":")
    if not colon:
        file = spec
        controller, dot, rest = spec.partition(".")
        if not dot or not rest or controller == "cgroup":
            raise usage_error(
                COMMANDS["get"],
                s.prog,
                f"Bad file: {spec!r} names no hierarchy; say controller:file"
                " (e.g. unified:cgroup.procs, pids:tasks)",
            )
    if not controller or not file:
        raise usage_error(
            COMMANDS["get"], s.prog, f"Bad file: {spec!r}; give file or controller:file"
        )
    return controller, file


def do_get(s: Session, args: list[str]) -> str:
    cgroup, specs = args[0], args[1:]
    wanted = [_wanted(s, spec) for spec in specs]
    results = _read(s, cgroup, wanted)
    return _finish(s, "get", cgroup, results, len({h for h, _ in wanted}) > 1)


def do_dump(s: Session, args: list[str]) -> str:
    cgroup = args[1] if len(args) > 1 else ""
    hs = hierarchies(s, args[0])
    serials = [s.send("ListKeys", h, cgroup) for h in hs]
    wanted: list[tuple[str, str]] = []
    first_error: CallFailed | None = None
    for h, serial in zip(hs, serials):
        try:
            keys = s.reply(serial, "ListKeys")[0]
        except CallFailed as e:
            first_error = first_error or e
            continue
        for name, _uid, _gid, mode in sorted(keys):
            if mode & 0o444:  # a write-only knob (cgroup.kill) has nothing to show
                wanted.append((h, str(name)))
    if not wanted and first_error is not None:
        raise first_error
    results = _read(s, cgroup, wanted)
    return _finish(s, "dump", cgroup, results, len(hs) > 1)
