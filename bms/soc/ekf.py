"""Extended Kalman filter per cell over the cell model, with a current-offset state.

Filtered state ``xf = [z, v1, v2, h, b]`` (SOC, RC voltages, hysteresis, current-sensor
offset ``b``: the true current is ``i = i_meas - b``). Sample ``k`` brings ``(i_k, v_k, T_k)``.

Time update over ``dt`` with the previous sample's current held (exact ZOH, as bms.model)::

    z'  = z + eta * (i - b) dt / (3600 Q)
    vj' = aj vj + Rj G(z,T) (1 - aj)(i - b),    aj = exp(-dt / tau_j(T))
    h'  = Ah h + (1 - Ah) sgn(i - b),          Ah = exp(-gamma(T) |i - b| dt / (3600 Q))
    b'  = b
    P'  = F P F^T + Qd,  F = d f / d xf,  Qd = diag(qz + qa * g, qv, qv2, qh, qb) * dt

``G`` is the RC resistances' SOC factor (profile ``rc_soc_factor``, 1 when absent), read at
``zg`` (state column ZG): the estimate ``z`` itself, except while charging, when ``zg`` counts
the same charge as ``z`` and follows the filter's corrections of ``z`` only slowly::

    zg  = z                                                  unless charging (i - b > rest current)
    zg' = zg + (z - zg) min(dt / tau_g, 1) + eta (i - b) dt / (3600 Q)   while charging

(``tau_g`` = ``G_TAU_S``). F carries G's slope d vj'/dz = Rj dG/dz (1 - aj)(i - b)
(``RC_SOC_JACOBIAN``) when ``zg = z``; while charging ``zg`` is an input and the slope is 0.
Why: G falls with SOC (winston_lfp100: 1.45 at 10 % SOC, 1.0 from 30 %, 0.86 at 90 %, 25 degC).
In discharge that makes the loaded voltage fall faster with SOC, more information. In charge
the polarisation falls with SOC, at 1C faster than the OCV rises: read at ``z``, an estimate
too low predicts more polarisation, which explains a high voltage with a still lower SOC
(positive feedback). Measured in closed loop at 10x (max |BMS - true mean SOC|; limits 3 / 2 /
2 %), fast_charge_20min / yard_tractor_shift (90 min from 95 %) / yard_tractor_8h_shift:
G at ``z`` always 7.4 / 1.92 / - %; ``zg`` reset only at rest, else counted (whichever the
current's sign) 1.42 / 3.80 / 2.98 % (``zg`` strays from ``z`` over hours without a rest, and
after the power-up's first corrections); that pulled toward ``z`` with tau_g 1800 s 1.42 /
3.32 / 1.66 % (600 s: fast charge 1.73 %, growing); ``zg`` = ``z`` unless charging (shipped)
1.42 / 1.94 / 1.92 %; without G in the filter (plant with G) yard_tractor_shift 7.07 %. Lab bars
(RMSE / max), G at ``z`` -> shipped: P05 1.05/1.70 -> 1.07/1.74 %, P25 0.75/1.76 -> 0.76/1.77
%, N05 0.94/1.43 % both.

where ``g = max(0, e^2 / r_v - 1)`` and ``e`` is the innovation averaged over ``tau_e``
(e' = e + (innovation - e) dt / tau_e): a voltage disagreement that persists, which white
measurement noise cannot produce, re-opens the SOC uncertainty (adaptive process noise), so
a wrong SOC is corrected in minutes instead of hours while a consistent model keeps qz small.

Measurement update with the current sample::

    y  = OCV(z,T) + M(z,T) h + M0(T) s + v1 + v2 + R0(T) F(z,T) (i_k - b)
    H  = [dOCV/dz + dM/dz h, 1, 1, M, 0]
         (the offset's direct effect R0 b is below a millivolt: the offset is learned from the
         charge balance through F, never from load-voltage mismatch; likewise the slope of the
         resistance's SOC factor, R0 dF/dz i, is left out of H on purpose: at high current it
         is 2-5 mV per % SOC, more than the OCV slope on the plateau, so it would make SOC
         observable through the resistance and turn any resistance error (temperature, current
         nonlinearity, ageing, cell spread) into an SOC error; measured: the cold_morning_start
         scenario's SOC error went from within 20 % to 48 % with it, and P05 / N05 were worse.
         F stays in y, so the prediction carries no SOC-dependent bias)
    S  = H P H^T + r,   r = r_v + (sigma_R i)^2, or r_rest once rested longer than rest_s
         (sigma_R: resistance uncertainty, so high-current samples, where an R0 error
         dominates, weigh less; OCV recalibration: the relaxed voltage is trusted more, and
         the hysteresis term keeps it hysteresis-aware)
    K  = P H^T / S,   xf += K (v_k - y),   P -= K K^T S  (computed symmetric, diagonal floored)

SOC is clamped to [0, 1], h to [-1, 1], b to +-bias_max. A sample whose voltage, current
or temperature is not finite never reaches the state: the previous value is held and a flag
set (see bms.soc.layout).

Speed: :func:`ekf_run` is the only kernel; its whole per-cell body is written out in one
loop over scalars and the rows of ``x`` and ``P``. Passing arrays (or the parameter
namedtuple) to a helper per cell costs numba's reference counting, ~30 ns per array-taking
call even when inlined, more than the filter arithmetic itself; the tables are therefore
unpacked once per call, and the temperature-dependent scalars are cached in ``x``. The kernel
is compiled with the fastmath flags that allow FMA contraction and reassociation but keep
NaN/inf semantics (the hold logic relies on ``isfinite``), and the hysteresis decay uses
:func:`exp_neg`: together 74 -> 62 ns per cell-step (192 cells, min of 25 CPU-time runs).
Measured and rejected: reading the cell's row into locals and writing it back once (68 ns,
register pressure), a reciprocal capacity (no change); the two extra table lookups cost ~3 ns.
"""
from __future__ import annotations

