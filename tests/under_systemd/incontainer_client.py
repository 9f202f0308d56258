"""A cgmanager client that runs *inside* the t4 container (started through nsenter).

Reads one JSON object on stdin: ``{"attach": <subcgroup or null>, "unit": ..., "ops": [...]}``.

* ``attach``: first ask the container's systemd to move this process into ``unit``'s cgroup
  (``AttachProcessesToUnit(unit, attach, [pid])`` on ``/run/systemd/private``; ``""`` is the
  unit's own cgroup, the delegation point).  That is the systemd way into a delegated subtree:
  the process enters a cgroup below the daemon's bound, so its relative paths mean something.
* ``ops``: a list of
  - ``["call", method, signature, [args...]]`` -> ``{"ok": [reply...]}`` or
    ``{"error": name, "message": text}``; an argument ``"$self"`` is this process's pid,
    ``"$last"`` the pid of the most recent sleeper;
  - ``["sleeper"]`` -> ``{"ok": pid}``: a detached ``sleep infinity`` child, in our cgroup;
  - ``["self"]`` -> ``{"ok": pid}``;
  - ``["cgroup"]`` -> ``{"ok": "<v2 path of this process>"}``.

Prints one JSON object ``{"results": [...]}``.  Only the project's own blocking D-Bus client is
used (peer-to-peer, no Hello), for systemd's private socket as for cgmanager's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from cgmanager.dbus.client import DBusError, connect

SYSTEMD_PRIVATE = "unix:path=/run/systemd/private"
OBJ = "/org/linuxcontainers/cgmanager"
IFACE = "org.linuxcontainers.cgmanager0_0"


def attach(unit: str, sub: str) -> None:
    bus = connect(SYSTEMD_PRIVATE, timeout=10)
    try:
        bus.call(
            "/org/freedesktop/systemd1",
            "org.freedesktop.systemd1.Manager",
            "AttachProcessesToUnit",
            "ssau",
            [unit, sub, [os.getpid()]],
        )
    finally:
        bus.close()


def own_cgroup() -> str:
    with open("/proc/self/cgroup") as f:
        for line in f:
            if line.startswith("0::"):
                return line[3:].strip()
    return ""


def main() -> int:
    req = json.load(sys.stdin)
    if req.get("attach") is not None:
        attach(req.get("unit", "cgmanager.service"), req["attach"])
    socket = req.get("socket", "/run/cgmanager/sock")
    conn = None
    results = []
    last = 0
    for op in req.get("ops", []):
        kind = op[0]
        if kind == "call":
            if conn is None:
                conn = connect(f"unix:path={socket}", timeout=float(req.get("timeout", 10)))
            _, method, sig, args = op
            subst = {"$self": os.getpid(), "$last": last}
            args = [subst.get(a, a) if isinstance(a, str) else a for a in args]
            try:
                results.append({"ok": list(conn.call(OBJ, IFACE, method, sig, args))})
            except DBusError as e:
                results.append({"error": e.name, "message": e.message})
        elif kind == "sleeper":
            p = subprocess.Popen(
                ["sleep", "infinity"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            last = p.pid
            results.append({"ok": p.pid})
        elif kind == "self":
            results.append({"ok": os.getpid()})
        elif kind == "cgroup":
            results.append({"ok": own_cgroup()})
        else:
            results.append({"error": "bad-op", "message": repr(op)})
    if conn is not None:
        conn.close()
    json.dump({"results": results}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
