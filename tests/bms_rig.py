"""Test rig for the firmware step: the reference pack's parameters, nominal inputs and a tiny
plant (contactor auxiliary contacts follow the command, the bus charges through the precharge
resistor, current flows only with both mains closed). Not a simulator: just enough physics
for the state machine and the checks to see consistent measurements."""

from __future__ import annotations

import functools
import math

import numpy as np

from bms import core
from bms import layout as L
from bms.pack import load_pack


@functools.lru_cache(maxsize=None)
def pack():
    return load_pack("heavy_duty_192s")


def params(**kw):
    return pack().params(**kw)


class Rig:
    """State + inputs of the reference pack with a plant around them."""

    def __init__(self, prm=None, cell_v=3.30, temp_c=25.0, seed=0):
        self.prm = params() if prm is None else prm
        self.st = core.new_state(self.prm)
        self.inp = core.new_inputs(self.prm)
        self.rng = np.random.default_rng(seed)
        self.pack_v_true = 0.0
        self.bus_v = 0.0
        self.i_load_a = 0.0          # current the load draws / charger pushes when closed
        self.noise_v = 0.0
        self.r_cell_ohm = 0.0012     # the cell voltage follows the current: v = v_rest + R i_cell
        self.fb_override = None      # force feedback bits (contactor faults)
        self.weld = 0                # contactor bits stuck closed
        self.pack_v_offset = 0.0     # error of the pack-voltage measurement, V
        self.i_offset_a = 0.0        # error of the current measurement, A
        self.stuck = {}              # cell index -> reading frozen at this value
        self.silent_boards = set()   # boards whose frames stopped (their age grows)
        self.isense_silent = False
        self.vcu_silent = False
        self.bus_blocked = False     # the bus does not charge (precharge failure)
        self.set_nominal(cell_v, temp_c)
        core.initialise(self.st, self.prm, self.inp)

    # --- inputs --------------------------------------------------------------------------
    def set_nominal(self, cell_v=3.30, temp_c=25.0):
        inp = self.inp
        self.v_rest = np.full(inp.cell_v.shape, float(cell_v))
        inp.cell_v[:] = cell_v
        inp.board_valid[:] = True
        inp.board_age_s[:] = 0.05
        inp.temp_c[:] = temp_c
        inp.temp_valid[:] = True
        inp.temp_age_s[:] = 0.05
        u = inp.u
        u[L.U_ISENSE_VALID], u[L.U_ISENSE_AGE_S] = 1.0, 0.005
        u[L.U_HV_VALID] = 1.0
        u[L.U_VCU_VALID], u[L.U_VCU_AGE_S] = 1.0, 0.02
        u[L.U_VCU_REQUEST], u[L.U_VCU_RESET] = L.REQ_STANDBY, 0.0
        u[L.U_CHARGER_CONNECTED] = 1.0

    @property
    def out(self):
        return self.st.out

    @property
    def state(self):
        return int(self.st.out[L.Y_STATE])

    @property
    def cmd(self):
        return int(self.st.s[L.S_CONTACTORS])

    def sev(self, name):
        return int(self.st.fst[getattr(L, "F_" + name), L.FS_SEV])

    # --- plant ---------------------------------------------------------------------------
    def plant(self, dt_s):
        """Feedback follows the last command; bus voltage and current follow the contactors."""
        u = self.inp.u
        cmd = self.cmd | self.weld
        u[L.U_CONTACTOR_FB] = cmd if self.fb_override is None else self.fb_override
        u[L.U_CONTACTOR_FB_VALID], u[L.U_CONTACTOR_FB_AGE_S] = 1.0, 0.005
        self.pack_v_true = float(np.nansum(self.inp.cell_v))
        neg, pre, pos = cmd & L.K_NEG, cmd & L.K_PRE, cmd & L.K_POS
        if neg and pos:
            self.bus_v = self.pack_v_true
            i = self.i_load_a
        elif neg and pre and not self.bus_blocked:
            tau = 47.0 * 0.002
            self.bus_v = self.pack_v_true + (self.bus_v - self.pack_v_true) * math.exp(-dt_s / tau)
            i = (self.pack_v_true - self.bus_v) / 47.0 * -1.0  # charging the bus discharges the pack
        else:
            self.bus_v *= math.exp(-dt_s / 0.5)  # inverter active discharge
            i = 0.0
        u[L.U_PACK_I_A] = i + self.i_offset_a
        u[L.U_PACK_V] = self.pack_v_true + self.pack_v_offset
        u[L.U_BUS_V] = self.bus_v

    def step(self, dt_s=0.1, n=1):
        """Plant, then one firmware step; cell voltages = v_rest + R i_cell (+ noise) unless
        ``v_rest`` is None (the test writes ``inp.cell_v`` itself)."""
        for _ in range(n):
            self.plant(dt_s)
            if self.v_rest is not None:
                i_cell = self.inp.u[L.U_PACK_I_A] / self.prm.pp[L.P_N_PARALLEL]
                self.inp.cell_v[:] = self.v_rest + self.r_cell_ohm * i_cell
                if self.noise_v:
                    self.inp.cell_v[:] += self.rng.normal(0.0, self.noise_v, self.inp.cell_v.shape)
            for idx, val in self.stuck.items():
                self.inp.cell_v[idx] = val
            ages = self.inp.board_age_s
            for b in range(ages.shape[0]):
                ages[b] = ages[b] + dt_s if b in self.silent_boards else 0.05
            u = self.inp.u
            u[L.U_ISENSE_AGE_S] = u[L.U_ISENSE_AGE_S] + dt_s if self.isense_silent else 0.005
            u[L.U_VCU_AGE_S] = u[L.U_VCU_AGE_S] + dt_s if self.vcu_silent else 0.02
            u[L.U_PACK_V] = float(np.nansum(self.inp.cell_v)) + self.pack_v_offset
            core.step(self.st, self.inp, self.prm, dt_s)

    def run_until(self, cond, dt_s=0.1, t_max_s=60.0):
        """Step until ``cond(self)``; returns the time it took (s) or raises."""
        t = 0.0
        while t < t_max_s:
            self.step(dt_s)
            t += dt_s
            if cond(self):
                return t
        raise AssertionError(f"condition not reached within {t_max_s} s (state {L.STATE_NAMES[self.state]})")

    def close(self, request=L.REQ_DRIVE):
        """Bring the pack from power-up to DRIVE / CHARGE."""
        self.inp.u[L.U_VCU_REQUEST] = request
        want = L.ST_DRIVE if request == L.REQ_DRIVE else L.ST_CHARGE
        return self.run_until(lambda r: r.state == want, t_max_s=10.0)
