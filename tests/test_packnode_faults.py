"""The pack node and the fault injector outside the closed loop: the node's frames decoded by
cantools against the model's sensor outputs and the DBC's periods, its command decoding, and each
fault kind's effect on the pack model's arrays, its sensor outputs and the frames."""

from __future__ import annotations

from collections import Counter

import cantools
import can
import numpy as np
import pytest

from bms.can.dbc import cycle_time_s
from bms.signal_map import load_map
from hil.cosim import DT_S, build_model
from hil.faults import KINDS, FaultInjector, FaultSpec
from hil.pack import IN_FLOW, IN_I_A, IN_TCOOL, IN_K0, K_NEG, K_POS, K_PRE, PK_K0, S_HI, S_LO, X_T, X_Z
from hil.packnode import PackNode
from hil.scenario import load_scenario


@pytest.fixture(scope="module")
def smap():
    return load_map("bms_fil_heavy_duty_192s")


@pytest.fixture(scope="module")
def db(smap):
    return cantools.database.load_file(str(smap.dbc_path))


def make_node(smap, scenario="fault_board_silent"):
    return PackNode(smap, build_model(load_scenario(scenario), smap))


def run(node, t0, t1, frames=False):
    """Step the node from t0 to t1 on the co-simulation tick; the frames sent meanwhile."""
    out = []
    for k in range(int(round(t0 / DT_S)) + 1, int(round(t1 / DT_S)) + 1):
        node.step(k * DT_S, DT_S)
        if frames:
            out += node.frames_due(k * DT_S)
    return out


def decoded(db, frames):
    """signal name -> last decoded physical value (cantools, no choices)."""
    vals = {}
    for fr in frames:
        vals.update(db.decode_message(fr.arbitration_id, fr.data, decode_choices=False))
    return vals


def test_frames_carry_the_sensor_outputs_at_the_dbc_scaling(smap, db):
    node = make_node(smap)
    frames = run(node, 0.0, 1.0, frames=True)
    vals = decoded(db, frames)
    meas, p = node.m.st.meas, node.m.p
    for refs, chans in ((smap.cells, range(p.n_series)), (smap.temps, p.n_series + np.arange(p.n_ts))):
        for ref, ch in zip(refs, chans):
            sig = db.get_message_by_name(ref.message).get_signal_by_name(ref.signal)
            want = min(max(meas[ch], sig.minimum), sig.maximum)
            assert vals[ref.signal] == pytest.approx(want, abs=sig.scale / 2 + 1e-9), ref.signal
    for key, ch in (("pack_i_a", p.ch_current), ("pack_v", p.ch_pack_v), ("bus_v", p.ch_bus_v)):
        ref = smap.scalars[key]
        sig = db.get_message_by_name(ref.message).get_signal_by_name(ref.signal)
        assert vals[ref.signal] == pytest.approx(meas[ch], abs=sig.scale / 2 + 1e-9), key
    # the true cell voltages and temperatures are what the sensors saw (within noise and offset)
    assert np.allclose(meas[:p.n_series], node.m.st.elem[:, 2], atol=0.01)


def test_frames_follow_the_dbc_periods_with_alive_counters(smap, db):
    node = make_node(smap)
    frames = run(node, 0.0, 2.0, frames=True)
    per_id = Counter(f.arbitration_id for f in frames)
    for name in {m for ms in node.board_msgs for m in ms} | {"ISENSE_Current", "ISENSE_Voltage"}:
        msg = db.get_message_by_name(name)
        mux = max(1, len({s.multiplexer_ids[0] for s in msg.signals if s.multiplexer_ids}))
        want = 2.0 / cycle_time_s(smap.db.get_message_by_name(name)) * mux
        assert per_id[msg.frame_id] == pytest.approx(want, abs=mux), name
        ctr = [s.name for s in msg.signals if s.name.endswith("_Counter")]
        if ctr:
            seen = [db.decode_message(f.arbitration_id, f.data)[ctr[0]] for f in frames if f.arbitration_id == msg.frame_id]
            steps = np.diff(seen) % 16
            assert set(steps) <= {0, 1} and np.count_nonzero(steps) >= len(seen) // mux - 2, name
    assert all(not f.is_extended_id and len(f.data) == db.get_message_by_frame_id(f.arbitration_id).length for f in frames)


