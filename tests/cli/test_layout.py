"""The shape of cgm's code (issue 15): small modules, no import circle, calls derived from
the contract (no D-Bus signature written in the CLI)."""

from __future__ import annotations

import ast
import os
import re

import pytest

pytestmark = pytest.mark.t0

CLI = os.path.join(os.path.dirname(__file__), "..", "..", "src", "cgmanager", "cli")
MODULES = sorted(f[:-3] for f in os.listdir(CLI) if f.endswith(".py"))


def source(name: str) -> str:
    with open(os.path.join(CLI, name + ".py")) as f:
        return f.read()


def imports(name: str) -> set[str]:
    """The sibling modules *name* imports, anywhere in it (TYPE_CHECKING blocks excepted)."""
    out: set[str] = set()
    tree = ast.parse(source(name))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            skip |= {id(n) for n in ast.walk(node)}
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                out.add(node.module.split(".")[0])
            else:
                out |= {a.name for a in node.names}
    return out & set(MODULES)


def test_modules_are_small():
    sizes = {m: source(m).count("\n") for m in MODULES}
    assert all(n <= 400 for n in sizes.values()), sizes


def test_no_import_circle():
    graph = {m: imports(m) for m in MODULES}

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    circles = [m for m in MODULES if m in reach(m)]
    assert not circles, {m: graph[m] for m in circles}
    # the families are reached through the table of subcommands, never the other way
    assert all("main" not in graph[m] for m in MODULES)


def test_no_dbus_signature_is_written_in_the_cli():
    """Every call names a contract method; interface and signature come from the contract."""
    for m in MODULES:
        text = source(m)
        assert "INTERFACE" not in text or m == "session", m
        assert not re.search(r"\bcall\([^)]*\"(ss|ssi|sss|ssss|si|ssii|sssi)\"", text), m
