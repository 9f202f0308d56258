"""Help texts of the subcommands beyond 0.42 (imported only for ``cgm help``)."""

from __future__ import annotations

from .help import CGROUP, MULTI, Entry

# name: (synopsis, description, arguments, output, examples, D-Bus call)
TEXTS: dict[str, Entry] = {
    "tree": (
        "[controller] [cgroup]",
        "Show a cgroup and all its descendants as a tree, with the processes in each\n"
        "(pid and command line; threads of a listed process are folded into it), in\n"
        "the spirit of systemd-cgls.  Without a controller every hierarchy is shown.",
        "  [controller]  a hierarchy as listed by listcontrollers (default: all).\n"
        "  [cgroup]      where to start, as for listchildren (default: your own\n"
        "                cgroup, '').",
        "The first line of each tree is controller:path; below it the processes, then\n"
        "the child cgroups.  Sub-cgroups that cannot be read are shown with the reason\n"
        "(and the exit status is 1).  With --json: for one controller an object\n"
        '{"controller", "cgroup", "path", "tasks": [{"pid", "cmd", "threads"}, ...],\n'
        '"children": [{"name", "tasks", "children"[, "error"]}, ...]}; without one, a\n'
        "list of such objects.",
        ["{p} tree pids", "{p} tree freezer build", "{p} --json tree pids | jq ."],
        "ListChildren and GetTasks for every cgroup of the subtree",
    ),
    "setup": (
        "<controller> <cgroup> [owner=uid:gid] [file=value]... [pid=pid]...",
        "A container's set-up in one request: create <cgroup> (which must not exist yet)\n"
        "in every hierarchy named, hand it to uid:gid, write each file=value in the\n"
        "order given, move each pid into it.  Each step is checked exactly like create,\n"
        "chown, setvalue and movepid.  All or nothing: if a step fails, the processes\n"
        "already moved go back and the cgroups made are removed; the error says which\n"
        "step failed.  Prints the cgroups made, one per hierarchy.",
        MULTI + "\n" + CGROUP + "\n"
        "  owner=uid:gid chown the new cgroups (root only, as chown).\n"
        "  file=value    write value to file; the file's prefix names its hierarchy\n"
        "                (pids.max: pids), or say controller:file (unified:cgroup.max.depth).\n"
        "  pid=pid       move that process in (repeat for more).",
        "hierarchy:cgroup lines, e.g. pids:ct1.",
        [
            "sudo {p} setup pids,freezer,unified ct1 owner=100000:100000 pids.max=500 "
            "unified:cgroup.max.descendants=100 pid=4242",
            "{p} setup pids build/job2 pids.max=64 pid=$$",
        ],
        "org.linuxcontainers.cgmanager1.Setup(controllers, cgroup, uid, gid, a{ss} values,"
        " ai pids) -> as (new: not in 0.42)",
    ),
    "freeze": (
        "<controller> <cgroup>",
        "Freeze every process of <cgroup> and its descendants; returns once the kernel\n"
        "reports the whole subtree frozen (v2: cgroup.events 'frozen 1'; v1: freezer.state\n"
        "FROZEN), or fails after 10 s.  Every process frozen must be one you may move.",
        "  <controller>  unified (v2) or freezer (v1).\n" + CGROUP,
        "",
        ["{p} freeze unified build", "{p} freeze freezer job"],
        "org.linuxcontainers.cgmanager1.Freeze (new: not in 0.42)",
    ),
    "thaw": (
        "<controller> <cgroup>",
        "Thaw a frozen cgroup; returns once the kernel reports it thawed.",
        "  <controller>  unified (v2) or freezer (v1).\n" + CGROUP,
        "",
        ["{p} thaw unified build"],
        "org.linuxcontainers.cgmanager1.Thaw (new: not in 0.42)",
    ),
    "kill": (
        "<controller> <cgroup>",
        "SIGKILL every process of <cgroup> and its descendants and print how many there\n"
        "were.  v2 writes cgroup.kill (safe against forks); on v1 the subtree is frozen\n"
        "first where the hierarchy has the freezer, then each process is killed.  Every\n"
        "process must be one you may move (your own, or any as root).",
        "  <controller>  any hierarchy.\n" + CGROUP,
        "",
        ["{p} kill unified build", "{p} kill pids job"],
        "org.linuxcontainers.cgmanager1.Kill (new: not in 0.42)",
    ),
    "events": (
        "<controller> [cgroup]",
        "Print cgroup.events as 'key value' lines: populated (processes anywhere below)\n"
        "and frozen; on v1 the same facts are computed.",
        "  <controller>  any hierarchy.\n  [cgroup]      as for listchildren.",
        "",
        ["{p} events unified build", "{p} --json events pids job"],
        "org.linuxcontainers.cgmanager1.GetEvents (new: not in 0.42)",
    ),
    "stat": (
        "<controller> [cgroup]",
        "Print cgroup.stat as 'key value' lines (nr_descendants, nr_dying_descendants);\n"
        "on v1, nr_descendants is counted.",
        "  <controller>  any hierarchy.\n  [cgroup]      as for listchildren.",
        "",
        ["{p} stat unified build"],
        "org.linuxcontainers.cgmanager1.GetStat (new: not in 0.42)",
    ),
    "help": (
        "[subcommand]",
        "Without an argument: the list of subcommands.  With one: how to use it.",
        "",
        "",
        ["{p} help movepid", "{p} movepid --help"],
        "",
    ),
}
