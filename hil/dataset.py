"""A simulator scenario as an SOC-tuning dataset (``bms tune`` ``scenario:NAME``): the scenario
runs in closed loop (:class:`hil.cosim.CoSim`, the BMS deciding contactors and limits as usual)
and one series element is recorded as the BMS's estimator would see it, beside the model's truth:

* current: the current sensor's output (offset, gain, noise, quantisation and any injected
  current fault) divided by the number of parallel cells, averaged over the sample period
  (every physics tick contributes, so no charge is lost between samples);
* voltage: the element's cell-voltage channel at the sample instant (the value its CMU frame
  carries: offset, noise, quantisation, injected faults);
* temperature: the reading of the sensor the firmware assigns to that cell (``temp_of_cell``);
* truth: the model's true SOC of the element (mean over its parallel cells).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from hil.cosim import DT_S, CoSim
from hil.scenario import Scenario


class _Recorder(CoSim):
    """A co-simulation that also samples one element's measurements and truth."""

    def __init__(self, scn: Scenario, cell: int):
        super().__init__(scn, "direct")
        p = self.model.p
        if not 0 <= cell < p.n_series:
            raise ValueError(f"cell={cell} is outside the pack (0..{p.n_series - 1})")
        self.cell = cell
        self.ch_v = p.ch_cell_v(cell)
        self.ch_t = p.ch_temp(int(self.node.prm.temp_of_cell[cell]))
        self.i_sum, self.i_n = 0.0, 0
        self.rows: list[tuple[float, float, float, float, float]] = []
        step_frames, meas, ch_i = self.pack.step_frames, self.model.st.meas, p.ch_current

        def step_and_sum(t_s: float, dt_s: float):  # the co-simulation's physics tick (and frames due)
            frames = step_frames(t_s, dt_s)
            self.i_sum += meas[ch_i]
            self.i_n += 1
            return frames

        self.pack.step_frames = step_and_sum

    def _record(self, rec, t, *args) -> None:
        super()._record(rec, t, *args)
        m = self.model
        n_par = m.p.n_parallel
        i_cell = self.i_sum / max(self.i_n, 1) / n_par
        z = float(self.pack.true_element_soc()[self.cell])
        self.rows.append((t, i_cell, float(m.st.meas[self.ch_v]), float(m.st.meas[self.ch_t]), z))
        self.i_sum, self.i_n = 0.0, 0


def record_scenario(scn: Scenario, cell: int = 0, period_s: float = 1.0) -> tuple[np.ndarray, object]:
    """Run ``scn`` and return (rows, run result): rows (n, 5) of time, cell current (measured,
    A, + charge), cell voltage (measured), temperature (measured) and true SOC, one per
    ``period_s`` (a multiple of the 10 ms physics tick)."""
    if not period_s >= DT_S:
        raise ValueError(f"period={period_s} must be at least the physics tick ({DT_S} s)")
    rec = _Recorder(replace(scn, record_period_s=period_s), cell)
    res = rec.run()
    return np.array(rec.rows, dtype=float).reshape(-1, 5), res
