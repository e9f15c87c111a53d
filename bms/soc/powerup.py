"""The power-up SOC read, refined by averaging the rested cell voltages while the pack stays at
rest (docs/soc-tuning.md, "Power-up of a series string").

The firmware reads SOC from the first fresh sample of the cell voltages (:func:`bms.core.initialise`)
so that an SOC is known at once. On the flat part of an LFP plateau that one sample is a poor
reading: at 92..97 % the OCV rises 0.1 mV per % SOC, and the string's mean voltage carries the
sample's noise and quantisation (0.5 mV noise and a 1 mV step per cell: 0.04 mV sd on the mean of
192 cells, 0.4 % SOC) on top of the sensors' static offset and gain errors (1 mV and 0.02 % per
cell: 0.09 mV, 0.9 % SOC, which no averaging removes). While the contactors stay open and the
current stays below the rest current, :class:`RestRead` averages the samples (the string's mean
rested voltage, one value per new sample) and moves the estimate by the difference between the
reading of that average and its previous reading, the covariances as the filter has them; the
first load (or :data:`REST_READ_S` of rest) ends it. Nothing else moves the SOC at rest, so this
is the estimate the filter would have had if it had read the average at power-up."""

from __future__ import annotations

import math

from bms import layout as L
from bms.core import fresh_cells
from bms.soc.estimator import rest_read_soc, shift_soc

#: averaging time of the power-up read (s): long enough that the samples' noise (0.4 % SOC sd per
#: sample on the plateau) falls below the sensors' static error (0.9 %), short before a day's rest
REST_READ_S = 60.0


class RestRead:
    """Refines the power-up read (see the module docstring); :meth:`update` once per step from
    the step of :func:`bms.core.initialise` on, until it returns False."""

    def __init__(self) -> None:
        self.v_sum = 0.0
        self.n = 0
        self.v_last = math.nan
        self.z_read = math.nan
        self.t_s = 0.0

    def update(self, st: L.State, prm, inp, dt_s: float) -> bool:
        """Add the step's sample (the mean of the fresh cells' voltages, as the power-up read
        takes them; once per new sample) and move the SOC to the reading of the average; False
        when the rest is over."""
        fresh = fresh_cells(inp, prm)
        i_a = inp.u[L.U_PACK_I_A]
        self.t_s += dt_s
        if (int(st.s[L.S_CONTACTORS]) & 7 or (math.isfinite(i_a) and abs(i_a) >= prm.pp[L.P_BAL_REST_A])
                or self.t_s > REST_READ_S or not fresh.any()):
            return False
        v = float(inp.cell_v[fresh].mean())
        if v == self.v_last:  # the same sample, held
            return True
        self.v_last = v
        self.v_sum += v
        self.n += 1
        t_c = inp.temp_c[prm.temp_of_cell][fresh]
        z = rest_read_soc(prm.cell, prm.tune, self.v_sum / self.n, float(t_c.mean()))
        if self.n > 1 and math.isfinite(z) and math.isfinite(self.z_read):
            shift_soc(st.x, z - self.z_read)
        self.z_read = z
        return True