import math

import numba as nb

from bms.model import bilinear, grid_bracket
from bms.soc.ekf_cov import P_FLOOR, cov_correct, cov_ph, cov_predict, cov_rc_soc

from bms.soc.layout import (
    FLAG_AT_REST, FLAG_I_HELD, FLAG_SOC_CLAMPED, FLAG_T_HELD, FLAG_V_HELD,
    IBIAS, IC_A1, IC_A2, IC_DT, IC_GAM, IC_J, IC_M0, IC_R0C, IC_R0D, IC_R1, IC_R2, IC_T, IC_W,
    ICAP, IEBAR, IFLAGS, IZG, IH, IIHOLD, INHELD, IRECAL, IREST, IS, ITHOLD, IV1, IV2, IVHOLD, IZ,
    T_BIAS_MAX, T_QB, T_QH, T_QV, T_QV2, T_QZ, T_QZ_ADAPT, T_REST_I, T_SIGMA_R, T_TAU_E, T_REST_S,
    T_RREST, T_RV,
)

#: put d vj'/dz = Rj(T) dG/dz (1 - aj) i (the RC resistances' SOC slope) into the transition
#: Jacobian when G is read at z (not while charging: module docstring)
RC_SOC_JACOBIAN = True

#: time constant (s) with which G's SOC ``zg`` is pulled toward the estimate ``z`` while
#: charging (module docstring)
G_TAU_S = 1800.0


#: :func:`exp_neg` uses :func:`exp_neg_taylor` below this argument
EXP_TAYLOR_MAX = 0.0625


@nb.njit(cache=True, inline="always")
def exp_neg_taylor(u):
    """exp(-u) ~ sum_{n<=6} (-u)^n / n!, the degree-6 Taylor polynomial (Horner form): relative
    error below u^7/7! = 7e-13 for 0 <= u < EXP_TAYLOR_MAX. No branch, so it vectorises."""
    return 1.0 - u * (1.0 - u * (0.5 - u * (1.0 / 6.0 - u * (1.0 / 24.0 - u * (1.0 / 120.0 - u * (1.0 / 720.0))))))


