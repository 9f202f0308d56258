"""The seam between policy files and value conversion (units such as ``512M``, ``50%``).

The conversion itself belongs to :mod:`cgmanager.units` (shared with ``cgm setvalue``); this
adapter calls its ``convert(key, value)`` when that module is present, and otherwise passes
values through as written — the kernel itself accepts ``K``/``M``/``G`` suffixes in the memory
and hugetlb limit files, and any other value it does not understand is refused by the kernel
when applied (a clear ``KernelRejected``), never silently changed.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from ..errors import CgmError, InvalidArgument

Converter = Callable[[str, str], str]


def _load() -> Converter | None:
    try:
        units = importlib.import_module("cgmanager.units")
    except ImportError:
        return None
    fn = getattr(units, "convert", None)
    return fn if callable(fn) else None


_convert: Converter | None = _load()


def convert(key: str, value: str) -> str:
    """*value* for *key* as the kernel file takes it; :class:`InvalidArgument` when the unit
    makes no sense for the key."""
    if _convert is None:
        return value.strip()
    try:
        return str(_convert(key, value.strip()))
    except CgmError:
        raise
    except (ValueError, TypeError) as e:
        raise InvalidArgument(f"invalid value {value!r} for {key}: {e}") from None
