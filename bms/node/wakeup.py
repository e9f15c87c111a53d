"""How late the real-time loop wakes up for its steps: a histogram of the time from a step's
deadline (its release on the node's clock) to the moment the loop saw it due, bounded in memory
whatever the run's length.

    w = WakeLateness()
    w.add(late_s)          # once per wake-up that found a step due
    w.loops += 1           # once per pass of the loop (every wake-up, for a step or for frames)
    w.summary()            # {"n", "p50_ms", "p99_ms", "max_ms", "over_1ms_pct", "loops_per_step"}

When a frame's jitter on the bus equals this lateness, the tail comes from the operating
system's scheduling of the loop (timer, other tasks on the CPU, the GIL), not from the node's
own work between the wake-up and the send (that is ``NodeStats.max_step_s``).
"""

from __future__ import annotations

import numpy as np

BIN_S = 50e-6     # histogram resolution
N_BINS = 4000     # up to 200 ms; later wake-ups are counted in the last bin (max is kept exactly)


class WakeLateness:
    """Wake-up lateness histogram (50 us bins up to 200 ms) with the exact maximum."""

    def __init__(self):
        self.hist = np.zeros(N_BINS, np.int64)
        self.n = 0
        self.max_s = 0.0
        self.loops = 0   # passes of the loop: each a wake-up (a few system calls; host round trips in UML)

    def add(self, late_s: float) -> None:
        late_s = max(0.0, late_s)
        self.hist[min(int(late_s / BIN_S), N_BINS - 1)] += 1
        self.n += 1
        if late_s > self.max_s:
            self.max_s = late_s

    def quantile_s(self, q: float) -> float:
        """Upper edge of the bin holding quantile ``q`` (0..1) of the wake-ups (the maximum when
        that is the last bin, or is lower; NaN if none)."""
        if self.n == 0:
            return float("nan")
        k = int(np.searchsorted(np.cumsum(self.hist), q * self.n, side="left"))
        return self.max_s if k >= N_BINS - 1 else min((k + 1) * BIN_S, self.max_s)

    def summary(self) -> dict:
        over = int(self.hist[int(round(1e-3 / BIN_S)):].sum())
        return {"n": self.n, "p50_ms": round(1e3 * self.quantile_s(0.5), 3),
                "p99_ms": round(1e3 * self.quantile_s(0.99), 3), "max_ms": round(1e3 * self.max_s, 3),
                "over_1ms_pct": round(100.0 * over / self.n, 3) if self.n else 0.0,
                "loops_per_step": round(self.loops / self.n, 3) if self.n else float("nan")}
