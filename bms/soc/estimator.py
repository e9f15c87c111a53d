"""The SOC estimator interface: every estimator works on the same arrays.

``x, P = new_state(n, p)`` allocates the state (layout in :mod:`bms.soc.layout`),
``soc_step(kind, p, tune, x, P, i_a, cell_v, temp_c, valid, dt_s)`` advances all cells of a
series string by one sample in one compiled call (``i_a`` is the measured cell current,
positive in charge; ``valid[c]`` False or a non-finite value holds the sample and flags it).

Estimators are selected by an integer ``kind`` (a branch inside the compiled step, so the
firmware step stays one numba call). Plugging in another estimator: write a kernel on these
arrays, either per cell ``kernel(p, tune, x_row, P_cell, i_a, v, temp_c, ok, dt_s)`` (as
bms.soc.cc) or over samples x cells (as :func:`bms.soc.ekf.ekf_run`, the fast form), give it
the next kind number in ``soc_step`` (and :func:`bms.soc.run.run_series`) and a
:class:`EstimatorSpec` in ``ESTIMATORS``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba as nb
import numpy as np

from bms.model import CellParams
from bms.soc.cc import cc_cell
from bms.soc.ekf import ROCV as IW_OCV
from bms.soc.ekf import RVNOW as IW_VNOW
from bms.soc.ekf import ekf_run
from bms.soc.layout import (
    IBIAS, IC_T, ICAP, IH, IP, IS, ITHOLD, IVHOLD, IZ, IZG, NP, NT, NXW, PB, PH, PV1, PV2, PZ, ROW_CELLS,
    T_BIAS_MAX, T_LOAD_T_MARGIN, T_P0B, T_P0H, T_P0Z, T_QB, T_QH, T_QV, T_QV2, T_QZ, T_QZ_ADAPT, T_REST_I, T_REST_S,
    T_RREST, T_RV, T_SIGMA_R, T_TAU_E,
)
from bms.soc.ocv import soc_from_rest_voltage

EST_CC = 0
EST_EKF = 1


@dataclass(frozen=True)
class EstimatorSpec:
    name: str
    kind: int
    description: str


ESTIMATORS = {
    "cc": EstimatorSpec("cc", EST_CC, "coulomb counting + hysteresis-aware OCV recalibration at rest"),
    "ekf": EstimatorSpec("ekf", EST_EKF, "EKF per cell over SOC, 2 RC voltages, hysteresis and current offset"),
}

#: tuning defaults; names match bms.soc.layout T_* (per-cell quantities, SI units)
TUNING_DEFAULTS = {
    "q_soc_per_s": 1e-10,  # SOC random walk (1/s)
    "q_rc_v2_per_s": 1e-9,  # RC1 voltage random walk (V^2/s)
    "q_rc2_v2_per_s": 1e-9,  # RC2 voltage random walk (V^2/s)
    "q_hyst_per_s": 1e-6,  # hysteresis-state random walk (1/s)
    "q_bias_a2_per_s": 1e-7,  # current-offset random walk (A^2/s)
    "r_v2": 3e-4,  # measurement variance (V^2): (17 mV)^2, the model error is correlated, not white
    "rest_i_c": 0.002,  # rest when |i| < this C-rate
    "rest_s": 600.0,  # rest time before the voltage counts as relaxed (s)
    "r_rest_v2": 4e-6,  # measurement variance of a relaxed voltage (V^2)
    "bias_max_c": 0.05,  # current-offset bound as a C-rate
    "p0_soc": 0.2**2,  # SOC variance when initialised from a stored or assumed SOC
    "p0_hyst": 0.5,  # initial hysteresis variance
    "p0_bias_c": 0.01,  # initial offset standard deviation as a C-rate
    "q_soc_adapt_per_s": 0.0,  # extra SOC noise per unit of persistent innovation excess (1/s)
    "tau_innov_s": 300.0,  # averaging time of the innovation for the adaptation (s)
    "sigma_r_ohm": 1.2e-3,  # resistance uncertainty: adds (sigma_r * i)^2 to the measurement variance
    # loaded voltages correct the SOC only within the profile's temperature grid widened by this
    # margin (K); beyond, the model's resistances are extrapolated (bms.soc.ekf_temp.load_update_ok)
    "load_t_margin_k": 5.0,
}
TUNING_KEYS = tuple(TUNING_DEFAULTS)
#: least values where a smaller positive one would divide by (almost) zero inside the kernels
#: (1 / r_v2, dt / tau_innov_s): infinities there become NaN SOC under fastmath, silently
TUNING_FLOORS = {
    "r_v2": (1e-12, "the measurement variance is divided by; (1 uV)^2 is below any cell-voltage sensor"),
    "tau_innov_s": (1e-3, "the sample time is divided by it"),
}
#: keys whose 0 switches their feature off instead (tau_innov_s = 0: no innovation averaging)
TUNING_ZERO_OFF = frozenset({"tau_innov_s"})


def tuning_vector(p: CellParams, **overrides: float) -> np.ndarray:
    """Build the tuning array (layout T_*), C-rate entries scaled by the cell capacity."""
    unknown = set(overrides) - set(TUNING_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown tuning key(s) {sorted(unknown)}; known: {', '.join(TUNING_KEYS)}")
    t = {**TUNING_DEFAULTS, **overrides}
    for key, val in t.items():
        if not np.isfinite(val) or val < 0:
            raise ValueError(f"tuning {key}={val!r} must be a finite number >= 0")
    for key, (floor, why) in TUNING_FLOORS.items():
        if t[key] < floor and not (t[key] == 0.0 and key in TUNING_ZERO_OFF):
            off = " (or 0: off)" if key in TUNING_ZERO_OFF else ""
            raise ValueError(f"tuning {key}={t[key]!r} must be >= {floor:g}{off}: {why}")
    tune = np.zeros(NT)
    q = p.capacity_ah
    tune[T_QZ] = t["q_soc_per_s"]
    tune[T_QV] = t["q_rc_v2_per_s"]
    tune[T_QV2] = t["q_rc2_v2_per_s"]
    tune[T_QH] = t["q_hyst_per_s"]
    tune[T_QB] = t["q_bias_a2_per_s"]
    tune[T_RV] = t["r_v2"]
    tune[T_REST_I] = t["rest_i_c"] * q
    tune[T_REST_S] = t["rest_s"]
    tune[T_RREST] = t["r_rest_v2"]
    tune[T_BIAS_MAX] = t["bias_max_c"] * q
    tune[T_P0Z] = t["p0_soc"]
    tune[T_P0H] = t["p0_hyst"]
    tune[T_P0B] = (t["p0_bias_c"] * q) ** 2
    tune[T_QZ_ADAPT] = t["q_soc_adapt_per_s"]
    tune[T_TAU_E] = t["tau_innov_s"]
    tune[T_SIGMA_R] = t["sigma_r_ohm"]
    tune[T_LOAD_T_MARGIN] = t["load_t_margin_k"]
    return tune


def default_tuning(kind: int, p: CellParams) -> np.ndarray:
    return tuning_vector(p)


@nb.njit(cache=True)
def state_arrays(n):
    """Zero ``x`` (n, NXW) and ``P`` (n, NP, NP) as views of one (NXW, ROW_CELLS) array, a row
    per column of ``x`` (P in x's columns IP..; bms.soc.layout): the layout the EKF kernel runs
    in place (more than ROW_CELLS cells: rows of n, which the kernel copies in blocks)."""
    W = np.zeros((NXW, max(n, ROW_CELLS)))
    x = W[:, :n].T
    P = np.lib.stride_tricks.as_strided(W[IP:], shape=(n, NP, NP), strides=(8, NP * W.shape[1] * 8, W.shape[1] * 8))
    return x, P


def copy_state(x: np.ndarray, P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A copy of ``x``, ``P`` in the layout of :func:`state_arrays` (``np.copy`` of either alone
    would lose it), with the string's mean-cell lane (:func:`mean_lane`) when ``x`` has one."""
    x2, P2 = state_arrays(x.shape[0])
    x2[:, :x.shape[1]] = x
    P2[:] = P
    if has_mean_lane(x):
        mean_lane(x2)[:] = mean_lane(x)
    return x2, P2


#: prior standard deviation of a cell's SOC difference from the string mean at power-up (cells of
#: a balanced pack are within a few %); see :func:`init_from_rest`
SOC_DIFF_SD = 0.02


@nb.njit(cache=True)
def has_mean_lane(x):
    """True when ``x`` (:func:`state_arrays` layout, 2 or more cells, a spare lane) carries the
    string's mean cell in lane n (:func:`mean_lane`), switched on by :func:`init_from_rest`."""
    n = x.shape[0]
    if n < 2 or n >= ROW_CELLS or x.shape[1] != NXW or x.strides[0] != 8 or x.strides[1] != 8 * ROW_CELLS:
        return False
    return mean_lane(x)[ICAP] > 0.0


@nb.njit(cache=True)
def mean_lane(x):
    """Lane n of the storage behind ``x`` (n, NXW): the mean cell's state row (x columns, P in
    columns IP..), outside ``x`` itself (``x`` must have the :func:`state_arrays` layout with
    n < ROW_CELLS)."""
    n = x.shape[0]
    return np.lib.stride_tricks.as_strided(x, shape=(n + 1, NXW), strides=x.strides)[n]


def new_state(n: int, p: CellParams, tune: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """State for ``n`` cells at 50 % SOC, hysteresis unknown; call an init_* before use.
    ``x`` (n, NXW) and ``P`` (n, NP, NP) are views of one array (:func:`state_arrays`): keep
    them together (a copy of one runs the EKF through a scratch copy, see bms.soc.ekf.ekf_run)."""
    tune = default_tuning(EST_EKF, p) if tune is None else tune
    x, P = state_arrays(n)
    x[:, IZ] = 0.5
    x[:, IZG] = 0.5
    x[:, ICAP] = p.capacity_ah
    x[:, ITHOLD] = 25.0
    x[:, IC_T] = -1e300  # no cached temperature scalars yet
    P[:, PZ, PZ] = 0.25
    P[:, PV1, PV1] = 1e-6
    P[:, PV2, PV2] = 1e-6
    P[:, PH, PH] = tune[T_P0H]
    P[:, PB, PB] = tune[T_P0B]
    return x, P


def init_at_soc(p: CellParams, tune: np.ndarray, x: np.ndarray, P: np.ndarray, soc, temp_c, h: float = 0.0) -> None:
    """Initialise at a known SOC (e.g. restored from saved state), RC voltages zero."""
    x[:, IZ] = np.clip(soc, 0.0, 1.0)
    x[:, IZG] = x[:, IZ]
    x[:, IH] = h
    x[:, IS] = np.sign(h)
    x[:, ITHOLD] = temp_c
    P[:] = 0.0
    P[:, PZ, PZ] = tune[T_P0Z]
    P[:, PV1, PV1] = 1e-6
    P[:, PV2, PV2] = 1e-6
    P[:, PH, PH] = tune[T_P0H]
    P[:, PB, PB] = tune[T_P0B]
    if has_mean_lane(x):
        mean_lane(x)[:] = 0.0  # per-cell filters only (a restored or assumed SOC)


def init_from_rest(p: CellParams, tune: np.ndarray, x: np.ndarray, P: np.ndarray, cell_v, temp_c,
                   h: float = 0.0) -> None:
    """Initialise as the firmware does at power-up: SOC from the rested voltage, read with
    hysteresis state ``h`` (0 when unknown); the SOC variance covers the hysteresis
    ambiguity, M / (dOCV/dz), so the filter can correct it.

    A string (2 or more cells, ``x`` from :func:`new_state`) starts as mean plus differences
    (docs/soc-tuning.md, "Power-up of a series string"): the hysteresis ambiguity is common to the string, the
    voltage sensors' offsets are per cell. The string's mean cell (:func:`mean_lane`) is read
    from the mean rested voltage (offsets average out) with the ambiguity's variance; each cell
    starts at that SOC plus its own reading's difference from the mean, weighted against the
    prior ``SOC_DIFF_SD`` of a cell's difference (a relaxed voltage's variance ``r_rest`` over
    the OCV slope squared: the difference's reading): on the flat plateau a cell stays near the
    mean, on a slope it takes its own reading. Each cell's SOC variance is then that of its
    difference; :func:`soc_step` moves the cells' mean to the mean cell's estimate. With ``h``
    unknown the mean cell's SOC and hysteresis start correlated, on the line the rested voltage
    allows (z = z0 + k h, k = -(z read at h = -1 minus z read at h = +1) / 2, h uniform in
    [-1, 1]: variance 1/3), not as two independent unknowns."""
    cell_v = np.broadcast_to(np.asarray(cell_v, dtype=float), (x.shape[0],))
    temp_c = np.broadcast_to(np.asarray(temp_c, dtype=float), (x.shape[0],))
    init_at_soc(p, tune, x, P, 0.5, temp_c, h)
    ok = np.isfinite(cell_v) & np.isfinite(temp_c)
    slope = np.zeros(x.shape[0])
    for c in np.flatnonzero(ok):
        z, p_zz, slope[c], _ = _read_rest(p, tune, float(cell_v[c]), float(temp_c[c]), h)
        x[c, IZ] = z
        x[c, IZG] = z
        x[c, IVHOLD] = cell_v[c]
        P[c, PZ, PZ] = p_zz  # cells without a usable reading stay at 50 % with the full variance
    n = x.shape[0]
    if n < 2 or n >= ROW_CELLS or not ok.any() or x.shape[1] != NXW or x.strides != (8, 8 * ROW_CELLS):
        return
    # the string: the mean cell from the mean voltage, each cell the mean plus its weighted difference
    v_mean, t_mean = float(cell_v[ok].mean()), float(temp_c[ok].mean())
    xm = mean_lane(x)
    xm[:] = x[int(np.flatnonzero(ok)[0])]  # a cell's row (x and P), then the mean cell's own values
    z_mean, p_mean, _, k = _read_rest(p, tune, v_mean, t_mean, h)
    xm[IZ] = xm[IZG] = z_mean
    xm[IVHOLD] = v_mean
    xm[ITHOLD] = t_mean
    xm[IC_T] = -1e300
    xm[IP + PZ * NP + PZ] = p_mean
    if h == 0.0:  # SOC and hysteresis on the line the rested voltage allows: z = z0 + k h
        p_hh = 1.0 / 3.0  # h anywhere in [-1, 1]: a uniform distribution's variance
        xm[IP + PH * NP + PH] = p_hh
        xm[IP + PZ * NP + PZ] = k * k * p_hh + 1e-4
        xm[IP + PZ * NP + PH] = xm[IP + PH * NP + PZ] = k * p_hh
    z_read = x[:, IZ].copy()
    z_read_mean = z_read[ok].mean()
    for c in range(n):
        d, var_d = 0.0, SOC_DIFF_SD**2
        if ok[c]:
            var_read = tune[T_RREST] / max(slope[c] * slope[c], 1e-12)
            w = var_d / (var_d + var_read)
            d, var_d = w * (z_read[c] - z_read_mean), w * var_read
        x[c, IZ] = x[c, IZG] = min(max(z_mean + d, 0.0), 1.0)
        P[c, PZ, PZ] = var_d


def rest_read_soc(p: CellParams, tune: np.ndarray, v: float, temp_c: float) -> float:
    """SOC read from a rested voltage with the hysteresis state unknown (h = 0), as the mean
    cell's power-up read of :func:`init_from_rest`."""
    return _read_rest(p, tune, float(v), float(temp_c), 0.0)[0]


def shift_soc(x: np.ndarray, dz: float) -> None:
    """Move every cell's SOC (and the string's mean cell, when ``x`` has one) by ``dz``, the
    covariances unchanged: a better reading of the same rested voltages (bms.soc.powerup)."""
    for row in (x, mean_lane(x)[None, :]) if has_mean_lane(x) else (x,):
        row[:, IZ] = np.clip(row[:, IZ] + dz, 0.0, 1.0)
        row[:, IZG] = row[:, IZ]


def _read_rest(p: CellParams, tune: np.ndarray, v: float, temp_c: float, h: float) -> tuple[float, float, float, float]:
    """(SOC, SOC variance, dOCV/dz at that SOC, k) read from a rested voltage with hysteresis
    state ``h`` (0: unknown, the variance then covers the span of the two hysteresis branches'
    readings); k = -(z read at h = -1 minus z read at h = +1) / 2, the SOC's slope along h."""
    z, slope = soc_from_rest_voltage(p, v, temp_c, h, float(np.sign(h)))
    z_hi, _ = soc_from_rest_voltage(p, v, temp_c, -1.0, -1.0)
    z_lo, _ = soc_from_rest_voltage(p, v, temp_c, 1.0, 1.0)
    spread = 0.5 * abs(z_hi - z_lo) if h == 0.0 else 0.0
    return z, max(tune[T_P0Z], spread**2 + 1e-4), slope, -0.5 * (z_hi - z_lo)


@nb.njit(cache=True)
def soc_step(kind, p, tune, x, P, i_a, cell_v, temp_c, valid, dt_s):
    """Advance every cell's estimator by one sample (see module docstring); in place.
    ``i_a`` is the measured current of each cell (scalar: cells in series share it)."""
    if kind == EST_EKF:
        none = tune[:0]  # empty views: scalar current and step (no allocation)
        # strided (layout 'A') views, typed as the mean cell's inputs below: one compiled ekf_run
        ekf_run(p, tune, x, P, none, i_a, cell_v[None, ::1], temp_c[None, ::1], valid[None, ::1], none, dt_s,
                x[:0, :1])
        if has_mean_lane(x):
            _mean_cell_step(p, tune, x, i_a, cell_v, temp_c, valid, dt_s)
    else:
        for c in range(x.shape[0]):
            cc_cell(p, tune, x[c], P[c], i_a, cell_v[c], temp_c[c], valid[c], dt_s)


@nb.njit(cache=True)
def _mean_cell_step(p, tune, x, i_a, cell_v, temp_c, valid, dt_s):
    """The string's mean cell (:func:`mean_lane`): the same EKF on the mean of the usable cell
    voltages and temperatures, then every cell's SOC moved by the mean cell's SOC minus the
    cells' mean (the shared correction of the common part; the cells' own filters keep the
    differences). The mean's inputs are held in the mean cell's scratch columns (no allocation)."""
    n = x.shape[0]
    if n == 0:
        return
    full = np.lib.stride_tricks.as_strided(x, shape=(n + 1, NXW), strides=x.strides)
    acc_v, nv, acc_t, nt, c_ok = 0.0, 0, 0.0, 0, 0
    for c in range(n):
        if valid[c] and math.isfinite(cell_v[c]):
            acc_v += cell_v[c]
            nv += 1
            c_ok = c
        if math.isfinite(temp_c[c]):
            acc_t += temp_c[c]
            nt += 1
    xm = full[n:]
    # the inputs in scratch columns the kernel reads before it writes them (RVNOW) or writes
    # only after its first pass (ROCV)
    xm[0, IW_VNOW] = acc_v / nv if nv > 0 else math.nan
    xm[0, IW_OCV] = acc_t / nt if nt > 0 else math.nan
    Pm = np.lib.stride_tricks.as_strided(full[n:, IP:], shape=(1, NP, NP), strides=(8, NP * x.strides[1], x.strides[1]))
    none = tune[:0]
    # the mean's validity: a usable cell's flag (True), seen as (1, 1) (with none usable the mean
    # voltage is NaN, which the filter holds on whatever the flag); same array types as the cells'
    # call above, so ekf_run is compiled once for both
    ok = np.lib.stride_tricks.as_strided(valid[c_ok:], shape=(1, 1), strides=(0, 0))
    ekf_run(p, tune, xm, Pm, none, i_a, xm[:, IW_VNOW:IW_VNOW + 1], xm[:, IW_OCV:IW_OCV + 1], ok, none, dt_s,
            x[:0, :1])
    mean, nz = 0.0, 0
    for c in range(n):
        if math.isfinite(x[c, IZ]):  # a corrupted cell (caught by SOC_IMPLAUSIBLE) stays its own
            mean += x[c, IZ]
            nz += 1
    shift = xm[0, IZ] - mean / max(nz, 1)
    if nz == 0 or not math.isfinite(shift):
        return
    for c in range(n):
        if math.isfinite(x[c, IZ]):
            x[c, IZ] = min(max(x[c, IZ] + shift, 0.0), 1.0)
            x[c, IZG] = min(max(x[c, IZG] + shift, 0.0), 1.0)


def soc_of(x: np.ndarray) -> np.ndarray:
    return x[:, IZ]


def bias_of(x: np.ndarray) -> np.ndarray:
    return x[:, IBIAS]
