"""``bms tune eval``: estimators x datasets x perturbations, each run scored with
:mod:`bms.tune.metrics`.

Estimator specs: ``ekf``, ``cc``, or a tuned variant ``ekf:q_soc_per_s=1e-9,r_v2=4e-4`` (keys of
:data:`bms.soc.estimator.TUNING_DEFAULTS`; ``bms tune sweep`` prints the best set in this form).
Each run starts the estimator as :func:`bms.evaluate.evaluate` does and feeds the whole series
to :func:`bms.soc.run.run_series` (the firmware's estimator step).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bms.profile import Profile
from bms.soc import estimator as est
from bms.soc.layout import ICAP, IVHOLD, PZ, T_P0Z
from bms.soc.run import run_series
from bms.tune.datasets import Dataset
from bms.tune.metrics import WINDOW_S, series_metrics
from bms.tune.perturb import Perturbation, Perturbed, apply


@dataclass(frozen=True)
class EstimatorChoice:
    label: str
    name: str
    tuning: dict = field(default_factory=dict)

    @property
    def kind(self) -> int:
        return est.ESTIMATORS[self.name].kind


def parse_estimator(spec: str) -> EstimatorChoice:
    """``name`` or ``name:key=value,...`` (tuning overrides, checked against TUNING_DEFAULTS)."""
    name, _, rest = spec.partition(":")
    name = name.strip()
    if name not in est.ESTIMATORS:
        raise ValueError(f"estimator {spec!r}: unknown {name!r}; choose from {', '.join(est.ESTIMATORS)}")
    tuning = {}
    for part in filter(None, (s.strip() for s in rest.split(","))):
        k, eq, v = part.partition("=")
        if not eq:
            raise ValueError(f"estimator {spec!r}: {part!r} is not key=value")
        try:
            tuning[k.strip()] = float(v)
        except ValueError:
            raise ValueError(f"estimator {spec!r}: {k}={v!r} is not a number") from None
    unknown = set(tuning) - set(est.TUNING_DEFAULTS)
    if unknown:
        raise ValueError(f"estimator {spec!r}: unknown tuning key(s) {sorted(unknown)}; "
                         f"known: {', '.join(est.TUNING_KEYS)}")
    return EstimatorChoice(spec.strip(), name, tuning)


def run_one(p, kind: int, tune: np.ndarray, ds: Dataset, pm: Perturbed, j: int) -> np.ndarray:
    """SOC estimate series of perturbation ``j`` (initialised as the sweep kernel does)."""
    x, P = est.new_state(1, p, tune)
    est.init_at_soc(p, tune, x, P, pm.z0[j], pm.temp_c[j, 0])
    if pm.p0z_floor[j] >= 0:
        P[0, PZ, PZ] = max(tune[T_P0Z], pm.p0z_floor[j])
        x[0, IVHOLD] = pm.v_meas[j, 0]
    x[0, ICAP] = pm.cap_ah[j]
    out = np.empty(len(ds))
    run_series(kind, p, tune, x, P, ds.time_s, np.ascontiguousarray(pm.i_meas[j]),
               np.ascontiguousarray(pm.v_meas[j]), np.ascontiguousarray(pm.temp_c[j]), out)
    return out


@dataclass
class Run:
    estimator: str
    dataset: str
    perturbation: str
    metrics: dict
    time_s: np.ndarray
    soc_true: np.ndarray
    soc_est: np.ndarray

    def row(self) -> dict:
        return {"estimator": self.estimator, "dataset": self.dataset, "perturbation": self.perturbation,
                **self.metrics}


def evaluate_matrix(profile: Profile, datasets: list[Dataset], estimators: list[EstimatorChoice],
                    perturbations: list[Perturbation], window_s: float = WINDOW_S) -> list[Run]:
    """Every estimator on every dataset under every perturbation."""
    p = profile.params
    runs = []
    for ds in datasets:
        pm = apply(p, ds, perturbations)
        for ec in estimators:
            tune = est.tuning_vector(p, **ec.tuning)
            for j, pt in enumerate(perturbations):
                z = run_one(p, ec.kind, tune, ds, pm, j)
                runs.append(Run(ec.label, ds.name, pt.name, series_metrics(ds.time_s, z, ds.soc_true, window_s),
                                ds.time_s, ds.soc_true, z))
    return runs


def _fmt(v, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def table(runs: list[Run]) -> str:
    """Plain-text table, one line per run."""
    w_e = max([9] + [len(r.estimator) for r in runs])
    w_d = max([7] + [len(r.dataset) for r in runs])
    w_p = max([12] + [len(r.perturbation) for r in runs])
    head = (f"{'estimator':{w_e}s}  {'dataset':{w_d}s}  {'perturbation':{w_p}s}  {'RMSE %':>7s} {'max %':>7s} "
            f"{'conv s':>7s} {'RMSE>2h':>7s} {'worst10m':>8s}  worst band")
    lines = [head, "-" * len(head)]
    for r in runs:
        m = r.metrics
        bands = [(b, v) for b, v in enumerate(m["band_rmse_pct"]) if v is not None]
        wb = max(bands, key=lambda t: t[1]) if bands else None
        wbs = "-" if wb is None else f"{10 * wb[0]}-{10 * wb[0] + 10}% SOC: {wb[1]:.2f} %"
        lines.append(f"{r.estimator:{w_e}s}  {r.dataset:{w_d}s}  {r.perturbation:{w_p}s}  {m['rmse_pct']:7.2f} "
                     f"{m['max_abs_pct']:7.2f} {_fmt(m['converge_s'], '.0f'):>7s} {_fmt(m['rmse_after_2h_pct']):>7s} "
                     f"{m['worst_window_pct']:8.2f}  {wbs}")
    return "\n".join(lines)
