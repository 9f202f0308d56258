"""The API contract: every method of both interfaces, described once.

Every end derives from this table: the daemon's D-Bus facade and Introspect XML, its ``*Scm``
server, cgproxy's forwarding and gates, and the CLI's calls.  Adding a method means one entry
here plus its operation (:mod:`cgmanager.operations`).

Import-free on purpose: ``cgm`` loads it at every start (``python -I -S``), and cgproxy must not
pull in the daemon's internals to learn a signature.

What an entry says:

* ``name``, ``interface``, ``in_args`` and ``out_args`` as ``(name, D-Bus signature)`` pairs —
  exactly as 0.42's XML for the ``0_0`` methods;
* ``mutating``: the daemon writes an audit line for it;
* ``family``: how its ``cgroup`` argument is read (0.42 §3.2): :data:`LOOKUP` (``/a`` from the
  hierarchy root, ``a`` below the caller's cgroup, bounded by the proxy's), :data:`RELATIVE`
  (always below the caller's cgroup; a leading ``/`` means nothing), or ``None`` (no cgroup);
* ``absolute``: an ``*Abs`` method; a plain call is bounded by the daemon's own cgroup rather
  than the caller's (0.42 §3.2);
* ``ids``: which arguments carry a pid, uid or gid.  A plain call that gives one (not ``-1``,
  not empty) is meaningful only in the daemon's pid/user namespace, so it is refused from any
  other (a container must go through cgproxy);
* ``scm``: the method has a ``<name>Scm`` twin.  The twin is derived, not written: its
  arguments are the plain ones minus the pid/uid/gid arguments, plus ``sockfd`` (``h``); the
  kernel supplies the removed values as a second ``SCM_CREDENTIALS`` (:data:`SECOND_PID` for a
  pid, :data:`SECOND_IDS` for uid/gid); the result's byte encoding follows from the plain
  method's out signature (:func:`scm_result`).
"""

#: where the daemon serves its methods
OBJECT_PATH = "/org/linuxcontainers/cgmanager"
#: the socket 0.42 listened on; the default wherever /sys/fs/cgroup is not cgroup2
DEFAULT_SOCKET = "/sys/fs/cgroup/cgmanager/sock"
#: the default where /sys/fs/cgroup is cgroup2 (pure v2): a directory there would be a cgroup
RUN_SOCKET = "/run/cgmanager/sock"
#: the 0.42 interface, kept exactly
INTERFACE = "org.linuxcontainers.cgmanager0_0"
#: methods beyond 0.42, in their own interface so the 0_0 contract stays as it was
INTERFACE1 = "org.linuxcontainers.cgmanager1"
#: the ``api_version`` property of INTERFACE (0.42's value)
API_VERSION = 10
#: D-Bus error names are this prefix plus a failure kind (old clients test only success)
ERROR_PREFIX = "org.linuxcontainers.cgmanager.Error."
#: the failure kinds (see errors.py and the README's "Errors")
ERROR_KINDS = (
    "InvalidArgument",
    "NotFound",
    "NotPermitted",
    "Busy",
    "LimitExceeded",
    "KernelRejected",
    "Unsupported",
    "Unavailable",
    "Failed",
)

#: path families (``Method.family``)
LOOKUP, RELATIVE = "lookup", "relative"
#: argument kinds (``Method.ids``)
PID, UID, GID = "pid", "uid", "gid"
#: what the second credential of an Scm twin carries
SECOND_NONE, SECOND_PID, SECOND_IDS = "none", "pid", "ids"
#: how an Scm twin encodes its result (see cgmanager.scm)
RESULT_STATUS, RESULT_STRING, RESULT_PIDS, RESULT_NAMES, RESULT_KEYS = (
    "status",
    "string",
    "pids",
    "names",
    "keys",
)
_RESULT_BY_OUT = {
    "": RESULT_STATUS,
    "i": RESULT_STATUS,  # Create/Remove: existed, as a status byte
    "s": RESULT_STRING,
    "ai": RESULT_PIDS,
    "as": RESULT_NAMES,
    "a(suuu)": RESULT_KEYS,
}


