"""Test harness for cgmanager: per-run cgroup roots, tracked processes, test users,
namespaces, tiers and a leftover check.

Import it as ``support`` (``tests/`` is put on ``sys.path`` by ``tests/conftest.py``),
never as ``tests.support``: the run-wide registry is a module singleton and a second
copy of the package would track resources that nobody cleans up or checks.
"""

if __name__ != "support":  # pragma: no cover - guard against a duplicate singleton
    raise ImportError(
        f"import the test harness as 'support', not {__name__!r} "
        "(tests/conftest.py puts tests/ on sys.path)"
    )
