"""What the hostile suites (tests/daemon/test_hostile.py, tests/proxy/test_refusals.py) check
on the kernel side after a refusal, and the hostile inputs they share."""

from __future__ import annotations

import os

from kernel.helpers import snapshot

O_CLOEXEC = 0o2000000


def fd_flags(pid: int) -> dict[int, int]:
    """fd -> open flags of process *pid* (from /proc/<pid>/fdinfo)."""
    flags = {}
    for fd in os.listdir(f"/proc/{pid}/fdinfo"):
        try:
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                for line in f:
                    if line.startswith("flags:"):
                        flags[int(fd)] = int(line.split()[1], 8)
        except FileNotFoundError:
            continue
    return flags


#: files whose *contents* a refused request must leave unchanged (besides every owner and mode)
WATCHED = (
    "cgroup.procs",
    "tasks",
    "cgroup.threads",
    "notify_on_release",
    "cgroup.clone_children",
    "pids.max",
    "cgroup.subtree_control",
    "cgroup.max.descendants",
    "cgroup.max.depth",
    "cgroup.type",
    "cgroup.freeze",
    "freezer.state",
    "cpuset.cpus",
    "cpuset.mems",
)


def kernel_state(*dirs: str) -> dict:
    """Owners and modes of every cgroup and file below *dirs*, the contents of the WATCHED
    files, and every v1 hierarchy's host-global ``release_agent``."""
    out: dict = {}
    for d in dirs:
        out.update({(d, k): v for k, v in snapshot(d).items()})
        for dirpath, _dirs, files in os.walk(d):
            for f in files:
                if f in WATCHED:
                    with open(os.path.join(dirpath, f)) as fh:
                        out[(dirpath, f, "content")] = fh.read()
    for mount in ("pids", "freezer", "cpuset", "cpu", "devices", "blkio", "systemd"):
        agent = f"/sys/fs/cgroup/{mount}/release_agent"
        if os.path.exists(agent):
            with open(agent) as fh:
                out[("release_agent", mount)] = fh.read()
    return out


def cgroups_of(pid: int) -> str:
    with open(f"/proc/{pid}/cgroup") as f:
        return f.read()


FORBIDDEN_KEYS = (
    "release_agent",
    "notify_on_release",
    "cgroup.clone_children",
    "tasks",
    "cgroup.procs",
    "cgroup.threads",
    "../release_agent",
    "../../release_agent",
    "../../../release_agent",
    "/etc/passwd",
    "..",
    ".",
    "own/pids.max",
    "cgroup.sane_behavior",
)
