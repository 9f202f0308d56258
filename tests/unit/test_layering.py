"""T0: the import graph shows the architecture (docs/ARCHITECTURE.md) and keeps it.

Read from the source with ``ast`` (module-level and function-level imports alike): no import
circles; the pure layers import nothing that does I/O on a client's behalf; the operations know
no transport; cgproxy and cgm depend on the contract and the transport, never on the daemon's
internals; the contract imports nothing at all.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

pytestmark = pytest.mark.t0

SRC = pathlib.Path(__file__).resolve().parents[2] / "src"
PACKAGE = "cgmanager"


def _module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: pathlib.Path, name: str) -> set[str]:
    """The project modules *path* imports (resolved, relative imports included)."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith(PACKAGE))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if not mod.startswith(PACKAGE):
                continue
            if mod != PACKAGE:  # (the root package only holds the version)
                out.add(mod)
            for a in node.names:  # "from . import names" imports a module
                if (SRC / (mod.replace(".", "/") + "/" + a.name + ".py")).exists() or (
                    SRC / mod.replace(".", "/") / a.name / "__init__.py"
                ).exists():
                    out.add(f"{mod}.{a.name}")
    return out


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in SRC.rglob("*.py")}
    return {name: _imports(path, name) & set(modules) - {name} for name, path in modules.items()}


GRAPH = _graph()


def _reach(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for dep in GRAPH.get(todo.pop(), ()):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def _is_package_init_edge(a: str, b: str) -> bool:
    """A package's __init__ re-exporting its own modules is no circle."""
    return b.startswith(a + ".") or a.startswith(b + ".")


def test_there_are_no_import_circles():
    circles = sorted(
        (a, b)
        for a, deps in GRAPH.items()
        for b in deps
        if a in _reach(b) and not _is_package_init_edge(a, b) and a < b
    )
    assert circles == []


def _under(deps: set[str], *prefixes: str) -> set[str]:
    return {d for d in deps if any(d == p or d.startswith(p + ".") for p in prefixes)}


def test_the_contract_imports_nothing():
    assert GRAPH["cgmanager.contract"] == set()


@pytest.mark.parametrize("pure", ["cgmanager.names", "cgmanager.permission", "cgmanager.scm"])
def test_pure_layers_stay_pure(pure):
    """names and permission decide without I/O; scm is a codec of bytes."""
    allowed = {
        "cgmanager.errors",
        "cgmanager.escapes",
        "cgmanager.names",
        "cgmanager.procfs",
        "cgmanager.kerneltext",
        "cgmanager.contract",
    }
    assert _reach(pure) <= allowed


def test_operations_know_no_transport():
    ops = [m for m in GRAPH if m.startswith("cgmanager.operations")]
    for m in ops:
        assert not _under(
            _reach(m),
            "cgmanager.dbus",
            "cgmanager.daemon",
            "cgmanager.proxy",
            "cgmanager.cli",
            "cgmanager.scm_server",
        ), m


@pytest.mark.parametrize("end", ["cgmanager.proxy", "cgmanager.cli"])
def test_the_proxy_and_the_cli_do_not_use_the_daemons_internals(end):
    for m in [m for m in GRAPH if m == end or m.startswith(end + ".")]:
        inner = _under(
            _reach(m),
            "cgmanager.daemon",
            "cgmanager.operations",
            "cgmanager.cgroupfs",
            "cgmanager.translate",
            "cgmanager.victim",
        )
        assert not inner, (m, inner)


def test_the_transport_knows_nothing_of_cgroups():
    for m in [m for m in GRAPH if m.startswith("cgmanager.dbus")]:
        assert not _under(
            _reach(m),
            "cgmanager.operations",
            "cgmanager.daemon",
            "cgmanager.cgroupfs",
            "cgmanager.permission",
        ), m
