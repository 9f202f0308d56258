"""The text of what event subscriptions watch — flat-keyed ``*.events`` files, ``*.pressure``
files — and the PSI triggers the kernel takes, checked before they reach it.  Pure: no I/O.
"""

from __future__ import annotations

import re

from ..errors import InvalidArgument

#: PSI windows the kernel accepts (µs) and its rule for unprivileged triggers
PSI_MIN_WINDOW, PSI_MAX_WINDOW, PSI_UNPRIVILEGED_STEP = 500_000, 10_000_000, 2_000_000
PSI_RESOURCES = ("cpu", "memory", "io", "irq")
_TRIGGER = re.compile(r"(some|full) ([0-9]{1,9}) ([0-9]{1,9})")


def parse_flat(text: str) -> dict[str, int]:
    """A flat-keyed ``*.events`` file (``populated 1``…), lenient: lines that are not
    ``<key> <integer>`` are skipped (a signal reports what it can)."""
    out: dict[str, int] = {}
    for line in text.split("\n"):
        k, _, v = line.partition(" ")
        if v.lstrip("-").isdigit():
            out[k] = int(v)
    return out


def parse_pressure(text: str) -> dict[str, int]:
    """``some avg10=0.12 avg60=… total=123`` → {"some_total": 123, "some_avg10": 12, …}
    (averages in hundredths of a percent)."""
    out: dict[str, int] = {}
    for line in text.split("\n"):
        kind, _, rest = line.partition(" ")
        for item in rest.split():
            k, _, v = item.partition("=")
            try:
                out[f"{kind}_{k}"] = int(v) if k == "total" else round(float(v) * 100)
            except ValueError:
                continue
    return out


def parse_trigger(text: str, privileged: bool) -> tuple[str, int, int]:
    """A PSI trigger as the kernel takes it, checked before it reaches the kernel."""
    m = _TRIGGER.fullmatch(text.strip())
    if m is None:
        raise InvalidArgument(
            f"invalid trigger {text!r}: '<some|full> <stall µs> <window µs>', e.g."
            " 'some 150000 1000000'"
        )
    kind, stall, window = m.group(1), int(m.group(2)), int(m.group(3))
    if not PSI_MIN_WINDOW <= window <= PSI_MAX_WINDOW:
        raise InvalidArgument("invalid trigger: the window must be 500000 to 10000000 µs")
    if not 0 < stall <= window:
        raise InvalidArgument("invalid trigger: the stall must be above 0 and within the window")
    if not privileged and window % PSI_UNPRIVILEGED_STEP:
        raise InvalidArgument(
            "invalid trigger: windows of clients other than host root are multiples of"
            " 2000000 µs (the kernel's rule for unprivileged triggers)"
        )
    return kind, stall, window
