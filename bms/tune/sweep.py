"""``bms tune sweep``: search estimator tuning over datasets x perturbations.

Parameter sets (dicts of :data:`bms.soc.estimator.TUNING_DEFAULTS` keys) come from a grid or
from random sampling of a search space; they are scored in chunks by
:func:`bms.tune.kernel.sweep_kernel` (one compiled call per chunk and dataset, ``prange`` over
parameter sets x perturbations), locally or on a Dask cluster (``scheduler=ADDRESS``). Each
scored set is appended as one JSON line to the result file, so a sweep that stops resumes where
it was: sets whose key is already in the file are skipped.

Scores per set: ``accuracy`` = the mean over datasets of ``rmse_pct`` without perturbation (the
first perturbation), ``robustness`` = the worst ``max_abs_pct`` over every dataset and
perturbation, and ``score`` = the chosen metric aggregated over all runs by the objective
(``mean`` or ``worst``); lower is better for all three. A missing convergence (still out of the
band at the end) counts as the run's duration.

Search space specs (``--param``): ``key=v1,v2,...`` (a list), ``key=log:lo:hi:n`` or
``key=lin:lo:hi:n`` (n grid points; random search samples the range, log-uniformly for ``log``).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bms.profile import Profile
from bms.soc import estimator as est
from bms.tune import metrics as M
from bms.tune.datasets import Dataset
from bms.tune.ekf_lanes import LANES
from bms.tune.kernel import sweep_kernel
from bms.tune.perturb import Perturbation, Perturbed, apply

OBJECTIVES = ("mean", "worst")
SCORED = ("rmse_pct", "max_abs_pct", "worst_window_pct", "converge_s", "rmse_after_2h_pct")


@dataclass(frozen=True)
class Axis:
    key: str
    values: tuple[float, ...]  # grid values
    lo: float
    hi: float
    scale: str  # "list", "log", "lin"

    def sample(self, rng: np.random.Generator) -> float:
        if self.scale == "list":
            return float(self.values[rng.integers(len(self.values))])
        if self.scale == "log":
            return float(math.exp(rng.uniform(math.log(self.lo), math.log(self.hi))))
        return float(rng.uniform(self.lo, self.hi))


def parse_axis(spec: str) -> Axis:
    key, eq, rest = spec.partition("=")
    key = key.strip()
    if not eq or key not in est.TUNING_DEFAULTS:
        raise ValueError(f"--param {spec!r}: expected KEY=... with KEY one of {', '.join(est.TUNING_KEYS)}")
    try:
        if rest.startswith(("log:", "lin:")):
            scale, lo, hi, n = rest.split(":")
            lo, hi, n = float(lo), float(hi), int(n)
            if not (0 <= lo < hi and n >= 1) or (scale == "log" and lo <= 0):
                raise ValueError
            vals = np.geomspace(lo, hi, n) if scale == "log" else np.linspace(lo, hi, n)
            return Axis(key, tuple(float(v) for v in vals), lo, hi, scale)
        vals = tuple(float(v) for v in rest.split(","))
    except ValueError:
        raise ValueError(f"--param {spec!r}: expected KEY=v1,v2,... or KEY=log:LO:HI:N / lin:LO:HI:N "
                         "with 0 <= LO < HI (LO > 0 for log) and N >= 1") from None
    if not vals or any(not math.isfinite(v) or v < 0 for v in vals):
        raise ValueError(f"--param {spec!r}: values must be finite and >= 0")
    return Axis(key, vals, min(vals), max(vals), "list")


def grid(axes: list[Axis]) -> list[dict]:
    return [dict(zip([a.key for a in axes], combo)) for combo in itertools.product(*[a.values for a in axes])]


def random_sets(axes: list[Axis], n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{a.key: a.sample(rng) for a in axes} for _ in range(n)]


def set_key(params: dict) -> str:
    """Canonical key of a parameter set (12 significant digits)."""
    return ",".join(f"{k}={float(params[k]):.12g}" for k in sorted(params))


@dataclass
class Prepared:
    """One dataset with its perturbations applied, ready for the kernel (picklable)."""

    name: str
    time_s: np.ndarray
    soc_true: np.ndarray
    pm: Perturbed
    k_late: int
    win_n: int


def prepare(profile: Profile, datasets: list[Dataset], perts: list[Perturbation],
            window_s: float = M.WINDOW_S) -> list[Prepared]:
    return [Prepared(ds.name, ds.time_s, ds.soc_true, apply(profile.params, ds, perts), M.late_index(ds.time_s),
                     M.window_samples(ds.time_s, window_s)) for ds in datasets]


_KERNEL_LOCK = threading.Lock()


def score_chunk(kind: int, p, prepared: list[Prepared], tunes: np.ndarray) -> list[np.ndarray]:
    """Accumulators (m, q, NM) per dataset for the tuning vectors ``tunes`` (m, NT). Calls from
    several threads of one process (a threaded Dask worker) take turns: each call already uses
    every core, and numba's fallback threading layer must not be entered concurrently."""
    with _KERNEL_LOCK:
        return _score(kind, p, prepared, tunes)


