"""hil.timescale: the k-times slower DBC, pack and map of a long closed-loop run."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from bms import layout as L
from bms.can.dbc import database
from bms.signal_map import load_map
from bms.diag_table import BY_NAME, FAULTS
from hil.timescale import SAMPLE_TASK_FAULTS, TIME_THRESHOLD_FAULTS, scaled_map


def test_scaled_map_multiplies_cycle_times_step_and_comm_timeouts_only(tmp_path):
    base = load_map()
    sm = load_map(scaled_map(10, tmp_path))
    assert sm.step_period_s == pytest.approx(10 * base.step_period_s)
    a, b = database(base.dbc_path), sm.db
    assert [m.name for m in a.messages] == [m.name for m in b.messages]
    for ma, mb in zip(a.messages, b.messages):
        assert (mb.frame_id, mb.length) == (ma.frame_id, ma.length)
        assert mb.cycle_time == (10 * ma.cycle_time if ma.cycle_time else ma.cycle_time)

        def layout(m):
            return {s.name: (s.start, s.length, s.byte_order, s.is_signed, s.scale, s.offset, s.minimum, s.maximum,
                             s.multiplexer_ids) for s in m.signals}
        assert layout(mb) == layout(ma)
    pa, pb = base.pack.params(), sm.pack.params()
    for f in FAULTS:  # every check sees the same number of samples: sample-counting times x 10, nothing else
        a, b = pa.diag[f.id], pb.diag[f.id]
        times = (L.D_DEB_S, L.D_CRIT_DEB_S, L.D_HEAL_S)
        thresholds = (L.D_WARN, L.D_FAULT, L.D_CRIT, L.D_HYST)
        kt = 10.0 if f.name in SAMPLE_TASK_FAULTS else 1.0
        kq = 10.0 if f.name in TIME_THRESHOLD_FAULTS else 1.0
        np.testing.assert_allclose(b[list(times)], kt * a[list(times)], err_msg=f.name)
        np.testing.assert_allclose(b[list(thresholds)], kq * a[list(thresholds)], err_msg=f.name)
        rest = [i for i in range(L.ND) if i not in times + thresholds]
        np.testing.assert_array_equal(b[rest], a[rest], err_msg=f.name)
    assert {"COMM_CMU", "COMM_ISENSE", "COMM_VCU", "SENSOR_STUCK"} == TIME_THRESHOLD_FAULTS
    assert "PACK_V_PLAUSIBILITY" in SAMPLE_TASK_FAULTS and "CELL_SELF_DISCHARGE" not in SAMPLE_TASK_FAULTS
    assert pb.diag[BY_NAME["COMM_VCU"].id, L.D_FAULT] == pytest.approx(10 * pa.diag[BY_NAME["COMM_VCU"].id, L.D_FAULT])
    assert sm.pack.pp[L.P_TASK_FAST_S] == pytest.approx(10 * base.pack.pp[L.P_TASK_FAST_S])
    assert sm.pack.pp[L.P_TASK_SLOW_S] == pytest.approx(max(base.pack.pp[L.P_TASK_SLOW_S], sm.step_period_s))
    assert database(base.dbc_path).get_message_by_name("CMU00_CellV").cycle_time == 100  # the project DBC untouched


def test_scaled_map_errors(tmp_path):
    with pytest.raises(ValueError, match="integer >= 1"):
        scaled_map(0, tmp_path)


def test_scenario_time_scale_runs_the_loop_on_the_scaled_schedule():
    """``[scenario] time_scale = k``: the run uses the k-times slower map and a k x 10 ms tick."""
    from hil.cosim import DT_S, CoSim
    from hil.scenario import load_scenario

    scn = load_scenario("fault_internal_short")
    assert scn.time_scale == 50
    sim = CoSim(scn, "direct")
    try:
        assert sim.dt_s == pytest.approx(50 * DT_S) and sim.scn.time_scale == 1
        assert sim.smap.step_period_s == pytest.approx(50 * load_map().step_period_s)
        assert sim.smap.db.get_message_by_name("CMU00_CellV").cycle_time == 50 * 100
    finally:
        sim.close()


def test_coarse_schedule_drive_trips_no_sample_age_check():
    """Yard-tractor bursts on the 50x coarser schedule (cell frames every 5 s, current every 0.5 s):
    with only the COMM timeouts scaled, the cell sum held for a frame period beside a fresh pack
    voltage raised PACK_V_PLAUSIBILITY after 11 s and a held reading SENSOR_STUCK after 12.5 s.
    With the debounces and the stuck time scaled (same number of samples), no fault."""
    from hil.cosim import run_scenario
    from hil.scenario import load_scenario

    scn = dataclasses.replace(load_scenario("yard_tractor_shift"), time_scale=50, duration_s=120.0, record_period_s=0.5)
    res = run_scenario(scn, "direct")
    assert L.ST_DRIVE in res.states_seen.tolist()
    assert res.faults_raised == {}
    assert np.min(res.rec["pack_i_a"]) < -400.0  # the bursts did happen
