"""Policy that applies itself: declarative configuration (libcgroup's ``cgconfig.conf``), the
placement rules engine (``cgrules.conf`` over the kernel's proc connector) and the PAM session
helper.

Everything here acts through the same operations and checks as a client request
(:mod:`cgmanager.operations`), as the daemon itself: a policy file can describe only what host
root could ask for through the API, and parsing and planning are pure so they are tested
without a kernel.
"""