def _score(kind, p, prepared, tunes):
    outs = []
    for d in prepared:
        out = np.zeros((tunes.shape[0], len(d.pm.names), M.NM))
        sweep_kernel(kind, p, tunes, d.time_s, d.soc_true, d.pm.i_meas, d.pm.v_meas, d.pm.temp_c, d.pm.z0,
                     d.pm.p0z_floor, d.pm.cap_ah, M.CONVERGE_BAND, d.k_late, d.win_n, out)
        outs.append(out)
    return outs


def _value(metrics: dict, name: str, duration_s: float) -> float:
    v = metrics[name]
    if v is None:
        return duration_s if name == "converge_s" else math.nan
    return float(v)


def records(sets: list[dict], prepared: list[Prepared], outs: list[np.ndarray], metric: str,
            objective: str) -> list[dict]:
    """One result record per parameter set (module docstring)."""
    many = [M.summarise_many(out, d.time_s) for d, out in zip(prepared, outs)]  # each metric (m, q)
    recs = []
    for r, params in enumerate(sets):
        runs, acc_nom, worst_max, vals = {}, [], 0.0, []
        for d, s in zip(prepared, many):
            dur = float(d.time_s[-1] - d.time_s[0])
            for j, pname in enumerate(d.pm.names):
                m = M.summarise(None, d.time_s, s, (r, j))
                runs[f"{d.name}|{pname}"] = {k: m[k] for k in SCORED}
                vals.append(_value(m, metric, dur))
                worst_max = max(worst_max, m["max_abs_pct"])
                if j == 0:
                    acc_nom.append(m["rmse_pct"])
        vals_a = np.array(vals)
        score = float(np.nanmean(vals_a) if objective == "mean" else np.nanmax(vals_a))
        recs.append({"key": set_key(params), "params": params, "score": score, "accuracy": float(np.mean(acc_nom)),
                     "robustness": float(worst_max), "runs": runs})
    return recs


def read_results(path: Path, meta: dict) -> list[dict]:
    """Records already in the result file (checked to be the same sweep), [] if none."""
    if not path.exists():
        return []
    out = []
    with open(path) as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                if n > 1:  # a line cut by a stop mid-write: the set is simply scored again
                    continue
                raise ValueError(f"{path}: line 1 is not JSON; not a sweep result file") from None
            if "meta" in obj:
                if obj["meta"] != meta:
                    diff = sorted(k for k in set(meta) | set(obj["meta"]) if meta.get(k) != obj["meta"].get(k))
                    raise ValueError(f"{path}: holds a different sweep (differs in {', '.join(diff)}); "
                                     "use another result file to start a new one")
            else:
                out.append(obj)
    return out


def pareto_front(recs: list[dict]) -> list[dict]:
    """Records not dominated in (accuracy, robustness), sorted by accuracy."""
    pts = sorted(recs, key=lambda r: (r["accuracy"], r["robustness"]))
    front, best_rob = [], math.inf
    for r in pts:
        if r["robustness"] < best_rob:
            front.append(r)
            best_rob = r["robustness"]
    return front


