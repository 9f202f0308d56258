"""Values in policy files with units (``512M``, ``50ms``, ``50%``), converted exactly as
``cgm setvalue`` converts them (:mod:`cgmanager.units`): the kernel's own syntax passes
unchanged, anything unrecognised is left for the kernel to judge when applied (a clear
``KernelRejected``), and a unit that makes no sense for the key is an error with the line."""

from __future__ import annotations

from .. import units
from ..errors import InvalidArgument


def convert(key: str, value: str) -> str:
    """*value* for *key* as the kernel file takes it; :class:`InvalidArgument` when the unit
    makes no sense for the key."""
    try:
        return units.to_kernel(key, value.strip())
    except units.UnitError as e:
        raise InvalidArgument(f"invalid value {value!r} for {key}: {e}") from None
