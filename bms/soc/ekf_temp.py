"""The EKF's temperature handling (bms.soc.ekf, and the sweep's lanes in bms.tune.ekf_lanes):
the cached temperature-dependent scalars of a cell, and the rule that a loaded voltage corrects
the state only within the temperatures the profile was fitted at (widened by a margin).

Why the rule: beyond the grid the model holds its edge values while the cell's resistances keep
changing (Arrhenius), and on LFP's flat OCV the filter would read the persistent IR disagreement
as SOC. A rested voltage (OCV recalibration) is used at any temperature. Measurements:
docs/soc-tuning.md, "Outside the profile's temperatures".
"""

from __future__ import annotations

import math

import numba as nb

from bms.soc.layout import IC_A1, IC_A2, IC_DT, IC_GAM, IC_J, IC_M0, IC_R0C, IC_R0D, IC_R1, IC_R2, IC_T, IC_W


@nb.njit(cache=True, inline="always")
def load_t_range(p, margin_k):
    """(t_lo, t_hi): the profile's temperature grid widened by ``margin_k`` (the tuning's
    ``load_t_margin_k``), the temperatures at which a loaded voltage may correct the state."""
    return p.temp_c[0] - margin_k, p.temp_c[p.temp_c.shape[0] - 1] + margin_k


@nb.njit(cache=True, inline="always")
def load_update_ok(rested, temp_c, t_lo, t_hi):
    """A voltage sample may correct the state: a rested one (OCV recalibration) at any
    temperature, a loaded one only within [t_lo, t_hi] (:func:`load_t_range`; module docstring)."""
    return rested or (temp_c >= t_lo and temp_c <= t_hi)


@nb.njit(cache=True)
def temp_scalars(p, x, c, temp_c, dt_s):
    """Refresh cell ``c``'s cached temperature-dependent scalars (layout IC_*) for (T, dt):
    a_j = exp(-dt / tau_j(T)), R_j(T), gamma(T), M0(T), R0(T) (linear in T, clamped at the
    table ends) and the temperature bracket (j, w). Called only when T or dt changed."""
    tg = p.temp_c
    nt = tg.shape[0]
    if nt == 1 or temp_c <= tg[0]:
        j, w = 0, 0.0
    elif temp_c >= tg[nt - 1]:
        j, w = nt - 2, 1.0
    else:
        j = 0
        while tg[j + 1] < temp_c:
            j += 1
        w = (temp_c - tg[j]) / (tg[j + 1] - tg[j])
    j1 = j + 1 if nt > 1 else j
    x[c, IC_T] = temp_c
    x[c, IC_DT] = dt_s
    x[c, IC_A1] = math.exp(-dt_s / ((1.0 - w) * p.tau1_s[j] + w * p.tau1_s[j1]))
    x[c, IC_A2] = math.exp(-dt_s / ((1.0 - w) * p.tau2_s[j] + w * p.tau2_s[j1]))
    x[c, IC_R1] = (1.0 - w) * p.r1_ohm[j] + w * p.r1_ohm[j1]
    x[c, IC_R2] = (1.0 - w) * p.r2_ohm[j] + w * p.r2_ohm[j1]
    x[c, IC_GAM] = (1.0 - w) * p.gamma[j] + w * p.gamma[j1]
    x[c, IC_M0] = (1.0 - w) * p.m0_v[j] + w * p.m0_v[j1]
    x[c, IC_R0C] = (1.0 - w) * p.r0_chg_ohm[j] + w * p.r0_chg_ohm[j1]
    x[c, IC_R0D] = (1.0 - w) * p.r0_dis_ohm[j] + w * p.r0_dis_ohm[j1]
    x[c, IC_J] = j
    x[c, IC_W] = w


