"""The names every end of the API agrees on (no imports: the CLI loads it at start)."""

#: where the daemon serves its methods, and the socket it listens on by default (0.42's)
OBJECT_PATH = "/org/linuxcontainers/cgmanager"
DEFAULT_SOCKET = "/sys/fs/cgroup/cgmanager/sock"
#: the 0.42 interface, kept exactly
INTERFACE = "org.linuxcontainers.cgmanager0_0"
#: methods beyond 0.42 (Freeze, Thaw, Kill, GetEvents, GetStat, Setup), in their own interface
#: so the 0_0 contract stays as it was
INTERFACE1 = "org.linuxcontainers.cgmanager1"
