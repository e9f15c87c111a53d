"""The joined firmware step: outputs layout, stale and non-finite inputs, persistence, and the
property that noisy in-range measurements never trip a fault."""

from __future__ import annotations

import numpy as np
import pytest
from bms_rig import Rig, params
from hypothesis import given
from hypothesis import strategies as st

from bms import core
from bms import layout as L
from bms.soc.layout import IZ

DT = 0.1


def test_outputs_min_max_with_index_and_soc():
    r = Rig()
    r.close(L.REQ_DRIVE)
    r.v_rest[37] = 3.42
    r.v_rest[150] = 3.21
    r.inp.temp_c[11] = 31.0
    r.inp.temp_c[90] = 19.5
    r.step(DT)
    o = r.out
    assert (o[L.Y_CELL_V_MAX], o[L.Y_CELL_V_MAX_IDX]) == (pytest.approx(3.42), 37)
    assert (o[L.Y_CELL_V_MIN], o[L.Y_CELL_V_MIN_IDX]) == (pytest.approx(3.21), 150)
    assert (o[L.Y_TEMP_MAX_C], o[L.Y_TEMP_MAX_IDX]) == (31.0, 11)
    assert (o[L.Y_TEMP_MIN_C], o[L.Y_TEMP_MIN_IDX]) == (19.5, 90)
    assert o[L.Y_CELL_V_SUM] == pytest.approx(r.inp.cell_v.sum())
    assert 0.0 <= o[L.Y_SOC_MIN] <= o[L.Y_SOC_MEAN] + 1e-12 and o[L.Y_SOC_MEAN] <= o[L.Y_SOC_MAX] + 1e-12 <= 1.0 + 1e-12
    assert 0.0 <= o[L.Y_SOC_DISPLAY] <= 1.0
    assert o[L.Y_CAPACITY_AH] == pytest.approx(2 * r.prm.cell.capacity_ah)
    d = core.outputs(r.st)
    assert d["state_name"] == "DRIVE" and d["faults"] == [] and d["bleed"].shape == (192,)


def test_nothing_fresh_at_power_up_means_no_closing():
    prm = params()
    stt, inp = core.new_state(prm), core.new_inputs(prm)
    inp.u[L.U_VCU_REQUEST] = L.REQ_DRIVE
    for _ in range(30):
        core.step(stt, inp, prm, DT)
    assert stt.out[L.Y_CONTACTORS] == 0 and stt.out[L.Y_SEVERITY] == L.SEV_CRITICAL
    assert stt.out[L.Y_I_CHG_LIM_A] == 0.0 and stt.out[L.Y_I_DIS_LIM_A] == 0.0


def test_stale_board_is_not_used_as_fresh():
    r = Rig()
    r.close(L.REQ_DRIVE)
    r.step(n=5)
    # board 2 (cells 32..47) stops: its last frame said 4.3 V (over-voltage), but it is stale
    r.v_rest[40] = 4.3
    r.inp.board_age_s[2] = 10.0
    r.silent_boards = {2}
    z_before = r.st.x[40, IZ]
    r.step(DT)
    assert r.st.fst[L.F_CELL_OV, L.FS_SEV] == L.SEV_NONE
    assert r.out[L.Y_CELL_V_MAX] < 3.5 and not r.st.cell_ok[40]
    assert np.isnan(r.out[L.Y_CELL_V_SUM])
    assert r.st.fst[L.F_COMM_CMU, L.FS_SEV] == L.SEV_CRITICAL
    assert abs(r.st.x[40, IZ] - z_before) < 1e-3  # no voltage correction from the stale reading


def test_invalid_frame_counts_as_stale():
    r = Rig()
    r.step(n=10)
    r.inp.board_valid[5] = False
    r.step(n=2)
    assert not r.st.cell_ok[80:96].any() and r.st.cell_ok[:80].all()
    assert r.st.fst[L.F_COMM_CMU, L.FS_SEV] >= L.SEV_WARNING


def test_non_finite_inputs_give_defined_reactions():
    r = Rig()
    r.close(L.REQ_DRIVE)
    r.stuck[12] = np.nan  # a cell reading NaN is excluded
    r.inp.temp_c[4] = np.inf  # implausible: excluded and flagged as a shorted sensor
    r.step(n=20)
    assert not r.st.cell_ok[12] and np.isfinite(r.out[L.Y_CELL_V_MIN])
    assert r.st.fst[L.F_TEMP_SENSOR_SHORT, L.FS_SEV] == L.SEV_FAULT
    r.stuck.clear()
    r.v_rest[12] = 3.3
    # a "valid" current frame carrying NaN: the current sensor is implausible, never used
    r2 = Rig()
    r2.close(L.REQ_DRIVE)
    r2.i_offset_a = np.nan
    r2.step(n=15)
    assert r2.st.fst[L.F_ISENSE_IMPLAUSIBLE, L.FS_SEV] == L.SEV_FAULT
    assert np.isfinite(r2.st.x[:, IZ]).all()


