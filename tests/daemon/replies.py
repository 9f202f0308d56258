"""Reading what the placed Python client (``Place.py``) printed: a reply or an error."""

import ast


def ok(cp):
    """The reply tuple of a call that must have succeeded."""
    assert cp.returncode == 0, cp.stdout + cp.stderr
    return ast.literal_eval(cp.stdout.strip())


def refused(cp, kind):
    """A call that must have failed with ``org.linuxcontainers.cgmanager.Error.<kind>``."""
    assert cp.returncode != 0 and f"Error.{kind}" in cp.stdout, cp.stdout + cp.stderr