def test_contactor_and_bleed_commands_are_obeyed(smap, db):
    node = make_node(smap)
    st = db.get_message_by_name("BMS_State")
    sig = {s.name: 0 for s in st.signals}
    sig.update(BMS_ContNegCmd=1, BMS_ContPreCmd=1, BMS_ContPosCmd=0)
    bal = db.get_message_by_name("BMS_Balancing")
    frames = [can.Message(arbitration_id=st.frame_id, is_extended_id=False, data=st.encode(sig, strict=False)),
              can.Message(arbitration_id=bal.frame_id, is_extended_id=False,
                          data=bal.encode({"BMS_Balancing_Board": 3, "BMS_Balancing_Counter": 0, "BalMask_CMU03": 0b101},
                                          strict=False)),
              can.Message(arbitration_id=0x7FF, is_extended_id=False, data=b"\xff" * 8)]  # not addressed to the pack
    assert node.on_frames(frames) == 2
    inp = node.m.inp
    assert inp[IN_K0 + K_NEG] == 1.0 and inp[IN_K0 + K_PRE] == 1.0 and inp[IN_K0 + K_POS] == 0.0
    cpb = smap.pack.cells_per_board
    assert node.m.bleed[3 * cpb:4 * cpb].tolist() == [1, 0, 1] + [0] * (cpb - 3)
    assert not node.m.bleed[:3 * cpb].any() and not node.m.bleed[4 * cpb:].any()
    # remote frames and frames longer than 8 bytes are ignored
    assert node.on_frames([can.Message(arbitration_id=st.frame_id, is_remote_frame=True, is_extended_id=False)]) == 0


def injector(smap, specs, scenario="fault_board_silent"):
    node = make_node(smap, scenario)
    return node, FaultInjector(specs, node)


def spec(kind, **kw):
    kw.setdefault("at_s", 1.0)
    return FaultSpec(kind, **kw)


def test_timeline_at_until_and_condition(smap):
    a = spec("current_offset", value=7.0, until_s=2.0)
    b = spec("current_gain", at_s=None, when="soc_mean < 0.5", value=0.1)
    node, inj = injector(smap, [a, b])
    f, p = inj.f, inj.p
    asked = []
    assert not inj.due(0.5, lambda: asked.append(1) or {"soc_mean": 0.6})
    assert f.sens_offset[p.ch_current] == 0.0 and asked  # the condition was asked, not yet true
    assert inj.due(1.0, lambda: {"soc_mean": 0.6}) and a.t_on == 1.0 and f.sens_offset[p.ch_current] == 7.0
    assert inj.active(1.0) == [a]
    assert inj.due(1.5, lambda: {"soc_mean": 0.4}) and b.t_on == 1.5 and f.sens_gain_err[p.ch_current] == 0.1
    assert inj.due(2.0, dict) and a.t_off == 2.0 and f.sens_offset[p.ch_current] == 0.0
    assert inj.active(2.0) == [b]
    with pytest.raises(ValueError, match="unknown fault kind"):
        FaultInjector([FaultSpec("melt", at_s=0.0)], node)
    with pytest.raises(KeyError):
        FaultInjector([spec("frame_corrupt", message="NO_SUCH_MESSAGE")], node)


