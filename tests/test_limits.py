"""Current / power limits: derating tables, voltage distance to the limits, fault reactions,
rate limiting, and the 20-minute fast charge (3C) allowed warm and refused cold."""

from __future__ import annotations

import numpy as np
import pytest
from bms_rig import Rig, params
from hypothesis import given
from hypothesis import strategies as st

from bms import layout as L
from bms.limits import interp_clamped, ramp, target_limits

PRM = params()
I_MAX = PRM.pp[L.P_I_CHG_MAX_A]


def _target(z=0.5, v=3.3, t=25.0, der=(1.0, 1.0)):
    return target_limits(PRM, der[0], der[1], z, z, v, v, t, t)


def test_fast_charge_is_3c_for_20_minutes():
    q_pack_ah = 2 * 100.0  # rated 2 x 100 Ah
    assert I_MAX >= 3.0 * q_pack_ah  # 3C = 20 minutes
    assert _target(z=0.3, t=25.0)[0] == pytest.approx(I_MAX)


@pytest.mark.parametrize("temp_c, most", [(10.0, 0.3), (5.0, 0.1), (0.0, 0.0), (-10.0, 0.0)])
def test_fast_charge_refused_when_cold(temp_c, most):
    i_c, _ = _target(z=0.3, t=temp_c)
    assert i_c <= most * I_MAX + 1e-9
    assert i_c < 3.0 * 200.0


def test_coldest_and_hottest_cell_both_derate():
    i_c, _ = target_limits(PRM, 1.0, 1.0, 0.5, 0.5, 3.3, 3.3, 5.0, 25.0)  # one cold cell
    assert i_c == pytest.approx(0.1 * I_MAX)
    i_c, i_d = target_limits(PRM, 1.0, 1.0, 0.5, 0.5, 3.3, 3.3, 25.0, 55.0)  # one hot cell
    assert i_c == 0.0 and i_d == pytest.approx(0.2 * PRM.pp[L.P_I_DIS_MAX_A])


def test_voltage_derating_is_linear_between_warning_and_fault():
    w, f = PRM.diag[L.F_CELL_OV, L.D_WARN], PRM.diag[L.F_CELL_OV, L.D_FAULT]
    for frac in (0.0, 0.25, 0.5, 1.0):
        i_c, _ = target_limits(PRM, 1.0, 1.0, 0.5, 0.5, 3.3, w + frac * (f - w), 25.0, 25.0)
        assert i_c == pytest.approx((1.0 - frac) * I_MAX)
    w, f = PRM.diag[L.F_CELL_UV, L.D_WARN], PRM.diag[L.F_CELL_UV, L.D_FAULT]
    _, i_d = target_limits(PRM, 1.0, 1.0, 0.5, 0.5, w - 0.5 * (w - f), 3.3, 25.0, 25.0)
    assert i_d == pytest.approx(0.5 * PRM.pp[L.P_I_DIS_MAX_A])


def test_soc_tables_and_fault_factors():
    i_c, i_d = _target(z=1.0)
    assert i_c == pytest.approx(0.05 * I_MAX) and i_d == pytest.approx(PRM.pp[L.P_I_DIS_MAX_A])
    _, i_d = _target(z=0.0)
    assert i_d == 0.0
    i_c, i_d = _target(der=(0.5, 0.2))
    assert i_c == pytest.approx(0.5 * I_MAX) and i_d == pytest.approx(0.2 * PRM.pp[L.P_I_DIS_MAX_A])
    assert _target(v=np.nan) == (0.0, 0.0)  # no fresh cell voltage: no current


def test_interp_clamped():
    g, v = np.array([0.0, 1.0, 3.0]), np.array([1.0, 3.0, 7.0])
    assert interp_clamped(g, v, -5.0) == 1.0 and interp_clamped(g, v, 9.0) == 7.0
    assert interp_clamped(g, v, 2.0) == pytest.approx(5.0)


@given(st.lists(st.floats(0.0, 2000.0), min_size=1, max_size=50), st.floats(0.01, 1.0))
def test_ramp_is_rate_limited(targets, dt_s):
    up, down = PRM.pp[L.P_RAMP_UP_A_S], PRM.pp[L.P_RAMP_DOWN_A_S]
    y = 0.0
    for tgt in targets:
        y2 = ramp(y, tgt, up, down, dt_s)
        assert -down * dt_s - 1e-9 <= y2 - y <= up * dt_s + 1e-9
        assert min(y, tgt) - 1e-9 <= y2 <= max(y, tgt) + 1e-9
        y = y2


def test_limits_in_the_step_warm_vs_cold_charge():
    warm = Rig(temp_c=25.0)
    warm.close(L.REQ_CHARGE)
    warm.step(n=60)  # ramp at 200 A/s
    assert warm.out[L.Y_I_CHG_LIM_A] == pytest.approx(I_MAX)
    assert warm.out[L.Y_P_CHG_LIM_W] == pytest.approx(min(I_MAX * warm.inp.u[L.U_PACK_V], PRM.pp[L.P_P_CHG_MAX_W]))
    assert warm.out[L.Y_V_CHG_MAX_V] == pytest.approx(192 * PRM.pp[L.P_V_CHG_CELL_V])
    cold = Rig(temp_c=-2.0)
    cold.close(L.REQ_CHARGE)
    cold.step(n=60)
    assert cold.out[L.Y_I_CHG_LIM_A] == 0.0 and cold.out[L.Y_I_DIS_LIM_A] > 0.0
    # limits change smoothly when a fault derates them, and are zero once open
    warm.v_rest[7] = 2.95  # spread 0.35 V > fault 0.3 V: derate 0.5 after 10 s
    prev = warm.out[L.Y_I_CHG_LIM_A]
    for _ in range(150):
        warm.step(0.1)
        y = warm.out[L.Y_I_CHG_LIM_A]
        assert prev - y <= PRM.pp[L.P_RAMP_DOWN_A_S] * 0.1 + 1e-9
        prev = y
    assert warm.st.fst[L.F_CELL_V_SPREAD, L.FS_SEV] == L.SEV_FAULT
    assert y == pytest.approx(0.5 * I_MAX)
    warm.inp.u[L.U_VCU_REQUEST] = L.REQ_STANDBY
    warm.step(n=5)
    assert warm.out[L.Y_I_CHG_LIM_A] == 0.0 and warm.out[L.Y_I_DIS_LIM_A] == 0.0


finite = st.floats(-100.0, 200.0)


@given(z=st.floats(0.0, 1.0), v_lo=st.floats(1.5, 4.5), dv=st.floats(0.0, 1.0), t_lo=finite, dt=st.floats(0.0, 60.0),
       der=st.tuples(st.floats(0.0, 1.0), st.floats(0.0, 1.0)))
def test_targets_are_bounded_and_monotone_in_the_fault_factor(z, v_lo, dv, t_lo, dt, der):
    i_c, i_d = target_limits(PRM, der[0], der[1], z, z, v_lo, v_lo + dv, t_lo, t_lo + dt)
    assert 0.0 <= i_c <= I_MAX and 0.0 <= i_d <= PRM.pp[L.P_I_DIS_MAX_A]
    j_c, j_d = target_limits(PRM, 1.0, 1.0, z, z, v_lo, v_lo + dv, t_lo, t_lo + dt)
    assert i_c <= j_c + 1e-9 and i_d <= j_d + 1e-9
