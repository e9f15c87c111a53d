"""bms tune sweep: search spaces, scores equal to the single-run path, resume from the result
file, Pareto front, and the same results through a local Dask cluster."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bms.profile import load_profile
from bms.tune.datasets import load_dataset
from bms.tune.evalrun import evaluate_matrix, parse_estimator
from bms.tune.perturb import PRESETS
from bms.tune.sweep import (best_spec, grid, pareto_front, parse_axis, plot_pareto, random_sets, run_sweep,
                            set_key)

PERTS = [PRESETS[n] for n in ("nominal", "soc-20", "ioff+1%C")]


@pytest.fixture(scope="module")
def prof():
    return load_profile("winston_lfp100")


@pytest.fixture(scope="module")
def datasets(prof):
    return [load_dataset("winston_lfp100/udds_P25.csv.gz,start=3000,duration=6000,every=3", prof),
            load_dataset("winston_lfp100/udds_P05_approx.csv.gz,start=3000,duration=6000,every=3", prof)]


AXES = ["q_soc_per_s=log:1e-11:1e-8:3", "r_v2=1e-4,1e-3"]


def test_axes_grid_and_random():
    axes = [parse_axis(a) for a in AXES]
    g = grid(axes)
    assert len(g) == 6 and g[0] == {"q_soc_per_s": pytest.approx(1e-11), "r_v2": 1e-4}
    r = random_sets(axes, 50, seed=1)
    assert r == random_sets(axes, 50, seed=1)
    q = np.array([s["q_soc_per_s"] for s in r])
    assert q.min() >= 1e-11 and q.max() <= 1e-8 and len(set(q)) == 50
    assert {s["r_v2"] for s in r} <= {1e-4, 1e-3}
    lin = parse_axis("rest_s=lin:300:900:3")
    assert lin.values == (300.0, 600.0, 900.0)
    for bad in ("nokey=1", "r_v2=log:0:1:3", "r_v2=lin:2:1:3", "r_v2=a,b", "r_v2=-1", "r_v2=log:1:2"):
        with pytest.raises(ValueError, match="--param"):
            parse_axis(bad)


def test_sweep_scores_match_eval_and_resume(tmp_path, prof, datasets):
    sets = grid([parse_axis(a) for a in AXES])
    out = tmp_path / "sweep.jsonl"
    first = run_sweep(prof, datasets, PERTS, sets[:4], out, chunk=3, progress=False)
    assert len(first) == 4
    allr = run_sweep(prof, datasets, PERTS, sets, out, chunk=3, progress=False)  # resumes: 2 new sets
    lines = out.read_text().splitlines()
    assert len(lines) == 1 + 6 and "meta" in json.loads(lines[0])
    assert [r["key"] for r in allr] == [set_key(s) for s in sets]
    # a stop in the middle of a line: that set is scored again, the rest is kept
    out.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][: len(lines[-1]) // 2])
    again = run_sweep(prof, datasets, PERTS, sets, out, progress=False)
    assert sorted(r["key"] for r in again) == sorted(r["key"] for r in allr)
    assert {r["key"]: r["score"] for r in again} == {r["key"]: r["score"] for r in allr}
    # every run's metrics equal bms tune eval's for that parameter set
    rec = allr[5]
    spec = best_spec("ekf", {}, rec)
    runs = evaluate_matrix(prof, datasets, [parse_estimator(spec)], PERTS)
    for run in runs:
        got = rec["runs"][f"{run.dataset}|{run.perturbation}"]
        assert got["rmse_pct"] == pytest.approx(run.metrics["rmse_pct"], rel=1e-6)
        assert got["max_abs_pct"] == pytest.approx(run.metrics["max_abs_pct"], rel=1e-6)
    nominal = [r.metrics["rmse_pct"] for r in runs if r.perturbation == "nominal"]
    assert rec["accuracy"] == pytest.approx(np.mean(nominal), rel=1e-6)
    assert rec["robustness"] == pytest.approx(max(r.metrics["max_abs_pct"] for r in runs), rel=1e-6)
    assert rec["score"] == pytest.approx(np.mean([r.metrics["rmse_pct"] for r in runs]), rel=1e-6)
    # tuning matters: the scores differ across the grid
    assert len({round(r["score"], 6) for r in allr}) > 3


def test_sweep_refuses_a_different_sweep_in_the_file(tmp_path, prof, datasets):
    out = tmp_path / "s.jsonl"
    sets = grid([parse_axis("r_v2=1e-4")])
    run_sweep(prof, datasets[:1], PERTS[:1], sets, out, progress=False)
    with pytest.raises(ValueError, match="different sweep .*metric"):
        run_sweep(prof, datasets[:1], PERTS[:1], sets, out, metric="max_abs_pct", progress=False)
    with pytest.raises(ValueError, match="metric"):
        run_sweep(prof, datasets[:1], PERTS[:1], sets, tmp_path / "t.jsonl", metric="bogus", progress=False)


def test_pareto_plot(tmp_path, prof, datasets):
    recs = run_sweep(prof, datasets[:1], PERTS, random_sets([parse_axis(a) for a in AXES], 5), tmp_path / "r.jsonl",
                     progress=False)
    png = plot_pareto(recs, tmp_path / "pareto.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 10), st.floats(0, 10)), min_size=1, max_size=30))
def test_pareto_front_is_the_non_dominated_set(pts):
    recs = [{"accuracy": a, "robustness": b} for a, b in pts]
    front = pareto_front(recs)
    for f in front:
        assert not any(r["accuracy"] <= f["accuracy"] and r["robustness"] <= f["robustness"]
                       and (r["accuracy"], r["robustness"]) != (f["accuracy"], f["robustness"]) for r in recs)
    for r in recs:
        assert any(f["accuracy"] <= r["accuracy"] and f["robustness"] <= r["robustness"] for f in front)


def test_dask_cluster_gives_the_same_results(tmp_path, prof, datasets):
    from dask.distributed import LocalCluster

    sets = grid([parse_axis(a) for a in AXES])
    local = run_sweep(prof, datasets, PERTS, sets, tmp_path / "local.jsonl", chunk=2, progress=False)
    with LocalCluster(n_workers=2, processes=False, threads_per_worker=1, dashboard_address=None) as cluster:
        dist = run_sweep(prof, datasets, PERTS, sets, tmp_path / "dask.jsonl", chunk=2, scheduler=cluster.scheduler_address,
                         progress=False)
    assert {r["key"]: r["score"] for r in dist} == {r["key"]: r["score"] for r in local}
    assert {r["key"]: r["runs"] for r in dist} == {r["key"]: r["runs"] for r in local}