def test_sensor_fault_kinds_change_the_sensor_outputs(smap):
    faults = [spec("cell_v_stuck", cell=5), spec("cell_v_noisy", cell=6, value=0.05),
              spec("cell_v_drift", cell=7, value=0.01), spec("temp_sensor_open", sensor=3),
              spec("temp_sensor_short", sensor=4), spec("temp_sensor_drift", sensor=5, value=0.5),
              spec("sense_wire_open", wire=20, value=0.3), spec("current_offset", value=5.0),
              spec("current_gain", value=0.1)]
    node, inj = injector(smap, faults)
    p, meas, inp = node.m.p, node.m.st.meas, node.m.inp
    run(node, 0.0, 1.0)
    clean = meas.copy()
    inj.due(1.0)
    inp[IN_I_A] = -100.0  # open contactors: no current flows, the sensor reads its offset
    cell6, cell7, t5 = [], [], []
    for k in range(101, 301):
        node.step(k * DT_S, DT_S)
        cell6.append(meas[6])
        cell7.append(meas[7])
        t5.append(meas[p.ch_temp(5)])
    assert meas[5] == pytest.approx(clean[5], abs=1e-6)  # frozen at the reading it had
    assert np.std(cell6) == pytest.approx(0.05, rel=0.25)
    assert cell7[-1] - cell7[0] == pytest.approx(0.01 * 1.99, abs=0.004)
    assert meas[p.ch_temp(3)] == p.sens[p.ch_temp(3), S_LO] and meas[p.ch_temp(4)] == p.sens[p.ch_temp(4), S_HI]
    assert t5[-1] - t5[0] == pytest.approx(0.5 * 1.99, abs=0.3)
    assert meas[19] - clean[19] == pytest.approx(0.3, abs=0.01) and meas[20] - clean[20] == pytest.approx(-0.3, abs=0.01)
    assert meas[p.ch_current] - clean[p.ch_current] == pytest.approx(5.0, abs=1.0)
    # gain: with current flowing the reading is (1 + 0.1) times the true current
    inj.f.sens_offset[p.ch_current] = 0.0
    node.m.st.pk[PK_K0:PK_K0 + 3] = 1.0
    inp[IN_K0 + K_NEG] = inp[IN_K0 + K_POS] = 1.0
    run(node, 3.0, 3.5)
    true_i = node.truth()["pack_i_a"]
    assert true_i < -50.0 and meas[p.ch_current] == pytest.approx(1.1 * true_i, rel=0.02)
    # switching off restores the channels (the accumulated drift stays: it is the sensor's state)
    for s in faults:
        s.until_s = 4.0
    inj.due(4.0)
    run(node, 3.5, 4.5)
    assert not inj.f.sens_stuck.any() and not inj.f.sens_noise.any() and not inj.f.wire_open.any()
    assert inj.f.sens_gain_err[p.ch_current] == 0.0 and not inj.f.sens_drift_per_s.any()


def test_physical_fault_kinds_change_the_pack(smap):
    short = spec("internal_short", cell=9, value=2.0)
    hot = spec("cell_overheat", board=2, value=70.0)
    node, inj = injector(smap, [short, hot, spec("coolant_loss"), spec("contactor_welded", contactor="pos"),
                                spec("precharge_open")])
    m, p = node.m, node.m.p
    inj.due(1.0)
    assert inj.f.short_s[9 * p.n_parallel] == 2.0 and inj.f.coolant_flow_scale[0] == 0.0
    assert inj.f.k_welded[K_POS] == 1 and inj.f.k_welded[K_NEG] == 0 and inj.f.precharge_open[0] == 1
    z0 = node.true_element_soc().copy()
    for k in range(101, 601):  # forced temperature re-applied every tick
        node.step(k * DT_S, DT_S)
        inj.due(k * DT_S)
    cpb = node.cpb * p.n_parallel
    assert np.all(m.st.x[2 * cpb:3 * cpb, X_T] == 70.0) and m.st.x[:2 * cpb, X_T].max() < 30.0
    # the shorted element loses G * OCV / (n_parallel * Q) of SOC per second, its neighbours nothing
    dz = node.true_element_soc() - z0
    cap_as = p.cap_as[9 * p.n_parallel:10 * p.n_parallel].sum()
    assert abs(dz[8]) < 2e-5 and abs(dz[10]) < 2e-5
    assert dz[9] == pytest.approx(-2.0 * 3.3 * 5.0 / cap_as, rel=0.1)
    # welded: the positive contactor is closed although never commanded
    assert m.st.pk[PK_K0 + K_POS] == 1.0 and m.inp[IN_K0 + K_POS] == 0.0
    for s in (short, hot):
        s.until_s = 7.0
    inj.due(7.0)
    assert inj.f.short_s[9 * p.n_parallel] == 0.0 and not inj.overheat


def test_precharge_open_keeps_the_bus_down(smap):
    node, inj = injector(smap, [spec("precharge_open", until_s=2.0)])
    m = node.m
    inj.due(1.0)
    m.inp[IN_K0 + K_NEG] = m.inp[IN_K0 + K_PRE] = 1.0
    run(node, 1.0, 2.0)
    assert node.truth()["bus_v"] < 0.01 * node.truth()["pack_v"]
    inj.due(2.0)  # repaired: the same commands precharge the bus
    run(node, 2.0, 3.0)
    assert node.truth()["bus_v"] > 0.9 * node.truth()["pack_v"]