def plot_pareto(recs: list[dict], path: str | Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    front = pareto_front(recs)
    best = min(recs, key=lambda r: r["score"])
    fig, ax = plt.subplots(figsize=(7, 5))
    ax.scatter([r["accuracy"] for r in recs], [r["robustness"] for r in recs], s=12, c="0.6", label="parameter sets")
    ax.plot([r["accuracy"] for r in front], [r["robustness"] for r in front], "C3o-", ms=5, label="Pareto front")
    ax.plot([best["accuracy"]], [best["robustness"]], "k*", ms=14, label="best score")
    ax.set_xlabel("accuracy: nominal RMSE, mean over datasets (% SOC)")
    ax.set_ylabel("robustness: worst max |error| over perturbations (% SOC)")
    ax.set_title(title or f"{len(recs)} parameter sets")
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_sweep(profile: Profile, datasets: list[Dataset], perts: list[Perturbation], sets: list[dict],
              out_path: str | Path, estimator: str = "ekf", base: dict | None = None, metric: str = "rmse_pct",
              objective: str = "mean", chunk: int | None = None, scheduler: str | None = None,
              progress: bool = True, window_s: float = M.WINDOW_S) -> list[dict]:
    """Score every set not yet in ``out_path``; returns all records of the sweep."""
    if metric not in SCORED:
        raise ValueError(f"metric {metric!r}: choose from {', '.join(SCORED)}")
    if objective not in OBJECTIVES:
        raise ValueError(f"objective {objective!r}: choose from {', '.join(OBJECTIVES)}")
    kind = est.ESTIMATORS[estimator].kind
    base = dict(base or {})
    p = profile.params
    meta = {"profile": profile.name, "estimator": estimator, "base": base, "metric": metric, "objective": objective,
            "datasets": [d.name for d in datasets], "lengths": [len(d) for d in datasets],
            "perturbations": [pt.as_dict() for pt in perts], "window_s": window_s}
    path = Path(out_path)
    done = read_results(path, meta)
    seen = {r["key"] for r in done}
    todo, keys = [], set()
    for s in sets:
        k = set_key(s)
        if k not in seen and k not in keys:
            keys.add(k)
            todo.append(s)
    if not path.exists() or path.stat().st_size == 0:
        path.write_text(json.dumps({"meta": meta}) + "\n")
    if not todo:
        return done
    prepared = prepare(profile, datasets, perts, window_s)
    tunes = np.stack([est.tuning_vector(p, **{**base, **s}) for s in todo])
    # whole blocks of SIMD lanes, one per core: the EKF kernel pads a short block with copies,
    # so a chunk of 8 costs as much as 16 (32.8 vs 14.7 ns CPU per filter-step measured)
    chunk = chunk or LANES * (os.cpu_count() or 1)
    chunks = [(i, min(i + chunk, len(todo))) for i in range(0, len(todo), chunk)]
    bar = _bar(len(todo), len(done), progress)
    try:
        with open(path, "a") as fh:
            for (lo, hi), outs in _scored(chunks, kind, p, prepared, tunes, scheduler):
                for rec in records(todo[lo:hi], prepared, outs, metric, objective):
                    fh.write(json.dumps(rec) + "\n")
                    done.append(rec)
                fh.flush()
                bar.update(hi - lo)
    finally:
        bar.close()
    return done


def _bar(total: int, initial: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total + initial, initial=initial, unit="set", desc="sweep", disable=not enabled)


def _scored(chunks, kind, p, prepared, tunes, scheduler):
    """Yield ((lo, hi), accumulators per dataset) as chunks finish, locally or on Dask."""
    if scheduler is None:
        for lo, hi in chunks:
            yield (lo, hi), score_chunk(kind, p, prepared, tunes[lo:hi])
        return
    from dask.distributed import Client, as_completed

    with Client(scheduler) as client:
        p_f, prep_f = client.scatter([p, prepared], broadcast=True)
        futs = {client.submit(score_chunk, kind, p_f, prep_f, tunes[lo:hi], pure=False): (lo, hi) for lo, hi in chunks}
        for fut in as_completed(futs):
            yield futs[fut], fut.result()


def best_spec(estimator: str, base: dict, rec: dict) -> str:
    """The best set as an estimator spec for ``bms tune eval --estimator``."""
    params = {**base, **rec["params"]}
    return estimator + (":" + ",".join(f"{k}={v:.6g}" for k, v in sorted(params.items())) if params else "")
