"""cgmanager: a cgroup manager daemon (cgmanager), container proxy (cgproxy) and CLI (cgm).

Layers, bottom up:

* kernel-facing: :mod:`cgmanager.hierarchy` (which hierarchies exist), :mod:`cgmanager.procfs`
  (what /proc says about a process), :mod:`cgmanager.cgroupfs` (fd-relative operations beneath a
  hierarchy root), :mod:`cgmanager.mounts` (the daemon's private mounts);
* :mod:`cgmanager.names` validates every name, path and key a client sends;
* transports: :mod:`cgmanager.dbus` (peer-to-peer D-Bus), :mod:`cgmanager.daemon`,
  :mod:`cgmanager.proxy`, :mod:`cgmanager.cli`.
"""

__version__ = "0.1.0"
