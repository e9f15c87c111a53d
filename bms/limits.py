"""Charge and discharge current / power / voltage limits (state of function).

Target current limit, charge (discharge likewise with its own tables)::

    I_chg* = I_chg_max * min(f_T(T_min), f_T(T_max)) * f_SOC(z_max) * f_V * d_faults
    f_V    = clip((V_fault_OV - v_max) / (V_fault_OV - V_warn_OV), 0, 1)     (discharge:
             clip((v_min - V_fault_UV) / (V_warn_UV - V_fault_UV), 0, 1), lowest SOC z_min)

with the derating tables of the pack TOML (linear interpolation, clamped), the cell-voltage
thresholds of CELL_OV / CELL_UV from the fault table, and d_faults the smallest derating factor
of the active faults. The limit is 0 while the contactors are open or opening, or when no fresh
cell voltage or temperature is available. The output follows the target at most
ramp_up_a_per_s upwards and ramp_down_a_per_s downwards. Power limit = current limit x pack
voltage, capped at p_*_max_w; voltage limits = n_series x v_chg_cell_v / v_dis_cell_v.
"""

from __future__ import annotations

import math

import numba as nb

from bms import layout as L
from bms.model import interp_t, temp_index


@nb.njit(cache=True)
def interp_clamped(grid, vals, x):
    """Piecewise-linear f(x) on an ascending grid, constant beyond the ends (the cell model's
    bracket-and-interpolate over temperature, bms.model.temp_index / interp_t)."""
    j, w = temp_index(grid, x)
    return interp_t(vals, j, w)


@nb.njit(cache=True)
def _clip01(x):
    """min(max(x, 0), 1), with NaN -> 0."""
    return 0.0 if not x > 0.0 else (1.0 if x > 1.0 else x)


@nb.njit(cache=True)
def target_limits(prm, der_c, der_d, z_min, z_max, v_min, v_max, t_min, t_max):
    """Unramped (charge, discharge) current limits, A >= 0 (equation in the module docstring)."""
    pp, d = prm.pp, prm.diag
    if not (math.isfinite(v_min) and math.isfinite(v_max) and math.isfinite(t_min) and math.isfinite(t_max)):
        return 0.0, 0.0
    ft_c = min(interp_clamped(prm.der_temp_c, prm.der_temp_chg, t_min), interp_clamped(prm.der_temp_c, prm.der_temp_chg, t_max))
    ft_d = min(interp_clamped(prm.der_temp_c, prm.der_temp_dis, t_min), interp_clamped(prm.der_temp_c, prm.der_temp_dis, t_max))
    fz_c = interp_clamped(prm.der_soc, prm.der_soc_chg, z_max) if math.isfinite(z_max) else 0.0
    fz_d = interp_clamped(prm.der_soc, prm.der_soc_dis, z_min) if math.isfinite(z_min) else 0.0
    ov_w, ov_f = d[L.F_CELL_OV, L.D_WARN], d[L.F_CELL_OV, L.D_FAULT]
    uv_w, uv_f = d[L.F_CELL_UV, L.D_WARN], d[L.F_CELL_UV, L.D_FAULT]
    fv_c = _clip01((ov_f - v_max) / (ov_f - ov_w))
    fv_d = _clip01((v_min - uv_f) / (uv_w - uv_f))
    i_c = pp[L.P_I_CHG_MAX_A] * ft_c * fz_c * fv_c * der_c
    i_d = pp[L.P_I_DIS_MAX_A] * ft_d * fz_d * fv_d * der_d
    return i_c, i_d


@nb.njit(cache=True)
def ramp(prev, target, up_per_s, down_per_s, dt_s):
    """Move from ``prev`` towards ``target`` by at most up*dt upwards, down*dt downwards."""
    if not math.isfinite(prev):
        prev = 0.0
    if target > prev:
        return min(target, prev + up_per_s * dt_s)
    return max(target, prev - down_per_s * dt_s)


@nb.njit(cache=True)
def limits_step(st, prm, dt_s, state, closed, der_c, der_d, z_min, z_max, pack_v):
    """Write the ramped limits of this step to ``st.out`` (and remember them in ``st.s``)."""
    s, out, pp = st.s, st.out, prm.pp
    i_c, i_d = 0.0, 0.0
    if closed and (state == L.ST_DRIVE or state == L.ST_CHARGE) and s[L.S_OPENING] == 0.0:
        i_c, i_d = target_limits(prm, der_c, der_d, z_min, z_max, out[L.Y_CELL_V_MIN], out[L.Y_CELL_V_MAX],
                                 out[L.Y_TEMP_MIN_C], out[L.Y_TEMP_MAX_C])
        s[L.S_I_CHG_LIM_A] = ramp(s[L.S_I_CHG_LIM_A], i_c, pp[L.P_RAMP_UP_A_S], pp[L.P_RAMP_DOWN_A_S], dt_s)
        s[L.S_I_DIS_LIM_A] = ramp(s[L.S_I_DIS_LIM_A], i_d, pp[L.P_RAMP_UP_A_S], pp[L.P_RAMP_DOWN_A_S], dt_s)
    else:
        s[L.S_I_CHG_LIM_A] = ramp(s[L.S_I_CHG_LIM_A], 0.0, pp[L.P_RAMP_UP_A_S], pp[L.P_RAMP_DOWN_A_S], dt_s)
        s[L.S_I_DIS_LIM_A] = ramp(s[L.S_I_DIS_LIM_A], 0.0, pp[L.P_RAMP_UP_A_S], pp[L.P_RAMP_DOWN_A_S], dt_s)
    out[L.Y_I_CHG_LIM_A] = s[L.S_I_CHG_LIM_A]
    out[L.Y_I_DIS_LIM_A] = s[L.S_I_DIS_LIM_A]
    v = pack_v if math.isfinite(pack_v) and pack_v > 0.0 else pp[L.P_N_SERIES] * pp[L.P_V_DIS_CELL_V]
    out[L.Y_P_CHG_LIM_W] = min(s[L.S_I_CHG_LIM_A] * v, pp[L.P_P_CHG_MAX_W])
    out[L.Y_P_DIS_LIM_W] = min(s[L.S_I_DIS_LIM_A] * v, pp[L.P_P_DIS_MAX_W])
    out[L.Y_V_CHG_MAX_V] = pp[L.P_N_SERIES] * pp[L.P_V_CHG_CELL_V]
    out[L.Y_V_DIS_MIN_V] = pp[L.P_N_SERIES] * pp[L.P_V_DIS_CELL_V]
