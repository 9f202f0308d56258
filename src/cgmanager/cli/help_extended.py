"""Help texts of the subcommands beyond 0.42 (imported only for ``cgm help``)."""

from __future__ import annotations

from .help_classic import CGROUP, CGROUP_ABS, MULTI, Entry

# name: (synopsis, description, arguments, output, examples, D-Bus call)
TEXTS: dict[str, Entry] = {
    "tree": (
        "",
        "Show a cgroup and all its descendants as a tree, with the processes in each\n"
        "(pid, command line, and how many more threads it has), like systemd-cgls.\n"
        "Without a controller (or with a list, or all) the hierarchies are merged: a\n"
        "cgroup whose path is the same in several is shown once, and a cgroup or\n"
        "process that is not in every hierarchy its parent is in is followed by the\n"
        "list of those it is in ('job [pids,freezer]').  Hierarchies where your own\n"
        "cgroup differs get a tree each.  Kernel threads are hidden unless asked for.\n"
        "On a terminal, lines are cut to its width, cgroup names are bold and a long\n"
        "tree goes through the pager ($CGM_PAGER, $PAGER, else less).",
        "  [controller]  a hierarchy, a comma-separated list, or all (default: all).\n"
        "  [cgroup]      where to start, as for listchildren (default: your own\n"
        "                cgroup, ''); alone, a path starting with / is the cgroup.\n"
        "Options:\n"
        "  --depth N     stop N levels below the start\n"
        "  --all, -k     show kernel threads too\n"
        "  --full, -l    do not cut lines to the terminal's width\n"
        "  --no-pager    never use the pager\n"
        "  --color WHEN  always, never or auto (a terminal without NO_COLOR)",
        "The first line is the starting path (controller:path with one controller);\n"
        "below it the processes, then the child cgroups.  Cgroups that cannot be read\n"
        "are shown with the reason (and the exit status is 1).  With --json: for one\n"
        'controller an object {"controller", "cgroup", "path", "tasks": [{"pid", "cmd",\n'
        '"threads"}, ...], "children": [{"name", "tasks", "children"[, "error"]}, ...]};\n'
        'merged, a list of such trees whose nodes and tasks also have "hierarchies".',
        [
            "{p} tree",
            "{p} tree pids",
            "{p} tree --depth 2 --all unified /",
            "{p} --json tree pids | jq .",
        ],
        "org.linuxcontainers.cgmanager1.Snapshot of cgroup.procs, one per hierarchy",
    ),
    "top": (
        "",
        "Show the cgroups below <cgroup> by CPU use, memory, I/O, tasks and pressure,\n"
        "refreshed every second, like systemd-cgtop.  Each figure covers the cgroup's\n"
        "whole subtree: CPU from cpu.stat (v2) or cpuacct.usage (v1) as % of one CPU,\n"
        "memory from memory.current or memory.usage_in_bytes, I/O from io.stat or\n"
        "blkio.throttle.io_service_bytes_recursive per second, tasks from\n"
        "pids.current, pressure as the 'some avg10' of cpu, memory and io (v2).  A\n"
        "path present in several hierarchies is one row.  Everything is read through\n"
        "cgmanager: you see what you may read.  On a terminal the view is live:\n"
        "c m i t s p sort by CPU, memory, I/O, tasks, pressure or path; + and -\n"
        "double or halve the delay; space refreshes; q quits.  Elsewhere (or with\n"
        "--batch) frames are printed one after the other.",
        "  [controller]  a hierarchy, a comma-separated list, or all (default: all).\n"
        "  [cgroup]      where to start (default: your own cgroup, ''); alone, a\n"
        "                path starting with / is the cgroup.\n"
        "Options:\n"
        "  --once        print one frame and stop (after one delay: CPU is a rate)\n"
        "  --iterations N, -n N   print N frames and stop\n"
        "  --delay S, -d S        seconds between refreshes (1)\n"
        "  --depth N     how far below the start to look (3)\n"
        "  --order KEY   cpu, memory, io, tasks, pressure or path (cpu)\n"
        "  --batch, -b   print frames even on a terminal\n"
        "  --raw, -r     bytes as plain numbers\n"
        "  --color WHEN  always, never or auto: the live view's header in reverse video",
        "A table: Control Group, Tasks, %CPU, Memory, Input/s, Output/s and, where the\n"
        "hierarchy has it, Pressure c/m/i.  With --json each frame is one line:\n"
        '{"time", "interval", "complete", "cgroups": [{"path", "tasks", "cpu_percent",\n'
        '"memory_bytes", "io_read_bytes_per_second", "io_write_bytes_per_second",\n'
        '"pressure_some_avg10": {"cpu", "memory", "io"}}, ...]} (null: unknown).',
        [
            "{p} top",
            "{p} top --order memory unified",
            "{p} --json top --iterations 5 pids,unified build",
        ],
        "org.linuxcontainers.cgmanager1.Snapshot, one per hierarchy per refresh",
    ),
    "exec": (
        "",
        "Run a command in a cgroup, like cgexec or systemd-run --scope.  With --create\n"
        "the cgroup is made for it (it must not exist yet) in every hierarchy named,\n"
        "handed to owner, each file=value written and cgm moved in, all in one Setup\n"
        "request, all or nothing; without it the cgroup must exist, and the values,\n"
        "owner and move are separate requests.  Then cgm becomes the command: no shell\n"
        "in between, same process, same terminal, its exit status is cgm's.  With\n"
        "--remove-on-exit cgm stays its parent instead, and once the command has ended\n"
        "has cgmanager remove the cgroup when nothing is left in it.  Works for a user\n"
        "inside a cgroup delegated to it.",
        MULTI + "\n" + CGROUP + "\n"
        "  owner=uid:gid hand the cgroup to uid:gid (root only, as chown).\n"
        "  file=value    write value to file (units allowed: '{p} help units'); the\n"
        "                file's prefix names its hierarchy, or say controller:file.\n"
        "  command ...   the command and its arguments, found in $PATH; put -- before\n"
        "                it if it could be taken for an item.\n"
        "Options (before <controller>):\n"
        "  --create, -c  make the cgroup (Setup)\n"
        "  --remove-on-exit  remove it once the command has ended (with --create);\n"
        "                SIGTERM and SIGHUP are passed on, Ctrl-C reaches the command",
        "The command's.",
        [
            "{p} exec --create --remove-on-exit unified,pids build cpu.max=50% "
            "memory.max=1.5G pids.max=1K -- make -j4",
            "{p} exec pids job ./run-tests",
            "{p} exec --create pids,freezer svc owner=1000:1000 -- su -c ./daemon user",
        ],
        "org.linuxcontainers.cgmanager1.Setup(controllers, cgroup, uid, gid, values,\n"
        "  [cgm's pid]); MovePid without --create; RemoveOnEmpty after --remove-on-exit",
    ),
    "get": (
        "",
        "Print several files of a cgroup at once, across hierarchies, like cgget.  Each\n"
        "file's prefix names its hierarchy (pids.max is read in pids); name it for the\n"
        "others: unified:cgroup.procs, pids:tasks.  v1 names are translated on v2, as\n"
        "getvalue does.",
        "  <cgroup>      as for getvalue ('' is your own cgroup).\n"
        "  file ...      files, or controller:file.\n"
        "Options:\n"
        "  -h, --human   sizes and times with units",
        "'file: value' lines, further lines of a value indented, under 'hierarchy:'\n"
        "headers when there are several.  A file that cannot be read is reported on\n"
        'stderr (exit status 1) after the others.  With --json: {hierarchy: {"cgroup",\n'
        '"values": {file: value}, "errors": {file: message}}}.',
        [
            "{p} get build pids.max pids.current unified:cgroup.max.depth",
            "{p} get -h build memory.current memory.max unified:cpu.stat",
        ],
        "GetValue for each file, sent together",
    ),
    "dump": (
        "",
        "Print every file of a cgroup you may read, in each hierarchy named, like\ncgget -a.",
        MULTI + "\n" + CGROUP_ABS + "\nOptions:\n  -h, --human   sizes and times with units",
        "As get: 'file: value' lines under 'hierarchy:' headers.",
        ["{p} dump pids build", "{p} dump -h all ''", "{p} --json dump unified build"],
        "ListKeys, then GetValue for each readable file, sent together",
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
