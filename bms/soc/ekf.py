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

Outside the temperatures the profile was fitted at (its grid widened by the tuning's
``load_t_margin_k``) only rested samples correct the state; loaded ones leave it as predicted
(:func:`bms.soc.ekf_temp.load_update_ok`; why and what it measured: docs/soc-tuning.md,
"Outside the profile's temperatures").

SOC is clamped to [0, 1], h to [-1, 1], b to +-bias_max. A sample whose voltage, current
or temperature is not finite never reaches the state: the previous value is held and a flag
set (see bms.soc.layout).

Speed: cells in SIMD lanes. The state of all cells is one array of rows (structure of arrays,
bms.soc.layout: a row per state, covariance entry and per-sample scratch value, each
ROW_CELLS long), so state ``q`` of cell ``c`` is ``W[q * ROW_CELLS + c]`` with a compile-time
row offset: LLVM proves the rows apart and vectorises the loops over cells (AVX2: 4 cells per
instruction). Each sample runs two scalar passes (held inputs, the temperature scalars cached
per cell, the hysteresis decay :func:`exp_neg`, and the table lookups, whose index differs
per cell) and two branch-free vector passes (time update, measurement update and bounds:
every branch a select, both sides of a select loaded first, since a load under a branch
blocks if-conversion). ``x`` and ``P`` stay views (``x[c, IZ]``, ``P[c, i, j]``).
Measured (192 cells, CPU time, A/B in one process): 60 -> 33 ns per cell-step (the old
kernel's median 59.8 ns, this one's 33.5 ns, load ~10 on 2 cores). Measured and rejected:
rows of length n (the row distance is then a runtime value: "too many memory checks" for
LLVM, scalar), blocks of 8 cells copied into a fixed-offset scratch (the copies cost more
than the vector arithmetic saves: 85-140 ns).
Before: one scalar loop over cells with the per-cell body written out over scalars (passing
arrays to a helper per cell costs numba's reference counting, ~30 ns per call); the fastmath
flags that allow FMA contraction and reassociation but keep NaN/inf semantics (the hold logic
relies on ``isfinite``) and :func:`exp_neg` took it from 74 to 62 ns.
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np
from numba import types
from numba.core.imputils import impl_ret_borrowed
from numba.extending import intrinsic
from numba.np.arrayobj import make_array, populate_array

from bms.model import bilinear, grid_bracket
from bms.soc.ekf_cov import P_FLOOR, cov_correct, cov_ph, cov_predict, cov_rc_soc
from bms.soc.ekf_temp import load_t_range, load_update_ok, temp_scalars

from bms.soc.layout import (
    FLAG_AT_REST, FLAG_I_HELD, FLAG_SOC_CLAMPED, FLAG_T_HELD, FLAG_V_HELD,
    IBIAS, IC_A1, IC_A2, IC_DT, IC_GAM, IC_J, IC_M0, IC_R0C, IC_R0D, IC_R1, IC_R2, IC_T, IC_W,
    ICAP, IEBAR, IFLAGS, IH, IIHOLD, INHELD, IP, IRECAL, IREST, IS, ITHOLD, IV1, IV2, IVHOLD, IW, IZ, IZG, NP,
    NXE, NXW, ROW_CELLS,
    T_BIAS_MAX, T_LOAD_T_MARGIN, T_QB, T_QH, T_QV, T_QV2, T_QZ, T_QZ_ADAPT, T_REST_I, T_SIGMA_R, T_TAU_E,
    T_REST_S, T_RREST, T_RV,
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


@nb.njit(cache=True, inline="always")
def time_update(z, zg, v1, v2, h_old, s_old, i_prev, u0, a1, a2, r1_t, r2_t, grc, dgrc, ah, kh, i_sign, inv_dsoc,
                jac):
    """The time update of one filter's states over dt with the held current ``i_prev`` (module
    docstring), shared by :func:`ekf_run` (cells in lanes) and the sweep's parameter-set lanes;
    branch-free, inlined. ``u0 = -eta dt / (3600 Q)``; ``r1_t``, ``r2_t`` are Rj(T) before G's
    factor ``grc``. Returns (z', zg', v1', v2', h', s', u1, u2, u3, c1, c2): the new states and
    the transition Jacobian's b column u_j and, when ``jac`` (G's slope in F), its z column c_j
    (d vj'/dz = Rj(T) dG/dz (1 - aj) i) with u_j already reduced by u0 c_j."""
    r1 = r1_t * grc
    r2 = r2_t * grc
    sgn = 1.0 if i_prev > 0.0 else (-1.0 if i_prev < 0.0 else 0.0)
    u1 = -r1 * (1.0 - a1)
    u2 = -r2 * (1.0 - a2)
    c1 = 0.0
    c2 = 0.0
    if jac:
        c1 = r1_t * dgrc * inv_dsoc * (1.0 - a1) * i_prev
        c2 = r2_t * dgrc * inv_dsoc * (1.0 - a2) * i_prev
        u1 -= u0 * c1
        u2 -= u0 * c2
    return (z - u0 * i_prev, zg - u0 * i_prev, a1 * v1 + r1 * (1.0 - a1) * i_prev, a2 * v2 + r2 * (1.0 - a2) * i_prev,
            ah * h_old + (1.0 - ah) * sgn, sgn if abs(i_prev) > i_sign else s_old, u1, u2,
            ah * kh * sgn * (h_old - sgn), c1, c2)


#: the row length of the storage: state ``q`` of cell ``c`` is ``W[q * LW + c]`` (a compile-time
#: offset per state, so LLVM vectorises the loops over cells)
LW = ROW_CELLS
#: P's rows (``P[c, i, j]`` is row IP + NP i + j; the filter updates the upper triangle and
#: stores both)
(R00, R01, R02, R03, R04, _R10, R11, R12, R13, R14, _R20, _R21, R22, R23, R24, _R30, _R31, _R32, R33, R34,
 _R40, _R41, _R42, _R43, R44) = range(IP, IP + NP * NP)
#: the per-sample scratch rows: held inputs, the time update's temperature scalars and G, the
#: tables at the predicted SOC (filled by the scalar passes, read by the vector passes)
(RIPREV, RINOW, RVNOW, RUSEV, RDTQ, RKH, RAH, RA1, RA2, RR1, RR2, RGRC, RDGRC,
 ROCV, RDOCV, RM, RDM, RF) = range(IW, IW + 18)


@intrinsic
def _flat_view(typingctx, a, length):
    """A 1-D C-contiguous float64 view of ``length`` items from ``a``'s first element, sharing
    ``a``'s memory (``a`` is one of new_state's ``x`` views, checked by :func:`ekf_run`)."""
    retty = types.Array(types.float64, 1, "C")
    sig = retty(a, length)

    def codegen(context, builder, sig, args):
        ary = make_array(sig.args[0])(context, builder, args[0])
        out = make_array(retty)(context, builder)
        n = context.cast(builder, args[1], sig.args[1], types.intp)
        populate_array(out, data=ary.data, shape=[n], strides=[ary.itemsize], itemsize=ary.itemsize,
                       meminfo=ary.meminfo)
        return impl_ret_borrowed(context, builder, retty, out._getvalue())

    return sig, codegen


@nb.njit(cache=True)
def ekf_run(p, tune, x, P, i_seq, i_a, cell_v, temp_c, valid, time_s, dt_s, z_out):
    """EKF over samples k = 0..K-1 of n cells (equations in the module docstring), in place.

    ``cell_v``, ``temp_c``, ``valid`` are (K, n); the measured cell current of sample k is
    ``i_seq[k]`` (or the scalar ``i_a`` when ``i_seq`` is empty: cells in series share it);
    the step before sample k is ``time_s[k] - time_s[k-1]`` (``dt_s`` for k = 0, or for every
    k when ``time_s`` is empty). When ``z_out`` (K, n) is not empty it receives the SOC after
    each sample. The firmware calls it with K = 1, replays and the tuning sweep with n = 1.

    ``x`` and ``P`` as :func:`bms.soc.estimator.new_state` makes them (views of one
    (NXW, ROW_CELLS) array, bms.soc.layout) run in place with no allocation; any other arrays
    (copies, x with only the NXE state columns, more than ROW_CELLS cells) go through a
    scratch store of that layout, copied in and out, ROW_CELLS cells at a time."""
    n = x.shape[0]
    lw8 = LW * 8
    if (n <= LW and x.shape[1] == NXW and x.strides[1] == lw8 and (n == 1 or x.strides[0] == 8)
            and P.ctypes.data == x.ctypes.data + IP * lw8 and P.strides[1] == NP * lw8 and P.strides[2] == lw8
            and (n == 1 or P.strides[0] == 8)):
        _ekf_rows(p, tune, _flat_view(x, (NXW - 1) * LW + n), n, 0, i_seq, i_a, cell_v, temp_c, valid, time_s,
                  dt_s, z_out)
        return
    W = np.zeros(NXW * LW)
    for c0 in range(0, n, LW):
        m = min(LW, n - c0)
        for c in range(m):
            for q in range(NXE):
                W[q * LW + c] = x[c0 + c, q]
            for i in range(NP):
                for j in range(NP):
                    W[(IP + NP * i + j) * LW + c] = P[c0 + c, i, j]
        _ekf_rows(p, tune, W, m, c0, i_seq, i_a, cell_v, temp_c, valid, time_s, dt_s, z_out)
        for c in range(m):
            for q in range(NXE):
                x[c0 + c, q] = W[q * LW + c]
            for i in range(NP):
                for j in range(NP):
                    P[c0 + c, i, j] = W[(IP + NP * i + j) * LW + c]


@nb.njit(cache=True, error_model="numpy", fastmath={"contract", "arcp", "nsz", "reassoc"})
def _ekf_rows(p, tune, W, n, c_off, i_seq, i_a, cell_v, temp_c, valid, time_s, dt_s, z_out):
    """:func:`ekf_run` on the storage ``W`` (rows of LW, layout bms.soc.layout) of cells
    ``c_off .. c_off + n - 1`` of the inputs. Per sample: a scalar pass (held inputs, the
    temperature scalars cached in the state, the hysteresis decay, G), the time update over all
    cells (vector: branches are selects), a scalar pass looking the tables up at the predicted
    SOC (the index differs per cell), the measurement update and bounds over all cells (vector;
    a held voltage computes the update and keeps the prediction)."""
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
    t_lo, t_hi = load_t_range(p, tune[T_LOAD_T_MARGIN])
    inv_dsoc = 1.0 / dsoc
    inv_rv = 1.0 / rv
    n_k = cell_v.shape[0]
    xv = np.lib.stride_tricks.as_strided(W, shape=(n, NXW), strides=(8, LW * 8))  # x of temp_scalars
    for k in range(n_k):
        i_meas = i_seq[k] if i_seq.shape[0] > 0 else i_a
        if time_s.shape[0] > 0 and k > 0:
            dt = time_s[k] - time_s[k - 1]
        else:
            dt = dt_s
        i_fin = math.isfinite(i_meas)
        ke = min(dt / tau_e, 1.0) if tau_e > 0.0 else 0.0
        # ---- scalar pass: held inputs, temperature scalars (cached in x), hysteresis decay, G
        for c in range(n):
            flags = 0.0
            i_now = i_meas
            if not i_fin:
                i_now = W[IIHOLD * LW + c]
                flags += FLAG_I_HELD
            t_now = temp_c[k, c_off + c]
            if not math.isfinite(t_now):
                t_now = W[ITHOLD * LW + c]
                flags += FLAG_T_HELD
            v_now = cell_v[k, c_off + c]
            use_v = valid[k, c_off + c] and math.isfinite(v_now)
            if not use_v:
                flags += FLAG_V_HELD
                v_now = 0.0
            if flags != 0.0:
                W[INHELD * LW + c] += 1.0
            W[IFLAGS * LW + c] = flags
            W[RINOW * LW + c] = i_now
            W[RVNOW * LW + c] = v_now
            W[RUSEV * LW + c] = 1.0 if use_v else 0.0
            # the time update's scalars at the previous sample's temperature
            t_hold = W[ITHOLD * LW + c]
            if W[IC_T * LW + c] != t_hold or W[IC_DT * LW + c] != dt:
                temp_scalars(p, xv, c, t_hold, dt)
            i_hold = W[IIHOLD * LW + c]
            dt_q = dt / (3600.0 * W[ICAP * LW + c])  # dt / Q in 1/A
            kh = W[IC_GAM * LW + c] * dt_q
            W[RIPREV * LW + c] = i_hold
            W[RDTQ * LW + c] = dt_q
            W[RKH * LW + c] = kh
            W[RAH * LW + c] = exp_neg(kh * abs(i_hold - W[IBIAS * LW + c]))
            W[RA1 * LW + c] = W[IC_A1 * LW + c]
            W[RA2 * LW + c] = W[IC_A2 * LW + c]
            W[RR1 * LW + c] = W[IC_R1 * LW + c]
            W[RR2 * LW + c] = W[IC_R2 * LW + c]
            # RC resistances at the step's start: Rj(T) G(zg, T), zg = z unless charging
            grc, dgrc = 1.0, 0.0
            if rc_soc:
                jt = int(W[IC_J * LW + c])
                jt1 = jt if one_t else jt + 1
                charging = i_hold - W[IBIAS * LW + c] > rest_i
                if charging:  # counted (time update), pulled toward z over G_TAU_S
                    W[IZG * LW + c] += (W[IZ * LW + c] - W[IZG * LW + c]) * min(dt / G_TAU_S, 1.0)
                else:
                    W[IZG * LW + c] = W[IZ * LW + c]
                kt, wst = grid_bracket((W[IZG * LW + c] - soc0) * inv_dsoc, ns)
                grc, dgrc = bilinear(rcf_t[jt, kt], rcf_t[jt, kt + 1], rcf_t[jt1, kt], rcf_t[jt1, kt + 1], wst,
                                     W[IC_W * LW + c])
                if charging:
                    dgrc = 0.0  # zg is an input, not the filtered z
            W[RGRC * LW + c] = grc
            W[RDGRC * LW + c] = dgrc
            # the measurement update's at the current sample's
            if use_v and (W[IC_T * LW + c] != t_now or W[IC_DT * LW + c] != dt):
                temp_scalars(p, xv, c, t_now, dt)
            W[IIHOLD * LW + c] = i_now
            W[ITHOLD * LW + c] = t_now

        # ---- time update over dt with the previous sample's current and temperature (vector)
        for c in range(n):
            b = W[IBIAS * LW + c]
            i_prev = W[RIPREV * LW + c] - b
            eta = eta_chg if i_prev > 0.0 else 1.0
            kh = W[RKH * LW + c]
            h_old = W[IH * LW + c]
            u0 = -eta * W[RDTQ * LW + c]
            # P' = F P F^T + Qd with F = diag(d) + u e_b^T (every state depends on itself and b); with
            # G's slope F = E F0, E = I + c e_z^T, F0 = diag(d) + u' e_b^T (F0 P F0^T below, then E)
            a1 = W[RA1 * LW + c]
            a2 = W[RA2 * LW + c]
            ah = W[RAH * LW + c]
            (W[IZ * LW + c], W[IZG * LW + c], W[IV1 * LW + c], W[IV2 * LW + c], W[IH * LW + c], W[IS * LW + c],
             u1, u2, u3, c1, c2) = time_update(
                W[IZ * LW + c], W[IZG * LW + c], W[IV1 * LW + c], W[IV2 * LW + c], h_old, W[IS * LW + c], i_prev, u0,
                a1, a2, W[RR1 * LW + c], W[RR2 * LW + c], W[RGRC * LW + c], W[RDGRC * LW + c], ah, kh, i_sign,
                inv_dsoc, RC_SOC_JACOBIAN and rc_soc)
            p44 = W[R44 * LW + c]
            n00, n01, n02, n03, n04, n11, n12, n13, n14, n22, n23, n24, n33, n34 = cov_predict(
                W[R00 * LW + c], W[R01 * LW + c], W[R02 * LW + c], W[R03 * LW + c], W[R04 * LW + c], W[R11 * LW + c],
                W[R12 * LW + c], W[R13 * LW + c], W[R14 * LW + c], W[R22 * LW + c], W[R23 * LW + c], W[R24 * LW + c],
                W[R33 * LW + c], W[R34 * LW + c], p44, a1, a2, ah, u0, u1, u2, u3)
            if RC_SOC_JACOBIAN and rc_soc:  # apply E (c1, c2 and u' above)
                n01, n02, n11, n12, n13, n14, n22, n23, n24 = cov_rc_soc(n00, n01, n02, n03, n04, n11, n12, n13,
                                                                         n14, n22, n23, n24, c1, c2)
            eb = W[IEBAR * LW + c]
            g = eb * eb * inv_rv - 1.0
            W[R00 * LW + c] = n00 + (qz + (qza * g if g > 0.0 else 0.0)) * dt
            W[R11 * LW + c] = n11 + qv * dt
            W[R22 * LW + c] = n22 + qv2 * dt
            W[R33 * LW + c] = n33 + qh * dt
            W[R44 * LW + c] = p44 + qb * dt
            W[R01 * LW + c] = n01
            W[R02 * LW + c] = n02
            W[R03 * LW + c] = n03
            W[R04 * LW + c] = n04
            W[R12 * LW + c] = n12
            W[R13 * LW + c] = n13
            W[R14 * LW + c] = n14
            W[R23 * LW + c] = n23
            W[R24 * LW + c] = n24
            W[R34 * LW + c] = n34
            # rest detection (OCV recalibration trusts the relaxed voltage more)
            moving = not abs(W[RINOW * LW + c] - b) < rest_i
            W[IREST * LW + c] = 0.0 if moving else W[IREST * LW + c] + dt
            W[IRECAL * LW + c] = 0.0 if moving else W[IRECAL * LW + c]

        # ---- table lookups at the predicted SOC (scalar: the index differs per cell)
        for c in range(n):
            ocv, docv, m, dm, f = 0.0, 0.0, 0.0, 0.0, 0.0
            if W[RUSEV * LW + c] != 0.0:
                j = int(W[IC_J * LW + c])
                wt = W[IC_W * LW + c]
                j1 = j if one_t else j + 1
                kk, ws = grid_bracket((W[IZ * LW + c] - soc0) * inv_dsoc, ns)
                # bilinear OCV(z,T), M(z,T), F(z,T) and their SOC-segment slopes blended over T
                ocv, docv = bilinear(ocv_t[j, kk], ocv_t[j, kk + 1], ocv_t[j1, kk], ocv_t[j1, kk + 1], ws, wt)
                m, dm = bilinear(hyst_t[j, kk], hyst_t[j, kk + 1], hyst_t[j1, kk], hyst_t[j1, kk + 1], ws, wt)
                f, _ = bilinear(r0f_t[j, kk], r0f_t[j, kk + 1], r0f_t[j1, kk], r0f_t[j1, kk + 1], ws, wt)
            W[ROCV * LW + c] = ocv
            W[RDOCV * LW + c] = docv
            W[RM * LW + c] = m
            W[RDM * LW + c] = dm
            W[RF * LW + c] = f

        # ---- measurement update at the current sample's temperature, physical bounds (vector;
        # a held voltage computes the update and keeps the prediction)
        for c in range(n):
            use_v = W[RUSEV * LW + c] != 0.0
            b = W[IBIAS * LW + c]
            i_true = W[RINOW * LW + c] - b
            rested = W[IREST * LW + c] >= rest_s
            h = W[IH * LW + c]
            m = W[RM * LW + c]
            r0c = W[IC_R0C * LW + c]  # both loaded: a select, no branch (vectorises)
            r0d = W[IC_R0D * LW + c]
            r0 = r0c if i_true > 0.0 else r0d
            y = (W[ROCV * LW + c] + m * h + W[IC_M0 * LW + c] * W[IS * LW + c] + W[IV1 * LW + c] + W[IV2 * LW + c]
                 + r0 * W[RF * LW + c] * i_true)
            hz = (W[RDOCV * LW + c] + W[RDM * LW + c] * h) * inv_dsoc
            n00, n01, n02, n03, n04 = W[R00 * LW + c], W[R01 * LW + c], W[R02 * LW + c], W[R03 * LW + c], W[R04 * LW + c]
            n11, n12, n13, n14 = W[R11 * LW + c], W[R12 * LW + c], W[R13 * LW + c], W[R14 * LW + c]
            n22, n23, n24, n33, n34, n44 = (W[R22 * LW + c], W[R23 * LW + c], W[R24 * LW + c], W[R33 * LW + c],
                                            W[R34 * LW + c], W[R44 * LW + c])
            ph0, ph1, ph2, ph3, ph4, hph = cov_ph(n00, n01, n02, n03, n04, n11, n12, n13, n14, n22, n23, n24, n33,
                                                  n34, hz, m)
            upd = use_v and load_update_ok(rested, W[IC_T * LW + c], t_lo, t_hi)
            sr = sig_r * i_true
            s = rrest if rested else rv + sr * sr
            s += hph
            innov = W[RVNOW * LW + c] - y
            eb = W[IEBAR * LW + c]
            si = 1.0 / s
            gain = innov * si
            c00, c01, c02, c03, c04, c11, c12, c13, c14, c22, c23, c24, c33, c34, c44 = cov_correct(
                n00, n01, n02, n03, n04, n11, n12, n13, n14, n22, n23, n24, n33, n34, n44, ph0, ph1, ph2, ph3, ph4,
                si)
            if not upd:
                c00, c01, c02, c03, c04, c11, c12, c13, c14, c22, c23, c24, c33, c34, c44 = (
                    n00, n01, n02, n03, n04, n11, n12, n13, n14, n22, n23, n24, n33, n34, n44)
                gain = 0.0
            z = W[IZ * LW + c] + ph0 * gain
            W[IEBAR * LW + c] = eb + (innov - eb) * ke if use_v else eb
            W[IV1 * LW + c] = W[IV1 * LW + c] + ph1 * gain
            W[IV2 * LW + c] = W[IV2 * LW + c] + ph2 * gain
            v_now = W[RVNOW * LW + c]
            v_hold = W[IVHOLD * LW + c]
            recal = W[IRECAL * LW + c]
            W[IVHOLD * LW + c] = v_now if use_v else v_hold
            W[IRECAL * LW + c] = 1.0 if use_v and rested else recal
            # store P symmetric
            W[R00 * LW + c] = c00
            W[R11 * LW + c] = c11
            W[R22 * LW + c] = c22
            W[R33 * LW + c] = c33
            W[R44 * LW + c] = c44
            W[R01 * LW + c] = W[_R10 * LW + c] = c01
            W[R02 * LW + c] = W[_R20 * LW + c] = c02
            W[R03 * LW + c] = W[_R30 * LW + c] = c03
            W[R04 * LW + c] = W[_R40 * LW + c] = c04
            W[R12 * LW + c] = W[_R21 * LW + c] = c12
            W[R13 * LW + c] = W[_R31 * LW + c] = c13
            W[R14 * LW + c] = W[_R41 * LW + c] = c14
            W[R23 * LW + c] = W[_R32 * LW + c] = c23
            W[R24 * LW + c] = W[_R42 * LW + c] = c24
            W[R34 * LW + c] = W[_R43 * LW + c] = c34
            # physical bounds
            flags = W[IFLAGS * LW + c] + (FLAG_AT_REST if rested else 0.0)
            W[IFLAGS * LW + c] = flags + (FLAG_SOC_CLAMPED if (z < 0.0 or z > 1.0) else 0.0)
            W[IZ * LW + c] = min(max(z, 0.0), 1.0)
            W[IH * LW + c] = min(max(W[IH * LW + c] + ph3 * gain, -1.0), 1.0)
            W[IBIAS * LW + c] = min(max(b + ph4 * gain, -bmax), bmax)

        if z_out.shape[0] > 0:
            for c in range(n):
                z_out[k, c_off + c] = W[IZ * LW + c]
