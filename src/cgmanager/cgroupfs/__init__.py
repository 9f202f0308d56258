"""Operations on the cgroups of one hierarchy, every one resolved beneath its root.

:class:`CgroupTree` pins the hierarchy's mount with an ``O_PATH`` fd and resolves each cgroup
path with ``openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV)`` from it, so no
spelling, symlink or mount trick can make it act outside the hierarchy.  Paths are absolute
hierarchy paths as produced by :mod:`cgmanager.names`; keys are single file names.  This layer
knows nothing of requestors: *whether* an operation is allowed is the permission model's
question, asked before these are called.

One class, written by concern:

* :mod:`.resolution` — the tree, path resolution, a request's held view, ``stat``;
* :mod:`.keys` — reading and writing keys;
* :mod:`.listings` — child cgroups, walks, keys with their owners, processes;
* :mod:`.structure` — cgroups made and removed, processes moved in;
* :mod:`.ownership` — chown (delegation), chmod.
"""

from __future__ import annotations

from .keys import MAX_READ
from .listings import KeyInfo
from .ownership import Ownership
from .resolution import (
    MAX_HELD,
    V1_DELEGATE_FILES,
    V2_DEFAULT_DELEGATE_FILES,
    read_delegate_files,
    release,
)
from .structure import Structure

__all__ = [
    "MAX_HELD",
    "MAX_READ",
    "V1_DELEGATE_FILES",
    "V2_DEFAULT_DELEGATE_FILES",
    "CgroupTree",
    "KeyInfo",
    "read_delegate_files",
    "release",
]


class CgroupTree(Structure, Ownership):
    """One hierarchy, opened at a mount point of it (see the module's documentation)."""
