"""The audit trail: one line per request that changes something, refused or done.

Lines go to the ``cgmanager.audit`` logger and name who asked as the kernel told the daemon
(the connection's SO_PEERCRED, and for an ``*Scm`` twin also the credentials the proxy passed).
Client strings are written with ``repr`` and cut at 200 characters: a name holding a newline
or a terminal escape cannot forge or hide a line.
"""

from __future__ import annotations

import logging
from typing import Any

from ..dbus.objects import MethodCall
from ..scm_server import Received

log = logging.getLogger("cgmanager.audit")
#: whether a line at that level would be written (lines are built only then)
enabled = log.isEnabledFor


def request(call: MethodCall, method: str, outcome: str) -> None:
    p = call.peer
    log.info(
        "audit: pid=%d uid=%d gid=%d %s(%s): %s",
        p.pid,
        p.uid,
        p.gid,
        method,
        ", ".join(_arg(a) for a in call.body),
        outcome,
    )


def scm_request(call: MethodCall, method: str, r: Received, args: Any, outcome: str) -> None:
    p = call.peer
    log.info(
        "audit: proxy pid=%d uid=%d gid=%d for pid=%d uid=%d gid=%d %s(%s): %s",
        p.pid,
        p.uid,
        p.gid,
        r.cred.pid,
        r.cred.uid,
        r.cred.gid,
        method,
        ", ".join(_arg(a) for a in args),
        outcome,
    )


def brief(result: tuple[Any, ...]) -> str:
    """A reply in an audit line: its first value."""
    return f"-> {result[0]}" if result else ""


def _arg(a: Any) -> str:
    return repr(a)[:200]
