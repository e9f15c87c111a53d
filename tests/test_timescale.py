"""hil.timescale: the k-times slower DBC, pack and map of a long closed-loop run."""

from __future__ import annotations

import pytest

from bms import layout as L
from bms.can.dbc import database
from bms.signal_map import load_map
from hil.timescale import scaled_map


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
    assert (pb.diag != pa.diag).any()  # the COMM_* rows, x 10
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
