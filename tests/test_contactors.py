"""Operating state machine and contactors: precharge sequence, retries, break-current rule,
ERROR exit, and hypothesis safety properties over random requests and measurements."""

from __future__ import annotations

import numpy as np
from bms_rig import Rig, params
from hypothesis import given
from hypothesis import strategies as st

from bms import core
from bms import layout as L
from bms.contactors import gate_opening

DT = 0.1
MAINS = L.K_NEG | L.K_POS


def _standby():
    r = Rig()
    r.run_until(lambda x: x.state == L.ST_STANDBY, t_max_s=2.0)
    return r


def test_init_then_standby_with_everything_open():
    r = Rig()
    r.step(DT)
    assert r.state == L.ST_INIT and r.cmd == 0
    t = r.run_until(lambda x: x.state == L.ST_STANDBY)
    assert abs(t + DT - r.prm.pp[L.P_INIT_S]) <= DT + 1e-9 and r.cmd == 0


def test_precharge_sequence():
    r = _standby()
    r.inp.u[L.U_VCU_REQUEST] = L.REQ_DRIVE
    r.step(DT)
    assert r.state == L.ST_PRECHARGE and r.cmd == L.K_NEG | L.K_PRE
    frac = r.prm.pp[L.P_PRE_FRAC]
    seen_pos = False
    while r.state == L.ST_PRECHARGE:
        prev = r.cmd
        r.step(DT)
        bus, pack = r.inp.u[L.U_BUS_V], r.inp.u[L.U_PACK_V]  # what the step saw
        if r.cmd & L.K_POS and not prev & L.K_POS:
            assert bus >= frac * pack  # the measurement the step saw
            assert r.cmd == L.K_NEG | L.K_PRE | L.K_POS  # overlap
            seen_pos = True
    assert seen_pos and r.state == L.ST_DRIVE and r.cmd == MAINS


def test_precharge_timeout_retries_then_fault():
    r = _standby()
    r.bus_blocked = True
    r.inp.u[L.U_VCU_REQUEST] = L.REQ_DRIVE
    pp = r.prm.pp
    closes = 0
    prev = 0
    t = 0.0
    while t < 60.0 and r.state != L.ST_ERROR:
        r.step(DT)
        t += DT
        assert not r.cmd & L.K_POS
        if r.cmd & L.K_PRE and not prev & L.K_PRE:
            closes += 1
        prev = r.cmd
    assert r.state == L.ST_ERROR
    assert closes == int(pp[L.P_PRE_ATTEMPTS])
    expected = pp[L.P_PRE_ATTEMPTS] * pp[L.P_PRE_TIMEOUT_S] + (pp[L.P_PRE_ATTEMPTS] - 1) * pp[L.P_PRE_RETRY_S]
    assert expected <= t <= expected + 1.0
    assert r.st.fst[L.F_PRECHARGE_FAIL, L.FS_SEV] == L.SEV_FAULT
    # the bus is fixed, but the pack stays in ERROR until the vehicle resets in STANDBY
    r.bus_blocked = False
    r.step(n=20)
    assert r.state == L.ST_ERROR and r.cmd == 0
    r.inp.u[L.U_VCU_REQUEST] = L.REQ_STANDBY
    r.inp.u[L.U_VCU_RESET] = 1.0
    r.step(n=2)
    r.inp.u[L.U_VCU_RESET] = 0.0
    assert r.state == L.ST_STANDBY
    assert r.close(L.REQ_DRIVE) < 2.0


def test_request_withdrawn_during_precharge():
    r = _standby()
    r.bus_blocked = True
    r.inp.u[L.U_VCU_REQUEST] = L.REQ_CHARGE
    r.step(n=3)
    assert r.state == L.ST_PRECHARGE
    r.inp.u[L.U_VCU_REQUEST] = L.REQ_STANDBY
    r.step(DT)
    assert r.state == L.ST_STANDBY and r.cmd == 0


def test_charge_needs_a_charger():
    r = _standby()
    r.inp.u[L.U_CHARGER_CONNECTED] = 0.0
    r.inp.u[L.U_VCU_REQUEST] = L.REQ_CHARGE
    r.step(n=10)
    assert r.state == L.ST_STANDBY and r.cmd == 0
    r.inp.u[L.U_CHARGER_CONNECTED] = 1.0
    r.run_until(lambda x: x.state == L.ST_CHARGE, t_max_s=3.0)


def test_standby_request_waits_for_the_break_current():
    r = Rig()
    r.close(L.REQ_DRIVE)
    r.i_load_a = -400.0
    r.inp.u[L.U_VCU_REQUEST] = L.REQ_STANDBY
    r.step(n=30)
    assert r.cmd == MAINS and r.out[L.Y_I_DIS_LIM_A] == 0.0
    r.i_load_a = -0.5 * r.prm.pp[L.P_BREAK_A]
    r.step(DT)
    assert r.cmd == 0 and r.state == L.ST_STANDBY