class Method:
    """One D-Bus method of the contract."""

    __slots__ = (
        "name",
        "interface",
        "in_args",
        "out_args",
        "mutating",
        "family",
        "absolute",
        "ids",
        "scm",
        "signature",
        "out_signature",
    )

    def __init__(
        self,
        name: str,
        in_args: tuple[tuple[str, str], ...],
        out_args: tuple[tuple[str, str], ...] = (),
        *,
        interface: str = INTERFACE,
        mutating: bool = False,
        family: str | None = None,
        absolute: bool = False,
        ids: tuple[tuple[str, str], ...] = (),
        scm: bool = True,
    ) -> None:
        self.name = name
        self.interface = interface
        self.in_args = in_args
        self.out_args = out_args
        self.mutating = mutating
        self.family = family
        self.absolute = absolute
        #: (argument name, PID | UID | GID)
        self.ids = ids
        self.scm = scm
        self.signature = "".join(t for _, t in in_args)
        self.out_signature = "".join(t for _, t in out_args)

    def __repr__(self) -> str:
        return f"<Method {self.interface}.{self.name}({self.signature})>"

    def arg_index(self, name: str) -> int:
        for i, (n, _) in enumerate(self.in_args):
            if n == name:
                return i
        raise KeyError(name)


class ScmTwin:
    """The ``<name>Scm`` form of a method (derived from the plain one, never written)."""

    __slots__ = ("name", "plain", "in_args", "kept", "second", "result", "signature")

    def __init__(self, plain: Method) -> None:
        kinds = dict(plain.ids)
        self.name = plain.name + "Scm"
        self.plain = plain
        #: indexes into the plain arguments of those the twin still passes as D-Bus arguments
        self.kept = tuple(i for i, (n, _) in enumerate(plain.in_args) if n not in kinds)
        self.in_args = tuple(plain.in_args[i] for i in self.kept) + (("sockfd", "h"),)
        if PID in kinds.values():
            self.second = SECOND_PID
        elif UID in kinds.values():
            self.second = SECOND_IDS
        else:
            self.second = SECOND_NONE
        self.result = _RESULT_BY_OUT[plain.out_signature]
        self.signature = "".join(t for _, t in self.in_args)

    def __repr__(self) -> str:
        return f"<ScmTwin {self.name}({self.signature})>"


_C, _G = ("controller", "s"), ("cgroup", "s")
_I1 = INTERFACE1

METHODS: tuple[Method, ...] = (
    # -- org.linuxcontainers.cgmanager0_0 (0.42) --
    Method("Ping", (("junk", "i"),), scm=False),
    Method("GetPidCgroup", (_C, ("pid", "i")), (("output", "s"),), ids=(("pid", PID),)),
    Method(
        "GetPidCgroupAbs",
        (_C, ("pid", "i")),
        (("output", "s"),),
        absolute=True,
        ids=(("pid", PID),),
    ),
    Method("Create", (_C, _G), (("existed", "i"),), mutating=True, family=RELATIVE),
    Method(
        "Chown",
        (_C, _G, ("uid", "i"), ("gid", "i")),
        mutating=True,
        ids=(("uid", UID), ("gid", GID)),
        family=RELATIVE,
    ),
    Method("Chmod", (_C, _G, ("file", "s"), ("mode", "i")), mutating=True, family=RELATIVE),
    Method("MovePid", (_C, _G, ("pid", "i")), mutating=True, ids=(("pid", PID),), family=RELATIVE),
    Method(
        "MovePidAbs",
        (_C, _G, ("pid", "i")),
        mutating=True,
        absolute=True,
        ids=(("pid", PID),),
        family=RELATIVE,
    ),
    Method("GetValue", (_C, _G, ("key", "s")), (("value", "s"),), family=LOOKUP),
    Method("SetValue", (_C, _G, ("key", "s"), ("value", "s")), mutating=True, family=LOOKUP),
    Method(
        "Remove", (_C, _G, ("recursive", "i")), (("existed", "i"),), mutating=True, family=RELATIVE
    ),
    Method("GetTasks", (_C, _G), (("output", "ai"),), family=LOOKUP),
    Method("GetTasksRecursive", (_C, _G), (("output", "ai"),), family=LOOKUP),
    Method("ListChildren", (_C, _G), (("output", "as"),), family=LOOKUP),
    Method("RemoveOnEmpty", (_C, _G), mutating=True, family=RELATIVE),
    Method("Prune", (_C, _G), mutating=True, family=RELATIVE),
    Method("ListControllers", (), (("output", "as"),), scm=False),
    Method("ListKeys", (_C, _G), (("output", "a(suuu)"),), family=LOOKUP),
    # -- org.linuxcontainers.cgmanager1 (beyond 0.42; same path families and permissions) --
    Method("Freeze", (_C, _G), interface=_I1, mutating=True, scm=False, family=LOOKUP),
    Method("Thaw", (_C, _G), interface=_I1, mutating=True, scm=False, family=LOOKUP),
    Method(
        "Kill", (_C, _G), (("killed", "i"),), interface=_I1, mutating=True, scm=False, family=LOOKUP
    ),
    Method("GetEvents", (_C, _G), (("events", "a{sx}"),), interface=_I1, scm=False, family=LOOKUP),
    Method("GetStat", (_C, _G), (("stat", "a{sx}"),), interface=_I1, scm=False, family=LOOKUP),
    Method(
        "ListHierarchies",
        (),
        (("hierarchies", "a(sias)"),),
        interface=_I1,
        scm=False,
    ),
    Method(
        "Setup",
        (
            ("controllers", "s"),
            _G,
            ("uid", "i"),
            ("gid", "i"),
            ("values", "a{ss}"),
            ("pids", "ai"),
        ),
        (("created", "as"),),
        interface=_I1,
        mutating=True,
        ids=(("uid", UID), ("gid", GID), ("pids", PID)),
        scm=False,
        family=RELATIVE,
    ),
    Method(  # chosen keys of a whole subtree in one request (cgm top; operations/snapshots.py)
        "Snapshot",
        (_C, _G, ("keys", "as"), ("depth", "i")),
        (("cgroups", "a(sba{is})"), ("complete", "b")),
        interface=_I1,
        scm=False,
        family=LOOKUP,
    ),
    # -- policy (daemon/policy.py, cgmanager.policy): host root only --
    Method("Reload", (), (("report", "as"),), interface=_I1, mutating=True, scm=False),
    Method("ConfigDiff", (("text", "s"),), (("changes", "as"),), interface=_I1, scm=False),
    Method("PolicyStatus", (), (("counters", "a{sx}"),), interface=_I1, scm=False),
    # the rules applied now to the processes named (host root, or the processes' owner)
    Method(
        "Classify",
        (("pids", "ai"),),
        (("results", "a(is)"),),
        interface=_I1,
        mutating=True,
        ids=(("pids", PID),),
        scm=False,
    ),
    # -- event signals (daemon/events.py): CgroupEvent signals on the caller's connection --
    Method("Subscribe", (_C, _G), (("subscription", "u"),), interface=_I1, scm=False),
    Method(
        "WatchPressure",
        (_C, _G, ("resource", "s"), ("trigger", "s")),
        (("subscription", "u"),),
        interface=_I1,
        scm=False,
    ),
    Method("Unsubscribe", (("subscription", "u"),), interface=_I1, scm=False),
)

