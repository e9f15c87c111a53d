"""EKF step over 192 cells: compiled kernel (cells in SIMD lanes, bms.soc.ekf) vs a vectorised
NumPy implementation of the same filter (same equations as bms.soc.ekf, written with
whole-array operations). CPU time (process time) medians: a loaded machine does not distort
them; on an idle one they equal the wall time (one thread)."""

from __future__ import annotations

import time

import numpy as np

from benchmarks._timing import figure, median_seconds
from bms.profile import load_profile
from bms.soc import estimator as E
from bms.soc.layout import (IBIAS, IH, IIHOLD, IS, IV1, IV2, IZ, T_QB, T_QH, T_QV, T_QV2, T_QZ,
                            T_RV)

N_CELLS = 192
N_STEPS = 2000


def numpy_ekf_step(p, tune, x, P, i_a, v, temp_c, dt):
    """Same filter as the kernel (no rest/hold logic), vectorised over cells with NumPy."""
    tg = p.temp_c
    j = np.clip(np.searchsorted(tg, temp_c) - 1, 0, max(len(tg) - 2, 0))
    wt = np.clip((temp_c - tg[j]) / (tg[j + 1] - tg[j]), 0, 1) if len(tg) > 1 else np.zeros_like(temp_c)
    it = lambda tab: (1 - wt) * tab[j] + wt * tab[j + 1]  # noqa: E731
    q_as = 3600 * p.capacity_ah
    b = x[:, IBIAS]
    ip = x[:, IIHOLD] - b
    eta = np.where(ip > 0, p.eta_chg, 1.0)
    u = (x[:, IZ] - p.soc0) / p.dsoc
    k = np.clip(u.astype(np.int64), 0, p.ocv_v.shape[1] - 2)
    ws = np.clip(u - k, 0, 1)

    def bil(tab):
        lo = tab[j, k] + ws * (tab[j, k + 1] - tab[j, k])
        hi = tab[j + 1, k] + ws * (tab[j + 1, k + 1] - tab[j + 1, k])
        s = (1 - wt) * (tab[j, k + 1] - tab[j, k]) + wt * (tab[j + 1, k + 1] - tab[j + 1, k])
        return (1 - wt) * lo + wt * hi, s
    g, _ = bil(p.rc_soc_factor)  # RC resistances at the step's start SOC (dG/dz out of F, as the kernel)
    r1, r2 = it(p.r1_ohm) * g, it(p.r2_ohm) * g
    a1, a2 = np.exp(-dt / it(p.tau1_s)), np.exp(-dt / it(p.tau2_s))
    sgn = np.sign(ip)
    kh = it(p.gamma) * dt / q_as
    ah = np.exp(-kh * np.abs(ip))
    h_old = x[:, IH].copy()
    x[:, IZ] += eta * ip * dt / q_as
    x[:, IV1] = a1 * x[:, IV1] + r1 * (1 - a1) * ip
    x[:, IV2] = a2 * x[:, IV2] + r2 * (1 - a2) * ip
    x[:, IH] = ah * h_old + (1 - ah) * sgn
    n = x.shape[0]
    F = np.zeros((n, 5, 5))
    F[:, 0, 0], F[:, 1, 1], F[:, 2, 2], F[:, 3, 3], F[:, 4, 4] = 1, a1, a2, ah, 1
    F[:, 0, 4], F[:, 1, 4], F[:, 2, 4] = -eta * dt / q_as, -r1 * (1 - a1), -r2 * (1 - a2)
    F[:, 3, 4] = ah * kh * sgn * (h_old - sgn)
    P[:] = F @ P @ np.transpose(F, (0, 2, 1))
    P[:, 0, 0] += tune[T_QZ] * dt
    P[:, 1, 1] += tune[T_QV] * dt
    P[:, 2, 2] += tune[T_QV2] * dt
    P[:, 3, 3] += tune[T_QH] * dt
    P[:, 4, 4] += tune[T_QB] * dt
    it_true = i_a - b
    u = (x[:, IZ] - p.soc0) / p.dsoc
    k = np.clip(u.astype(np.int64), 0, p.ocv_v.shape[1] - 2)
    ws = np.clip(u - k, 0, 1)  # bil() reads the new k, ws
    ocv, docv = bil(p.ocv_v)
    m, dm = bil(p.hyst_v)
    f, _ = bil(p.r0_soc_factor)  # dF/dz left out of H, as in the kernel (bms.soc.ekf docstring)
    r0 = np.where(it_true > 0, it(p.r0_chg_ohm), it(p.r0_dis_ohm))
    y = ocv + m * x[:, IH] + it(p.m0_v) * x[:, IS] + x[:, IV1] + x[:, IV2] + r0 * f * it_true
    H = np.stack([(docv + dm * x[:, IH]) / p.dsoc, np.ones(n), np.ones(n), m, -r0 * f], axis=1)
    PH = np.einsum("nij,nj->ni", P, H)
    S = np.einsum("ni,ni->n", H, PH) + tune[T_RV]
    K = PH / S[:, None]
    innov = v - y
    for col, idx in enumerate((IZ, IV1, IV2, IH, IBIAS)):
        x[:, idx] += K[:, col] * innov
    P -= K[:, :, None] * PH[:, None, :]
    np.clip(x[:, IZ], 0, 1, out=x[:, IZ])
    np.clip(x[:, IH], -1, 1, out=x[:, IH])
    x[:, IIHOLD] = i_a