def test_drive_to_charge_goes_through_a_new_precharge():
    r = Rig()
    r.close(L.REQ_DRIVE)
    r.inp.u[L.U_VCU_REQUEST] = L.REQ_CHARGE
    states = []
    for _ in range(30):
        r.step(DT)
        states.append(r.state)
    assert L.ST_STANDBY in states and L.ST_PRECHARGE in states and r.state == L.ST_CHARGE


def test_error_exit_needs_no_held_fault_and_the_vehicle():
    r = Rig()
    r.close(L.REQ_DRIVE)
    r.silent_boards = {2}
    r.run_until(lambda x: x.state == L.ST_ERROR, t_max_s=5.0)
    r.inp.u[L.U_VCU_REQUEST] = L.REQ_STANDBY
    r.inp.u[L.U_VCU_RESET] = 1.0  # reset while the board is still silent: no exit
    r.step(n=5)
    assert r.state == L.ST_ERROR
    r.inp.u[L.U_VCU_RESET] = 0.0
    r.silent_boards = set()
    r.step(n=30)
    assert r.state == L.ST_ERROR  # condition gone, but latched until the vehicle asks
    r.inp.u[L.U_VCU_RESET] = 1.0
    r.step(DT)
    r.inp.u[L.U_VCU_RESET] = 0.0
    r.step(DT)
    assert r.state == L.ST_STANDBY


def test_gate_opening_rule():
    assert gate_opening(MAINS, 0, 10.0, 50.0, False) == 0
    assert gate_opening(MAINS, 0, 60.0, 50.0, False) == MAINS
    assert gate_opening(MAINS, 0, 60.0, 50.0, True) == 0
    assert gate_opening(MAINS, 0, np.inf, 50.0, False) == MAINS  # unknown current: keep closed
    full = MAINS | L.K_PRE
    assert gate_opening(full, MAINS, 500.0, 50.0, False) == MAINS  # shunted precharge contactor
    assert gate_opening(L.K_NEG | L.K_PRE, 0, 500.0, 50.0, False) == L.K_NEG | L.K_PRE


# ---- safety properties over random requests and measurements ---------------------------------
# mostly healthy values, so that closing sequences happen, with faults mixed in
segment = st.tuples(
    st.sampled_from([L.REQ_STANDBY, L.REQ_DRIVE, L.REQ_CHARGE, 7]),  # 7: an invalid request value
    st.booleans(),                                   # reset flag
    st.floats(-900.0, 900.0),                        # load current when closed, A
    st.sampled_from([0.0] * 6 + [30.0]),             # current-sensor offset, A
    st.sampled_from([False] * 4 + [True]),           # bus blocked (precharge cannot succeed)
    st.sampled_from([None] * 8 + [0, L.K_POS]),      # auxiliary contacts stuck
    st.sampled_from([3.3] * 7 + [2.7, 3.95, 4.15]),  # cell rest voltage
    st.sampled_from([25.0] * 7 + [-5.0, 58.0, 70.0]),  # temperature
    st.sampled_from([()] * 9 + [(4,)]),              # silent boards
    st.sampled_from([False] * 9 + [True]),           # current sensor silent
    st.integers(1, 40),                              # steps
)


@given(st.lists(segment, min_size=1, max_size=12))
def test_no_positive_close_without_precharge_no_opening_above_break_current(segments):
    prm = params()
    r = Rig(prm=prm)
    pp = prm.pp
    crit_s = -1.0  # how long the reported severity has been CRITICAL (harness's own count)
    for req, reset, load, ioff, blocked, fb, v, temp, silent, isilent, n in segments:
        r.inp.u[L.U_VCU_REQUEST] = req
        r.inp.u[L.U_VCU_RESET] = float(reset)
        r.i_load_a, r.i_offset_a, r.bus_blocked, r.fb_override = load, ioff, blocked, fb
        r.v_rest[:] = v
        r.inp.temp_c[:] = temp
        r.silent_boards, r.isense_silent = set(silent), isilent
        for _ in range(n):
            prev, prev_state, prev_phase = r.cmd, r.state, r.st.s[L.S_PRE_PHASE]
            r.step(DT)
            u = r.inp.u  # the inputs this step saw
            cmd = r.cmd
            if cmd & L.K_POS and not prev & L.K_POS:
                assert prev_state == L.ST_PRECHARGE and prev_phase == 1.0
                assert u[L.U_HV_VALID] > 0.5 and u[L.U_BUS_V] >= pp[L.P_PRE_FRAC] * u[L.U_PACK_V]
            opened = prev & ~cmd
            shunted = opened == L.K_PRE and prev & L.K_POS and cmd & L.K_POS
            if opened and not shunted:
                fresh = u[L.U_ISENSE_VALID] > 0.5 and u[L.U_ISENSE_AGE_S] < prm.diag[L.F_COMM_ISENSE, L.D_WARN]
                if not (fresh and abs(u[L.U_PACK_I_A]) <= pp[L.P_BREAK_A]):
                    assert r.out[L.Y_SEVERITY] == L.SEV_CRITICAL
                    assert crit_s + DT >= pp[L.P_CRIT_OPEN_S] - 1e-9, crit_s
            crit_s = (crit_s + DT if crit_s >= 0 else 0.0) if r.out[L.Y_SEVERITY] == L.SEV_CRITICAL else -1.0
            if r.state in (L.ST_DRIVE, L.ST_CHARGE):
                assert cmd & L.K_NEG and (cmd & L.K_POS or r.st.s[L.S_OPENING] > 0)


