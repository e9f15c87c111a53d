"""Shared timing helper for benchmarks: median of repeated runs."""

from __future__ import annotations

import statistics
import time
from typing import Callable


def median_seconds(fn: Callable[[], object], repeat: int = 7, number: int = 1) -> float:
    """Median wall time of ``number`` calls of ``fn`` over ``repeat`` trials, per call."""
    fn()  # warm up (JIT compile, caches)
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - t0) / number)
    return statistics.median(samples)


def figure(value: float, unit: str, baseline: float | None = None, ratio: float | None = None, note: str = "") -> dict:
    return {"value": float(value), "unit": unit, "baseline": None if baseline is None else float(baseline),
            "ratio": None if ratio is None else float(ratio), "note": note}
