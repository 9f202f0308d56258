"""SECURITY.md names the tests that cover each attack: every one must exist, so the document
cannot silently rot when a test is renamed or removed."""

from __future__ import annotations

import ast
import os
import re

import pytest

pytestmark = pytest.mark.t0

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
REF = re.compile(r"`(tests/[\w/]+\.py)::([\w:]+)`")


def _doc() -> str:
    with open(os.path.join(ROOT, "SECURITY.md")) as f:
        return f.read()


def _defined(path: str) -> set[str]:
    """``name`` for module-level functions, ``Class::name`` for methods of classes."""
    with open(os.path.join(ROOT, path)) as f:
        tree = ast.parse(f.read(), path)
    out: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            out.add(node.name)
        elif isinstance(node, ast.ClassDef):
            out |= {f"{node.name}::{m.name}" for m in node.body if isinstance(m, ast.FunctionDef)}
    return out


def test_every_named_test_exists():
    refs = REF.findall(_doc())
    assert len(refs) > 50  # the document does name its tests
    missing = []
    for path, name in refs:
        if not os.path.exists(os.path.join(ROOT, path)):
            missing.append(f"{path} (no such file)")
        elif not name.split("::")[-1].startswith("test") or name not in _defined(path):
            missing.append(f"{path}::{name}")
    assert missing == []


def test_the_checker_notices_a_missing_test():
    assert "test_every_named_test_exists" in _defined("tests/unit/test_security_doc.py")
    assert "no_such_test" not in _defined("tests/unit/test_security_doc.py")
    assert REF.findall("see `tests/a/b.py::C::test_x`") == [("tests/a/b.py", "C::test_x")]


def test_the_limits_table_states_the_code_defaults():
    """The defaults quoted in "Limits and their defaults" are the ones the code has."""
    from cgmanager import scm_server
    from cgmanager.daemon import reaper, workers
    from cgmanager.daemon.main import DEFAULT_MAX_DEPTH
    from cgmanager.dbus.limits import Limits

    doc = _doc()
    rows = {
        "--max-connections": f"| {Limits.max_connections} |",
        "--max-connections-per-uid": f"| {Limits.max_connections_per_uid} |",
        "--max-depth": f"| {DEFAULT_MAX_DEPTH} |",
        "--scm-timeout": f"| {scm_server.DEFAULT_TIMEOUT:g} s |",
        "`--max-watches`": f"| {reaper.DEFAULT_MAX_WATCHES} |",
        "`--max-watches-per-uid`": f"| {reaper.DEFAULT_MAX_WATCHES_PER_UID} |",
        "`--max-watched-processes`": f"| {reaper.DEFAULT_MAX_PROCESSES} |",
        "`--max-watched-processes-per-uid`": f"| {reaper.DEFAULT_MAX_PROCESSES_PER_UID} |",
        "`V1_RECHECK_SECONDS`": f"| {reaper.V1_RECHECK_SECONDS:g} s |",
        "`sasl_timeout`": f"| {Limits.sasl_timeout:g} s |",
        "`message_timeout`": f"| {Limits.message_timeout:g} s |",
        "`max_fds_per_message`": f"| {Limits.max_fds_per_message} |",
        "`--workers`": f"| {workers.DEFAULT_WORKERS} |",
        "`DEFAULT_QUEUE_TOTAL`": (
            f"| {workers.DEFAULT_QUEUE_PER_KEY} per requestor uid,"
            f" {workers.DEFAULT_QUEUE_TOTAL} in all |"
        ),
        "`READY_PER_TURN`": f"| {reaper.READY_PER_TURN} |",
    }
    lines = doc.splitlines()
    for where, cell in rows.items():
        row = next(line for line in lines if line.startswith("|") and where in line)
        assert cell in row, (where, row)
    pending = next(line for line in lines if line.startswith("| pending Scm"))
    assert f"{scm_server.MAX_PENDING_PER_CONNECTION} per connection" in pending
    assert f"{scm_server.MAX_PENDING} in all" in pending
    from cgmanager import names

    name_row = next(line for line in lines if line.startswith("| a new cgroup name"))
    assert f"| {names.NAME_MAX} bytes / {names.PATH_MAX} bytes |" in name_row
    assert Limits.max_message_size == 1 << 20 and "| 1 MiB |" in next(
        line for line in lines if "max_message_size" in line
    )
