"""``cgm help <subcommand>`` / ``cgm <subcommand> --help`` texts (imported only for help)."""

# Shared paragraphs ---------------------------------------------------------------------------

_CONTROLLER = """\
  <controller>  a hierarchy: a controller such as pids or freezer, a named hierarchy
                (name=systemd or systemd), or "unified" for the cgroup v2 tree."""

_MULTI = """\
  <controller>  a hierarchy (pids, freezer, name=systemd, unified, ...), a
                comma-separated list of them, or "all" for every hierarchy cgmanager
                serves."""

_CGROUP = """\
  <cgroup>      a path relative to your own cgroup in that hierarchy ('' is your own
                cgroup itself); ".." is never allowed."""

_CGROUP_ABS = """\
  <cgroup>      a path relative to your own cgroup ('' is your own cgroup); a path
                starting with / is taken from the hierarchy's root, and must still lie
                inside your own cgroup; ".." is never allowed."""

# name: (synopsis, description, arguments, output, examples, D-Bus call)
_HELP = {
    "ping": (
        "",
        "Check that cgmanager answers.  Prints nothing; the exit status says it all.",
        "",
        "",
        ["{p} ping && echo cgmanager is up"],
        "Ping(0)",
    ),
    "create": (
        "<controller> <cgroup>",
        "Create <cgroup> below your own cgroup, with any missing parents.  The new\n"
        "cgroups and every file in them belong to you, so you may set their limits\n"
        "(the kernel keeps a child within its parent's limits).  Creating needs write\n"
        "access to the parent cgroup.",
        _MULTI + "\n" + _CGROUP,
        'Prints "Path existed" if the cgroup was already there (still exit status 0).',
        ["sudo {p} create all foo", "{p} create pids build/job1"],
        "Create(controller, cgroup) -> existed",
    ),
    "chown": (
        "<controller> <cgroup> uid gid",
        "Delegate <cgroup> to uid:gid: its directory and the files that delegate it\n"
        "(tasks and cgroup.procs on v1; on unified the kernel's delegation files, such\n"
        "as cgroup.procs and cgroup.subtree_control), so that user may create child\n"
        "cgroups and move its own processes in.  Limit files keep their owner: the\n"
        "user cannot raise its own limits.  Only root (of the host or of a user\n"
        "namespace) may chown.",
        _MULTI + "\n" + _CGROUP + "\n"
        "  uid gid       numeric ids (decimal), as seen from cgmanager's user namespace.",
        "",
        ["sudo {p} chown all foo $(id -u) $(id -g)"],
        "Chown(controller, cgroup, uid, gid)",
    ),
    "chmod": (
        "<controller> <cgroup> mode",
        "Change the permission bits of the cgroup directory itself.  Needs read and\n"
        "write access to it.",
        _MULTI + "\n" + _CGROUP + "\n  mode          octal permission bits, e.g. 0775.",
        "",
        ["{p} chmod pids foo 0775"],
        'Chmod(controller, cgroup, "", mode)',
    ),
    "chmodfile": (
        "<controller> <cgroup> file mode",
        "Change the permission bits of one file of a cgroup (a knob such as\npids.max, or tasks).",
        _MULTI + "\n" + _CGROUP + "\n"
        "  file          a file name in that cgroup, without '/'.\n"
        "  mode          octal permission bits, e.g. 0664.",
        "",
        ["{p} chmodfile freezer foo tasks 0775"],
        "Chmod(controller, cgroup, file, mode)",
    ),
    "remove": (
        "<controller> <cgroup> [0|1]",
        "Remove <cgroup>, by default with all its descendants.  A cgroup that still\n"
        "holds processes cannot be removed (the kernel says it is busy).  Needs write\n"
        "access to the parent cgroup.",
        _MULTI + "\n" + _CGROUP + "\n"
        "  0|1           0 removes only an empty cgroup without children; 1 (or\n"
        "                nothing) removes recursively.",
        'Prints "Path did not exist" if there was nothing to remove (exit status 0).',
        ["{p} remove all foo", "{p} remove pids foo/bar 0"],
        "Remove(controller, cgroup, recursive) -> existed",
    ),
    "getpidcgroup": (
        "<controller> pid",
        'Print the cgroup of a process, relative to your own cgroup ("/" if it is in\n'
        "yours).  The process must be in your cgroup or below it.",
        _CONTROLLER + "\n  pid           a process id.",
        "The cgroup, one line, without a leading slash (e.g. foo/bar).",
        ["{p} getpidcgroup pids $$"],
        "GetPidCgroup(controller, pid) -> cgroup",
    ),
    "getpidcgroupabs": (
        "<controller> pid",
        "Print the cgroup of a process as an absolute path from the root of the\n"
        "hierarchy (as far as cgmanager or its proxy can see it).",
        _CONTROLLER + "\n  pid           a process id.",
        "The cgroup, one line, starting with / (e.g. /user/1000/foo).",
        ["{p} getpidcgroupabs freezer $$"],
        "GetPidCgroupAbs(controller, pid) -> cgroup",
    ),
    "movepid": (
        "<controller> <cgroup> pid",
        "Move a process into <cgroup>.  You may move your own processes (or any, as\n"
        "root) into a cgroup whose task list you may write; the process must already\n"
        "be in your cgroup or below it.  A leading / is refused (see movepidabs).",
        _MULTI + "\n" + _CGROUP + "\n  pid           the process to move ($$ is your shell).",
        "",
        ["{p} movepid all foo $$", "{p} movepid pids,freezer foo/job 1234"],
        "MovePid(controller, cgroup, pid)",
    ),
    "movepidabs": (
        "<controller> <cgroup> pid",
        "Like movepid, but <cgroup> is taken from the root of the hierarchy (as far\n"
        "as cgmanager or its proxy reaches): this can move a process out of your\n"
        "cgroup, e.g. back to / on the host.",
        _MULTI + "\n"
        "  <cgroup>      a path from the hierarchy's root ('/' is the root).\n"
        "  pid           the process to move.",
        "",
        ["sudo {p} movepidabs all / $$"],
        "MovePidAbs(controller, cgroup, pid)",
    ),
    "getvalue": (
        "<controller> <cgroup> file",
        "Print the contents of one cgroup file (trailing newlines removed).  On the\n"
        "unified hierarchy v1 key names are translated (memory.limit_in_bytes reads\n"
        "memory.max, freezer.state reads cgroup.freeze/cgroup.events, ...).",
        _CONTROLLER + "\n" + _CGROUP_ABS + "\n"
        "  file          the file, e.g. pids.max or freezer.state.",
        "The value (several lines if the file has several).",
        ["{p} getvalue pids foo pids.current", "{p} getvalue freezer '' freezer.state"],
        "GetValue(controller, cgroup, key) -> value",
    ),
    "setvalue": (
        "<controller> <cgroup> file value",
        "Write a value to one cgroup file.  You need write access to that file: the\n"
        "creator of a cgroup owns its files, but a cgroup that root created and\n"
        "chowned to you keeps root-owned limits.  Only the hierarchy's own keys (such\n"
        "as pids.* on pids) and a few core cgroup.* files can be set; tasks and\n"
        "cgroup.procs are refused (use movepid).  On the unified hierarchy v1 key\n"
        "names are translated (cpu.shares writes cpu.weight, ...).",
        _CONTROLLER + "\n" + _CGROUP_ABS + "\n"
        "  file          the file, e.g. pids.max.\n"
        "  value         what to write (a newline is added).",
        "",
        ["{p} setvalue pids foo pids.max 100", "{p} setvalue freezer foo freezer.state FROZEN"],
        "SetValue(controller, cgroup, key, value)",
    ),
    "gettasks": (
        "<controller> [cgroup]",
        "List the tasks in a cgroup (not in its children).  On v1 hierarchies these\n"
        "are thread ids, as in the tasks file; on unified, process ids.",
        _CONTROLLER + "\n" + _CGROUP_ABS,
        "One id per line, ascending.",
        ["{p} gettasks pids foo", "{p} --json gettasks pids foo"],
        "GetTasks(controller, cgroup) -> ai",
    ),
    "gettasksrecursive": (
        "<controller> [cgroup]",
        "List the tasks in a cgroup and in all its descendants.",
        _MULTI + "\n" + _CGROUP_ABS,
        "One id per line, ascending, without duplicates.",
        ["{p} gettasksrecursive pids foo | wc -l"],
        "GetTasksRecursive(controller, cgroup) -> ai",
    ),
    "listchildren": (
        "<controller> [cgroup]",
        "List the child cgroups of a cgroup (one level).",
        _CONTROLLER + "\n" + _CGROUP_ABS,
        "One name per line (directory order).",
        ["{p} listchildren pids ''", "{p} listchildren freezer foo"],
        "ListChildren(controller, cgroup) -> as",
    ),
    "removeonempty": (
        "<controller> <cgroup>",
        "Have cgmanager remove <cgroup> once its last task has left.  Needs write\n"
        "access to the cgroup.",
        _MULTI + "\n" + _CGROUP,
        "",
        ["{p} removeonempty all job1"],
        "RemoveOnEmpty(controller, cgroup)",
    ),
    "prune": (
        "<controller> [cgroup]",
        "Remove every empty cgroup in the subtree of <cgroup> now, and mark the busy\n"
        "ones to be removed once they are empty.  Kills nothing.",
        _MULTI + "\n" + _CGROUP,
        "",
        ["{p} prune freezer build"],
        "Prune(controller, cgroup)",
    ),
    "listcontrollers": (
        "",
        "List the hierarchies cgmanager serves: controllers mounted together are\n"
        "joined by commas, named hierarchies are shown as name=X, the cgroup v2 tree\n"
        "as unified.",
        "",
        "One hierarchy per line.",
        ["{p} listcontrollers"],
        "ListControllers() -> as",
    ),
    "listkeys": (
        "<controller> [cgroup]",
        "List the files of a cgroup with their owner and mode.",
        _CONTROLLER + "\n" + _CGROUP_ABS,
        "One line per file: name uid gid mode, the mode in octal with the file type\n"
        'bits (e.g. "tasks 0 0 100644").  Owners are shown as your user namespace\n'
        "sees them (4294967295 if unmapped).",
        ["{p} listkeys pids foo", "{p} --json listkeys pids foo"],
        "ListKeys(controller, cgroup) -> a(suuu)",
    ),
    "apiversion": (
        "",
        "Print the D-Bus API version of the daemon (10 for cgmanager 0.42 and this\n"
        "reimplementation).",
        "",
        "The version, one line.",
        ["{p} apiversion"],
        "Properties.Get(org.linuxcontainers.cgmanager0_0, api_version)",
    ),
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
        _MULTI + "\n" + _CGROUP + "\n"
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
        "  <controller>  unified (v2) or freezer (v1).\n" + _CGROUP,
        "",
        ["{p} freeze unified build", "{p} freeze freezer job"],
        "org.linuxcontainers.cgmanager1.Freeze (new: not in 0.42)",
    ),
    "thaw": (
        "<controller> <cgroup>",
        "Thaw a frozen cgroup; returns once the kernel reports it thawed.",
        "  <controller>  unified (v2) or freezer (v1).\n" + _CGROUP,
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
        "  <controller>  any hierarchy.\n" + _CGROUP,
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

_FOOTER = """\
Options:
  --socket PATH  talk to the cgmanager listening on PATH (default: $CGM_SOCKET,
                 else /sys/fs/cgroup/cgmanager/sock if present, else
                 /run/cgmanager/sock)
  --json         print results as JSON

Exit status: 0 on success, 1 on any failure.  When the daemon refuses, stderr says
  call to cgmanager_<function>_sync failed: <what failed and why>
While nothing listens on the socket (cgmanager restarting), connecting is retried for
  up to 2.5 s; a request is never sent twice."""


def text(sub, prog="cgm"):
    """The help for one subcommand, or None if there is no such subcommand."""
    entry = _HELP.get(sub)
    if entry is None:
        return None
    synopsis, description, arguments, output, examples, call = entry
    parts = [f"Usage: {prog} {sub}{' ' + synopsis if synopsis else ''}", description]
    if arguments:
        parts.append("Arguments:\n" + arguments)
    if output:
        parts.append("Output: " + output)
    if examples:
        parts.append("Examples:\n" + "\n".join("  " + e.format(p=prog) for e in examples))
    if call:
        parts.append("D-Bus call: " + call)
    if sub != "help":
        parts.append(_FOOTER)
    return "\n\n".join(parts) + "\n"


def names():
    return sorted(_HELP)
