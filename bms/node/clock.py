"""Clocks of the BMS node: time is always injected, never read elsewhere.

:class:`WallClock` is the only place in the project that reads the wall clock
(``time.monotonic``); :class:`SimClock` is advanced by its owner (lock-step co-simulation).
"""

from __future__ import annotations

import time


class SimClock:
    """Simulated time in seconds, advanced explicitly (never goes backwards)."""

    def __init__(self, t0_s: float = 0.0):
        self._t = float(t0_s)

    def now_s(self) -> float:
        return self._t

    def advance(self, dt_s: float) -> float:
        if not dt_s >= 0.0:
            raise ValueError(f"SimClock.advance: dt_s must be >= 0, got {dt_s!r}")
        self._t += float(dt_s)
        return self._t

    def set(self, t_s: float) -> float:
        if not t_s >= self._t:
            raise ValueError(f"SimClock.set: time may not go backwards ({t_s!r} < {self._t!r})")
        self._t = float(t_s)
        return self._t


class WallClock:
    """Real time since construction, from ``time.monotonic`` (immune to wall-clock jumps)."""

    def __init__(self):
        self._t0 = time.monotonic()

    def now_s(self) -> float:
        return time.monotonic() - self._t0
