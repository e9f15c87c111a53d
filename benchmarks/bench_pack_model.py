"""Pack model throughput: the 192s2p reference pack over one hour of measured drive current
(the first hour of UDDS blocks of the Winston LFP100 lab test, per cell; pack current = 2x)
at 10 ms steps, on one core, in cell-steps per second (median of 3 runs, process CPU time, so
that other jobs sharing the machine do not count; wall time in the note).

Reference, timed in the same run when PyBaMM is installed (the ``bench`` extra): PyBaMM's
``pybamm.equivalent_circuit.Thevenin()`` cell model (one cell) on the same one-hour current
profile, output every 10 ms (360 000 cell-steps); ratio = pack model cell-steps/s over PyBaMM's.
Also reported (CPU time too): one step called from a Python loop (the co-simulation's path),
bound with :mod:`hil.pack.bound` vs through numba's dispatcher, and one bound sensor sample.
"""

from __future__ import annotations

import os
import statistics
import time

import numpy as np

from benchmarks._timing import figure
from bms.labdata import find_data, load_csv

DT_S = 0.01
HOUR_S = 3600


def hour_current_a() -> np.ndarray:
    """One hour (1 s samples) of the UDDS lab test's cell current, from its first drive block."""
    d = load_csv(find_data("winston_lfp100/udds_P25.csv"))
    start = int(np.argmax(np.abs(d.current_a) > 60.0))
    return np.ascontiguousarray(d.current_a[start:start + HOUR_S], dtype=np.float64)


def _pack_setup():
    from hil.pack import IN_I_A, PackGeometry
    from hil.pack.ready import ready_pack
    from hil.pack.synthetic import reference_profile

    p, f, st, inp, bleed = ready_pack(reference_profile(), PackGeometry(), soc=0.9, seed=7, dt_s=DT_S)
    cell_i = hour_current_a()
    steps_per_s = int(round(1.0 / DT_S))
    seq = np.tile(inp, (cell_i.size * steps_per_s, 1))
    seq[:, IN_I_A] = np.repeat(cell_i * p.n_parallel, steps_per_s)
    return p, f, st, bleed, seq


def cpu_median(fn, repeat: int = 5) -> float:
    """Median process CPU time of ``fn()`` over ``repeat`` runs after one warm-up call."""
    fn()
    samples = []
    for _ in range(repeat):
        c0 = time.process_time()
        fn()
        samples.append(time.process_time() - c0)
    return statistics.median(samples)


def bench_pack():
    from hil.pack import copy_state as _copy_state
    from hil.pack import pack_run, pack_step
    from hil.pack.bound import bind_sensors, bind_step

    p, f, st0, bleed, seq = _pack_setup()
    trace = np.zeros((seq.shape[0], 3))
    pack_run(p, f, _copy_state(st0), seq[:1000], bleed, DT_S, trace)  # warm (cached compile)
    cpu, wall = [], []
    for _ in range(3):
        st = _copy_state(st0)
        c0, t0 = time.process_time(), time.perf_counter()
        pack_run(p, f, st, seq, bleed, DT_S, trace)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - t0)
    t_run, t_wall = statistics.median(cpu), statistics.median(wall)
    cell_steps = seq.shape[0] * p.n_cells
    st = _copy_state(st0)
    row = seq[100]

    row = row.copy()
    step = bind_step(p, f, st, row, bleed)
    sample = bind_sensors(p, f, st)

    def python_loop():
        for _ in range(1000):
            pack_step(p, f, st, row, bleed, DT_S)

    def bound_loop():
        for _ in range(1000):
            step(DT_S)

    def sensors():
        for _ in range(200):
            sample(0.1)

    t_call = cpu_median(python_loop) / 1000.0
    t_bound = cpu_median(bound_loop) / 1000.0
    t_sens = cpu_median(sensors) / 200.0
    soc_end = float(np.mean(st.x[:, 0]))
    return cell_steps / t_run, t_run, t_wall, t_call, t_bound, t_sens, p.n_cells, p.n_ch, soc_end


def bench_pybamm():
    """Seconds for PyBaMM's Thevenin model over the hour at 10 ms output (warm, median of 3),
    or None when PyBaMM is not installed."""
    try:
        import pybamm
    except ImportError:
        return None
    cell_i = hour_current_a()
    model = pybamm.equivalent_circuit.Thevenin()
    values = model.default_parameter_values
    t = np.arange(cell_i.size, dtype=float)
    # PyBaMM's current is positive on discharge; each 1 s sample held (same profile as the pack)
    tt = np.empty(2 * t.size)
    tt[0::2] = t
    tt[1::2] = t + (1.0 - 1e-6)
    values["Current function [A]"] = pybamm.Interpolant(tt, np.repeat(-cell_i, 2), pybamm.t, interpolator="linear")
    values["Cell capacity [A.h]"] = 109.374
    values["Initial SoC"] = 0.9
    sim = pybamm.Simulation(model, parameter_values=values, solver=pybamm.IDAKLUSolver())
    t_end = float(cell_i.size - 1)
    t_eval = np.linspace(0.0, t_end, int(round(t_end / DT_S)) + 1)
    sim.solve([0.0, t_end], t_interp=t_eval)
    cpu = []
    for _ in range(3):
        c0 = time.process_time()
        sol = sim.solve([0.0, t_end], t_interp=t_eval)
        cpu.append(time.process_time() - c0)
    return statistics.median(cpu), t_eval.size, sol


def run() -> dict:
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    rate, t_run, t_wall, t_call, t_bound, t_sens, n_cells, n_ch, _ = bench_pack()
    figs = {}
    ref = bench_pybamm()
    if ref is None:
        figs["pack_model.cell_steps_per_s"] = figure(
            rate, "cell-steps/s",
            note=f"192s2p, 10 ms, 1 h UDDS current, {t_run:.2f} s CPU ({t_wall:.2f} s wall) per hour; "
                            "pybamm not installed")
    else:
        t_pb, n_pb, _ = ref
        pb_rate = n_pb / t_pb
        figs["pack_model.cell_steps_per_s"] = figure(
            rate, "cell-steps/s", baseline=pb_rate, ratio=rate / pb_rate,
            note=f"192s2p, 10 ms, 1 h UDDS current, {t_run:.2f} s CPU ({t_wall:.2f} s wall) per hour; baseline "
                 f"PyBaMM Thevenin, 1 cell, {t_pb:.2f} s CPU per hour at 10 ms output (IDAKLU)")
    figs["pack_model.python_step_us"] = figure(
        t_bound * 1e6, "us/step", baseline=t_call * 1e6, ratio=t_call / t_bound,
        note=f"one step ({n_cells} cells) from a Python loop through hil.pack.bound.bind_step (co-simulation "
             "path), CPU; baseline: the same call through numba's dispatcher")
    figs["pack_model.sensors_sample_us"] = figure(t_sens * 1e6, "us/sample",
                                                  note=f"all {n_ch} sensor channels, bound, CPU")
    return figs


if __name__ == "__main__":
    for k, v in run().items():
        print(k, v)
