"""The BMS node against a VCU played by cantools' Tester and a frame feeder (CMUs + current
sensor) on python-can's virtual bus, in lock-step on a SimClock."""

from __future__ import annotations

import can
import numpy as np
import pytest

from bms import layout as L
from bms.node import BmsNode, SimClock
from bms.node import stats as S
from bms.signal_map import load_map

from node_rig import Sim


@pytest.fixture
def sim():
    s = Sim()
    yield s
    s.close()


def to_drive(s: Sim) -> None:
    s.run(1.0)
    assert s.states[-1] == "STANDBY"
    s.vcu.request = "DRIVE"
    assert s.run_until("DRIVE", 3.0)


def test_drive_request_goes_through_precharge_to_drive(sim):
    sim.run(1.0)
    assert sim.states[-1] == "STANDBY" and sim.node.contactors_open()
    sim.vcu.request = "DRIVE"
    assert sim.run_until("DRIVE", 3.0)
    seq = [s for i, s in enumerate(sim.states) if i == 0 or s != sim.states[i - 1]]
    assert seq == ["INIT", "STANDBY", "PRECHARGE", "DRIVE"]
    # the precharge held the positive contactor open until the bus followed the pack
    pack_v = float(np.sum(sim.feeder.cell_v))
    assert sim.feeder.bus_v > 0.95 * pack_v
    # the VCU sees it on the bus
    got = sim.vcu.tester.expect("BMS_State", {"BMS_OpState": "DRIVE"}, timeout=2.0)
    assert got is not None and got["BMS_ContPosCmd"] == "CLOSED" and got["BMS_ContNegCmd"] == "CLOSED"
    st = sim.node.stats
    assert st.rejected_total == 0 and st.frames_accepted == st.frames_in > 1000 and st.frames_out > 100


def test_forged_request_with_bad_crc_never_changes_state(sim):
    sim.run(1.0)
    n = 0
    for _ in range(20):  # a forged DRIVE request (next counter, CRC wrong) between genuine STANDBY ones
        sig = sim.vcu.signals("DRIVE", 0, sim.vcu.counter)
        sig["VCU_Request_CRC"] ^= 0x5A
        sim.vcu.tester.send("VCU_Request", sig)
        n += 1
        sim.run(0.05)
    assert set(sim.states[100:]) == {"STANDBY"} and sim.node.contactors_open()
    assert sim.node.stats.rejected["bad_crc"] == n
    assert sim.node.stats.rejected_total == n


def test_replayed_request_never_changes_state(sim):
    sim.run(1.0)
    recorded = {}  # genuine STANDBY requests, one per counter value
    sim.vcu.next_s = float("inf")  # the test sends the VCU frames itself
    for _ in range(16):
        sig = sim.vcu.send()
        recorded[sig["VCU_Request_Counter"]] = sig
        sim.run(0.05)
    sim.vcu.request = "DRIVE"
    sim.vcu.next_s = sim.clock.now_s()
    assert sim.run_until("DRIVE", 3.0)
    start = len(sim.states)
    n = 0
    sim.vcu.next_s = float("inf")
    for _ in range(20):  # after each genuine DRIVE frame, replay the STANDBY frame with the same counter
        sig = sim.vcu.send()
        sim.vcu.tester.send("VCU_Request", recorded[sig["VCU_Request_Counter"]])
        n += 1
        sim.run(0.05)
    assert set(sim.states[start:]) == {"DRIVE"}
    assert sim.node.stats.rejected["counter_repeated"] == n


