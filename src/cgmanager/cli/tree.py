"""``cgm tree [controller] [cgroup]``: cgroups and their processes, like systemd-cgls.

Without a controller (or with a list, or ``all``) the hierarchies are merged: a cgroup whose
path is the same in several hierarchies is one node, and a hierarchy list in brackets marks a
cgroup or process that is not in every hierarchy its parent is in.  Hierarchies whose starting
cgroup differs (cgm itself sits elsewhere there) get a tree of their own.  With one
controller the output keeps the form it had (``pids:/path`` first).

Kernel threads are hidden unless ``--all`` (``-k``); ``--depth N`` stops N levels down.  On a
terminal lines are cut to its width (``--full``/``-l``: not), colour is used, and a long tree
goes through the pager (``--no-pager``: not).

Read with one Snapshot per hierarchy (``cgroup.procs`` of the whole subtree; see
:mod:`.readings` for daemons without it).  A cgroup the caller may not read is shown with
"cannot read" and makes the exit status 1.
"""

from __future__ import annotations

from .output import Exit, to_json
from .processes import Process, pids_of
from .readings import Request, absolute_starts, below, hierarchies, read_all, where
from .terminal import colour, cut, is_tty, page, size

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .session import Session

_NOT_READABLE = "not permitted"


class Node:
    """One cgroup path, across the hierarchies that have it."""

    __slots__ = ("path", "name", "hs", "unreadable", "procs", "children")

    def __init__(self, path: str, name: str) -> None:
        self.path = path
        self.name = name
        self.hs: set[str] = set()
        self.unreadable: set[str] = set()
        #: pid -> hierarchies in which it is a member here
        self.procs: dict[int, set[str]] = {}
        self.children: dict[str, Node] = {}


class Style:
    def __init__(self, on: bool, show_all: bool) -> None:
        self.on = on
        self.all = show_all
        self.procs: dict[int, Process] = {}

    def bold(self, t: str) -> str:
        return f"\x1b[1m{t}\x1b[0m" if self.on else t

    def dim(self, t: str) -> str:
        return f"\x1b[2m{t}\x1b[0m" if self.on and t else t

    def process(self, pid: int) -> Process:
        p = self.procs.get(pid)
        if p is None:
            p = self.procs[pid] = Process(pid)
        return p

    def shown(self, node: Node) -> list[tuple[int, set[str]]]:
        return [
            (pid, hs)
            for pid, hs in sorted(node.procs.items())
            if self.all or not self.process(pid).kernel
        ]


def _tag(hs: set[str], parent: set[str]) -> str:
    """`` [pids,unified]``: each hierarchy by its first name (``unified,hugetlb`` is one)."""
    return "" if hs == parent else " [" + ",".join(sorted(h.split(",")[0] for h in hs)) + "]"


def do_tree(s: Session, args: list[str]) -> str:
    o = s.opts
    controller, cgroup = where(args)
    single = controller is not None and "," not in controller and controller != "all"
    depth = o.get("depth")
    hs = hierarchies(s, controller)
    bases = absolute_starts(s, hs, cgroup)
    readings = read_all(
        s, [Request(h, cgroup, ["cgroup.procs"], -1 if depth is None else depth) for h in hs]
    )
    roots: dict[str, Node] = {}
    first_error = None
    for h, r in zip(hs, readings):
        if r.error is not None:
            first_error = first_error or r.error
            continue
        base = bases.get(h) or cgroup or "."
        root = roots.get(base)
        if root is None:
            root = roots[base] = Node(base, base)
        for rel, readable, values in r.rows:
            node = root
            for part in rel.split("/") if rel else []:
                child = node.children.get(part)
                if child is None:
                    child = node.children[part] = Node(below(node.path, part), part)
                node = child
            node.hs.add(h)
            if not readable:
                node.unreadable.add(h)
            for pid in pids_of(values.get("cgroup.procs")):
                node.procs.setdefault(pid, set()).add(h)
    if not roots:
        if first_error is not None:
            raise first_error
        return ""
    tty = is_tty(1)
    style = Style(colour(o.get("color")) and not s.json, bool(o.get("all")))
    failed = any(_unreadable(r) for r in roots.values())
    if s.json:
        docs = [_json(root, style, single) for root in roots.values()]
        if single:
            docs[0] = {"controller": controller, "cgroup": cgroup, **docs[0]}
        text = to_json(docs[0] if single else docs) + "\n"
    else:
        lines: list[str] = []
        every = set(hs)
        for root in roots.values():
            if lines:
                lines.append("")
            head = f"{controller}:{root.path}" if single else root.path + _tag(root.hs, every)
            lines.append(style.bold(head))
            _draw(root, "", lines, style, single)
        if tty and not o.get("full"):
            width = size(1)[0]
            lines = [cut(line, width) for line in lines]
        text = "".join(line + "\n" for line in lines)
        if tty and not o.get("no_pager"):
            page(text)
            text = ""
    if failed:
        raise Exit(1, "cgm: tree: some cgroups could not be read (shown with the reason)\n", text)
    return text


def _unreadable(node: Node) -> bool:
    return bool(node.unreadable) or any(_unreadable(c) for c in node.children.values())


def _draw(node: Node, prefix: str, out: list[str], style: Style, single: bool) -> None:
    procs = style.shown(node)
    kids = [node.children[k] for k in sorted(node.children)]
    n = len(procs) + len(kids)
    for i, (pid, hs) in enumerate(procs):
        branch = "└─" if i == n - 1 else "├─"
        p = style.process(pid)
        threads = f" (+{p.threads} threads)" if p.threads else ""
        out.append(
            f"{style.dim(prefix + branch)}{pid} {p.cmd}{threads}{style.dim(_tag(hs, node.hs))}"
        )
    for j, child in enumerate(kids):
        last = len(procs) + j == n - 1
        branch, cont = ("└─", "  ") if last else ("├─", "│ ")
        why = ""
        if child.unreadable:
            where = "" if single else " in " + ",".join(sorted(child.unreadable))
            why = f" (cannot read{where}: {_NOT_READABLE})"
        tag = style.dim(_tag(child.hs, node.hs))
        out.append(f"{style.dim(prefix + branch)}{style.bold(child.name)}{tag}{why}")
        _draw(child, prefix + cont, out, style, single)


def _json(node: Node, style: Style, single: bool, root: bool = True) -> dict[str, Any]:
    tasks: list[dict[str, Any]] = []
    for pid, hs in style.shown(node):
        p = style.process(pid)
        t: dict[str, Any] = {"pid": pid, "cmd": p.cmd, "threads": p.threads}
        if not single:
            t["hierarchies"] = sorted(hs)
        tasks.append(t)
    doc: dict[str, Any] = {"path": node.path} if root else {"name": node.name}
    if not single:
        doc["hierarchies"] = sorted(node.hs)
    doc["tasks"] = tasks
    doc["children"] = [_json(node.children[k], style, single, False) for k in sorted(node.children)]
    if node.unreadable:
        doc["error"] = _NOT_READABLE
    return doc
