"""The temperature rule: dynamic parameters on the profile's temperature grid from the few
temperatures that have drive-cycle data.

* At a drive-cycle temperature: the fitted value.
* Between two of them: Arrhenius interpolation, ``ln p`` linear in ``1/T`` (kelvin), between
  the neighbours (``m0``, the slow-test extra polarisation and the log-increments of the R0 and
  RC SOC factors, i.e. ``ln F`` and ``ln G``, linear in ``1/T``; they may be 0).
* Below the coldest one: held at the coldest value (no extrapolation into the cold).
* Above the warmest one (``T_w``): resistances (and the slow-test extra polarisation) follow ``p(T) = p(T_w) exp(B_HOT (1/T - 1/T_w))``
  with ``B_HOT = ln(1.2/0.8) / (1/298.15 - 1/318.15) = 1923 K``: the data README's apparent 1 s
  resistance of the Winston cell, ~1.2 mOhm at 25 C and ~0.8 mOhm at 45 C; time constants,
  ``gamma`` and the SOC factors' shapes are held at ``T_w``; ``m0`` scales with the slow curves' mid-SOC half-gap
  ``m0(T) = m0(T_w) g(T) / g(T_w)`` (the hysteresis measured at that temperature).
* Everything clamped to :data:`bms.fit.dynamic.BOUNDS`.
"""

from __future__ import annotations

import numpy as np

from bms.fit import rsoc
from bms.fit.dynamic import BOUNDS, FIT_KEYS

KELVIN = 273.15
#: activation temperature (K) of the resistances above the warmest drive-cycle temperature
B_HOT_K = float(np.log(1.2 / 0.8) / (1.0 / 298.15 - 1.0 / 318.15))
RESISTIVE = ("r0_chg_ohm", "r0_dis_ohm", "r1_ohm", "r2_ohm", "p_extra_v")
HELD_HOT = ("tau1_s", "tau2_s", "gamma") + rsoc.ALL_KEYS
#: linear (not log) in 1/T between drive temperatures: may be 0
LINEAR_T = ("m0_v", "p_extra_v") + rsoc.ALL_KEYS

RULE_TEXT = (
    "at drive-cycle temperatures: fitted; between them: ln(p) linear in 1/T (m0, p_extra and ln F of the R0 SOC factor linear in 1/T); "
    "below the coldest: held; above the warmest T_w: R0/R1/R2/p_extra scaled by exp(B (1/T - 1/T_w)) with "
    f"B = {B_HOT_K:.0f} K (README anchor: 1 s resistance 1.2 mOhm at 25 C, 0.8 mOhm at 45 C), "
    "tau1/tau2/gamma and the R0 SOC factor held, m0 scaled by the slow-curve mid-SOC half-gap ratio; all clamped to the fit bounds"
)


def extend(fit_temp_c: np.ndarray, fit_values: dict[str, np.ndarray], out_temp_c: np.ndarray,
           half_gap_out: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Dynamic parameter tables on ``out_temp_c`` from values at ``fit_temp_c`` (rule above).

    ``half_gap_out`` (per ``out_temp_c``) is the slow curves' mid-SOC half-gap, used for ``m0``
    above the warmest fitted temperature (held if None)."""
    ft = np.asarray(fit_temp_c, dtype=float)
    order = np.argsort(ft)
    ft = ft[order]
    if ft.size == 0 or np.any(np.diff(ft) <= 0):
        raise ValueError(f"fitted temperatures must be distinct, got {fit_temp_c}")
    ot = np.asarray(out_temp_c, dtype=float)
    inv_f = 1.0 / (ft + KELVIN)
    inv_o = 1.0 / (ot + KELVIN)
    warm = ot > ft[-1]
    g_ref = None
    if half_gap_out is not None and ft[-1] in ot:
        g_ref = float(np.asarray(half_gap_out)[np.flatnonzero(ot == ft[-1])[0]])
    out = {}
    for k in FIT_KEYS:
        if k not in fit_values:
            continue
        v = np.asarray(fit_values[k], dtype=float)[order]
        lo, hi = BOUNDS[k]
        if k in LINEAR_T:
            # np.interp needs ascending x: 1/T descends with T, so reverse
            res = np.interp(inv_o, inv_f[::-1], v[::-1])
        else:
            res = np.exp(np.interp(inv_o, inv_f[::-1], np.log(v[::-1])))
        if k in RESISTIVE:
            res[warm] = v[-1] * np.exp(B_HOT_K * (inv_o[warm] - inv_f[-1]))
        elif k in HELD_HOT:
            res[warm] = v[-1]
        elif k == "m0_v" and g_ref and half_gap_out is not None:
            res[warm] = v[-1] * np.asarray(half_gap_out, dtype=float)[warm] / g_ref
        out[k] = np.clip(res, lo, hi)
    return out
