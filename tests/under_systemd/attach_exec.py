"""Run a command inside a unit's cgroup, the systemd way, then become the command.

    python -I attach_exec.py UNIT SUBCGROUP ARGV...

Runs *inside* a t4 container (through nsenter): asks the container's systemd to move this
process into UNIT's cgroup (``AttachProcessesToUnit(UNIT, SUBCGROUP, [pid])`` on
``/run/systemd/private``; ``""`` is the unit's own cgroup), then execs ARGV with the same pid,
so e.g. the installed ``cgm`` runs as a client inside cgmanager.service's delegated subtree.
Uses the checkout's blocking D-Bus client (the harness's, not the package under test).
"""

from __future__ import annotations

import os
import sys

from cgmanager.dbus.client import connect


def main() -> int:
    if len(sys.argv) < 4:
        print("usage: attach_exec.py UNIT SUBCGROUP ARGV...", file=sys.stderr)
        return 2
    unit, sub, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
    bus = connect("unix:path=/run/systemd/private", timeout=10)
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
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    sys.exit(main())