def run() -> dict:
    p = load_profile("winston_lfp100").params
    tune = E.default_tuning(E.EST_EKF, p)
    rng = np.random.default_rng(0)
    cur = rng.uniform(-200, 100, N_STEPS)
    volt = 3.3 + rng.normal(0, 0.01, (N_STEPS, N_CELLS))
    temp = np.full(N_CELLS, 25.0) + rng.normal(0, 2, N_CELLS)
    ok = np.ones(N_CELLS, dtype=np.bool_)

    def compiled():
        x, P = E.new_state(N_CELLS, p, tune)
        for k in range(N_STEPS):
            E.soc_step(E.EST_EKF, p, tune, x, P, cur[k], volt[k], temp, ok, 0.1)

    from numba import njit

    @njit(cache=False)
    def compiled_loop(p, tune, x, P, cur, volt, temp, ok):
        for k in range(cur.shape[0]):
            E.soc_step(E.EST_EKF, p, tune, x, P, cur[k], volt[k], temp, ok, 0.1)

    def compiled_inner():
        x, P = E.new_state(N_CELLS, p, tune)
        compiled_loop(p, tune, x, P, cur, volt, temp, ok)

    def numpy_version():
        x, P = E.new_state(N_CELLS, p, tune)
        for k in range(N_STEPS // 10):
            numpy_ekf_step(p, tune, x, P, cur[k], volt[k], temp, 0.1)

    cpu = time.process_time
    t_call = median_seconds(compiled, repeat=5, clock=cpu) / N_STEPS  # per step, called from Python
    t_kernel = median_seconds(compiled_inner, repeat=9, clock=cpu) / N_STEPS  # per step, in-kernel loop
    t_np = median_seconds(numpy_version, repeat=3, clock=cpu) / (N_STEPS // 10)
    return {
        "ekf_cell_steps_per_s": figure(N_CELLS / t_kernel, "cell-steps/s", note="192 cells, loop inside numba, CPU time (target >= 20e6)"),
        "ekf_cell_steps_per_s_python_call": figure(N_CELLS / t_call, "cell-steps/s", note="one soc_step call from Python per step"),
        "ekf_step_vs_numpy": figure(N_CELLS / t_kernel, "cell-steps/s", baseline=N_CELLS / t_np, ratio=t_np / t_kernel,
                                    note="vectorised NumPy EKF, same equations (target >= 20x)"),
    }