def test_replayed_older_frames_do_not_lock_out_the_genuine_sequence(sim):
    """Regression: a rejected replay (old counter, a jump) used to move the counter reference, so
    the next genuine frames were rejected too until COMM_VCU opened the contactors."""
    to_drive(sim)
    sim.vcu.next_s = float("inf")  # the test sends the VCU frames itself
    sent = []
    for _ in range(16):
        sent.append(sim.vcu.send())
        sim.run(0.05)
    start, accepted0, n = len(sim.states), sim.node.stats.frames_accepted, 0
    for i in range(60):  # 3 s: after each genuine frame, one sent 1..13 frames earlier (counter delta 15..3)
        sent.append(sim.vcu.send())
        sim.vcu.tester.send("VCU_Request", sent[-2 - i % 13])
        n += 1
        sim.run(0.05)
    st = sim.node.stats
    assert st.rejected["counter_jump"] == n and st.rejected_total == n
    assert st.frames_accepted - accepted0 >= 0.99 * (st.frames_in - n - accepted0)  # every genuine frame still taken
    assert set(sim.states[start:]) == {"DRIVE"}
    assert "COMM_VCU" not in sim.node.status()["faults"] and not st.silent["VCU"] and "VCU" not in st.timeouts


def test_counter_resynchronises_after_a_genuine_jump(sim):
    """A sender whose counter jumps (restart) is accepted again once its counter comes back within
    max_counter_delta of the last accepted one: at most one counter period (16 frames) later."""
    to_drive(sim)
    sim.vcu.next_s = float("inf")
    sim.vcu.counter = (sim.vcu.counter + 7) % 16  # 6 frames lost: a jump of 7 > max_counter_delta
    jumps = []
    for _ in range(20):
        sim.vcu.send()
        sim.run(0.05)
        jumps.append(sim.node.stats.rejected["counter_jump"])
    assert 0 < jumps[-1] <= 16 and jumps[-1] == jumps[-4]  # rejected for a while, then accepted again
    assert sim.node.stats.silent["VCU"] is False


def test_vcu_silence_trips_comm_vcu_and_opens_contactors(sim):
    to_drive(sim)
    sim.vcu.silent = True
    sim.run(1.5)
    status = sim.node.status()
    assert "COMM_VCU" in status["faults"]
    assert sim.node.contactors_open() and status["state"] in ("STANDBY", "ERROR")
    assert sim.node.stats.timeouts.get("VCU") == 1 and sim.node.stats.silent["VCU"]


def test_cmu_board_silence_trips_comm_cmu_and_reports_the_board(sim):
    sim.run(1.0)
    sim.feeder.silent_boards = {3}
    sim.run(1.5)
    status = sim.node.status()
    assert "COMM_CMU" in status["faults"]
    assert sim.node.stats.silent["CMU03"] and not sim.node.stats.silent["CMU02"]
    assert not sim.node.inp.board_age_s[3] < 1.0 and sim.node.inp.board_age_s[2] < 0.2
    sim.vcu.tester.flush_input()
    sim.run(0.2)
    faults = sim.vcu.tester.expect("BMS_Faults", None, timeout=2.0)
    assert faults is not None and faults["BMS_CmuTimeoutMask"] == 1 << 3 and faults["Flt_COMM_CMU"] == "YES"


def test_isense_silence_trips_comm_isense(sim):
    sim.run(1.0)
    sim.feeder.isense_silent = True
    sim.run(1.2)
    assert "COMM_ISENSE" in sim.node.status()["faults"]
    assert sim.node.inp.u[L.U_ISENSE_AGE_S] > 1.0


def test_shutdown_waits_for_break_current_then_opens_and_sends_final_state(sim):
    to_drive(sim)
    sim.feeder.i_a = -300.0  # above the 50 A break current: the contactors must stay closed

    def tick(t):
        sim.feeder.send_due(t)
        sim.vcu.send_due(t)
        sim.feeder.read_commands(sim.dt_s)
        if t > sim.clock.now_s() - 1e-9 and tick.t0 is None:
            tick.t0 = t
        if t - tick.t0 > 0.5:
            sim.feeder.i_a = 0.0
    tick.t0 = None
    sim.vcu.tester.flush_input()
    assert sim.node.shutdown(max_s=3.0, on_tick=tick)
    assert sim.node.status()["state"] == "STANDBY"
    assert sim.clock.now_s() - tick.t0 > 0.5  # not opened while 300 A flowed
    last = None
    while (m := sim.vcu.tester.expect("BMS_State", None, timeout=0.5)) is not None:
        last = m
    assert last is not None and last["BMS_OpState"] == "STANDBY" and last["BMS_ContPosCmd"] == "OPEN"


