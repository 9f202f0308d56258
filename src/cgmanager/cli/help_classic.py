"""Help texts of the subcommands 0.42 had, and the paragraphs the others share (imported
only for ``cgm help``)."""

from __future__ import annotations

#: (synopsis, description, arguments, output, examples, D-Bus call)
Entry = tuple[str, str, str, str, list[str], str]

CONTROLLER = """\
  <controller>  a hierarchy: a controller such as pids or freezer, a named hierarchy
                (name=systemd or systemd), or "unified" for the cgroup v2 tree."""

MULTI = """\
  <controller>  a hierarchy (pids, freezer, name=systemd, unified, ...), a
                comma-separated list of them, or "all" for every hierarchy cgmanager
                serves."""

CGROUP = """\
  <cgroup>      a path relative to your own cgroup in that hierarchy ('' is your own
                cgroup itself); ".." is never allowed."""

CGROUP_ABS = """\
  <cgroup>      a path relative to your own cgroup ('' is your own cgroup); a path
                starting with / is taken from the hierarchy's root, and must still lie
                inside your own cgroup; ".." is never allowed."""

# name: (synopsis, description, arguments, output, examples, D-Bus call)
TEXTS: dict[str, Entry] = {
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
        MULTI + "\n" + CGROUP,
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
        MULTI + "\n" + CGROUP + "\n"
        "  uid gid       numeric ids (decimal), as seen from cgmanager's user namespace.",
        "",
        ["sudo {p} chown all foo $(id -u) $(id -g)"],
        "Chown(controller, cgroup, uid, gid)",
    ),
    "chmod": (
        "<controller> <cgroup> mode",
        "Change the permission bits of the cgroup directory itself.  Needs read and\n"
        "write access to it.",
        MULTI + "\n" + CGROUP + "\n  mode          octal permission bits, e.g. 0775.",
        "",
        ["{p} chmod pids foo 0775"],
        'Chmod(controller, cgroup, "", mode)',
    ),
    "chmodfile": (
        "<controller> <cgroup> file mode",
        "Change the permission bits of one file of a cgroup (a knob such as\npids.max, or tasks).",
        MULTI + "\n" + CGROUP + "\n"
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
        MULTI + "\n" + CGROUP + "\n"
        "  0|1           0 removes only an empty cgroup without children; 1 (or\n"
        "                nothing) removes recursively; anything else is refused.",
        'Prints "Path did not exist" if there was nothing to remove (exit status 0).',
        ["{p} remove all foo", "{p} remove pids foo/bar 0"],
        "Remove(controller, cgroup, recursive) -> existed",
    ),
    "getpidcgroup": (
        "<controller> pid",
        'Print the cgroup of a process, relative to your own cgroup ("/" if it is in\n'
        "yours).  The process must be in your cgroup or below it.",
        CONTROLLER + "\n  pid           a process id.",
        "The cgroup, one line, without a leading slash (e.g. foo/bar).",
        ["{p} getpidcgroup pids $$"],
        "GetPidCgroup(controller, pid) -> cgroup",
    ),
    "getpidcgroupabs": (
        "<controller> pid",
        "Print the cgroup of a process as an absolute path from the root of the\n"
        "hierarchy (as far as cgmanager or its proxy can see it).",
        CONTROLLER + "\n  pid           a process id.",
        "The cgroup, one line, starting with / (e.g. /user/1000/foo).",
        ["{p} getpidcgroupabs freezer $$"],
        "GetPidCgroupAbs(controller, pid) -> cgroup",
    ),
    "movepid": (
        "<controller> <cgroup> pid",
        "Move a process into <cgroup>.  You may move your own processes (or any, as\n"
        "root) into a cgroup whose task list you may write; the process must already\n"
        "be in your cgroup or below it.  A leading / is refused (see movepidabs).",
        MULTI + "\n" + CGROUP + "\n  pid           the process to move ($$ is your shell).",
        "",
        ["{p} movepid all foo $$", "{p} movepid pids,freezer foo/job 1234"],
        "MovePid(controller, cgroup, pid)",
    ),
    "movepidabs": (
        "<controller> <cgroup> pid",
        "Like movepid, but <cgroup> is taken from the root of the hierarchy (as far\n"
        "as cgmanager or its proxy reaches): this can move a process out of your\n"
        "cgroup, e.g. back to / on the host.",
        MULTI + "\n"
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
        CONTROLLER + "\n" + CGROUP_ABS + "\n"
        "  file          the file, e.g. pids.max or freezer.state.",
        "The value (several lines if the file has several); with -h (--human) sizes\n"
        "and times with units (1.5G, 2.25s).",
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
        CONTROLLER + "\n" + CGROUP_ABS + "\n"
        "  file          the file, e.g. pids.max.\n"
        "  value         what to write (a newline is added); units are converted\n"
        "                where the file has them: 1.5G, 50ms, 1K, 50% ('{p} help units').",
        "",
        [
            "{p} setvalue pids foo pids.max 100",
            "{p} setvalue freezer foo freezer.state FROZEN",
            "{p} setvalue unified foo cpu.max 50%",
        ],
        "SetValue(controller, cgroup, key, value)",
    ),
    "gettasks": (
        "<controller> [cgroup]",
        "List the tasks in a cgroup (not in its children).  On v1 hierarchies these\n"
        "are thread ids, as in the tasks file; on unified, process ids.",
        CONTROLLER + "\n" + CGROUP_ABS,
        "One id per line, ascending.",
        ["{p} gettasks pids foo", "{p} --json gettasks pids foo"],
        "GetTasks(controller, cgroup) -> ai",
    ),
    "gettasksrecursive": (
        "<controller> [cgroup]",
        "List the tasks in a cgroup and in all its descendants.  Several hierarchies:\n"
        "the union; one where the cgroup is missing or unreadable is skipped, and if\n"
        "that is every one, the request fails.",
        MULTI + "\n" + CGROUP_ABS,
        "One id per line, ascending, without duplicates.",
        ["{p} gettasksrecursive pids foo | wc -l"],
        "GetTasksRecursive(controller, cgroup) -> ai",
    ),
    "listchildren": (
        "<controller> [cgroup]",
        "List the child cgroups of a cgroup (one level).",
        CONTROLLER + "\n" + CGROUP_ABS,
        "One name per line (directory order).",
        ["{p} listchildren pids ''", "{p} listchildren freezer foo"],
        "ListChildren(controller, cgroup) -> as",
    ),
    "removeonempty": (
        "<controller> <cgroup>",
        "Have cgmanager remove <cgroup> once its last task has left.  Needs write\n"
        "access to the cgroup.",
        MULTI + "\n" + CGROUP,
        "",
        ["{p} removeonempty all job1"],
        "RemoveOnEmpty(controller, cgroup)",
    ),
    "prune": (
        "<controller> [cgroup]",
        "Remove every empty cgroup in the subtree of <cgroup> now, and mark the busy\n"
        "ones to be removed once they are empty.  Kills nothing.",
        MULTI + "\n" + CGROUP,
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
        CONTROLLER + "\n" + CGROUP_ABS,
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
}
