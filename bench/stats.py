"""Timing loops and order statistics."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

#: one iteration of a workload; gets the iteration number (for alternating workloads)
Op = Callable[[int], object]


def timed(op: Op, n: int, start: int = 0) -> list[int]:
    """Run *op* n times; the latency of each call in ns."""
    clock = time.perf_counter_ns
    out = [0] * n
    for i in range(n):
        t0 = clock()
        op(start + i)
        out[i] = clock() - t0
    return out


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return float(sorted_values[k])


def summary_us(samples_ns: Sequence[int]) -> dict[str, float]:
    """median / p90 / p99 / min in µs."""
    s = sorted(samples_ns)
    return {
        "median": statistics.median(s) / 1000,
        "p90": percentile(s, 90) / 1000,
        "p99": percentile(s, 99) / 1000,
        "min": s[0] / 1000 if s else float("nan"),
        "n": len(s),
    }


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")
