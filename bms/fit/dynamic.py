"""Dynamic parameters at one temperature by least squares on a drive-cycle voltage record.

The forward model is :func:`bms.model.simulate` itself (the estimator's own equations) with the
OCV and hysteresis-amplitude rows fixed from the slow curves; it is driven by the measured
current from a rested state after a full charge (``z0 = soc_ref[0]``, ``v1 = v2 = 0``,
``h = s = +1``) and the residual is ``v_model - v_measured`` at every sample. Fitted:
``R0`` (charge and discharge), ``R1, tau1``, ``R2, tau2``, the hysteresis rate ``gamma`` and
the instantaneous hysteresis ``m0``; all positive ones in log space, every one bounded to a
physical range (:data:`BOUNDS`). One more, ``p_extra_v``, is not a model parameter: the slow
(diffusion) polarisation of the slow OCV test beyond ``I R_ss``; it moves the split of the slow
curves' half-gap between hysteresis and polarisation (:mod:`bms.fit.ocv`), so the OCV/hysteresis
rows are rebuilt from the slow curves at every evaluation by the caller's ``rows`` function.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from scipy.optimize import least_squares

from bms.fit import rsoc
from bms.labdata import DataError, LabData
from bms.model import IH, IS, IV1, IV2, IZ, NX, CellParams, rc_soc_on, simulate

#: fitted per-temperature parameters, in profile-table order
PARAM_KEYS = ("r0_chg_ohm", "r0_dis_ohm", "r1_ohm", "tau1_s", "r2_ohm", "tau2_s", "gamma", "m0_v")
#: physical bounds of each fitted parameter
BOUNDS: dict[str, tuple[float, float]] = {
    "r0_chg_ohm": (1e-5, 0.5),
    "r0_dis_ohm": (1e-5, 0.5),
    "r1_ohm": (1e-6, 0.5),
    "tau1_s": (1.0, 100.0),
    "r2_ohm": (1e-6, 0.5),
    "tau2_s": (100.0, 5000.0),
    "gamma": (1.0, 2000.0),
    "m0_v": (0.0, 0.05),
    "p_extra_v": (0.0, 0.1),
    "v1_init_v": (0.0, 0.05),
    "v2_init_v": (0.0, 0.05),
    "i_offset_c": (-0.02, 0.02),  # current-sensor offset as a fraction of 1C (only if asked for)
    **{k: rsoc.BOUND for k in rsoc.ALL_KEYS},  # log-increments of the R0 and RC SOC factors (bms.fit.rsoc)
}
#: everything the drive fit adjusts: the model parameters, the R0 and RC SOC factors'
#: log-increments and the slow-test extra polarisation
FIT_KEYS = PARAM_KEYS + rsoc.ALL_KEYS + ("p_extra_v", "v1_init_v", "v2_init_v", "i_offset_c")
#: nuisance parameters of one record: its initial RC voltages (the records start shortly after a
#: charge) and, when asked for, its current-sensor offset (in C; ``i_offset_a = i_offset_c * Q``)
RECORD_KEYS = ("v1_init_v", "v2_init_v", "i_offset_c")
_LINEAR = ("m0_v", "p_extra_v", "v1_init_v", "v2_init_v", "i_offset_c") + rsoc.ALL_KEYS
_LOG = tuple(k not in _LINEAR for k in FIT_KEYS)


def cell_params(soc: np.ndarray, temp_c: np.ndarray, ocv_v: np.ndarray, hyst_v: np.ndarray,
                dyn: dict[str, np.ndarray], capacity_ah: float, eta_chg: float, i_sign_a: float,
                r0_soc_factor: np.ndarray | None = None, rc_soc_factor: np.ndarray | None = None) -> CellParams:
    """A :class:`CellParams` from tables (``ocv_v``/``hyst_v``/``r0_soc_factor``/``rc_soc_factor``
    (nT, nS), the last two 1 if None; ``dyn[key]`` (nT,))."""
    c = lambda a: np.ascontiguousarray(np.atleast_1d(np.asarray(a, dtype=np.float64)))  # noqa: E731
    ones = np.ones(np.shape(np.atleast_2d(ocv_v)))
    f = ones if r0_soc_factor is None else r0_soc_factor
    g = ones if rc_soc_factor is None else rc_soc_factor
    return CellParams(
        soc0=float(soc[0]), dsoc=float(soc[1] - soc[0]), temp_c=c(temp_c),
        ocv_v=np.ascontiguousarray(np.atleast_2d(ocv_v), dtype=np.float64),
        hyst_v=np.ascontiguousarray(np.atleast_2d(hyst_v), dtype=np.float64),
        m0_v=c(dyn["m0_v"]), gamma=c(dyn["gamma"]), r0_chg_ohm=c(dyn["r0_chg_ohm"]),
        r0_dis_ohm=c(dyn["r0_dis_ohm"]),
        r0_soc_factor=np.ascontiguousarray(np.atleast_2d(f), dtype=np.float64),
        rc_soc_factor=np.ascontiguousarray(np.atleast_2d(g), dtype=np.float64), r1_ohm=c(dyn["r1_ohm"]), tau1_s=c(dyn["tau1_s"]),
        r2_ohm=c(dyn["r2_ohm"]), tau2_s=c(dyn["tau2_s"]),
        capacity_ah=float(capacity_ah), eta_chg=float(eta_chg), i_sign_a=float(i_sign_a), rc_soc_on=rc_soc_on(g),
    )


def rested_full_state(soc0: float, h0: float = 1.0, v1: float = 0.0, v2: float = 0.0) -> np.ndarray:
    """Initial state of a drive record: SOC ``soc0``, hysteresis ``h0`` (after charge: +1), RC
    voltages ``v1``, ``v2`` (0 when rested; the records start a few minutes after the charge)."""
    x0 = np.zeros(NX)
    x0[IZ] = soc0
    x0[IV1] = v1
    x0[IV2] = v2
    x0[IH] = h0
    x0[IS] = np.sign(h0)
    return x0


def sample_step_s(data: LabData) -> float:
    """The record's constant sample period (s); a clear error if it is not uniform."""
    dt = np.diff(data.time_s)
    if dt.size == 0 or np.ptp(dt) > 1e-6 * max(1.0, dt[0]):
        raise DataError(f"{data.path}: time_s is not uniformly sampled (step {dt.min()}..{dt.max()} s)")
    return float(dt[0])


