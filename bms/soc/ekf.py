"""Extended Kalman filter per cell over the cell model, with a current-offset state.

Filtered state ``xf = [z, v1, v2, h, b]`` (SOC, RC voltages, hysteresis, current-sensor
offset ``b``: the true current is ``i = i_meas - b``). Sample ``k`` brings ``(i_k, v_k, T_k)``.

Time update over ``dt`` with the previous sample's current held (exact ZOH, as bms.model)::

    z'  = z + eta * (i - b) dt / (3600 Q)
    vj' = aj vj + Rj (1 - aj)(i - b),           aj = exp(-dt / tau_j(T))
    h'  = Ah h + (1 - Ah) sgn(i - b),          Ah = exp(-gamma(T) |i - b| dt / (3600 Q))
    b'  = b
    P'  = F P F^T + Qd,  F = d f / d xf,  Qd = diag(qz + qa * g, qv, qv2, qh, qb) * dt

where ``g = max(0, e^2 / r_v - 1)`` and ``e`` is the innovation averaged over ``tau_e``
(e' = e + (innovation - e) dt / tau_e): a voltage disagreement that persists, which white
measurement noise cannot produce, re-opens the SOC uncertainty (adaptive process noise), so
a wrong SOC is corrected in minutes instead of hours while a consistent model keeps qz small.

Measurement update with the current sample::

    y  = OCV(z,T) + M(z,T) h + M0(T) s + v1 + v2 + R0(T) (i_k - b)
    H  = [dOCV/dz + dM/dz h, 1, 1, M, 0]
         (the offset's direct effect R0 b is below a millivolt: the offset is learned from the
         charge balance through F, never from load-voltage mismatch)
    S  = H P H^T + r,   r = r_v + (sigma_R i)^2, or r_rest once rested longer than rest_s
         (sigma_R: resistance uncertainty, so high-current samples, where an R0 error
         dominates, weigh less; OCV recalibration: the relaxed voltage is trusted more, and
         the hysteresis term keeps it hysteresis-aware)
    K  = P H^T / S,   xf += K (v_k - y),   P -= K K^T S  (computed symmetric, diagonal floored)

SOC is clamped to [0, 1], h to [-1, 1], b to +-bias_max. A sample whose voltage, current
or temperature is not finite never reaches the state: the previous value is held and a flag
set (see bms.soc.layout).
"""

from __future__ import annotations

import math

import numba as nb

from bms.model import interp_t, interp_ts, soc_index, temp_index
from bms.soc.layout import (
    FLAG_AT_REST, FLAG_I_HELD, FLAG_SOC_CLAMPED, FLAG_T_HELD, FLAG_V_HELD,
    IBIAS, IC_A1, IC_A2, IC_DT, IC_GAM, IC_J, IC_M0, IC_R0C, IC_R0D, IC_R1, IC_R2, IC_T, IC_W,
    ICAP, IEBAR, IFLAGS, IH, IIHOLD, INHELD, IRECAL, IREST, IS, ITHOLD, IV1, IV2, IVHOLD, IZ,
    NP, T_BIAS_MAX, T_QB, T_QH, T_QV, T_QV2, T_QZ, T_QZ_ADAPT, T_REST_I, T_SIGMA_R, T_TAU_E, T_REST_S, T_RREST, T_RV,
)

P_FLOOR = 1e-14


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
def _row_dot(P, r, hv):
    return P[r, 0] * hv[0] + P[r, 1] * hv[1] + P[r, 2] * hv[2] + P[r, 3] * hv[3] + P[r, 4] * hv[4]


@nb.njit(cache=True, inline="always")
def temp_scalars(p, x, temp_c, dt_s):
    """Refresh the cached temperature-dependent scalars (layout IC_*) when T or dt changed:
    a_j = exp(-dt / tau_j(T)), R_j(T), gamma(T), M0(T), R0(T) and the temperature bracket."""
    if x[IC_T] == temp_c and x[IC_DT] == dt_s:
        return
    j, wt = temp_index(p.temp_c, temp_c)
    x[IC_T] = temp_c
    x[IC_DT] = dt_s
    x[IC_A1] = math.exp(-dt_s / interp_t(p.tau1_s, j, wt))
    x[IC_A2] = math.exp(-dt_s / interp_t(p.tau2_s, j, wt))
    x[IC_R1] = interp_t(p.r1_ohm, j, wt)
    x[IC_R2] = interp_t(p.r2_ohm, j, wt)
    x[IC_GAM] = interp_t(p.gamma, j, wt)
    x[IC_M0] = interp_t(p.m0_v, j, wt)
    x[IC_R0C] = interp_t(p.r0_chg_ohm, j, wt)
    x[IC_R0D] = interp_t(p.r0_dis_ohm, j, wt)
    x[IC_J] = j
    x[IC_W] = wt


