"""Numba kernel of a cyclic transmit schedule: which messages are due, their next time, alive counters."""

from __future__ import annotations

import math

import numba as nb


@nb.njit(cache=True)
def due_kernel(next_s, period_s, t_s, ctr_slot, ctr_mod, counter, values, due):
    """Message i is due at ``t_s`` when next_s[i] <= t_s + 1e-9 (due[i] = True). A due message moves
    to the first point of its period grid after t_s, next_s[i] += p (floor((t_s - next_s[i]) / p
    + 1e-9) + 1) with p = period_s[i], and, if it has an alive counter (ctr_slot[i] >= 0), writes
    it to values[ctr_slot[i]] and advances it: counter[i] = (counter[i] + 1) mod ctr_mod[i].
    Returns the number of due messages."""
    n = 0
    for i in range(next_s.shape[0]):
        if next_s[i] > t_s + 1e-9:
            due[i] = False
            continue
        due[i] = True
        n += 1
        p = period_s[i]
        next_s[i] += p * (math.floor((t_s - next_s[i]) / p + 1e-9) + 1)
        if ctr_slot[i] >= 0:
            values[ctr_slot[i]] = counter[i]
            counter[i] = (counter[i] + 1) % ctr_mod[i]
    return n
