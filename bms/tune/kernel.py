"""The sweep kernel: many tuning vectors x many perturbed copies of one dataset in one
compiled call, ``prange`` over the (parameter set, perturbation) pairs.

Each job feeds the series to the firmware's own estimator code (the EKF's equations through
:func:`bms.tune.ekf_lanes.ekf_lanes`, many sets per call in SIMD lanes, checked against
:func:`bms.soc.ekf.ekf_run`; others sample by sample through :func:`bms.soc.estimator.soc_step`,
so what is tuned is what runs) and adds the error ``e_k = z_est,k - z_true,k`` of every
sample to its accumulators ``out[r, j, :]`` (:mod:`bms.tune.metrics`: SSE, max, last sample
out of the band, late SSE, worst window, SSE by SOC band).

Initialisation mirrors :func:`bms.evaluate.evaluate`: the state of ``new_state`` +
``init_at_soc(z0)``; when ``p0z_floor >= 0`` (initialised from a rest voltage, as
:func:`bms.soc.estimator.init_from_rest`) ``P_zz = max(tune[T_P0Z], p0z_floor)`` and the held
voltage is the first sample, otherwise (initialised at an assumed SOC) ``P_zz = tune[T_P0Z]``.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from bms.soc.estimator import EST_EKF, soc_step, state_arrays
from bms.soc.layout import IC_T, ICAP, ITHOLD, IVHOLD, IZ, IZG, PB, PH, PV1, PV2, PZ, T_P0B, T_P0H, T_P0Z
from bms.tune.ekf_lanes import LANES, ekf_lanes
from bms.tune.metrics import NM, acc_add, acc_finish, acc_reset, acc_scratch


@nb.njit(cache=True)
def run_job(kind, p, tune, time_s, soc_true, i_meas, v_meas, temp_c, z0, p0z_floor, cap_ah,
            band, k_late, win_n, out):
    """One estimator run from SOC ``z0`` with estimator capacity ``cap_ah``:
    ``x_k = soc_step(x_{k-1}, i_k, v_k, T_k, t_k - t_{k-1})``, ``out += acc(z_k - z_true,k)``.
    Allocates its state once per run, nothing per step."""
    x, P = state_arrays(1)  # the EKF's in-place layout (bms.soc.layout)
    x[0, IZ] = min(max(z0, 0.0), 1.0)
    x[0, IZG] = x[0, IZ]  # G's SOC (as estimator.init_at_soc)
    x[0, ICAP] = cap_ah
    x[0, ITHOLD] = temp_c[0]
    x[0, IC_T] = -1e300  # no cached temperature scalars yet (as estimator.new_state)
    P[0, PZ, PZ] = tune[T_P0Z]
    if p0z_floor >= 0.0:
        x[0, IVHOLD] = v_meas[0]
        P[0, PZ, PZ] = max(tune[T_P0Z], p0z_floor)
    P[0, PV1, PV1] = 1e-6
    P[0, PV2, PV2] = 1e-6
    P[0, PH, PH] = tune[T_P0H]
    P[0, PB, PB] = tune[T_P0B]
    ring, win, mx = acc_scratch(win_n, 1)
    acc_reset(out, ring, win, mx, 1)
    v1 = np.empty(1)
    t1 = np.empty(1)
    ok1 = np.ones(1, dtype=np.bool_)
    x0 = x[0]
    for k in range(time_s.shape[0]):
        dt = time_s[k] - time_s[k - 1] if k > 0 else 0.0
        v1[0] = v_meas[k]
        t1[0] = temp_c[k]
        soc_step(kind, p, tune, x, P, i_meas[k], v1, t1, ok1, dt)
        acc_add(out, ring, win, mx, x0, IZ, 1, k, soc_true[k], soc_true[k], band, k_late)
    acc_finish(out, ring, mx, 1)


@nb.njit(cache=True, parallel=True)
def sweep_kernel(kind, p, tunes, time_s, soc_true, i_meas, v_meas, temp_c, z0, p0z_floor, cap_ah,
                 band, k_late, win_n, out):
    """``out[r, j] = run(tunes[r], perturbation j)`` for r < m, j < q, in parallel. ``i_meas``,
    ``v_meas``, ``temp_c`` (q, n) are the perturbed measurements; ``z0``, ``p0z_floor``,
    ``cap_ah`` (q,) the initial SOC, SOC-variance floor and estimator capacity per
    perturbation; ``out`` (m, q, NM). The EKF runs blocks of ``LANES`` sets per perturbation
    in :func:`bms.tune.ekf_lanes.ekf_lanes` (the last block padded with copies of its last
    set), in parallel over the blocks; other estimators run job by job (:func:`run_job`)."""
    m = tunes.shape[0]
    q = i_meas.shape[0]
    if kind == EST_EKF:
        nblk = (m + LANES - 1) // LANES
        for job in nb.prange(q * nblk):
            j = job // nblk
            lo = (job - j * nblk) * LANES
            hi = min(lo + LANES, m)
            tl = np.empty((LANES, tunes.shape[1]))
            for r in range(LANES):
                tl[r] = tunes[min(lo + r, hi - 1)]
            acc = np.empty(NM * LANES)
            ekf_lanes(p, tl, time_s, i_meas[j], v_meas[j], temp_c[j], z0[j], p0z_floor[j], cap_ah[j], soc_true,
                      band, k_late, win_n, acc)
            for r in range(hi - lo):
                for a in range(NM):
                    out[lo + r, j, a] = acc[a * LANES + r]
    else:
        for job in nb.prange(m * q):
            r = job // q
            j = job - r * q
            run_job(kind, p, tunes[r], time_s, soc_true, i_meas[j], v_meas[j], temp_c[j], z0[j], p0z_floor[j],
                    cap_ah[j], band, k_late, win_n, out[r, j])
