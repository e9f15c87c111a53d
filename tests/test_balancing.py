"""Passive balancing kernel: selection with hysteresis, per-board limit, measurement windows,
resistor heat, allowed states, and a pack whose SOC spread it narrows."""

from __future__ import annotations

import numpy as np
from bms_rig import params
from hypothesis import given
from hypothesis import strategies as st

from bms import core
from bms import layout as L
from bms.balancing import balance_step

DT = 0.3  # not a divisor of the measurement period: windows fall on varying steps


def _setup(pp_changes=None, temp_c=25.0):
    prm = params()
    if pp_changes:
        pp = prm.pp.copy()
        for k, v in pp_changes.items():
            pp[k] = v
        prm = prm._replace(pp=pp)
    stt, inp = core.new_state(prm), core.new_inputs(prm)
    inp.cell_v[:] = 3.3
    inp.temp_c[:] = temp_c
    stt.cell_ok[:] = True
    stt.temp_ok[:] = True
    stt.s[L.S_REST_T_S] = 1e6  # long at rest
    return prm, stt, inp


def _run(prm, stt, inp, soc, state=L.ST_STANDBY, n=1, i_a=0.0, sev=L.SEV_NONE):
    for _ in range(n):
        k = balance_step(stt, inp, prm, DT, i_a, state, sev, soc)
    return k


def test_selects_cells_above_the_lowest_with_hysteresis_and_board_limit():
    prm, stt, inp = _setup({L.P_MEAS_WINDOW_S: 0.0})
    soc = np.full(192, 0.50)
    soc[0:6] = 0.55   # six cells high on board 0: only max_per_board may bleed
    soc[20] = 0.515   # below the start threshold (0.02)
    _run(prm, stt, inp, soc)
    nmax = int(prm.pp[L.P_BAL_MAX_PER_BOARD])
    assert stt.bleed[:16].sum() == nmax and stt.bleed[16:].sum() == 0
    # hysteresis: a selected cell keeps bleeding down to stop_soc above the lowest
    soc[:] = 0.50
    soc[3] = 0.51   # between stop (0.005) and start (0.02)
    was = stt.bleed[3]
    _run(prm, stt, inp, soc)
    assert stt.bleed[3] == was
    soc[3] = 0.504
    _run(prm, stt, inp, soc)
    assert not stt.bleed.any()


def test_only_in_allowed_states_and_without_faults():
    prm, stt, inp = _setup({L.P_MEAS_WINDOW_S: 0.0})
    soc = np.full(192, 0.5)
    soc[40] = 0.6
    assert _run(prm, stt, inp, soc, state=L.ST_DRIVE) == 0
    assert _run(prm, stt, inp, soc, state=L.ST_STANDBY, sev=L.SEV_FAULT) == 0
    assert _run(prm, stt, inp, soc, state=L.ST_STANDBY, sev=L.SEV_WARNING) == 1
    stt.s[L.S_REST_T_S] = 0.0
    assert _run(prm, stt, inp, soc, state=L.ST_STANDBY, i_a=50.0) == 0  # not at rest
    # top of charge: CHARGE with the highest cell above soc_top
    soc[:] = 0.95
    inp.cell_v[:] = 3.45
    inp.cell_v[40] = 3.50  # voltage mode at the top of charge ("both")
    assert _run(prm, stt, inp, soc, state=L.ST_CHARGE, i_a=50.0) == 1 and stt.bleed[40]


def test_paused_during_measurement_windows():
    prm, stt, inp = _setup()
    soc = np.full(192, 0.5)
    soc[100] = 0.6
    period, window = prm.pp[L.P_MEAS_PERIOD_S], prm.pp[L.P_MEAS_WINDOW_S]
    on = []
    for _ in range(200):
        _run(prm, stt, inp, soc)
        phase = stt.s[L.S_MEAS_PHASE_S]
        assert not (stt.bleed[100] and phase < window)
        on.append(stt.bleed[100])
    assert 0.5 < np.mean(on) < 1.0 - 0.5 * window / period
    inp.u[L.U_MEAS_WINDOW] = 1.0  # a CMU flags its measurement
    _run(prm, stt, inp, soc)
    assert not stt.bleed.any()


def test_resistor_heat_limits_the_duty():
    prm, stt, inp = _setup({L.P_MEAS_WINDOW_S: 0.0}, temp_c=55.0)
    soc = np.full(192, 0.5)
    soc[0:4] = 0.6  # four bleeders on board 0: steady state 55 + 4 x 0.33 W / 0.04 W/K > 70 degC
    t_max = prm.pp[L.P_BAL_T_MAX_C]
    duty = []
    for _ in range(20000):
        _run(prm, stt, inp, soc)
        assert stt.board_heat_c[0] <= t_max + 1.0
        duty.append(stt.bleed[0])
    assert 0.05 < np.mean(duty[-5000:]) < 0.95  # cycles on the thermal hysteresis
    assert stt.board_heat_c[1] == 55.0  # a board that does not bleed stays at its sensors


@given(st.lists(st.floats(0.2, 0.8), min_size=192, max_size=192), st.integers(0, 2))
def test_never_bleeds_the_lowest_cell_and_narrows_the_spread(soc0, mode):
    """SOC-mode balancing at rest with a strong bleed (1 ohm) on a 192-cell pack: no bleeding
    cell ever goes below the lowest cell, the spread shrinks and the lowest cell never bleeds."""
    prm, stt, inp = _setup({L.P_MEAS_WINDOW_S: 0.0, L.P_BAL_R_OHM: 1.0, L.P_BAL_G_W_K: 100.0,
                            L.P_BAL_MODE: [L.BAL_SOC, L.BAL_BOTH, L.BAL_SOC][mode]})
    soc = np.array(soc0)
    q_as = 3600.0 * prm.cell.capacity_ah
    spread0 = soc.max() - soc.min()
    for _ in range(400):
        _run(prm, stt, inp, soc)
        lo = soc.min()
        assert not stt.bleed[soc == lo].any()
        soc -= stt.bleed * 3.3 / 1.0 * DT * 60.0 / q_as  # 60x time lapse of the bleed
        assert soc[stt.bleed].min(initial=1.0) >= lo - 1e-12
    spread = soc.max() - soc.min()
    if spread0 > prm.pp[L.P_BAL_START_SOC]:
        assert spread < spread0
    assert soc.min() >= min(soc0) - 1e-12


def test_equalises_a_pack_with_an_initial_soc_spread():
    """A pack with a 5 % SOC spread at rest ends within the stop/start band of its lowest cell."""
    prm, stt, inp = _setup({L.P_BAL_R_OHM: 1.0, L.P_BAL_G_W_K: 100.0})
    rng = np.random.default_rng(3)
    soc = 0.5 + 0.05 * rng.random(192)
    lo0 = soc.min()
    q_as = 3600.0 * prm.cell.capacity_ah
    for _ in range(20000):
        if _run(prm, stt, inp, soc) == 0 and not stt.bal_sel.any():
            break
        soc -= stt.bleed * 3.3 / 1.0 * DT * 60.0 / q_as
    assert soc.max() - soc.min() <= prm.pp[L.P_BAL_START_SOC] + 1e-9
    assert soc.min() >= lo0 - 1e-12
