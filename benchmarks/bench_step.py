"""The full firmware step (bms.core.step) for the 192-cell reference pack at a 10 ms task
period, vs the same step in NumPy (benchmarks/numpy_step.py) on the same inputs, timed in the
same run. The two implementations' decisions (state, contactors, fault / warning bits, number
of bleeding cells) are checked equal over the run.

The SOC estimator (EKF) runs inside the step on its own 1 s period (every 100th step here).
Figures: the step with the loop inside numba (the firmware's own cost), and one core.step call
per step from Python (adds numba's argument dispatch, which the node pays). Times are medians
of CPU time of this thread (``time.thread_time``: one core's work, robust when the machine is
shared); wall-clock figures are given beside them."""

from __future__ import annotations

import copy
import functools
import os
import statistics
import time
from pathlib import Path

import numba as nb
import numpy as np

from benchmarks._timing import figure, median_seconds
from benchmarks.numpy_step import numpy_step
from bms import core, kernel_cache
from bms import layout as L
from bms.pack import load_pack

kernel_cache.check(Path(__file__).parent / "__pycache__", ("bench_step",))  # run_compiled links core.step

N_STEPS = 1000
DT_S = 0.01


def _scenario(prm, seed=0):
    rng = np.random.default_rng(seed)
    n, nt = int(prm.pp[L.P_N_SERIES]), int(prm.pp[L.P_N_TEMPS])
    i_a = np.repeat(rng.uniform(-300.0, 200.0, N_STEPS // 50), 50)
    cell_v = 3.3 + 0.0006 * i_a[:, None] + rng.normal(0.0, 0.002, (N_STEPS, n))
    temp_c = 25.0 + rng.normal(0.0, 0.3, (N_STEPS, nt))
    return i_a, cell_v, temp_c


def _ready(prm):
    """State and inputs of a pack in DRIVE (plant: bus follows the pack, feedback follows)."""
    st, inp = core.new_state(prm), core.new_inputs(prm)
    inp.cell_v[:] = 3.3
    inp.board_valid[:] = True
    inp.board_age_s[:] = 0.02
    inp.temp_c[:] = 25.0
    inp.temp_valid[:] = True
    inp.temp_age_s[:] = 0.02
    u = inp.u
    u[[L.U_ISENSE_VALID, L.U_HV_VALID, L.U_VCU_VALID, L.U_CHARGER_CONNECTED, L.U_CONTACTOR_FB_VALID]] = 1.0
    u[L.U_CONTACTOR_FB_AGE_S] = 0.005
    u[L.U_ISENSE_AGE_S], u[L.U_VCU_AGE_S] = 0.005, 0.02
    u[L.U_VCU_REQUEST] = L.REQ_DRIVE
    core.initialise(st, prm, inp)
    for _ in range(300):
        u[L.U_PACK_V] = u[L.U_BUS_V] = inp.cell_v.sum()
        u[L.U_CONTACTOR_FB] = st.out[L.Y_CONTACTORS]
        core.step(st, inp, prm, DT_S)
    assert st.out[L.Y_STATE] == L.ST_DRIVE, st.out[L.Y_STATE]
    return st, inp


def _runner(make_step, st0, inp0, prm, scen, log=None):
    """A run over the scenario from copies of the ready state; ``make_step(st, inp, prm)``
    returns the per-step callable f(dt_s)."""
    i_a, cell_v, temp_c = scen

    def run():
        st, inp = copy.deepcopy(st0), copy.deepcopy(inp0)
        f = make_step(st, inp, prm)
        u = inp.u
        for k in range(N_STEPS):
            inp.cell_v[:] = cell_v[k]
            inp.temp_c[:] = temp_c[k]
            u[L.U_PACK_I_A] = i_a[k]
            u[L.U_PACK_V] = u[L.U_BUS_V] = inp.cell_v.sum()
            u[L.U_CONTACTOR_FB] = st.out[L.Y_CONTACTORS]
            f(DT_S)
            if log is not None:
                log.append(st.out[[L.Y_STATE, L.Y_CONTACTORS, L.Y_FAULT_BITS, L.Y_WARN_BITS, L.Y_N_BLEEDING]].copy())
        return st

    return run


def _plain(st, inp, prm):
    return functools.partial(core.step, st, inp, prm)


def _numpy(st, inp, prm):
    return functools.partial(numpy_step, st, inp, prm)


def cpu_seconds(fn, repeat=5):
    """Median CPU time of this thread per call of ``fn`` (after one warm-up call)."""
    fn()
    samples = []
    for _ in range(repeat):
        t0 = time.thread_time()
        fn()
        samples.append(time.thread_time() - t0)
    return statistics.median(samples)


def run() -> dict:
    prm = load_pack("heavy_duty_192s").params()
    n = int(prm.pp[L.P_N_SERIES])
    st0, inp0 = _ready(prm)
    scen = _scenario(prm)
    log_nb, log_np = [], []
    _runner(_plain, st0, inp0, prm, scen, log_nb)()
    _runner(_numpy, st0, inp0, prm, scen, log_np)()
    same = np.array_equal(np.array(log_nb), np.array(log_np))

    def kernel():
        st, inp = copy.deepcopy(st0), copy.deepcopy(inp0)
        run_compiled(st, inp, prm, *scen, DT_S)

    call_nb, call_np = _runner(_plain, st0, inp0, prm, scen), _runner(_numpy, st0, inp0, prm, scen)
    call_bound = _runner(core.bind, st0, inp0, prm, scen)
    t_kernel = cpu_seconds(kernel) / N_STEPS
    t_call = cpu_seconds(call_nb) / N_STEPS
    t_bound = cpu_seconds(call_bound) / N_STEPS
    t_np = cpu_seconds(call_np, repeat=3) / N_STEPS
    w_kernel = median_seconds(kernel, repeat=5) / N_STEPS
    w_call = median_seconds(call_nb, repeat=5) / N_STEPS
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    est_every = int(round(prm.pp[L.P_TASK_SLOW_S] / DT_S))
    note = f"{n} cells, {DT_S * 1e3:g} ms step, EKF every {est_every} steps, CPU time; load average {load:.1f}"
    return {
        "step_cell_steps_per_s": figure(n / t_kernel, "cell-steps/s", note=note + " (target >= 10e6)"),
        "step_us": figure(t_kernel * 1e6, "us/step", note="loop inside numba, CPU time (target <= ~20 us)"),
        "step_us_wall": figure(w_kernel * 1e6, "us/step", note="same, wall clock (inflated when the machine is shared)"),
        "step_python_call_us": figure(t_call * 1e6, "us/step",
                                      note=f"one core.step call from Python per step incl. input copy, CPU time (wall {w_call * 1e6:.0f} us)"),
        "step_bound_call_us": figure(t_bound * 1e6, "us/step",
                                     note="the same through core.bind (overload resolved once), CPU time"),
        "step_vs_numpy": figure(n / t_call, "cell-steps/s", baseline=n / t_np, ratio=t_np / t_call,
                                note=f"both called from Python per step, same inputs, CPU time; decisions equal: {same} (target >= 20x)"),
        "step_kernel_vs_numpy": figure(n / t_kernel, "cell-steps/s", baseline=n / t_np, ratio=t_np / t_kernel,
                                       note="loop inside numba vs the NumPy step"),
    }


@nb.njit(cache=True)
def run_compiled(st, inp, prm, i_a, cell_v, temp_c, dt_s):
    """The same loop as ``_runner`` with the loop and the input writes inside numba: the cost
    of the firmware step itself, without the Python call boundary."""
    u = inp.u
    for k in range(i_a.shape[0]):
        inp.cell_v[:] = cell_v[k]
        inp.temp_c[:] = temp_c[k]
        u[L.U_PACK_I_A] = i_a[k]
        v = 0.0
        for c in range(inp.cell_v.shape[0]):
            v += inp.cell_v[c]
        u[L.U_PACK_V] = v
        u[L.U_BUS_V] = v
        u[L.U_CONTACTOR_FB] = st.out[L.Y_CONTACTORS]
        core.step(st, inp, prm, dt_s)
