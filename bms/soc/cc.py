"""Coulomb counting with coulombic efficiency and hysteresis-aware OCV recalibration at rest.

Per sample (previous current held over ``dt``)::

    z' = z + eta(i) i dt / (3600 Q)           eta = eta_chg in charge, 1 in discharge
    h' = Ah h + (1 - Ah) sgn(i)               (the model's hysteresis law, so a rest
                                                voltage can be read with the right branch)
    var_z' = var_z + qz dt

After a rest longer than ``rest_s`` (|i| < rest_i), once per rest, the rested voltage gives
``z_ocv`` by solving OCV(z) + M(z) h + M0 s = v (bms.soc.ocv); it is blended like a scalar
Kalman update with measurement variance ``r_rest / (dOCV/dz)^2``, so on the flat LFP
plateau (small slope) the recalibration moves the estimate little, and on the steep ends a lot.
"""

from __future__ import annotations

import math

import numba as nb

from bms.model import interp_t, temp_index
from bms.soc.layout import (
    FLAG_AT_REST, FLAG_I_HELD, FLAG_SOC_CLAMPED, FLAG_T_HELD, FLAG_V_HELD, ICAP, IFLAGS, IH, IIHOLD,
    INHELD, IRECAL, IREST, IS, ITHOLD, IVHOLD, IZ,
    T_QZ, T_REST_I, T_REST_S, T_RREST,
)
from bms.soc.ocv import soc_from_rest_voltage


@nb.njit(cache=True, inline="always")
def hold_inputs(x, i_meas, v_meas, temp_c, v_ok):
    """Replace non-finite samples by the held values; returns (i, v, T, use_v) and sets flags."""
    flags = 0
    if math.isfinite(i_meas):
        i_now = i_meas
    else:
        i_now = x[IIHOLD]
        flags |= FLAG_I_HELD
    if math.isfinite(temp_c):
        t_now = temp_c
    else:
        t_now = x[ITHOLD]
        flags |= FLAG_T_HELD
    use_v = v_ok and math.isfinite(v_meas)
    if not use_v:
        flags |= FLAG_V_HELD
    if flags != 0:
        x[INHELD] += 1.0
    x[IFLAGS] = flags
    return i_now, (v_meas if use_v else x[IVHOLD]), t_now, use_v


@nb.njit(cache=True, inline="always")
def update_rest(x, i_true, rest_i_a, rest_min_s, dt_s):
    """Rest timer: time since |i| last exceeded the rest threshold; returns True when rested."""
    if abs(i_true) < rest_i_a:
        x[IREST] += dt_s
    else:
        x[IREST] = 0.0
        x[IRECAL] = 0.0
    return x[IREST] >= rest_min_s


@nb.njit(cache=True, inline="always")
def cc_cell(p, tune, x, P, i_meas, v_meas, temp_c, v_ok, dt_s):
    """One coulomb-counting step for one cell (module docstring). P[0, 0] holds var(z)."""
    i_now, v_now, t_now, use_v = hold_inputs(x, i_meas, v_meas, temp_c, v_ok)
    q_as = 3600.0 * x[ICAP]
    i_prev = x[IIHOLD]
    eta = p.eta_chg if i_prev > 0.0 else 1.0
    j, wt = temp_index(p.temp_c, x[ITHOLD])
    ah = math.exp(-interp_t(p.gamma, j, wt) * abs(i_prev) * dt_s / q_as)
    sgn = 1.0 if i_prev > 0.0 else (-1.0 if i_prev < 0.0 else 0.0)
    x[IZ] += eta * i_prev * dt_s / q_as
    x[IH] = ah * x[IH] + (1.0 - ah) * sgn
    if abs(i_prev) > p.i_sign_a:
        x[IS] = sgn
    P[0, 0] += tune[T_QZ] * dt_s
    if update_rest(x, i_now, tune[T_REST_I], tune[T_REST_S], dt_s):
        x[IFLAGS] = x[IFLAGS] + FLAG_AT_REST
        if use_v and x[IRECAL] == 0.0:
            z_ocv, slope = soc_from_rest_voltage(p, v_now, t_now, x[IH], x[IS])
            r_z = tune[T_RREST] / max(slope * slope, 1e-12)
            g = P[0, 0] / (P[0, 0] + r_z)
            x[IZ] += g * (z_ocv - x[IZ])
            P[0, 0] *= 1.0 - g
            x[IRECAL] = 1.0
    if use_v:
        x[IVHOLD] = v_now
    if x[IZ] < 0.0 or x[IZ] > 1.0:
        x[IZ] = min(max(x[IZ], 0.0), 1.0)
        x[IFLAGS] = x[IFLAGS] + FLAG_SOC_CLAMPED
    x[IIHOLD] = i_now
    x[ITHOLD] = t_now
