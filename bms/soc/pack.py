"""Pack SOC from cell SOCs: minimum, mean, maximum and the SOC displayed to the driver.

The displayed SOC follows the target::

    target = z_min / (z_min + 1 - z_max)

which is 0 exactly when the weakest cell is empty and 1 exactly when the fullest cell is
full (the real limits of a series string), and equals the mean for a balanced pack. It
moves towards the target at most ``rate = base_rate + k_rate * |i| / (3600 Q)`` per second,
and never against the current: it does not fall while charging nor rise while discharging,
so filter corrections never show up as jumps.
"""

from __future__ import annotations

import numba as nb

# output layout
PS_MIN, PS_MEAN, PS_MAX, PS_DISPLAY = range(4)


@nb.njit(cache=True)
def pack_soc_step(cell_soc, i_a, capacity_ah, dt_s, base_rate_per_s, k_rate, rest_i_a, display, out):
    """Update ``out[PS_*]`` from ``cell_soc`` (n,); ``display`` is the (1,) state of the
    displayed SOC (negative means not initialised: it starts at the target)."""
    lo = 1.0
    hi = 0.0
    acc = 0.0
    n = cell_soc.shape[0]
    for c in range(n):
        z = cell_soc[c]
        lo = min(lo, z)
        hi = max(hi, z)
        acc += z
    den = lo + 1.0 - hi
    target = lo / den if den > 1e-9 else 0.5
    if display[0] < 0.0:
        display[0] = target
    else:
        rate = base_rate_per_s + k_rate * abs(i_a) / (3600.0 * capacity_ah)
        step = min(max(target - display[0], -rate * dt_s), rate * dt_s)
        if (i_a > rest_i_a and step < 0.0) or (i_a < -rest_i_a and step > 0.0):
            step = 0.0
        display[0] = min(max(display[0] + step, 0.0), 1.0)
    out[PS_MIN] = lo
    out[PS_MEAN] = min(max(acc / n, lo), hi)  # rounding can put the sum's mean 1 ulp outside
    out[PS_MAX] = hi
    out[PS_DISPLAY] = display[0]