def test_coolant_loss_heats_a_pack_that_the_coolant_would_cool(smap):
    """Coolant at 20 degC and 0.8 kg/s pulls a 53.5 degC pack down at 300 A; without flow the
    same pack heats up."""
    ends = []
    for loss in (False, True):
        node, inj = injector(smap, [spec("coolant_loss", at_s=0.0)] if loss else [])
        m = node.m
        m.st.x[:, X_T] = 53.5
        m.inp[IN_K0 + K_NEG] = m.inp[IN_K0 + K_POS] = 1.0
        m.st.pk[PK_K0:PK_K0 + 3] = [1.0, 0.0, 1.0]
        m.inp[IN_I_A] = -300.0
        m.inp[IN_TCOOL], m.inp[IN_FLOW] = 20.0, 0.8
        inj.due(0.0)
        for k in range(1, 3001):
            node.step(k * 0.02, 0.02)
        ends.append(float(m.st.x[:, X_T].max()))
    assert ends[0] < 53.5 and ends[1] > 53.5 + 0.3


def test_communication_and_frame_faults_act_on_the_frames(smap, db):
    node, inj = injector(smap, [spec("board_silent", board=4), spec("isense_silent", until_s=1.5)])
    frames = run(node, 0.0, 1.0, frames=True)
    cmu4 = {db.get_message_by_name(n).frame_id for n in node.board_msgs[4]}
    isense = {db.get_message_by_name(n).frame_id for n in ("ISENSE_Current", "ISENSE_Voltage")}
    assert inj.filter(frames) == frames  # nothing active yet: the same list
    inj.due(1.0)
    more = run(node, 1.0, 2.0, frames=True)
    kept = inj.filter(more)
    ids = {f.arbitration_id for f in kept}
    assert not ids & cmu4 and not ids & isense and {f.arbitration_id for f in more} >= cmu4 | isense
    inj.due(2.0)  # the current sensor is back, the board stays silent
    ids = {f.arbitration_id for f in inj.filter(run(node, 2.0, 2.5, frames=True))}
    assert ids & isense and not ids & cmu4


def test_vcu_and_charger_silent_drop_their_frames(smap):
    node = make_node(smap)
    inj = FaultInjector([spec("vcu_silent"), spec("charger_silent", at_s=2.0)], node, {0x123}, {0x456})
    frames = [can.Message(arbitration_id=i, is_extended_id=False, data=bytes(8)) for i in (0x123, 0x456, 0x200)]
    inj.due(1.0)
    assert [f.arbitration_id for f in inj.filter(frames)] == [0x456, 0x200]
    inj.due(2.0)
    assert [f.arbitration_id for f in inj.filter(frames)] == [0x200]


@pytest.mark.parametrize("kind", ["frame_corrupt", "frame_replay", "frame_forge"])
def test_frame_faults(smap, db, kind):
    s = spec(kind, message="ISENSE_Current", value=123.0)
    node, inj = injector(smap, [s])
    fid = db.get_message_by_name("ISENSE_Current").frame_id
    genuine = [f for f in run(node, 0.0, 1.0, frames=True) if f.arbitration_id == fid]
    inj.filter(genuine)  # history for the replays
    inj.due(1.0)
    new = [f for f in run(node, 1.0, 1.2, frames=True) if f.arbitration_id == fid]
    out = inj.filter(new)
    assert s.injected == len(new) == 20
    if kind == "frame_corrupt":
        assert len(out) == len(new)
        assert all(o.data[0] == n.data[0] ^ 1 and o.data[1:] == n.data[1:] for o, n in zip(out, new))
    elif kind == "frame_replay":
        assert out[:len(new)] == new and len(out) == 2 * len(new)
        assert all(bytes(r.data) in {bytes(g.data) for g in genuine + new} for r in out[len(new):])
    else:
        forged = out[len(new):]
        assert len(forged) == len(new)
        assert all(db.decode_message(fid, f.data, decode_choices=False)["ISENSE_Current"] == pytest.approx(123.0, abs=0.01)
                   for f in forged)


def test_every_kind_is_covered_here():
    """A new fault kind needs its effect tested in this file."""
    covered = {"cell_v_stuck", "cell_v_noisy", "cell_v_drift", "temp_sensor_open", "temp_sensor_short",
               "temp_sensor_drift", "sense_wire_open", "current_offset", "current_gain", "internal_short",
               "cell_overheat", "coolant_loss", "contactor_welded", "precharge_open", "board_silent",
               "isense_silent", "frame_corrupt", "frame_replay", "frame_forge", "vcu_silent", "charger_silent"}
    assert set(KINDS) == covered