@nb.njit(cache=True, inline="always")
def exp_neg(u):
    """exp(-u) for u >= 0: :func:`exp_neg_taylor` when u < EXP_TAYLOR_MAX, else math.exp. The
    hysteresis decay exponent gamma |i| dt / Q is almost always this small, and the polynomial
    is several times cheaper than the libm call."""
    if u < EXP_TAYLOR_MAX:
        return exp_neg_taylor(u)
    return math.exp(-u)


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


@nb.njit(cache=True, error_model="numpy", fastmath={"contract", "arcp", "nsz", "reassoc"})
def ekf_run(p, tune, x, P, i_seq, i_a, cell_v, temp_c, valid, time_s, dt_s, z_out):
    """EKF over samples k = 0..K-1 of n cells (equations in the module docstring), in place.

    ``cell_v``, ``temp_c``, ``valid`` are (K, n); the measured cell current of sample k is
    ``i_seq[k]`` (or the scalar ``i_a`` when ``i_seq`` is empty: cells in series share it);
    the step before sample k is ``time_s[k] - time_s[k-1]`` (``dt_s`` for k = 0, or for every
    k when ``time_s`` is empty). When ``z_out`` (K, n) is not empty it receives the SOC after
    each sample. The firmware calls it with K = 1, replays and the tuning sweep with n = 1.
    No allocation."""
    ocv_t = p.ocv_v
    hyst_t = p.hyst_v
    r0f_t = p.r0_soc_factor
    rcf_t = p.rc_soc_factor
    rc_soc = p.rc_soc_on  # G not all ones (a profile without rc_soc_factor: skip its lookup)
    soc0 = p.soc0
    dsoc = p.dsoc
    ns = ocv_t.shape[1]
    one_t = ocv_t.shape[0] == 1
    eta_chg = p.eta_chg
    i_sign = p.i_sign_a
    qz, qza, qv, qv2, qh, qb = tune[T_QZ], tune[T_QZ_ADAPT], tune[T_QV], tune[T_QV2], tune[T_QH], tune[T_QB]
    rv, rrest, sig_r, tau_e = tune[T_RV], tune[T_RREST], tune[T_SIGMA_R], tune[T_TAU_E]
    rest_i, rest_s, bmax = tune[T_REST_I], tune[T_REST_S], tune[T_BIAS_MAX]
    inv_dsoc = 1.0 / dsoc
    inv_rv = 1.0 / rv
    n_k = cell_v.shape[0]
    n_c = cell_v.shape[1]
    for k in range(n_k):
        i_meas = i_seq[k] if i_seq.shape[0] > 0 else i_a
        if time_s.shape[0] > 0 and k > 0:
            dt = time_s[k] - time_s[k - 1]
        else:
            dt = dt_s
        i_fin = math.isfinite(i_meas)
        ke = min(dt / tau_e, 1.0) if tau_e > 0.0 else 0.0
        for c in range(n_c):
            # ---- hold non-finite or invalid samples (they never reach the state)
            flags = 0
            i_now = i_meas
            if not i_fin:
                i_now = x[c, IIHOLD]
                flags |= FLAG_I_HELD
            t_now = temp_c[k, c]
            if not math.isfinite(t_now):
                t_now = x[c, ITHOLD]
                flags |= FLAG_T_HELD
            v_now = cell_v[k, c]
            use_v = valid[k, c] and math.isfinite(v_now)
            if not use_v:
                flags |= FLAG_V_HELD
            if flags != 0:
                x[c, INHELD] += 1.0
            dt_q = dt / (3600.0 * x[c, ICAP])  # dt / Q in 1/A

            # ---- time update over dt with the previous sample's current and temperature
            if x[c, IC_T] != x[c, ITHOLD] or x[c, IC_DT] != dt:
                temp_scalars(p, x, c, x[c, ITHOLD], dt)
            b = x[c, IBIAS]
            i_prev = x[c, IIHOLD] - b
            eta = eta_chg if i_prev > 0.0 else 1.0
            # RC resistances at the step's start: Rj(T) G(zg, T), zg = z unless charging
            grc, dgrc = 1.0, 0.0
            if rc_soc:
                jt = int(x[c, IC_J])
                jt1 = jt if one_t else jt + 1
                charging = i_prev > rest_i
                if charging:  # counted (below), pulled toward z over G_TAU_S
                    x[c, IZG] += (x[c, IZ] - x[c, IZG]) * min(dt / G_TAU_S, 1.0)
                else:
                    x[c, IZG] = x[c, IZ]
                kt, wst = grid_bracket((x[c, IZG] - soc0) * inv_dsoc, ns)
                grc, dgrc = bilinear(rcf_t[jt, kt], rcf_t[jt, kt + 1], rcf_t[jt1, kt], rcf_t[jt1, kt + 1], wst,
                                     x[c, IC_W])
                if charging:
                    dgrc = 0.0  # zg is an input, not the filtered z
            r1 = x[c, IC_R1] * grc
            r2 = x[c, IC_R2] * grc
            a1 = x[c, IC_A1]
            a2 = x[c, IC_A2]
            sgn = 1.0 if i_prev > 0.0 else (-1.0 if i_prev < 0.0 else 0.0)
            kh = x[c, IC_GAM] * dt_q
            ah = exp_neg(kh * abs(i_prev))
            h_old = x[c, IH]
            u0 = -eta * dt_q
            x[c, IZ] -= u0 * i_prev
            x[c, IZG] -= u0 * i_prev
            x[c, IV1] = a1 * x[c, IV1] + r1 * (1.0 - a1) * i_prev
            x[c, IV2] = a2 * x[c, IV2] + r2 * (1.0 - a2) * i_prev
            x[c, IH] = ah * h_old + (1.0 - ah) * sgn
            if abs(i_prev) > i_sign:
                x[c, IS] = sgn
            # P' = F P F^T + Qd with F = diag(d) + u e_b^T (every state depends on itself and b)
            u1 = -r1 * (1.0 - a1)
            u2 = -r2 * (1.0 - a2)
            u3 = ah * kh * sgn * (h_old - sgn)
            if RC_SOC_JACOBIAN and rc_soc:
                # F also has d vj'/dz = cj = Rj(T) dG/dz (1 - aj) i in column 0: F = E F0 with
                # E = I + c e_z^T, F0 = diag(d) + u' e_b^T, u'_j = u_j - u0 cj (F0 P F0^T below,
                # then E applied)
                c1 = x[c, IC_R1] * dgrc * inv_dsoc * (1.0 - a1) * i_prev
                c2 = x[c, IC_R2] * dgrc * inv_dsoc * (1.0 - a2) * i_prev
                u1 -= u0 * c1
                u2 -= u0 * c2
            p44 = P[c, 4, 4]
            n00, n01, n02, n03, n04, n11, n12, n13, n14, n22, n23, n24, n33, n34 = cov_predict(
                P[c, 0, 0], P[c, 0, 1], P[c, 0, 2], P[c, 0, 3], P[c, 0, 4], P[c, 1, 1], P[c, 1, 2], P[c, 1, 3],
                P[c, 1, 4], P[c, 2, 2], P[c, 2, 3], P[c, 2, 4], P[c, 3, 3], P[c, 3, 4], p44, a1, a2, ah, u0, u1, u2, u3)
            if RC_SOC_JACOBIAN and rc_soc:  # apply E (c1, c2 and u' above)
                n01, n02, n11, n12, n13, n14, n22, n23, n24 = cov_rc_soc(n00, n01, n02, n03, n04, n11, n12, n13, n14,
                                                                         n22, n23, n24, c1, c2)
            eb = x[c, IEBAR]
            g = eb * eb * inv_rv - 1.0
            n00 += (qz + (qza * g if g > 0.0 else 0.0)) * dt
            n11 += qv * dt
            n22 += qv2 * dt
            n33 += qh * dt
            n44 = p44 + qb * dt

            # ---- rest detection (OCV recalibration trusts the relaxed voltage more)
            i_true = i_now - b
            if abs(i_true) < rest_i:
                x[c, IREST] += dt
            else:
                x[c, IREST] = 0.0
                x[c, IRECAL] = 0.0
            rested = x[c, IREST] >= rest_s
            if rested:
                flags += FLAG_AT_REST

            # ---- measurement update at the current sample's temperature
            if use_v:
                if x[c, IC_T] != t_now or x[c, IC_DT] != dt:
                    temp_scalars(p, x, c, t_now, dt)
                j = int(x[c, IC_J])
                wt = x[c, IC_W]
                j1 = j if one_t else j + 1
                kk, ws = grid_bracket((x[c, IZ] - soc0) * inv_dsoc, ns)
                # bilinear OCV(z,T), M(z,T), F(z,T) and their SOC-segment slopes blended over T
                ocv, docv = bilinear(ocv_t[j, kk], ocv_t[j, kk + 1], ocv_t[j1, kk], ocv_t[j1, kk + 1], ws, wt)
                m, dm = bilinear(hyst_t[j, kk], hyst_t[j, kk + 1], hyst_t[j1, kk], hyst_t[j1, kk + 1], ws, wt)
                f, _ = bilinear(r0f_t[j, kk], r0f_t[j, kk + 1], r0f_t[j1, kk], r0f_t[j1, kk + 1], ws, wt)
                h = x[c, IH]
                r0 = x[c, IC_R0C] if i_true > 0.0 else x[c, IC_R0D]
                y = ocv + m * h + x[c, IC_M0] * x[c, IS] + x[c, IV1] + x[c, IV2] + r0 * f * i_true
                hz = (docv + dm * h) * inv_dsoc
                ph0, ph1, ph2, ph3, ph4, hph = cov_ph(n00, n01, n02, n03, n04, n11, n12, n13, n14, n22, n23, n24, n33,
                                                      n34, hz, m)
                sr = sig_r * i_true
                s = rrest if rested else rv + sr * sr
                s += hph
                innov = v_now - y
                x[c, IEBAR] += (innov - x[c, IEBAR]) * ke
                si = 1.0 / s
                gain = innov * si
                x[c, IZ] += ph0 * gain
                x[c, IV1] += ph1 * gain
                x[c, IV2] += ph2 * gain
                x[c, IH] += ph3 * gain
                x[c, IBIAS] += ph4 * gain
                n00, n01, n02, n03, n04, n11, n12, n13, n14, n22, n23, n24, n33, n34, n44 = cov_correct(
                    n00, n01, n02, n03, n04, n11, n12, n13, n14, n22, n23, n24, n33, n34, n44, ph0, ph1, ph2, ph3, ph4,
                    si)
                if rested:
                    x[c, IRECAL] = 1.0
                x[c, IVHOLD] = v_now
            # store P symmetric
            P[c, 0, 0] = n00
            P[c, 1, 1] = n11
            P[c, 2, 2] = n22
            P[c, 3, 3] = n33
            P[c, 4, 4] = n44
            P[c, 0, 1] = P[c, 1, 0] = n01
            P[c, 0, 2] = P[c, 2, 0] = n02
            P[c, 0, 3] = P[c, 3, 0] = n03
            P[c, 0, 4] = P[c, 4, 0] = n04
            P[c, 1, 2] = P[c, 2, 1] = n12
            P[c, 1, 3] = P[c, 3, 1] = n13
            P[c, 1, 4] = P[c, 4, 1] = n14
            P[c, 2, 3] = P[c, 3, 2] = n23
            P[c, 2, 4] = P[c, 4, 2] = n24
            P[c, 3, 4] = P[c, 4, 3] = n34

            # ---- physical bounds
            z = x[c, IZ]
            if z < 0.0 or z > 1.0:
                x[c, IZ] = min(max(z, 0.0), 1.0)
                flags += FLAG_SOC_CLAMPED
            x[c, IH] = min(max(x[c, IH], -1.0), 1.0)
            x[c, IBIAS] = min(max(x[c, IBIAS], -bmax), bmax)
            x[c, IIHOLD] = i_now
            x[c, ITHOLD] = t_now
            x[c, IFLAGS] = flags
            if z_out.shape[0] > 0:
                z_out[k, c] = x[c, IZ]
