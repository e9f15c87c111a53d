"""The EKF of :mod:`bms.soc.ekf` for many tunings over one measured series at once: time
outer, tunings inner, in SIMD lanes.

A sweep runs many parameter sets over the same perturbed dataset. Everything that depends
only on the sample and the profile is the same for every set and is computed once per sample
instead of once per set: the held current and temperature (non-finite samples), the step
``dt``, ``dt / Q`` and the temperature scalars of :func:`bms.soc.ekf_temp.temp_scalars`
(``a_j = exp(-dt / tau_j(T))``, ``R_j(T)``, ``gamma(T)``, ``M0(T)``, ``R0(T)``, the
temperature bracket), refreshed only when (T, dt) changes, exactly as ``ekf_run`` caches them
per cell. No tuning key enters them (the swept keys are the noise, rest and offset settings of
``bms.soc.layout`` T_*; a perturbation that changes T, i or Q is a separate series), so nothing
invalidates them across sets. Per set, per sample, the same time and measurement update as
``ekf_run`` (equations in :mod:`bms.soc.ekf`)::

    x' = f(x, i_{k-1} - b),  P' = F P F^T + Qd,  K = P' H^T / (H P' H^T + r),
    x = x' + K (v_k - y(x')),  P = P' - K K^T S

and the score accumulators of :func:`bms.tune.metrics.acc_add` on ``z - z_true``.

Layout: the ``LANES`` sets of a block live in one flat array ``S[row * LANES + r]`` (state,
covariance, tuning and per-sample intermediates, ``R*`` rows), so each per-sample loop over
the sets is a loop over contiguous lanes with compile-time row offsets that LLVM vectorises
(AVX2: 4 sets per instruction; ``ekf_lanes.inspect_asm`` shows packed ymm arithmetic).
Branches are selects.
The per-set table lookups (SOC-indexed OCV, hysteresis, R0 and RC factors: a gather whose
index differs per set) are not gathered per sample: each lane keeps the corners of the table
segment its SOC is in (:func:`load_corners`: the value at the segment's start and its slope per
grid step at the two temperature rows of the bracket, as differences), reloaded in a scalar loop
only for the lanes whose SOC left its segment (the grid is 1 % SOC: a set crosses a segment every
few tens of samples at most) or for all when the temperature row changes; the vector loops blend
them at the temperature weight and the SOC weight (``a + wt da + ws (s + wt ds)``:
:func:`bms.model.bilinear`'s value in another order, ~1 ulp of the OCV apart) inside the time and
measurement updates. Before: segments blended per temperature bracket (a version stamp each) and
gathered per set and sample, 26.4 -> 21.9 ns CPU per filter-step single-threaded on the
benchmark's series (medians of 21 interleaved A/B runs, load ~11 on 2 cores). The SOC
brackets are computed in the loops that produce the SOC (G's in the ``zg`` update, the
measurement's at the end of the time update) with the segment kept as a float, and the
hysteresis decay ``exp(-gamma |i - b| dt / Q)`` is :func:`bms.soc.ekf.exp_neg_taylor` inside the
time update whenever the bound ``gamma |i| + b_max`` shows every set below ``EXP_TAYLOR_MAX``
(otherwise a scalar loop with :func:`bms.soc.ekf.exp_neg` first): three vector passes fewer per
sample, 1.13x (paired A/B medians, same method). Tried and dropped: the clamps to the physical
bounds inside the measurement update's loop (0.6x: that loop then stays scalar), the sample
counts of the scores added once at the end instead of per lane (0.95x).
No masked loads or stores (``vmaskmovpd``; slow on AMD cores, and a masked store is not
forwarded to a later load): a row read under a select is loaded before it, and a row updated
by a select (``s = sgn if ... else s``, the running maxima of :func:`bms.tune.metrics.acc_add`)
is written to another row than it is read from (LLVM turns a select written back in place
into a masked store); 18.6 -> 15.5 ns CPU per filter-step single-threaded (A/B medians as above).

Agreement with ``ekf_run`` (n = 1 per set, the single-run path): the same operations in the
same order but for that interpolation (the covariance algebra is shared: :mod:`bms.soc.ekf_cov`),
compiled with the same fastmath flags, so results differ only by rounding: ~1e-14 in SOC per
sample, metrics within ~1e-13 relative on the benchmark's tunings. A tuning
whose filter amplifies rounding (tiny r_v2 with a 1 s rest recalibration) amplifies that too,
as much as a one-ulp change of the voltages moves ``ekf_run`` itself (tests/test_tune_lanes.py:
hypothesis over tunings, bound = 1e-9 relative + 10x that sensitivity).
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from bms.soc.ekf import EXP_TAYLOR_MAX, G_TAU_S, RC_SOC_JACOBIAN, exp_neg, exp_neg_taylor, time_update
from bms.soc.ekf_temp import load_t_range, load_update_ok, temp_scalars
from bms.soc.ekf_cov import cov_correct, cov_ph, cov_predict, cov_rc_soc
from bms.soc.layout import (
    IC_A1, IC_A2, IC_DT, IC_GAM, IC_J, IC_M0, IC_R0C, IC_R0D, IC_R1, IC_R2, IC_T, IC_W, NXE,
    T_BIAS_MAX, T_P0B, T_P0H, T_P0Z, T_QB, T_QH, T_QV, T_QV2, T_QZ, T_QZ_ADAPT, T_REST_I, T_REST_S, T_RREST, T_RV,
    T_LOAD_T_MARGIN, T_SIGMA_R, T_TAU_E,
)
from bms.tune.metrics import acc_add, acc_finish, acc_reset, acc_scratch

#: sets per block (a compile-time constant: row offsets fold into the addresses)
LANES = 16
L = LANES
#: rows of S: filtered state, covariance (upper triangle), tuning, per-sample intermediates, and
#: each lane's table corners (:func:`load_corners`: OCV, hysteresis M, R0 factor F, G; 4 rows each)
(RZ, RV1, RV2, RH, RS, RB, RREST, REB,
 R00, R01, R02, R03, R04, R11, R12, R13, R14, R22, R23, R24, R33, R34, R44,
 RQZ, RQZA, RQV, RQV2, RQH, RQB, RINVRV, RRV, RRREST, RSIGR, RRESTI, RRESTS, RBMAX, RTAUE, RKE,
 RAH, RZG, RWS, RWSG, RSN, RLTM) = range(44)
RC_OCV, RC_M, RC_F, RC_G = range(44, 60, 4)
NROW = 60
#: (row of S, index in the tuning vector) of the tuning values the kernel reads per set
TUNE_ROWS = ((RQZ, T_QZ), (RQZA, T_QZ_ADAPT), (RQV, T_QV), (RQV2, T_QV2), (RQH, T_QH), (RQB, T_QB), (RRV, T_RV),
             (RRREST, T_RREST), (RSIGR, T_SIGMA_R), (RRESTI, T_REST_I), (RRESTS, T_REST_S), (RBMAX, T_BIAS_MAX),
             (RTAUE, T_TAU_E), (RLTM, T_LOAD_T_MARGIN))


@nb.njit(cache=True, inline="always")
def load_corners(S, c0, r, tab, j, j1, k):
    """Lane ``r``'s corners of SOC segment ``k`` of ``tab`` (nT, nS) at the temperature rows
    (j, j1), into rows c0..c0+3 of ``S``: ``a = tab[j,k]``, ``da = tab[j1,k] - a``, the slope per
    grid step ``s = tab[j,k+1] - a`` and ``ds = (tab[j1,k+1] - tab[j1,k]) - s``, so the value at
    the brackets (wt, ws) is :func:`corner_value` (:func:`bms.model.bilinear`'s, to rounding)."""
    a0 = tab[j, k]
    a1 = tab[j1, k]
    s0 = tab[j, k + 1] - a0
    S[c0 * L + r] = a0
    S[(c0 + 1) * L + r] = a1 - a0
    S[(c0 + 2) * L + r] = s0
    S[(c0 + 3) * L + r] = (tab[j1, k + 1] - a1) - s0


@nb.njit(cache=True, inline="always")
def corner_slope(S, c0, r, wt):
    """The slope per grid step of lane ``r``'s segment (:func:`load_corners`) at the temperature
    weight ``wt``: ``s + wt ds``."""
    return S[(c0 + 2) * L + r] + wt * S[(c0 + 3) * L + r]


@nb.njit(cache=True, inline="always")
def corner_value(S, c0, r, wt, ws, slope):
    """The value of lane ``r``'s segment (:func:`load_corners`) at (wt, ws): ``a + wt da + ws slope``."""
    return S[c0 * L + r] + wt * S[(c0 + 1) * L + r] + ws * slope


@nb.njit(cache=True, inline="always")
def bracket(z, soc0, inv_dsoc, ns):
    """:func:`bms.model.grid_bracket` of ``z`` on the SOC grid, branch-free (so it vectorises):
    (segment, weight), the segment as a float (a float to int64 conversion does not vectorise on
    AVX2; the rare corner reloads convert it)."""
    u = min(max((z - soc0) * inv_dsoc, 0.0), ns - 1.0)
    kk = min(np.floor(u), ns - 2.0)
    return kk, u - kk


@nb.njit(cache=True, error_model="numpy", fastmath={"contract", "arcp", "nsz", "reassoc"})
def ekf_lanes(p, tunes, time_s, i_meas, v_meas, temp_c, z0, p0z_floor, cap_ah, soc_true, band, k_late, win_n,
              acc):
    """The EKF (module docstring) of the ``LANES`` tunings ``tunes`` (LANES, NT) over one series
    (i, v, T: (n,)), started as :func:`bms.tune.kernel.run_job`; the score accumulators of
    ``z_k - soc_true_k`` go to ``acc`` (NM * LANES, lane layout of :func:`bms.tune.metrics.acc_reset`).
    Allocates its scratch once per call, nothing per sample."""
    n = time_s.shape[0]
    S = np.zeros(NROW * L)
    xc = np.zeros((1, NXE))  # the shared temperature-scalar cache (as one ekf_run cell's)
    xc[0, IC_T] = -1e300
    ring, win, mx = acc_scratch(win_n, L)
    ns = p.ocv_v.shape[1]
    knew_g = np.zeros(L)  # each lane's SOC segment this sample (G, measurement)
    knew_m = np.zeros(L)
    kold_g = np.full(L, -1.0)  # the segment whose corners S holds
    kold_m = np.full(L, -1.0)
    j_m, j_g = -1, -1  # the temperature rows those corners were loaded at
    acc_reset(acc, ring, win, mx, L)
    bmax_blk = 0.0
    for r in range(L):
        tn = tunes[r]
        S[RZ * L + r] = min(max(z0, 0.0), 1.0)
        S[RZG * L + r] = S[RZ * L + r]
        S[R00 * L + r] = max(tn[T_P0Z], p0z_floor) if p0z_floor >= 0.0 else tn[T_P0Z]
        S[R11 * L + r] = 1e-6
        S[R22 * L + r] = 1e-6
        S[R33 * L + r] = tn[T_P0H]
        S[R44 * L + r] = tn[T_P0B]
        for row, ti in TUNE_ROWS:
            S[row * L + r] = tn[ti]
        S[RINVRV * L + r] = 1.0 / tn[T_RV]
        S[RC_G * L + r] = 1.0  # G = 1 (its corners stay so without a G table)
        bmax_blk = max(bmax_blk, tn[T_BIAS_MAX])
    ocv_t, hyst_t, r0f_t, rcf_t, rc_soc = p.ocv_v, p.hyst_v, p.r0_soc_factor, p.rc_soc_factor, p.rc_soc_on
    soc0, inv_dsoc, one_t = p.soc0, 1.0 / p.dsoc, p.ocv_v.shape[0] == 1
    eta_chg, i_sign = p.eta_chg, p.i_sign_a
    i_hold = 0.0
    t_hold = temp_c[0]
    dt_last = math.nan
    for k in range(n):
        im = i_meas[k]
        dt = time_s[k] - time_s[k - 1] if k > 0 else 0.0
        if dt != dt_last:
            for r in range(L):
                tau_e = S[RTAUE * L + r]
                S[RKE * L + r] = min(dt / tau_e, 1.0) if tau_e > 0.0 else 0.0
            dt_last = dt
        i_now = im if math.isfinite(im) else i_hold
        t_now = temp_c[k]
        if not math.isfinite(t_now):
            t_now = t_hold
        v_now = v_meas[k]
        use_v = math.isfinite(v_now)
        dt_q = dt / (3600.0 * cap_ah)
        if xc[0, IC_T] != t_hold or xc[0, IC_DT] != dt:
            temp_scalars(p, xc, 0, t_hold, dt)
        a1 = xc[0, IC_A1]
        a2 = xc[0, IC_A2]
        R1 = xc[0, IC_R1]
        R2 = xc[0, IC_R2]
        kh = xc[0, IC_GAM] * dt_q
        # ---- hysteresis decay per set: the polynomial (vectorised) unless a set may need exp
        exact = not kh * (abs(i_hold) + bmax_blk) < EXP_TAYLOR_MAX * (1.0 - 1e-9)
        if exact:
            for r in range(L):
                S[RAH * L + r] = exp_neg(kh * abs(i_hold - S[RB * L + r]))
        wtt = 0.0
        if rc_soc:
            jt = int(xc[0, IC_J])
            jt1 = jt if one_t else jt + 1
            wtt = xc[0, IC_W]
            kg = min(dt / G_TAU_S, 1.0)
            moved_g = 0
            for r in range(L):
                # G read at zg (bms.soc.ekf): z unless charging, then counted and pulled toward z
                z = S[RZ * L + r]
                zg = S[RZG * L + r]
                charging = i_hold - S[RB * L + r] > S[RRESTI * L + r]
                zg = zg + (z - zg) * kg if charging else z
                S[RZG * L + r] = zg
                kk, ws = bracket(zg, soc0, inv_dsoc, ns)
                knew_g[r] = kk
                S[RWSG * L + r] = ws
                moved_g += kk != kold_g[r]
            if moved_g or jt != j_g:
                for r in range(L):
                    if knew_g[r] != kold_g[r] or jt != j_g:
                        load_corners(S, RC_G, r, rcf_t, jt, jt1, int(knew_g[r]))
                        kold_g[r] = knew_g[r]
                j_g = jt
        # ---- time update
        moved_m = 0
        for r in range(L):
            b = S[RB * L + r]
            i_prev = i_hold - b
            eta = eta_chg if i_prev > 0.0 else 1.0
            ah_x = S[RAH * L + r]  # loaded before the select
            ah_t = exp_neg_taylor(kh * abs(i_prev))
            ah = ah_x if exact else ah_t
            u0 = -eta * dt_q
            h_old = S[RH * L + r]
            dgrc = corner_slope(S, RC_G, r, wtt)  # G and its slope per grid step at (T, zg)
            grc = corner_value(S, RC_G, r, wtt, S[RWSG * L + r], dgrc)
            rest_i = S[RRESTI * L + r]  # loaded before the select
            dgrc = 0.0 if i_prev > rest_i else dgrc  # charging: zg is an input, no slope in F
            # the new sign goes into a row of its own, copied back after the measurement update: a
            # select written back to the row it reads is a masked store, and the measurement
            # update's load would wait
            (S[RZ * L + r], S[RZG * L + r], S[RV1 * L + r], S[RV2 * L + r], S[RH * L + r], S[RSN * L + r],
             u1, u2, u3, c1, c2) = time_update(
                S[RZ * L + r], S[RZG * L + r], S[RV1 * L + r], S[RV2 * L + r], h_old, S[RS * L + r], i_prev, u0,
                a1, a2, R1, R2, grc, dgrc, ah, kh, i_sign, inv_dsoc, RC_SOC_JACOBIAN and rc_soc)
            p44 = S[R44 * L + r]
            n00, n01, n02, n03, n04, n11, n12, n13, n14, n22, n23, n24, n33, n34 = cov_predict(
                S[R00 * L + r], S[R01 * L + r], S[R02 * L + r], S[R03 * L + r], S[R04 * L + r], S[R11 * L + r],
                S[R12 * L + r], S[R13 * L + r], S[R14 * L + r], S[R22 * L + r], S[R23 * L + r], S[R24 * L + r],
                S[R33 * L + r], S[R34 * L + r], p44, a1, a2, ah, u0, u1, u2, u3)
            if RC_SOC_JACOBIAN and rc_soc:
                n01, n02, n11, n12, n13, n14, n22, n23, n24 = cov_rc_soc(n00, n01, n02, n03, n04, n11, n12, n13, n14,
                                                                         n22, n23, n24, c1, c2)
            eb = S[REB * L + r]
            g = eb * eb * S[RINVRV * L + r] - 1.0
            qza = S[RQZA * L + r]  # loaded before the select: a load under a select is a masked load
            S[R00 * L + r] = n00 + (S[RQZ * L + r] + (qza * g if g > 0.0 else 0.0)) * dt
            S[R11 * L + r] = n11 + S[RQV * L + r] * dt
            S[R22 * L + r] = n22 + S[RQV2 * L + r] * dt
            S[R33 * L + r] = n33 + S[RQH * L + r] * dt
            S[R44 * L + r] = p44 + S[RQB * L + r] * dt
            S[R01 * L + r] = n01
            S[R02 * L + r] = n02
            S[R03 * L + r] = n03
            S[R04 * L + r] = n04
            S[R12 * L + r] = n12
            S[R13 * L + r] = n13
            S[R14 * L + r] = n14
            S[R23 * L + r] = n23
            S[R24 * L + r] = n24
            S[R34 * L + r] = n34
            i_true = i_now - b
            rest = S[RREST * L + r]
            S[RREST * L + r] = rest + dt if abs(i_true) < S[RRESTI * L + r] else 0.0
            kk, ws = bracket(S[RZ * L + r], soc0, inv_dsoc, ns)  # the measurement's segment
            knew_m[r] = kk
            S[RWS * L + r] = ws
            moved_m += kk != kold_m[r]
        # ---- measurement update
        if use_v:
            if xc[0, IC_T] != t_now or xc[0, IC_DT] != dt:
                temp_scalars(p, xc, 0, t_now, dt)
            j = int(xc[0, IC_J])
            j1 = j if one_t else j + 1
            wt = xc[0, IC_W]
            m0 = xc[0, IC_M0]
            r0c = xc[0, IC_R0C]
            r0d = xc[0, IC_R0D]
            if moved_m or j != j_m:
                for r in range(L):
                    kf = knew_m[r]
                    if kf != kold_m[r] or j != j_m:
                        kk = int(kf)
                        load_corners(S, RC_OCV, r, ocv_t, j, j1, kk)
                        load_corners(S, RC_M, r, hyst_t, j, j1, kk)
                        load_corners(S, RC_F, r, r0f_t, j, j1, kk)
                        kold_m[r] = kf
                j_m = j
            for r in range(L):
                b = S[RB * L + r]
                i_true = i_now - b
                rested = S[RREST * L + r] >= S[RRESTS * L + r]
                ws = S[RWS * L + r]
                docv = corner_slope(S, RC_OCV, r, wt)
                dm = corner_slope(S, RC_M, r, wt)
                df = corner_slope(S, RC_F, r, wt)
                mh = corner_value(S, RC_M, r, wt, ws, dm)
                h = S[RH * L + r]
                r0 = r0c if i_true > 0.0 else r0d
                y = (corner_value(S, RC_OCV, r, wt, ws, docv) + mh * h + m0 * S[RSN * L + r] + S[RV1 * L + r]
                     + S[RV2 * L + r] + r0 * corner_value(S, RC_F, r, wt, ws, df) * i_true)
                hz = (docv + dm * h) * inv_dsoc
                ph0, ph1, ph2, ph3, ph4, hph = cov_ph(
                    S[R00 * L + r], S[R01 * L + r], S[R02 * L + r], S[R03 * L + r], S[R04 * L + r], S[R11 * L + r],
                    S[R12 * L + r], S[R13 * L + r], S[R14 * L + r], S[R22 * L + r], S[R23 * L + r], S[R24 * L + r],
                    S[R33 * L + r], S[R34 * L + r], hz, mh)
                sr = S[RSIGR * L + r] * i_true
                r_rest = S[RRREST * L + r]
                r_v = S[RRV * L + r]
                s = r_rest if rested else r_v + sr * sr
                s += hph
                innov = v_now - y
                eb = S[REB * L + r]
                S[REB * L + r] = eb + (innov - eb) * S[RKE * L + r]
                # 0 (no correction, P kept) for a loaded sample outside the lane's temperature range
                t_lo, t_hi = load_t_range(p, S[RLTM * L + r])
                si = 1.0 / s if load_update_ok(rested, t_now, t_lo, t_hi) else 0.0
                gain = innov * si
                S[RZ * L + r] = S[RZ * L + r] + ph0 * gain
                S[RV1 * L + r] = S[RV1 * L + r] + ph1 * gain
                S[RV2 * L + r] = S[RV2 * L + r] + ph2 * gain
                S[RH * L + r] = h + ph3 * gain
                S[RB * L + r] = b + ph4 * gain
                (S[R00 * L + r], S[R01 * L + r], S[R02 * L + r], S[R03 * L + r], S[R04 * L + r], S[R11 * L + r],
                 S[R12 * L + r], S[R13 * L + r], S[R14 * L + r], S[R22 * L + r], S[R23 * L + r], S[R24 * L + r],
                 S[R33 * L + r], S[R34 * L + r], S[R44 * L + r]) = cov_correct(
                    S[R00 * L + r], S[R01 * L + r], S[R02 * L + r], S[R03 * L + r], S[R04 * L + r], S[R11 * L + r],
                    S[R12 * L + r], S[R13 * L + r], S[R14 * L + r], S[R22 * L + r], S[R23 * L + r], S[R24 * L + r],
                    S[R33 * L + r], S[R34 * L + r], S[R44 * L + r], ph0, ph1, ph2, ph3, ph4, si)
        # ---- physical bounds, score
        for r in range(L):
            z = min(max(S[RZ * L + r], 0.0), 1.0)
            S[RZ * L + r] = z
            S[RH * L + r] = min(max(S[RH * L + r], -1.0), 1.0)
            bm = S[RBMAX * L + r]
            S[RB * L + r] = min(max(S[RB * L + r], -bm), bm)
            S[RS * L + r] = S[RSN * L + r]
        acc_add(acc, ring, win, mx, S, RZ * L, L, k, soc_true[k], soc_true[k], band, k_late)
        i_hold = i_now
        t_hold = t_now
    acc_finish(acc, ring, mx, L)