@nb.njit(cache=True, inline="always")
def ekf_cell(p, tune, x, P, i_meas, v_meas, temp_c, v_ok, dt_s):
    """One EKF step for one cell (equations in the module docstring). ``x`` (NXE,), ``P`` (5, 5)."""
    i_now, v_now, t_now, use_v = hold_inputs(x, i_meas, v_meas, temp_c, v_ok)
    q_as = 3600.0 * x[ICAP]
    # temperature of the interval: the held one (the sample's own for the measurement below)
    temp_scalars(p, x, x[ITHOLD], dt_s)

    # ---- time update with the previous sample's current
    b = x[IBIAS]
    i_prev = x[IIHOLD] - b
    eta = p.eta_chg if i_prev > 0.0 else 1.0
    r1 = x[IC_R1]
    r2 = x[IC_R2]
    a1 = x[IC_A1]
    a2 = x[IC_A2]
    gam = x[IC_GAM]
    sgn = 1.0 if i_prev > 0.0 else (-1.0 if i_prev < 0.0 else 0.0)
    kh = gam * dt_s / q_as
    ah = math.exp(-kh * abs(i_prev))
    h_old = x[IH]
    x[IZ] += eta * i_prev * dt_s / q_as
    x[IV1] = a1 * x[IV1] + r1 * (1.0 - a1) * i_prev
    x[IV2] = a2 * x[IV2] + r2 * (1.0 - a2) * i_prev
    x[IH] = ah * h_old + (1.0 - ah) * sgn
    if abs(i_prev) > p.i_sign_a:
        x[IS] = sgn
    # F = diag(d) + u e_b^T  (every state depends on itself and on the bias only)
    d0, d1, d2, d3, d4 = 1.0, a1, a2, ah, 1.0
    u0 = -eta * dt_s / q_as
    u1 = -r1 * (1.0 - a1)
    u2 = -r2 * (1.0 - a2)
    u3 = ah * kh * sgn * (h_old - sgn)
    d = (d0, d1, d2, d3, d4)
    u = (u0, u1, u2, u3, 0.0)
    pb = (P[0, 4], P[1, 4], P[2, 4], P[3, 4], P[4, 4])
    for r in range(NP):
        for c in range(r, NP):
            val = (d[r] * d[c] * P[r, c] + d[r] * u[c] * P[r, 4] + u[r] * d[c] * pb[c]
                   + u[r] * u[c] * pb[4])
            P[r, c] = val
    for r in range(NP):
        for c in range(r):
            P[r, c] = P[c, r]
    eb = x[IEBAR]
    g = eb * eb / tune[T_RV] - 1.0
    P[0, 0] += (tune[T_QZ] + (tune[T_QZ_ADAPT] * g if g > 0.0 else 0.0)) * dt_s
    P[1, 1] += tune[T_QV] * dt_s
    P[2, 2] += tune[T_QV2] * dt_s
    P[3, 3] += tune[T_QH] * dt_s
    P[4, 4] += tune[T_QB] * dt_s

    # ---- rest detection (OCV recalibration trusts the relaxed voltage more)
    i_true = i_now - b
    rested = update_rest(x, i_true, tune[T_REST_I], tune[T_REST_S], dt_s)
    if rested:
        x[IFLAGS] = x[IFLAGS] + FLAG_AT_REST

    # ---- measurement update (at the current sample's temperature)
    if use_v:
        temp_scalars(p, x, t_now, dt_s)
        j = int(x[IC_J])
        wt = x[IC_W]
        k, ws = soc_index(p.soc0, p.dsoc, p.ocv_v.shape[1], x[IZ])
        ocv, docv = interp_ts(p.ocv_v, j, wt, k, ws)
        m, dm = interp_ts(p.hyst_v, j, wt, k, ws)
        r0 = x[IC_R0C] if i_true > 0.0 else x[IC_R0D]
        y = ocv + m * x[IH] + x[IC_M0] * x[IS] + x[IV1] + x[IV2] + r0 * i_true
        hv = ((docv + dm * x[IH]) / p.dsoc, 1.0, 1.0, m, 0.0)
        ph = (_row_dot(P, 0, hv), _row_dot(P, 1, hv), _row_dot(P, 2, hv), _row_dot(P, 3, hv),
              _row_dot(P, 4, hv))
        sr = tune[T_SIGMA_R] * i_true
        s = tune[T_RREST] if rested else tune[T_RV] + sr * sr
        for r in range(NP):
            s += hv[r] * ph[r]
        innov = v_now - y
        if tune[T_TAU_E] > 0.0:
            x[IEBAR] += (innov - x[IEBAR]) * min(dt_s / tune[T_TAU_E], 1.0)
        gain = innov / s
        x[IZ] += ph[0] * gain
        x[IV1] += ph[1] * gain
        x[IV2] += ph[2] * gain
        x[IH] += ph[3] * gain
        x[IBIAS] += ph[4] * gain
        for r in range(NP):
            for c in range(r, NP):
                P[r, c] -= ph[r] * ph[c] / s
        for r in range(NP):
            if P[r, r] < P_FLOOR:
                P[r, r] = P_FLOOR
            for c in range(r):
                P[r, c] = P[c, r]
        if rested:
            x[IRECAL] = 1.0
        x[IVHOLD] = v_now

    # ---- physical bounds
    if x[IZ] < 0.0 or x[IZ] > 1.0:
        x[IZ] = min(max(x[IZ], 0.0), 1.0)
        x[IFLAGS] = x[IFLAGS] + FLAG_SOC_CLAMPED
    x[IH] = min(max(x[IH], -1.0), 1.0)
    bmax = tune[T_BIAS_MAX]
    x[IBIAS] = min(max(x[IBIAS], -bmax), bmax)
    x[IIHOLD] = i_now
    x[ITHOLD] = t_now
