"""Score a SOC estimator on a lab CSV against its ``soc_ref`` column (``bms eval``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from bms.labdata import DataError, LabData, load_csv
from bms.profile import Profile, load_profile
from bms.soc import estimator as est
from bms.soc.run import run_series

CONVERGE_BAND = 0.03  # |error| below 3 % SOC counts as converged
AFTER_S = 7200.0  # rmse_after_2h_pct window start


@dataclass
class EvalResult:
    time_s: np.ndarray
    soc_ref: np.ndarray
    soc_est: np.ndarray
    current_a: np.ndarray  # as fed to the estimator (perturbed)
    voltage_v: np.ndarray
    metrics: dict = field(default_factory=dict)


def index_at(data: LabData, start_s: float) -> int:
    """First sample at or after ``start_s`` (time relative to the file's first sample)."""
    rel = data.time_s - data.time_s[0]
    if not 0.0 <= start_s <= rel[-1]:
        raise DataError(f"{data.path}: --start-s {start_s} is outside the file (0..{rel[-1]:.0f} s)")
    return int(np.searchsorted(rel, start_s - 1e-9))


def rest_ends(data: LabData, min_rest_s: float = 300.0, rest_i_a: float = 0.1) -> list[tuple[float, float]]:
    """(time of the rest's end relative to the file start, soc_ref there) for every rest
    with |current| < rest_i_a lasting at least min_rest_s."""
    rest = np.abs(data.current_a) < rest_i_a
    out = []
    k = 0
    n = len(data)
    while k < n:
        if rest[k]:
            s = k
            while k + 1 < n and rest[k + 1]:
                k += 1
            if data.time_s[k] - data.time_s[s] >= min_rest_s and k + 1 < n:
                ref = math.nan if data.soc_ref is None else float(data.soc_ref[k])
                out.append((float(data.time_s[k] - data.time_s[0]), ref))
        k += 1
    return out


def rest_end_near(data: LabData, soc: float, min_rest_s: float = 300.0) -> float:
    """Start time (s) at the end of the rest whose end is closest to ``soc``."""
    ends = rest_ends(data, min_rest_s)
    if not ends:
        raise DataError(f"{data.path}: no rest of at least {min_rest_s:.0f} s")
    return min(ends, key=lambda e: abs(e[1] - soc))[0]


def metrics(time_s: np.ndarray, err: np.ndarray) -> dict:
    """rmse_pct, max_abs_pct, converge_s (time after which |err| stays < 3 %, None if never)
    and rmse_after_2h_pct (None when the run is shorter than 2 h)."""
    rel = time_s - time_s[0]
    a = np.abs(err)
    bad = np.flatnonzero(a >= CONVERGE_BAND)
    if bad.size == 0:
        conv = 0.0
    elif bad[-1] == a.size - 1:
        conv = None
    else:
        conv = float(rel[bad[-1] + 1])
    late = rel >= AFTER_S
    return {
        "rmse_pct": float(100 * np.sqrt(np.mean(err**2))),
        "max_abs_pct": float(100 * a.max()),
        "converge_s": conv,
        "rmse_after_2h_pct": float(100 * np.sqrt(np.mean(err[late] ** 2))) if late.any() else None,
    }


def evaluate(profile: str | Profile, data: str | LabData, estimator: str = "ekf", start_s: float = 0.0,
             soc_error: float | None = None, current_offset_a: float = 0.0, current_gain: float = 1.0,
             tuning: dict | None = None) -> EvalResult:
    prof = profile if isinstance(profile, Profile) else load_profile(profile)
    d = data if isinstance(data, LabData) else load_csv(data, require_soc_ref=True)
    if d.soc_ref is None:
        raise DataError(f"{d.path}: missing column soc_ref (needed to score an estimator)")
    if estimator not in est.ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; choose from {', '.join(est.ESTIMATORS)}")
    if not (math.isfinite(current_offset_a) and math.isfinite(current_gain) and current_gain > 0):
        raise ValueError("current offset must be finite and current gain a finite number > 0")
    d = d.slice(index_at(d, start_s))
    p = prof.params
    kind = est.ESTIMATORS[estimator].kind
    tune = est.tuning_vector(p, **(tuning or {}))
    x, P = est.new_state(1, p, tune)
    if soc_error is None:
        est.init_from_rest(p, tune, x, P, d.voltage_v[0], d.temperature_c[0])
    else:
        if not math.isfinite(soc_error) or abs(soc_error) > 1:
            raise ValueError(f"--soc-error {soc_error} must be within [-1, 1]")
        est.init_at_soc(p, tune, x, P, d.soc_ref[0] + soc_error, d.temperature_c[0])
    i_meas = np.ascontiguousarray(d.current_a * current_gain + current_offset_a)
    out = np.empty(len(d))
    run_series(kind, p, tune, x, P, d.time_s, i_meas, d.voltage_v, d.temperature_c, out)
    res = EvalResult(d.time_s, d.soc_ref, out, i_meas, d.voltage_v)
    res.metrics = metrics(d.time_s, out - d.soc_ref)
    return res


def plot(res: EvalResult, path: str, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    th = (res.time_s - res.time_s[0]) / 3600.0
    fig, ax = plt.subplots(4, 1, figsize=(10, 9), sharex=True)
    ax[0].plot(th, 100 * res.soc_ref, "k", lw=1.2, label="reference")
    ax[0].plot(th, 100 * res.soc_est, "C0", lw=1.0, label="estimate")
    ax[0].set_ylabel("SOC (%)")
    ax[0].legend(loc="best")
    ax[1].plot(th, 100 * (res.soc_est - res.soc_ref), "C3", lw=0.8)
    ax[1].axhline(3, color="grey", ls=":")
    ax[1].axhline(-3, color="grey", ls=":")
    ax[1].set_ylabel("error (% SOC)")
    ax[2].plot(th, res.current_a, "C2", lw=0.5)
    ax[2].set_ylabel("current (A, + charge)")
    ax[3].plot(th, res.voltage_v, "C4", lw=0.5)
    ax[3].set_ylabel("voltage (V)")
    ax[3].set_xlabel("time (h)")
    m = res.metrics
    fig.suptitle(f"{title}  RMSE {m['rmse_pct']:.2f} %  max {m['max_abs_pct']:.2f} %")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
