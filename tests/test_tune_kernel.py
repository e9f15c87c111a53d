"""Sweep kernel and metrics: the kernel's accumulated metrics equal those of the single-run path
(bms.evaluate.evaluate and bms tune eval), and the accumulators equal direct NumPy definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bms.evaluate import evaluate
from bms.labdata import load_csv
from bms.profile import load_profile
from bms.soc import estimator as est
from bms.tune import metrics as M
from bms.tune.datasets import load_dataset
from bms.tune.evalrun import evaluate_matrix, parse_estimator
from bms.tune.kernel import sweep_kernel
from bms.tune.perturb import PRESETS, Perturbation, apply, parse

DATA = "winston_lfp100/udds_P25.csv.gz"


@pytest.fixture(scope="module")
def prof():
    return load_profile("winston_lfp100")


@pytest.fixture(scope="module")
def ds(prof):
    return load_dataset(f"{DATA},start=3000,duration=9000,every=2", prof)


def _kernel(prof, ds, tunes, perts, kind=1):
    p = prof.params
    pm = apply(p, ds, perts)
    out = np.zeros((tunes.shape[0], len(perts), M.NM))
    sweep_kernel(kind, p, tunes, ds.time_s, ds.soc_true, pm.i_meas, pm.v_meas, pm.temp_c, pm.z0, pm.p0z_floor,
                 pm.cap_ah, M.CONVERGE_BAND, M.late_index(ds.time_s),
                 M.window_samples(ds.time_s), out)
    return out


def test_kernel_equals_single_run_paths(prof, ds):
    """Same numbers from the prange kernel, from bms tune eval and from bms.evaluate.evaluate."""
    perts = [PRESETS["nominal"], PRESETS["soc-20"], parse("current_offset_a=1.5,current_gain=1.01,name=i")]
    over = {"q_soc_per_s": 1e-9}
    tunes = np.stack([est.tuning_vector(prof.params), est.tuning_vector(prof.params, **over)])
    out = _kernel(prof, ds, tunes, perts)
    runs = evaluate_matrix(prof, [ds], [parse_estimator("ekf"), parse_estimator("ekf:q_soc_per_s=1e-9")], perts)
    lab = load_csv(DATA, require_soc_ref=True)
    lab = lab.slice(int(np.searchsorted(lab.time_s - lab.time_s[0], 3000.0)))
    for r, run in enumerate(runs):
        i, j = divmod(r, len(perts))
        got = M.summarise(out[i, j], ds.time_s)
        for key in ("rmse_pct", "max_abs_pct", "worst_window_pct"):
            assert got[key] == pytest.approx(run.metrics[key], rel=1e-9, abs=1e-12)
        assert got["converge_s"] == run.metrics["converge_s"]
        for a, b in zip(got["band_rmse_pct"], run.metrics["band_rmse_pct"]):
            assert (a is None and b is None) or a == pytest.approx(b, rel=1e-9)
    # the public single-run API on the same (decimated) samples
    sub = type(lab)(lab.path, ds.time_s, ds.current_a, ds.voltage_v, ds.temp_c, ds.soc_true, {})
    for j, kw in enumerate(({}, {"soc_error": -0.2}, {"current_offset_a": 1.5, "current_gain": 1.01})):
        ref = evaluate(prof, sub, "ekf", **kw).metrics
        got = M.summarise(out[0, j], ds.time_s)
        assert got["rmse_pct"] == pytest.approx(ref["rmse_pct"], rel=1e-9)
        assert got["max_abs_pct"] == pytest.approx(ref["max_abs_pct"], rel=1e-9)
        assert got["converge_s"] == ref["converge_s"]


def test_kernel_perturbations_change_results(prof, ds):
    """Each perturbation reaches the estimator: its metrics differ from the nominal run."""
    names = ["nominal", "ioff+1%C", "igain+2%", "vnoise5mV", "voff+5mV", "temp+5C", "fade10%", "soc+20"]
    tunes = est.tuning_vector(prof.params)[None, :]
    out = _kernel(prof, ds, tunes, [PRESETS[n] for n in names])
    nominal = out[0, 0, M.M_SSE]
    for j in range(1, len(names)):
        assert out[0, j, M.M_SSE] != nominal, names[j]
    cc = _kernel(prof, ds, tunes, [PRESETS["nominal"]], kind=0)
    assert cc[0, 0, M.M_SSE] != nominal


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-0.5, 0.5), min_size=1, max_size=60), st.integers(1, 12), st.floats(0.005, 0.2),
       st.integers(0, 70))
def test_accumulators_match_numpy(errs, win_n, band, k_late):
    err = np.array(errs)
    z_true = np.linspace(0.0, 1.0, err.size)
    acc = np.zeros(M.NM)
    M.accumulate(err, z_true, band, k_late, win_n, acc)
    assert acc[M.M_N] == err.size
    assert acc[M.M_SSE] == pytest.approx(np.sum(err**2))
    assert acc[M.M_MAX] == pytest.approx(np.max(np.abs(err)))
    bad = np.flatnonzero(np.abs(err) >= band)
    assert acc[M.M_LAST_BAD] == (bad[-1] if bad.size else -1)
    assert acc[M.M_SSE_LATE] == pytest.approx(np.sum(err[k_late:] ** 2))
    if err.size >= win_n:
        worst = max(math.sqrt(np.mean(err[k:k + win_n] ** 2)) for k in range(err.size - win_n + 1))
    else:
        worst = math.sqrt(np.mean(err**2))
    assert acc[M.M_WORST_WIN] == pytest.approx(worst, rel=1e-7, abs=1e-9)
    b = np.minimum((z_true * 10).astype(int), 9)
    for k in range(10):
        assert acc[M.M_BAND_N + k] == np.sum(b == k)
        assert acc[M.M_BAND_SSE + k] == pytest.approx(np.sum(err[b == k] ** 2))


def test_summary_convergence_rules():
    t = np.arange(5.0)
    acc = np.zeros(M.NM)
    M.accumulate(np.array([0.1, 0.05, 0.01, 0.0, 0.0]), np.full(5, 0.5), 0.03, 0, 2, acc)
    assert M.summarise(acc, t)["converge_s"] == 2.0
    M.accumulate(np.array([0.0, 0.0, 0.0, 0.0, 0.05]), np.full(5, 0.5), 0.03, 0, 2, acc)
    assert M.summarise(acc, t)["converge_s"] is None
    M.accumulate(np.zeros(5), np.full(5, 0.5), 0.03, 9, 2, acc)
    s = M.summarise(acc, t)
    assert s["converge_s"] == 0.0 and s["rmse_after_2h_pct"] is None
    assert s["band_rmse_pct"][5] == 0.0 and s["band_rmse_pct"][0] is None


@pytest.mark.parametrize("spec, msg", [
    ("soc_error=2", "within"), ("current_gain=0", "> 0"), ("bogus=1", "preset"), ("soc_error=abc", "number"),
    ("capacity_fade=0.95", "capacity_fade"), ("voltage_noise_v=-1", ">= 0"), ("current_offset_a=nan", "finite"),
])
def test_bad_perturbations_are_rejected(spec, msg):
    with pytest.raises(ValueError, match=msg):
        parse(spec)


def test_perturbation_parse_and_apply(prof, ds):
    pt = parse("current_offset_c=0.01,voltage_noise_v=0.002,seed=3,capacity_fade=0.2,temp_offset_c=-4")
    assert pt.name.startswith("current_offset_c") and pt.seed == 3
    pm = apply(prof.params, ds, [Perturbation(), pt, pt])
    assert np.allclose(pm.i_meas[1] - ds.current_a, 0.01 * prof.capacity_ah)
    assert np.std(pm.v_meas[1] - ds.voltage_v) == pytest.approx(0.002, rel=0.1)
    assert np.array_equal(pm.v_meas[1], pm.v_meas[2])  # seeded: reproducible
    assert np.allclose(pm.temp_c[1], ds.temp_c - 4)
    assert pm.cap_ah[1] == pytest.approx(prof.capacity_ah / 0.8)
    assert pm.p0z_floor[0] >= 0 and 0 <= pm.z0[0] <= 1