# ---- direct feeding: every rejection reason --------------------------------------------------------
@pytest.fixture
def lone():
    return BmsNode(None, load_map(), clock=SimClock())


def cmu_frames(node, board=0, cell_v=3.3, counter=0, group=None):
    """The cell-voltage frames of one board, encoded with the node's own receive codec."""
    rx = node.rx
    smap = node.smap
    c = rx.codec
    name = smap.cells[board * smap.pack.cells_per_board].message
    m = smap.db.get_message_by_name(name)
    v = np.zeros(c.n_slots)
    v[rx.cell_slots] = cell_v
    v[c.slot(f"{name}_Counter")] = counter
    rows, mux, _ = c.cycle_plan([name])
    if group is not None:
        rows, mux = rows[group:group + 1], mux[group:group + 1]
    data, _ = c.encode(rows, mux, v)
    return [can.Message(arbitration_id=m.frame_id, is_extended_id=False, data=bytes(d)) for d in data]


def test_each_rejection_reason_is_counted_and_changes_nothing(lone):
    good = cmu_frames(lone, cell_v=3.30, counter=1)
    assert list(lone.receive(good, 0.0)) == [S.OK] * 4
    lone.step_to(0.0)
    assert np.allclose(lone.inp.cell_v[:16], 3.30)
    bad = []
    f = cmu_frames(lone, cell_v=3.9, counter=2, group=0)[0]
    bad.append(can.Message(arbitration_id=f.arbitration_id, is_extended_id=False, data=f.data[:7]))   # bad_dlc
    bad.append(can.Message(arbitration_id=f.arbitration_id, is_extended_id=False,
                           data=bytes([f.data[0] | 0x0F]) + f.data[1:]))                              # unknown_mux
    oor = cmu_frames(lone, cell_v=4.0, counter=2, group=1)[0]
    d = bytearray(oor.data)
    d[1], d[2] = 0x7C, (d[2] & 0xE0) | 0x15  # cell raw 5500 (5.5 V > 5 V max), not the INVALID marker
    bad.append(can.Message(arbitration_id=oor.arbitration_id, is_extended_id=False, data=bytes(d)))   # out_of_range
    bad += cmu_frames(lone, cell_v=3.9, counter=1, group=2)                                            # counter_repeated
    bad.append(can.Message(arbitration_id=0x7FF, is_extended_id=True, data=bytes(8)))                # unknown_id
    bad.append(can.Message(arbitration_id=f.arbitration_id, is_extended_id=False, is_remote_frame=True, dlc=8))
    v = lone.receive(bad, 0.005)
    assert list(v) == [S.BAD_DLC, S.UNKNOWN_MUX, S.OUT_OF_RANGE, S.COUNTER_REPEATED, S.UNKNOWN_ID, S.NOT_DATA]
    stale = cmu_frames(lone, cell_v=3.9, counter=2, group=3)
    assert list(lone.receive(stale, -1.0)) == [S.STALE]
    lone.step_to(0.01)
    assert np.allclose(lone.inp.cell_v[:16], 3.30)  # nothing of the rejected frames arrived
    r = lone.stats.rejected
    assert (r["bad_dlc"], r["unknown_mux"], r["out_of_range"], r["counter_repeated"], r["stale"]) == (1, 1, 1, 1, 1)
    assert lone.stats.ignored == {"unknown_id": 1, "not_data": 1}
    # a counter that skipped is accepted on a frame without CRC, and counted as a gap
    assert list(lone.receive(cmu_frames(lone, cell_v=3.31, counter=5, group=0), 0.02)) == [S.OK_GAP]
    lone.step_to(0.02)
    assert np.allclose(lone.inp.cell_v[:4], 3.31) and lone.stats.sequence_gaps == 1


