"""``cgm tree [controller] [cgroup]``: a subtree with its processes, like systemd-cgls.

Built from ListChildren and GetTasks on every cgroup of the subtree (one connection, two
calls per cgroup).  Process names come from ``/proc`` of the machine cgm runs on: the daemon
reports ids in its own pid namespace, which is cgm's own for plain calls.  On v1 hierarchies
GetTasks lists threads; a thread whose process is listed in the same cgroup is folded into it.
"""

from __future__ import annotations

from .output import CallFailed, Exit, to_json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .session import Session

_NOT_FOUND = "org.linuxcontainers.cgmanager.Error.NotFound"
Node = dict[str, "Any"]  # {"tasks", "children"[, "error"]}


def do_tree(s: Session, args: list[str]) -> str:
    import sys

    if args:
        controllers = [args[0]]
    else:
        (controllers,) = s.call("ListControllers")
    cgroup = args[1] if len(args) > 1 else ""
    out: list[Any] = []
    failed = False
    for i, c in enumerate(controllers):
        try:
            node = _walk(s, c, cgroup)
        except CallFailed as e:
            if args:
                raise
            # listing every hierarchy: report this one and go on with the others
            failed = True
            sys.stderr.write(f"cgm: tree {c}: call to {e.fn} failed: {e.message}\n")
            continue
        node = {"controller": c, "cgroup": cgroup, "path": _abs_path(s, c, cgroup), **node}
        failed = failed or _has_errors(node)
        if s.json:
            out.append(node)
        else:
            if i and out:
                out.append("")
            out.append(f"{c}:{node['path']}")
            _draw(node, "", out)
    if s.json:
        text = to_json(out[0] if args else out) + "\n"
    else:
        text = "".join(line + "\n" for line in out)
    if failed:
        raise Exit(1, "cgm: tree: some cgroups could not be read (shown with the reason)\n", text)
    return text


def _abs_path(s: Session, controller: str, cgroup: str) -> str:
    """The starting cgroup as an absolute path, when the daemon tells us where we are."""
    if cgroup.startswith("/"):
        return cgroup
    import os

    try:
        (mine,) = s.call("GetPidCgroupAbs", controller, os.getpid())
    except CallFailed:
        return cgroup or "."
    if not cgroup:
        return str(mine)
    return str(mine).rstrip("/") + "/" + cgroup.strip("/")


def _walk(s: Session, controller: str, cgroup: str) -> Node:
    """{"tasks": [...], "children": [...]} for *cgroup*; errors below the root are recorded
    in the node (a child that vanished meanwhile is dropped)."""
    (pids,) = s.call("GetTasks", controller, cgroup)
    (names,) = s.call("ListChildren", controller, cgroup)
    children = []
    for name in sorted(names):
        sub = name if not cgroup else cgroup.rstrip("/") + "/" + name
        try:
            child = _walk(s, controller, sub)
        except CallFailed as e:
            if e.name == _NOT_FOUND:
                continue  # removed while we looked
            child = {"tasks": [], "children": [], "error": e.message}
        children.append({"name": name, **child})
    return {"tasks": _processes(pids), "children": children}


def _has_errors(node: Node) -> bool:
    return "error" in node or any(_has_errors(c) for c in node["children"])


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def _tgid(tid: int) -> int:
    status = _read(f"/proc/{tid}/status")
    if status:
        for line in status.split(b"\n"):
            if line.startswith(b"Tgid:"):
                try:
                    return int(line[5:])
                except ValueError:
                    return tid
    return tid


_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\\": "\\\\"}


def printable(text: str) -> str:
    """One line whatever a process put in its argv: control characters escaped C-style."""
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(
        _ESCAPES.get(c)
        or (c if c.isprintable() else f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")
        for c in text
    )


def _command(pid: int) -> str:
    raw = _read(f"/proc/{pid}/cmdline")
    if raw:
        return printable(raw.rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "replace"))
    comm = _read(f"/proc/{pid}/comm")
    if comm is not None:  # a kernel thread, or a zombie
        return "[" + printable(comm.rstrip(b"\n").decode("utf-8", "replace")) + "]"
    return "?"  # exited meanwhile


def _processes(pids: list[int]) -> list[dict[str, Any]]:
    listed = set(pids)
    threads: dict[int, int] = {}
    shown = []
    for tid in pids:
        tgid = _tgid(tid)
        if tgid != tid and tgid in listed:
            threads[tgid] = threads.get(tgid, 0) + 1
        else:
            shown.append(tid)
    return [{"pid": p, "cmd": _command(p), "threads": threads.get(p, 0)} for p in shown]


def _draw(node: Node, prefix: str, out: list[Any]) -> None:
    entries = [("task", t) for t in node["tasks"]] + [("cg", c) for c in node["children"]]
    for i, (kind, item) in enumerate(entries):
        last = i == len(entries) - 1
        branch, cont = ("└─", "  ") if last else ("├─", "│ ")
        if kind == "task":
            extra = f" (+{item['threads']} threads)" if item["threads"] else ""
            out.append(f"{prefix}{branch}{item['pid']} {item['cmd']}{extra}")
        else:
            err = f" (cannot read: {item['error']})" if "error" in item else ""
            out.append(f"{prefix}{branch}{item['name']}{err}")
            _draw(item, prefix + cont, out)
