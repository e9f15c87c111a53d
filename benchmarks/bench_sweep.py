"""Tuning sweep throughput: the prange kernel (bms.tune.sweep; the EKF in SIMD lanes,
bms.tune.ekf_lanes) vs a Python loop calling the public single-run API bms.evaluate.evaluate
once per (parameter set, perturbation), same work (same data, sets and perturbations), timed in
the same run. Targets: >= 50e6 filter-steps/s and >= 10x the loop (wall time, median). The
kernel's CPU time per filter-step (all threads, median) is printed too: on a loaded machine
it shows what the wall figures cannot."""

from __future__ import annotations

import time

import numpy as np

from benchmarks._timing import figure, median_seconds
from bms.evaluate import evaluate
from bms.labdata import load_csv
from bms.profile import load_profile
from bms.soc import estimator as est
from bms.tune import metrics as M
from bms.tune.datasets import Dataset
from bms.tune.perturb import Perturbation
from bms.tune.sweep import prepare, random_sets, parse_axis, records, score_chunk

N_SAMPLES = 20000
N_SETS = 16
PERTS = [Perturbation(), Perturbation("soc-20", soc_error=-0.2), Perturbation("ioff", current_offset_a=1.0),
         Perturbation("igain", current_gain=1.02)]
EVAL_KW = [{}, {"soc_error": -0.2}, {"current_offset_a": 1.0}, {"current_gain": 1.02}]


def run() -> dict:
    prof = load_profile("winston_lfp100")
    p = prof.params
    lab = load_csv("winston_lfp100/udds_P25.csv.gz", require_soc_ref=True).slice(3000, 3000 + N_SAMPLES)
    ds = Dataset("udds_P25", "lab", lab.time_s, lab.current_a, lab.voltage_v, lab.temperature_c, lab.soc_ref, "soc_ref")
    sets = random_sets([parse_axis("q_soc_per_s=log:1e-11:1e-8:4"), parse_axis("r_v2=log:1e-5:1e-3:3"),
                        parse_axis("q_bias_a2_per_s=log:1e-9:1e-6:2")], N_SETS, seed=0)
    tunes = np.stack([est.tuning_vector(p, **s) for s in sets])
    prepared = prepare(prof, [ds], PERTS)
    steps = N_SETS * len(PERTS) * N_SAMPLES

    def kernel_only():
        score_chunk(est.EST_EKF, p, prepared, tunes)

    def sweep():  # kernel + the per-set summaries that go to the result file
        return records(sets, prepared, score_chunk(est.EST_EKF, p, prepared, tunes), "rmse_pct", "mean")

    def loop():
        out = []
        for s in sets:
            for kw in EVAL_KW:
                out.append(evaluate(prof, lab, "ekf", tuning=s, **kw).metrics["rmse_pct"])
        return out

    # same work: the two paths agree on every run
    recs = sweep()
    ref = loop()
    got = [recs[i]["runs"][f"udds_P25|{pt.name}"]["rmse_pct"] for i in range(N_SETS) for pt in PERTS]
    assert np.allclose(got, ref, rtol=1e-9), "sweep and evaluate() disagree"
    t_kernel = median_seconds(kernel_only, repeat=5)
    cpu_kernel = median_seconds(kernel_only, repeat=5, clock=time.process_time)
    t_sweep = median_seconds(sweep, repeat=5)
    t_loop = median_seconds(loop, repeat=3)
    return {
        "sweep_kernel_filter_steps_per_s": figure(steps / t_kernel, "filter-steps/s",
                                                  note=f"{N_SETS} sets x {len(PERTS)} perturbations x {N_SAMPLES} "
                                                       "samples, EKF, all cores (target >= 50e6)"),
        "sweep_kernel_cpu_ns_per_filter_step": figure(cpu_kernel / steps * 1e9, "ns CPU",
                                                      note="CPU time of all threads per filter-step"),
        "sweep_vs_evaluate_loop": figure(steps / t_sweep, "filter-steps/s", baseline=steps / t_loop,
                                         ratio=t_loop / t_sweep,
                                         note="sweep (kernel + summaries) vs Python loop over bms.evaluate.evaluate "
                                              "per set and perturbation (target >= 10x)"),
    }


if __name__ == "__main__":  # pragma: no cover
    import json

    print(json.dumps(run(), indent=2))
