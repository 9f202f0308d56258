"""One knob for every fuzz test: ``CGM_FUZZ_SCALE`` multiplies the example counts.

CI runs each fuzz test with its bounded count (scale 1); a long run sets e.g.
``CGM_FUZZ_SCALE=30`` (see docs/FUZZING.md).  A scale below 1 shortens a run, never to
fewer than one example.
"""

from __future__ import annotations

import os


def scale() -> float:
    raw = os.environ.get("CGM_FUZZ_SCALE", "").strip()
    if not raw:
        return 1.0
    value = float(raw)
    if value <= 0:
        raise ValueError(f"CGM_FUZZ_SCALE must be positive, not {raw!r}")
    return value


def examples(n: int) -> int:
    """The example count for a test whose CI count is *n*."""
    return max(1, round(n * scale()))