def test_invalid_marker_is_nan_with_the_frame_accepted(lone):
    f = cmu_frames(lone, cell_v=np.nan, counter=0, group=0)  # NaN encodes the INVALID marker
    assert list(lone.receive(f, 0.0)) == [S.OK]
    lone.step_to(0.0)
    assert np.all(np.isnan(lone.inp.cell_v[:4]))


def test_steps_follow_the_clock_and_tx_follows_the_dbc_periods(lone):
    for k in range(1, 101):
        lone.step_to(k * 0.01)
    assert lone.stats.steps == 101  # t = 0 .. 1.0 s in 10 ms
    by_id = {}
    for m in lone.sent:
        by_id[m.arbitration_id] = by_id.get(m.arbitration_id, 0) + 1
    db = lone.smap.db
    for name in lone.smap.tx_messages:
        msg = db.get_message_by_name(name)
        per_cycle = max(1, len({v for s in msg.signals for v in (s.multiplexer_ids or [])}))
        cycles = int(round(1.0 / (msg.cycle_time / 1000.0))) + 1
        assert by_id[msg.frame_id] == cycles * per_cycle, name
    # E2E frames carry consecutive counters and a valid CRC
    from bms.can.e2e import E2ESpec
    st = db.get_message_by_name("BMS_State")
    spec = E2ESpec.from_message(st)
    frames = [m for m in lone.sent if m.arbitration_id == st.frame_id]
    ctr = [st.decode(m.data)["BMS_State_Counter"] for m in frames]
    assert all(spec.check(bytes(m.data)) for m in frames)
    assert all((b - a) % 16 == 1 for a, b in zip(ctr, ctr[1:]))


class _LateClock(SimClock):
    """A node clock that reads ``lag_s`` after the tick being run (the node completes late)."""

    lag_s = 0.0

    def now_s(self) -> float:
        return super().now_s() + self.lag_s


def test_task_runs_and_overruns_are_counted_per_task():
    smap = load_map()
    node = BmsNode(None, smap, clock=SimClock())
    for k in range(1, 201):  # lock step: nothing is late
        node.step_to(k * node.period_s, poll=False, count_overruns=True)
    st = node.stats.as_dict()
    assert st["task_runs"] == {"fast": 201, "medium": 21, "slow": 3}
    assert st["task_overruns"] == {"fast": 0, "medium": 0, "slow": 0}
    # every tick completes 16 ms after its release: only the 10 ms task misses its deadline
    clock = _LateClock()
    late = BmsNode(None, smap, clock=clock, t0_s=0.0)
    clock.lag_s = 0.016
    for k in range(50):
        t = clock.set(k * late.period_s)
        late.step_to(t, poll=False, count_overruns=True)
    ov, runs = late.stats.task_overruns, late.stats.task_runs
    assert ov["fast"] == runs["fast"] == 50 and ov["medium"] == ov["slow"] == 0
    # 150 ms late: the medium task (100 ms) misses its deadline too, the 1 s one does not
    clock.lag_s = 0.15
    for k in range(50, 80):
        late.step_to(clock.set(k * late.period_s), poll=False, count_overruns=True)
    assert ov["medium"] == 3 and ov["slow"] == 0


def test_step_runs_on_a_replaced_state():
    """The node binds the compiled step to its arrays once; a state swapped in (a restore) is the
    one stepped from then on, the old one is left alone."""
    from bms import core
    node = BmsNode(None, load_map(), clock=SimClock())
    for k in range(1, 6):
        node.step_to(k * node.period_s, poll=False)
    old = node.st
    node.st = core.new_state(node.prm)
    old_s = old.s.copy()
    fresh = core.new_state(node.prm)
    for k in range(6, 9):
        node.step_to(k * node.period_s, poll=False)
    assert np.array_equal(old.s, old_s, equal_nan=True)
    assert not np.array_equal(node.st.s, fresh.s, equal_nan=True)
    assert not np.array_equal(node.st.out, fresh.out, equal_nan=True)
