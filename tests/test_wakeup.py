"""The real-time loop's wake-up lateness histogram (bms.node.wakeup)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bms.node.wakeup import BIN_S, N_BINS, WakeLateness


def test_quantiles_within_one_bin_of_the_exact_ones():
    rng = np.random.default_rng(3)
    late = rng.exponential(0.4e-3, 5000)
    w = WakeLateness()
    for x in late:
        w.add(float(x))
    for q in (0.5, 0.99):
        exact = float(np.quantile(late, q))
        assert exact - BIN_S <= w.quantile_s(q) <= exact + BIN_S, q
    assert w.max_s == pytest.approx(late.max())
    s = w.summary()
    assert s["n"] == 5000 and s["max_ms"] == pytest.approx(1e3 * late.max(), abs=1e-3)
    assert s["over_1ms_pct"] == pytest.approx(100.0 * np.mean(late >= 1e-3), abs=0.05)


def test_late_beyond_the_histogram_keeps_its_exact_maximum_and_early_counts_as_zero():
    w = WakeLateness()
    w.add(-1e-3)                    # woke before the deadline (clock read first): not late
    w.add(5.0)                      # far beyond the last bin
    assert w.hist[0] == 1 and w.hist[N_BINS - 1] == 1
    assert w.max_s == 5.0 and w.quantile_s(1.0) == 5.0 and w.quantile_s(0.5) == BIN_S


def test_empty():
    s = WakeLateness().summary()
    assert s["n"] == 0 and math.isnan(s["p99_ms"]) and s["over_1ms_pct"] == 0.0
    assert math.isnan(s["loops_per_step"])


def test_loops_per_step_counts_every_pass_against_the_steps():
    w = WakeLateness()
    for _ in range(4):
        w.add(0.0)
    w.loops = 10   # e.g. six passes woken by frames between the four steps
    assert w.summary()["loops_per_step"] == 2.5