@dataclass
class DriveFit:
    """The result of fitting (or evaluating) the model on one drive record."""

    path: str
    temp_c: float
    values: dict[str, float]
    rmse_v: float
    max_abs_v: float
    soc_gap_max: float  # max |model SOC - soc_ref| (coulomb counting vs the reference)
    rmse_fit_v: float  # RMSE over the samples the fit uses (soc_ref <= soc_max)
    v_model: np.ndarray = field(repr=False)
    n_eval: int = 0


def record_temp_c(data: LabData) -> float:
    t = np.unique(data.temperature_c)
    if t.size != 1:
        raise DataError(f"{data.path}: temperature_c is not one chamber set point ({t.min()}..{t.max()} C)")
    return float(t[0])


def evaluate(p: CellParams, data: LabData, h0: float = 1.0, v1: float = 0.0,
             v2: float = 0.0, i_offset_a: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Model voltage and SOC along a record, driven by its current minus a sensor offset
    ``i_offset_a`` (the cell current is ``current_a - i_offset_a``) from the state
    :func:`rested_full_state` (``soc_ref[0]``, ``h0``, ``v1``, ``v2``)."""
    if data.soc_ref is None:
        raise DataError(f"{data.path}: needs a soc_ref column (initial SOC)")
    dt = sample_step_s(data)
    temp = np.ascontiguousarray(data.temperature_c, dtype=np.float64)
    i_a = np.ascontiguousarray(data.current_a - i_offset_a, dtype=np.float64)
    return simulate(p, rested_full_state(float(data.soc_ref[0]), h0, v1, v2), i_a, temp, dt)


def _pack(values: dict[str, float]) -> np.ndarray:
    return np.array([np.log(values[k]) if lg else values[k] for k, lg in zip(FIT_KEYS, _LOG)])


def _unpack(u: np.ndarray) -> dict[str, float]:
    return {k: float(np.exp(x) if lg else x) for k, x, lg in zip(FIT_KEYS, u, _LOG)}


def _clip(values: dict[str, float]) -> dict[str, float]:
    """Starting values strictly inside the bounds."""
    out = {}
    for k, lg in zip(FIT_KEYS, _LOG):
        lo, hi = BOUNDS[k]
        v = float(values.get(k, lo))
        out[k] = float(np.clip(v, lo * (1 + 1e-6), hi * (1 - 1e-6)) if lg else np.clip(v, lo + 1e-6 * (hi - lo), hi - 1e-6 * (hi - lo)))
    return out


RowsFn = Callable[[dict[str, float]], tuple[np.ndarray, np.ndarray]]


def _record_args(values: dict[str, float], capacity_ah: float) -> tuple[float, float, float, float]:
    """(h0, v1, v2, i_offset_a) of a record from its nuisance values (absent: 0)."""
    return (1.0, values.get("v1_init_v", 0.0), values.get("v2_init_v", 0.0),
            values.get("i_offset_c", 0.0) * capacity_ah)


def fit_drive(data: LabData, soc: np.ndarray, rows: RowsFn, guess: dict[str, float], capacity_ah: float,
              eta_chg: float, i_sign_a: float, max_nfev: int = 200, soc_max: float = 0.97,
              fit_offset: bool = False, tol: float = 1e-6, fixed: tuple[str, ...] = (),
              zero: tuple[str, ...] = ()) -> DriveFit:
    """Least-squares fit of :data:`FIT_KEYS` at the record's temperature.

    ``rows(values) -> (ocv_row, hyst_row)`` gives the OCV and hysteresis-amplitude rows (nS,)
    for the current parameter values (they depend on ``gamma``, ``m0_v``, the resistances and
    ``p_extra_v`` through the slow curves). Samples above ``soc_max`` (the top of the SOC range,
    where the OCV from slow curves is least known and the record starts just after a charge)
    are left out of the residual; the simulation still runs through them. With ``fit_offset`` a
    constant current-sensor offset of the record is fitted too (a nuisance: it keeps the model
    parameters from absorbing a biased current), otherwise it is held at 0. The R0 and RC SOC
    factors' log-increments of knots the record does not cover are held at 0 (:mod:`bms.fit.rsoc`),
    and so are the linear keys in ``zero`` (e.g. :data:`bms.fit.rsoc.RC_KEYS`: no RC SOC factor)."""
    temp_c = record_temp_c(data)
    temps = np.array([temp_c])

    def params(values):
        ocv_row, hyst_row = rows(values)
        return cell_params(soc, temps, ocv_row, hyst_row, {k: np.array([values[k]]) for k in PARAM_KEYS},
                           capacity_ah, eta_chg, i_sign_a, rsoc.factor_row(soc, values),
                           rsoc.factor_row(soc, values, rsoc.RC_KEYS))

    use = data.soc_ref <= soc_max
    if use.sum() < 100:
        raise DataError(f"{data.path}: fewer than 100 samples at SOC <= {soc_max}")

    unknown = (set(fixed) | set(zero)) - set(FIT_KEYS)
    if unknown:
        raise ValueError(f"unknown fit keys {sorted(unknown)} (known: {', '.join(FIT_KEYS)})")
    cover = rsoc.covered(data, capacity_ah)
    zero = ({k for k in rsoc.ALL_KEYS if not cover[k]}) | (set() if fit_offset else {"i_offset_c"}) | set(zero)
    held = set(fixed) | zero
    sel = np.array([k not in held for k in FIT_KEYS])
    start = _pack(_clip(guess))
    for k in zero:  # linear keys: held at exactly 0
        start[FIT_KEYS.index(k)] = 0.0
    for k in set(fixed) - zero:  # held at exactly the given value (not nudged inside the bounds)
        if k in guess:
            start[FIT_KEYS.index(k)] = np.log(guess[k]) if _LOG[FIT_KEYS.index(k)] else guess[k]

    def full(u):
        x = start.copy()
        x[sel] = u
        return _unpack(x)

    ridge = rsoc.RIDGE_V * np.sqrt(use.sum())
    ridge_keys = [k for k in rsoc.ALL_KEYS if k not in held]

    def resid(u):
        values = full(u)
        v, _ = evaluate(params(values), data, *_record_args(values, capacity_ah))
        return np.concatenate([(v - data.voltage_v)[use], [ridge * values[k] for k in ridge_keys]])

    lo = np.array([np.log(BOUNDS[k][0]) if lg else BOUNDS[k][0] for k, lg in zip(FIT_KEYS, _LOG)])[sel]
    hi = np.array([np.log(BOUNDS[k][1]) if lg else BOUNDS[k][1] for k, lg in zip(FIT_KEYS, _LOG)])[sel]
    res = least_squares(resid, start[sel], bounds=(lo, hi), x_scale=1.0, diff_step=1e-4, max_nfev=max_nfev,
                        ftol=tol, xtol=tol)
    values = full(res.x)
    return score(params(values), data, values, n_eval=int(res.nfev), soc_max=soc_max)


def score(p: CellParams, data: LabData, values: dict[str, float] | None = None, n_eval: int = 0,
          soc_max: float = 0.97) -> DriveFit:
    """Voltage RMSE / max error and SOC bookkeeping of the model ``p`` on a record (initial RC
    voltages and current offset from ``values`` if given, else 0)."""
    values = values or {}
    v, z = evaluate(p, data, *_record_args(values, p.capacity_ah))
    r = v - data.voltage_v
    gap = float(np.max(np.abs(z - data.soc_ref)))
    rf = r[data.soc_ref <= soc_max]
    return DriveFit(str(data.path), record_temp_c(data), dict(values or {}), float(np.sqrt(np.mean(r * r))),
                    float(np.max(np.abs(r))), gap, float(np.sqrt(np.mean(rf * rf))) if rf.size else float("nan"),
                    v, n_eval)
