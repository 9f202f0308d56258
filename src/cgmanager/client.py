"""Typed calls of the cgmanager API for Python programs, over :mod:`cgmanager.dbus.client`.

The generic ``Connection.call`` reaches every method; what is here spares callers the
signatures of the compound ones::

    from cgmanager.dbus.client import connect
    from cgmanager import client

    with connect("unix:path=/sys/fs/cgroup/cgmanager/sock") as conn:
        client.setup(conn, "pids,unified", "ct1", owner=(100000, 100000),
                     values={"pids.max": "500"}, pids=[4242])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .contract import INTERFACE1, OBJECT_PATH
from .dbus.client import Connection


def setup(
    conn: Connection,
    controllers: str,
    cgroup: str,
    *,
    owner: tuple[int, int] | None = None,
    values: Mapping[str, str] | None = None,
    pids: Sequence[int] = (),
) -> list[str]:
    """``Setup``: create *cgroup* (new) in each hierarchy of *controllers*, chown it to
    *owner*, write *values* in order (``file`` or ``controller:file`` → value), move *pids*
    in — all or nothing.  Returns the cgroups made (``hierarchy:path``); raises
    :class:`~cgmanager.dbus.errors.DBusError` naming the failed step otherwise."""
    uid, gid = owner if owner is not None else (-1, -1)
    (created,) = conn.call(
        OBJECT_PATH,
        INTERFACE1,
        "Setup",
        "ssiia{ss}ai",
        (controllers, cgroup, uid, gid, dict(values or {}), list(pids)),
    )
    return list(created)