def _fault_sev(r, name):
    return r.st.fst[getattr(L, "F_" + name), L.FS_SEV]


def test_single_welded_main_contactor_trips_contactor_feedback():
    """A welded positive contactor is invisible to the bus-voltage weld check (the open negative
    contactor cuts the bus off) but its auxiliary contact still reads closed after the opening:
    CONTACTOR_FEEDBACK trips within settle + debounce, the pack goes to ERROR and never closes
    again; CONTACTOR_WELDED stays quiet."""
    r = Rig(seed=1)
    r.close(L.REQ_DRIVE)
    r.weld = L.K_POS
    r.step(0.01, n=50)
    assert _fault_sev(r, "CONTACTOR_FEEDBACK") == L.SEV_NONE  # closed as commanded: nothing to see
    r.inp.u[L.U_VCU_REQUEST] = L.REQ_STANDBY
    t_open = r.run_until(lambda x: x.cmd & (L.K_NEG | L.K_POS) == 0, dt_s=0.01, t_max_s=1.0)
    t = r.run_until(lambda x: _fault_sev(x, "CONTACTOR_FEEDBACK") >= L.SEV_FAULT, dt_s=0.01, t_max_s=1.0)
    settle, deb = r.prm.pp[L.P_CONT_SETTLE_S], r.prm.diag[L.F_CONTACTOR_FEEDBACK, L.D_DEB_S]
    assert t <= settle + deb + 0.03, (t_open, t)
    assert r.st.fst[L.F_CONTACTOR_FEEDBACK, L.FS_Q] == 1.0  # one contactor disagrees
    r.run_until(lambda x: x.state == L.ST_ERROR, dt_s=0.01, t_max_s=0.5)
    r.inp.u[L.U_VCU_REQUEST] = L.REQ_DRIVE
    r.step(0.01, n=int(2 * r.prm.pp[L.P_WELD_CHECK_S] / 0.01))
    assert r.cmd == 0 and r.state == L.ST_ERROR
    assert _fault_sev(r, "CONTACTOR_WELDED") == L.SEV_NONE


def test_contactor_that_does_not_close_trips_contactor_feedback():
    r = Rig(seed=1)
    r.close(L.REQ_DRIVE)
    r.fb_override = L.K_NEG  # the positive auxiliary contact stays open: the contactor did not close
    t = r.run_until(lambda x: _fault_sev(x, "CONTACTOR_FEEDBACK") >= L.SEV_FAULT, dt_s=0.01, t_max_s=1.0)
    assert t <= r.prm.pp[L.P_CONT_SETTLE_S] + r.prm.diag[L.F_CONTACTOR_FEEDBACK, L.D_DEB_S] + 0.03
    r.run_until(lambda x: x.cmd == 0 and x.state == L.ST_ERROR, dt_s=0.01, t_max_s=2.0)


def test_no_closing_sequence_while_an_auxiliary_contact_reads_closed():
    """A contactor welded in STANDBY: a drive request never starts the precharge into it."""
    r = _standby()
    r.weld = L.K_POS
    r.step(0.01)  # the feedback now reads the welded contact
    r.inp.u[L.U_VCU_REQUEST] = L.REQ_DRIVE
    for _ in range(100):
        r.step(0.01)
        assert r.cmd == 0 and r.state in (L.ST_STANDBY, L.ST_ERROR)
    assert _fault_sev(r, "CONTACTOR_FEEDBACK") >= L.SEV_FAULT and r.state == L.ST_ERROR


def test_stale_feedback_is_not_read_as_a_mismatch_but_trips_comm_isense():
    r = Rig(seed=1)
    r.close(L.REQ_DRIVE)
    r.fb_override = 0
    for k in range(60):
        r.plant(0.01)
        r.inp.u[L.U_CONTACTOR_FB_VALID] = 0.0  # the feedback frame fails its checks from now on
        r.inp.u[L.U_CONTACTOR_FB_AGE_S] = 0.01 * (k + 1)
        core.step(r.st, r.inp, r.prm, 0.01)
    assert r.st.fst[L.F_CONTACTOR_FEEDBACK, L.FS_SEV] == L.SEV_NONE
    assert np.isnan(r.st.fst[L.F_CONTACTOR_FEEDBACK, L.FS_Q])
    assert r.st.fst[L.F_COMM_ISENSE, L.FS_SEV] >= L.SEV_FAULT
