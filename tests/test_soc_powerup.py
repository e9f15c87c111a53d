"""The power-up SOC read refined at rest (bms.soc.powerup): on the flat plateau one sample's noise
moves the read by ~0.4 % SOC; the average of the rested samples replaces it until the first load."""

import numpy as np

from bms import core
from bms import layout as L
from bms.soc import estimator as E
from bms.soc.ocv import rest_voltage_and_slope
from bms.soc.powerup import RestRead
from tests.bms_rig import params


def _rested(z_true=0.95, seed=3):
    prm = params()
    st, inp = core.new_state(prm), core.new_inputs(prm)
    v0 = rest_voltage_and_slope(prm.cell, z_true, 25.0, 0.0, 0.0)[0]
    inp.board_valid[:], inp.board_age_s[:], inp.temp_c[:], inp.temp_valid[:] = True, 0.05, 25.0, True
    inp.u[L.U_ISENSE_VALID], inp.u[L.U_ISENSE_AGE_S], inp.u[L.U_PACK_I_A] = 1.0, 0.005, 0.1
    rng = np.random.default_rng(seed)
    return prm, st, inp, v0, rng


def test_the_read_becomes_the_reading_of_the_averaged_rest_and_stops_at_the_first_load():
    prm, st, inp, v0, rng = _rested()
    n = inp.cell_v.shape[0]
    samples = [v0 + rng.normal(0.0, 0.5e-3, n) for _ in range(8)]
    inp.cell_v[:] = samples[0]
    core.initialise(st, prm, inp)
    z_first, cells_first = E.mean_lane(st.x)[E.IZ], st.x[:, E.IZ].copy()
    rr = RestRead()
    means = []
    for v in samples:
        inp.cell_v[:] = v
        means.append(v.mean())
        for _ in range(10):  # a held sample counts once
            assert rr.update(st, prm, inp, 0.01)
    z_avg = E.rest_read_soc(prm.cell, prm.tune, np.mean(means), 25.0)
    assert E.mean_lane(st.x)[E.IZ] == np.float64(z_avg) != z_first
    np.testing.assert_allclose(st.x[:, E.IZ] - cells_first, z_avg - z_first, atol=1e-12)  # cells move with it
    # the plateau (0.1 mV per % SOC): the average is nearer the truth than the first sample here
    assert abs(z_avg - 0.95) < abs(z_first - 0.95)
    inp.u[L.U_PACK_I_A] = -100.0  # the first load: the read is final
    inp.cell_v[:] = v0 - 0.05
    assert not rr.update(st, prm, inp, 0.01)
    assert E.mean_lane(st.x)[E.IZ] == np.float64(z_avg)


def test_closed_contactors_or_a_long_rest_end_the_refinement():
    prm, st, inp, v0, rng = _rested()
    inp.cell_v[:] = v0
    core.initialise(st, prm, inp)
    rr = RestRead()
    assert rr.update(st, prm, inp, 0.01)
    st.s[L.S_CONTACTORS] = L.K_NEG | L.K_PRE
    assert not rr.update(st, prm, inp, 0.01)
    rr = RestRead()
    st.s[L.S_CONTACTORS] = 0
    assert rr.update(st, prm, inp, 0.01) and not rr.update(st, prm, inp, 61.0)