#: signals (name, arguments), sent on the subscriber's own connection
SIGNALS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    (
        "CgroupEvent",
        (
            ("subscription", "u"),
            ("controller", "s"),
            ("cgroup", "s"),
            ("kind", "s"),
            ("values", "a{sx}"),
            ("lost", "t"),
        ),
    ),
)

BY_NAME: dict[str, Method] = {m.name: m for m in METHODS}
SCM_TWINS: tuple[ScmTwin, ...] = tuple(ScmTwin(m) for m in METHODS if m.scm)
SCM_BY_NAME: dict[str, ScmTwin] = {t.name: t for t in SCM_TWINS}


def methods_of(interface: str) -> tuple[Method, ...]:
    return tuple(m for m in METHODS if m.interface == interface)


def given(value: object) -> bool:
    """Whether an id argument names something: ``-1`` (chown's "unchanged") and an empty
    list do not."""
    if isinstance(value, int):
        return value != -1
    return bool(value)


# -- where the socket is: one rule for the daemon, cgproxy, the units and cgm ----------------
def _is_cgroup2(directory: str) -> bool:
    """Whether *directory* is the root of a cgroup2 mount (only cgroup2 has
    ``cgroup.controllers``; a hybrid host's tmpfs never does).  One open, no import."""
    try:
        open(directory + "/cgroup.controllers", "rb").close()
    except OSError:
        return False
    return True


def daemon_socket(cgroup_root: str = "/sys/fs/cgroup") -> str:
    """The socket the daemon (and cgproxy, in a container) listens on unless told otherwise:
    0.42's :data:`DEFAULT_SOCKET` where ``/sys/fs/cgroup`` is a tmpfs holding hierarchies
    (legacy and hybrid hosts, where old clients look), :data:`RUN_SOCKET` where it is cgroup2
    (a ``mkdir`` there would create a cgroup)."""
    return RUN_SOCKET if _is_cgroup2(cgroup_root) else DEFAULT_SOCKET


def _present(path: str) -> bool:
    import posix  # built in and already loaded: no cost, and this module stays import-free

    try:
        posix.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:  # e.g. EACCES: something is there; connecting will say what
        return True
    return True


def client_socket() -> str:
    """Where a client told nothing connects: 0.42's socket if present, else
    :data:`RUN_SOCKET` if present, else where this host's daemon would listen
    (:func:`daemon_socket`: the error then names the right place)."""
    for path in (DEFAULT_SOCKET, RUN_SOCKET):
        if _present(path):
            return path
    return daemon_socket()
