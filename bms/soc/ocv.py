"""OCV inversion: the SOC whose rested voltage, with a given hysteresis state, equals a
measured voltage. Used to initialise from rest and by the coulomb counter's recalibration."""

from __future__ import annotations

import numba as nb

from bms.model import interp_t, interp_ts, soc_index, temp_index


@nb.njit(cache=True)
def rest_voltage_and_slope(p, z, temp_c, h, s):
    """u(z) = OCV(z,T) + M(z,T) h + M0(T) s and du/dz (V per unit SOC)."""
    j, wt = temp_index(p.temp_c, temp_c)
    k, ws = soc_index(p.soc0, p.dsoc, p.ocv_v.shape[1], z)
    ocv, docv = interp_ts(p.ocv_v, j, wt, k, ws)
    m, dm = interp_ts(p.hyst_v, j, wt, k, ws)
    return ocv + m * h + interp_t(p.m0_v, j, wt) * s, (docv + dm * h) / p.dsoc


@nb.njit(cache=True)
def soc_from_rest_voltage(p, v_rest, temp_c, h, s):
    """Solve OCV(z,T) + M(z,T) h + M0(T) s = v_rest for z in [0, 1] by bisection
    (u(z) is non-decreasing for the validated tables). Returns (z, du/dz at z)."""
    lo, hi = 0.0, 1.0
    u_lo, _ = rest_voltage_and_slope(p, lo, temp_c, h, s)
    u_hi, _ = rest_voltage_and_slope(p, hi, temp_c, h, s)
    if v_rest <= u_lo:
        return 0.0, rest_voltage_and_slope(p, 0.0, temp_c, h, s)[1]
    if v_rest >= u_hi:
        return 1.0, rest_voltage_and_slope(p, 1.0, temp_c, h, s)[1]
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        u, _ = rest_voltage_and_slope(p, mid, temp_c, h, s)
        if u < v_rest:
            lo = mid
        else:
            hi = mid
    z = 0.5 * (lo + hi)
    # slope over a finite window: the tables are piecewise linear, a point slope can be 0
    w = 2.0 * p.dsoc
    u_a, _ = rest_voltage_and_slope(p, max(z - w, 0.0), temp_c, h, s)
    u_b, _ = rest_voltage_and_slope(p, min(z + w, 1.0), temp_c, h, s)
    return z, (u_b - u_a) / (min(z + w, 1.0) - max(z - w, 0.0))