@given(
    charge=st.booleans(),
    base_v=st.floats(3.22, 3.36),
    temp=st.floats(10.0, 40.0),
    segments=st.lists(st.tuples(st.floats(-400.0, 300.0), st.integers(5, 40)), min_size=1, max_size=6),
    seed=st.integers(0, 2**16),
)
def test_noisy_in_range_measurements_never_trip_a_fault(charge, base_v, temp, segments, seed):
    """Cell voltages with 2 mV noise and a resistive response, temperatures with 1 K spread and
    0.2 K noise, random load steps within the continuous rating: no fault, no warning."""
    r = Rig(cell_v=base_v, temp_c=temp, seed=seed)
    r.noise_v = 0.002
    rng = np.random.default_rng(seed)
    offsets = rng.uniform(-0.5, 0.5, r.inp.temp_c.shape)
    r.close(L.REQ_CHARGE if charge else L.REQ_DRIVE)
    for load, n in segments:
        r.i_load_a = abs(load) if charge else load  # charging: the charger pushes current in
        for _ in range(n):
            r.inp.temp_c[:] = temp + offsets + rng.normal(0.0, 0.2, offsets.shape)
            r.step(DT)
            assert r.out[L.Y_FAULT_BITS] == 0, core.outputs(r.st)["faults"]
            assert r.out[L.Y_WARN_BITS] == 0, core.outputs(r.st)["warnings"]
    assert r.state == (L.ST_CHARGE if charge else L.ST_DRIVE)


def test_bound_step_equals_step():
    a, b = Rig(seed=4), Rig(seed=4)
    run_b = core.bind(b.st, b.inp, b.prm)
    for r in (a, b):
        r.inp.u[L.U_VCU_REQUEST] = L.REQ_DRIVE
    for k in range(40):
        a.step(DT)
        b.plant(DT)
        b.inp.cell_v[:] = a.inp.cell_v
        b.inp.u[L.U_PACK_V] = a.inp.u[L.U_PACK_V]
        run_b(DT)
        np.testing.assert_array_equal(a.out, b.out)
    assert a.state == L.ST_DRIVE


def test_wrong_arrays_or_time_step_are_rejected():
    prm = params()
    stt, inp = core.new_state(prm), core.new_inputs(prm)
    for dt in (0.0, -0.1, np.nan, np.inf):
        with pytest.raises(ValueError, match="dt_s"):
            core.step(stt, inp, prm, dt)
    short = inp._replace(cell_v=np.full(190, 3.3))
    with pytest.raises(ValueError, match="inputs do not match"):
        core.step(stt, short, prm, DT)
    with pytest.raises(ValueError, match="state does not match"):
        core.step(stt._replace(bleed=np.zeros(10, dtype=np.bool_)), inp, prm, DT)


def _task_periods(prm):
    return [prm.pp[i] for i in (L.P_TASK_FAST_S, L.P_TASK_MEDIUM_S, L.P_TASK_SLOW_S)]


def test_tasks_run_on_their_own_periods():
    """Called every 10 ms for 2 s: the fast task runs every tick, the medium one every 10th tick,
    the slow one every 100th (all released at the first tick); the cell quantities change only
    on medium ticks and the SOC estimate only on slow ticks."""
    r = Rig()
    fast, medium, slow = _task_periods(r.prm)
    assert (fast, medium, slow) == (0.01, 0.1, 1.0)
    ran = []
    for k in range(200):
        r.v_rest[5] = 3.30 + 0.001 * k  # a cell voltage moving every tick
        z_before = r.st.x[:, IZ].copy()
        r.step(fast)
        bits = int(r.st.s[L.S_TASKS_RAN])
        ran.append(bits)
        if bits & (1 << L.T_MEDIUM):
            assert r.out[L.Y_CELL_V_MAX] == pytest.approx(r.inp.cell_v.max())
            dt = r.st.s[L.S_TASK_DT_S + L.T_MEDIUM]
            assert dt == pytest.approx(fast if k == 0 else medium)
        else:
            assert r.out[L.Y_CELL_V_MAX] < r.inp.cell_v.max()  # held since the last medium tick
        if not bits & (1 << L.T_SLOW):
            assert np.array_equal(r.st.x[:, IZ], z_before)
    ran = np.array(ran)
    assert np.all(ran & (1 << L.T_FAST))
    assert list(np.flatnonzero(ran & (1 << L.T_MEDIUM))) == list(range(0, 200, 10))
    assert list(np.flatnonzero(ran & (1 << L.T_SLOW))) == [0, 100]


@given(st.lists(st.floats(0.001, 0.35), min_size=1, max_size=80))
def test_task_time_is_never_lost(dts):
    """For any sequence of tick lengths, every task's covered periods plus its pending time add
    up to the elapsed time, and no task waits longer than its period once released."""
    prm = params()
    stt, inp = core.new_state(prm), core.new_inputs(prm)
    covered = np.zeros(L.NT)
    for dt in dts:
        core.step(stt, inp, prm, dt)
        ran = int(stt.s[L.S_TASKS_RAN])
        for k in range(L.NT):
            if ran >> k & 1:
                covered[k] += stt.s[L.S_TASK_DT_S + k]
    periods = _task_periods(prm)
    for k in range(1, L.NT):
        pending = stt.s[L.S_TASK_T_S + k]
        assert covered[k] + pending == pytest.approx(sum(dts), abs=1e-9)
        assert 0.0 <= pending < periods[k] + 1e-9
    assert covered[L.T_FAST] == pytest.approx(sum(dts))
