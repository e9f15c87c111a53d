"""Cell self-discharge (internal short) check: a cell that leaks charge falls behind its
neighbours between rests, by more than the charge the BMS itself bled from it.

Rest points: on the slow task, at a pack SOC within [``soc_min``, ``soc_max``] (in the knees of
the curve a cell's static SOC offset does not cancel between two points), once the pack has rested (|I| < the balancing rest current, timer
``S_REST_T_S``) for ``rest_s`` and at least ``window_s`` after the previous rest point (so a long
rest, overnight, gives a point every window). At a rest point each cell's rested voltage (the
slow task's period mean) is taken relative to the pack median, dv_c = v_c - median(v), with the
OCV slope there, s = max(dOCV/dz, slope_min) (secant over +-SECANT of the pack mean SOC at the
pack temperature; floored because on the LFP plateau, 0.2-0.6 mV per %, a millivolt of scatter
would read as several % of SOC: the floor makes the check read low there rather than noisy).
Two rest points t0 < t1 are compared only if their slopes differ by less than the factor
``slope_ratio_max`` and their pack SOCs by at most ``soc_step_max`` (a cell's sensor offset shows
as volts, its static SOC offset dz as OCV(z + dz) - OCV(z) volts: both cancel only at the same
place on the curve, and LFP's curve bends within a few %); the cell's leak rate relative to the
pack, net of the bleeding, is then

    r_c = [ (dv_c(t0) - dv_c(t1) - d) / max(s0, s1) - (dB_c - median(dB)) ] / (t1 - t0)   (%/h),
    dB_c = B_c(t1) - B_c(t0),   B_c = sum over bleeding medium periods of v_c / (R_bleed n_par C) dt

(B: the SOC the bleed resistor took, as a fraction of the element's capacity n_par C; d: the
``dv_deadband_v`` that the voltage's resolution can move a cell against the median, once for the
cell's quantisation and once for the median's, without any charge moving). Every
rest point becomes the next reference. The quantity ``self_discharge`` is the largest r_c, held
until the next compared pair. Normal self-discharge (a few %/month) and its spread are far below
the thresholds; what the check sees is a leak of amperes: an internal short.
"""

from __future__ import annotations

import math

import numba as nb

from bms import layout as L
from bms.model import ocv_and_slope

SECANT = 0.05  # half-width of the OCV secant, SOC


@nb.njit(cache=True)
def median_of(a, tmp):
    """Median of ``a`` (n,) using ``tmp`` (n,) as scratch (quickselect; ``a`` unchanged)."""
    n = a.shape[0]
    for i in range(n):
        tmp[i] = a[i]
    k = n // 2
    hi_k = _select(tmp, k)
    if n % 2 == 1:
        return hi_k
    lo = -math.inf
    for i in range(k):  # after the select, tmp[:k] holds the k smallest: the largest of them
        if tmp[i] > lo:
            lo = tmp[i]
    return 0.5 * (lo + hi_k)


@nb.njit(cache=True)
def _select(a, k):
    """k-th smallest of ``a`` (in place, Hoare quickselect); afterwards a[:k] <= a[k] <= a[k+1:]."""
    lo, hi = 0, a.shape[0] - 1
    while lo < hi:
        pivot = a[(lo + hi) // 2]
        i, j = lo, hi
        while i <= j:
            while a[i] < pivot:
                i += 1
            while a[j] > pivot:
                j -= 1
            if i <= j:
                a[i], a[j] = a[j], a[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            break
    return a[k]


@nb.njit(cache=True)
def bleed_accumulate(sd, bleed, cell_v, cell_ok, pp, dt_s):
    """Medium task, after balancing: B_c += v_c / (R_bleed n_par C 3600) dt for each cell
    commanded to bleed over the coming period (a stale voltage counts as the nominal 3.3 V)."""
    k = dt_s / (pp[L.P_BAL_R_OHM] * pp[L.P_N_PARALLEL] * pp[L.P_CELL_CAPACITY_AH] * 3600.0)
    for c in range(sd.shape[0]):
        if bleed[c]:
            v = cell_v[c] if cell_ok[c] else 3.3
            sd[c, L.SD_BLEED] += v * k


@nb.njit(cache=True)
def rest_point(sd, s, v_mean, v_ok, soc_mean, temp_c, cell, pp):
    """Slow task: take a rest point if one is due (see the module docstring) and update the held
    rate ``s[S_SD_RATE]`` (%/h) and its cell ``s[S_SD_LOC]``. Returns True if a point was taken.
    ``v_mean`` (n,) are the period's mean cell voltages, ``v_ok`` (n,) their freshness; a point
    needs every cell fresh and a finite pack SOC and temperature."""
    t = s[L.S_TIME_S]
    if s[L.S_REST_T_S] < pp[L.P_SD_REST_S]:
        return False
    have_ref = not math.isnan(s[L.S_SD_REF_T_S])
    if have_ref and t - s[L.S_SD_REF_T_S] < pp[L.P_SD_WINDOW_S] - 1e-9:
        return False
    n = sd.shape[0]
    for c in range(n):
        if not (v_ok[c] and math.isfinite(v_mean[c])):
            return False
    if not (math.isfinite(soc_mean) and math.isfinite(temp_c)):
        return False
    if not pp[L.P_SD_SOC_LO] <= soc_mean <= pp[L.P_SD_SOC_HI]:
        return False
    z = min(max(soc_mean, SECANT), 1.0 - SECANT)
    hi, _ = ocv_and_slope(cell, z + SECANT, temp_c)
    lo, _ = ocv_and_slope(cell, z - SECANT, temp_c)
    slope = max((hi - lo) / (2.0 * SECANT), pp[L.P_SD_SLOPE_MIN_V])
    v_med = median_of(v_mean, sd[:, L.SD_TMP])
    s_ref = s[L.S_SD_REF_SLOPE]
    similar = (max(slope, s_ref) <= pp[L.P_SD_SLOPE_RATIO] * min(slope, s_ref)
               and abs(soc_mean - s[L.S_SD_REF_SOC]) <= pp[L.P_SD_SOC_STEP] + 1e-12)
    if have_ref and similar:
        for c in range(n):  # scratch: the bleed of the window, for its median
            sd[c, L.SD_TMP] = sd[c, L.SD_BLEED] - sd[c, L.SD_REF_BLEED]
        db_med = _select(sd[:, L.SD_TMP], n // 2)
        per_h = 100.0 * 3600.0 / (t - s[L.S_SD_REF_T_S])
        inv_s = 1.0 / max(slope, s_ref)
        dband = pp[L.P_SD_DV_DEADBAND_V]
        rate, loc = -math.inf, -1
        for c in range(n):
            db = sd[c, L.SD_BLEED] - sd[c, L.SD_REF_BLEED] - db_med
            r = ((sd[c, L.SD_REF_DV] - (v_mean[c] - v_med) - dband) * inv_s - db) * per_h
            if r > rate:
                rate, loc = r, c
        s[L.S_SD_RATE], s[L.S_SD_LOC] = rate, loc
    for c in range(n):
        sd[c, L.SD_REF_DV] = v_mean[c] - v_med
        sd[c, L.SD_REF_BLEED] = sd[c, L.SD_BLEED]
    s[L.S_SD_REF_T_S] = t
    s[L.S_SD_REF_SLOPE] = slope
    s[L.S_SD_REF_SOC] = soc_mean
    return True
