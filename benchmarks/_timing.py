"""Shared timing helper for benchmarks: median of repeated runs."""

from __future__ import annotations

import statistics
import time
from typing import Callable


def median_seconds(fn: Callable[[], object], repeat: int = 7, number: int = 1,
                   clock: Callable[[], float] = time.perf_counter) -> float:
    """Median time of ``number`` calls of ``fn`` over ``repeat`` trials, per call: wall time, or
    ``clock=time.process_time`` for the CPU time (what a loaded machine does not distort)."""
    fn()  # warm up (JIT compile, caches)
    samples = []
    for _ in range(repeat):
        t0 = clock()
        for _ in range(number):
            fn()
        samples.append((clock() - t0) / number)
    return statistics.median(samples)


def figure(value: float, unit: str, baseline: float | None = None, ratio: float | None = None, note: str = "") -> dict:
    return {"value": float(value), "unit": unit, "baseline": None if baseline is None else float(baseline),
            "ratio": None if ratio is None else float(ratio), "note": note}
