"""Run an estimator over a recorded single-cell series (lab data, replays): one compiled loop."""

from __future__ import annotations

import numba as nb
import numpy as np

from bms.soc.ekf import ekf_run
from bms.soc.estimator import EST_EKF, soc_step
from bms.soc.layout import IZ


@nb.njit(cache=True)
def run_series(kind, p, tune, x, P, time_s, current_a, voltage_v, temp_c, soc_out):
    """Feed samples k = 0..n-1 to ``soc_step`` (dt from the time column; the first sample
    has dt 0) and write the SOC estimate after each sample to ``soc_out``. The EKF runs the
    whole series in one kernel call (:func:`bms.soc.ekf.ekf_run`, the same code as the
    firmware's step); other estimators go sample by sample through ``soc_step``."""
    if kind == EST_EKF:
        ok2 = np.ones((time_s.shape[0], 1), dtype=np.bool_)
        ekf_run(p, tune, x, P, current_a, 0.0, voltage_v[:, None], temp_c[:, None], ok2,
                time_s, 0.0, soc_out[:, None])
        return
    v1 = np.empty(1)
    t1 = np.empty(1)
    ok = np.ones(1, dtype=np.bool_)
    for k in range(time_s.shape[0]):
        dt = time_s[k] - time_s[k - 1] if k > 0 else 0.0
        v1[0] = voltage_v[k]
        t1[0] = temp_c[k]
        soc_step(kind, p, tune, x, P, current_a[k], v1, t1, ok, dt)
        soc_out[k] = x[0, IZ]
