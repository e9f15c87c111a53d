"""Every fault of the table, driven through the whole step on the reference pack: detection
within the debounce time, the reaction, the latch and the recovery rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
from bms_rig import Rig
from hypothesis import given
from hypothesis import strategies as st

from bms import diag_table as T
from bms import layout as L
from bms.soc.layout import ICAP, IZ

DT = 0.1


# ---- how to drive each fault: (operating request, load current A, apply(rig), clear(rig)) ----
def _v(cell, v):
    def f(r):
        r.v_rest[cell] = v
    return f


def _temp(j, t):
    def f(r):
        r.inp.temp_c[j] = t
    return f


def _attr(name, val):
    def f(r):
        setattr(r, name, val)
    return f


def _load(i_a):
    def f(r):
        r.i_load_a = i_a
    return f


def _wire(r, on):
    r.v_rest[4] = 3.3 + (0.3 if on else 0.0)
    r.v_rest[5] = 3.3 - (0.3 if on else 0.0)


def _soc_nan(r):
    r.saved_x, r.saved_P = r.st.x.copy(), r.st.P.copy()
    r.st.x[7, IZ] = np.nan


def _soc_restore(r):
    r.st.x[:] = r.saved_x
    r.st.P[:] = r.saved_P


def _cap(r, scale):
    r.st.x[:, ICAP] = r.prm.cell.capacity_ah * scale


def _leak(r, on):
    """Cell 5's rested voltage 50 mV below the pack against a reference rest point one window
    earlier taken with every cell level (on), or level again (off): the leak the check reads
    is 50 mV over the OCV slope (floored) in one window (the rig rests in STANDBY)."""
    s, pp = r.st.s, r.prm.pp
    s[L.S_REST_T_S] = max(s[L.S_REST_T_S], pp[L.P_SD_REST_S])
    if on:
        s[L.S_SD_REF_T_S] = np.nan  # a reference rest point at the next slow task
        r.step(n=int(math.ceil(pp[L.P_TASK_SLOW_S] / DT)) + 1)
        assert s[L.S_SD_REF_T_S] > 0.0 and math.isnan(s[L.S_SD_RATE])  # a point, no rate yet
    r.v_rest[5] = 3.3 - (0.05 if on else 0.0)
    s[L.S_SD_REF_T_S] = s[L.S_TIME_S] - pp[L.P_SD_WINDOW_S]  # ... taken one window ago


def _weld(r):
    r.weld = L.K_NEG | L.K_POS
    r.fb_override = 0
    r.inp.u[L.U_VCU_REQUEST] = L.REQ_STANDBY


SCENARIOS = {
    "CELL_OV": (L.REQ_CHARGE, 0.0, _v(5, 4.02), _v(5, 3.3)),
    "CELL_UV": (L.REQ_DRIVE, 0.0, _v(5, 2.75), _v(5, 3.3)),
    "CELL_DEEP_DISCHARGE": (L.REQ_STANDBY, 0.0, _v(5, 2.45), _v(5, 3.3)),
    "CELL_OT_CHG": (L.REQ_CHARGE, 50.0, _temp(3, 52.0), _temp(3, 25.0)),
    "CELL_OT_DIS": (L.REQ_DRIVE, -50.0, _temp(3, 57.0), _temp(3, 25.0)),
    "CELL_UT_CHG": (L.REQ_CHARGE, 20.0, _temp(3, -1.0), _temp(3, 25.0)),
    "CELL_UT_DIS": (L.REQ_DRIVE, -20.0, _temp(3, -26.0), _temp(3, 25.0)),
    "PACK_OC_CHG": (L.REQ_DRIVE, 0.0, _load(850.0), _load(0.0)),
    "PACK_OC_DIS": (L.REQ_DRIVE, 0.0, _load(-2200.0), _load(0.0)),
    "PACK_I2T_CHG": (L.REQ_DRIVE, 0.0, _load(700.0), _load(0.0)),
    "PACK_I2T_DIS": (L.REQ_DRIVE, 0.0, _load(-700.0), _load(0.0)),
    "CELL_V_SPREAD": (L.REQ_DRIVE, 0.0, _v(5, 2.98), _v(5, 3.3)),
    "CELL_T_SPREAD": (L.REQ_DRIVE, 0.0, _temp(3, 41.0), _temp(3, 25.0)),
    "PACK_V_PLAUSIBILITY": (L.REQ_DRIVE, 0.0, _attr("pack_v_offset", 12.0), _attr("pack_v_offset", 0.0)),
    "SENSE_WIRE_OPEN": (L.REQ_DRIVE, 0.0, lambda r: _wire(r, True), lambda r: _wire(r, False)),
    "TEMP_SENSOR_OPEN": (L.REQ_DRIVE, 0.0, _temp(2, -55.0), _temp(2, 25.0)),
    "TEMP_SENSOR_SHORT": (L.REQ_DRIVE, 0.0, _temp(2, 150.0), _temp(2, 25.0)),
    "SENSOR_STUCK": (L.REQ_DRIVE, 0.0, lambda r: (r.stuck.update({7: 3.3}), _load(-100.0)(r)),
                     lambda r: (r.stuck.clear(), _load(0.0)(r))),
    "ISENSE_IMPLAUSIBLE": (L.REQ_STANDBY, 0.0, _attr("i_offset_a", 15.0), _attr("i_offset_a", 0.0)),
    "COMM_CMU": (L.REQ_DRIVE, 0.0, _attr("silent_boards", {3}), _attr("silent_boards", set())),
    "COMM_ISENSE": (L.REQ_DRIVE, 0.0, _attr("isense_silent", True), _attr("isense_silent", False)),
    "COMM_VCU": (L.REQ_DRIVE, 0.0, _attr("vcu_silent", True), _attr("vcu_silent", False)),
    "CONTACTOR_FEEDBACK": (L.REQ_DRIVE, 0.0, _attr("fb_override", 0), _attr("fb_override", None)),
    "CONTACTOR_WELDED": (L.REQ_DRIVE, 0.0, _weld, lambda r: (_attr("weld", 0)(r), _attr("fb_override", None)(r))),
    "PRECHARGE_FAIL": (L.REQ_STANDBY, 0.0, lambda r: (_attr("bus_blocked", True)(r), r.inp.u.__setitem__(L.U_VCU_REQUEST, L.REQ_DRIVE)),
                       _attr("bus_blocked", False)),
    "SOC_IMPLAUSIBLE": (L.REQ_DRIVE, 0.0, _soc_nan, _soc_restore),
    "CAPACITY_IMPLAUSIBLE": (L.REQ_DRIVE, 0.0, lambda r: _cap(r, 0.5), lambda r: _cap(r, 1.0)),
    "CELL_SELF_DISCHARGE": (L.REQ_STANDBY, 0.0, lambda r: _leak(r, True), lambda r: _leak(r, False)),
}


LOCATION = {"CELL_OV": 5, "CELL_UV": 5, "CELL_DEEP_DISCHARGE": 5, "CELL_OT_CHG": 3, "CELL_UT_DIS": 3,
            "TEMP_SENSOR_OPEN": 2, "TEMP_SENSOR_SHORT": 2, "SENSE_WIRE_OPEN": 4,
            "SENSOR_STUCK": 7, "COMM_CMU": 3, "SOC_IMPLAUSIBLE": 7, "CELL_SELF_DISCHARGE": 5}


def test_every_fault_has_a_scenario():
    assert set(SCENARIOS) == set(T.BY_NAME)


def _prepare(name):
    req, load, apply, clear = SCENARIOS[name]
    r = Rig(seed=1)
    r.step(n=10)
    if req != L.REQ_STANDBY:
        r.close(req)
    else:
        r.run_until(lambda x: x.state == L.ST_STANDBY, t_max_s=2.0)
    r.i_load_a = load
    r.step(n=5)
    assert r.out[L.Y_SEVERITY] == L.SEV_NONE, r.st.fst[:, L.FS_SEV]
    return r, apply, clear


def _detect(r, f, level, t_max_s):
    """Step until fault ``f`` reaches ``level``; returns (time of detection, time the quantity
    first passed the level's threshold)."""
    thr = r.prm.diag[f.id, L.D_WARN + level - 1]
    t, t_cross = 0.0, None
    while t < t_max_s:
        r.step(DT)
        t += DT
        q = r.st.fst[f.id, L.FS_Q]
        if t_cross is None and not math.isnan(q) and f.direction * (q - thr) > 0:
            t_cross = t
        if r.st.fst[f.id, L.FS_SEV] >= level:
            return t, t_cross
    raise AssertionError(f"{f.name} not detected within {t_max_s} s (q={r.st.fst[f.id, L.FS_Q]})")


def _reset_pulse(r):
    r.inp.u[L.U_VCU_RESET] = 1.0
    r.step(DT)
    r.inp.u[L.U_VCU_RESET] = 0.0


@pytest.mark.parametrize("name", [f.name for f in T.FAULTS])
def test_fault_detect_react_latch_recover(name):
    f = T.BY_NAME[name]
    r, apply, clear = _prepare(name)
    apply(r)
    t_det, t_cross = _detect(r, f, L.SEV_FAULT, t_max_s=200.0)
    deb = r.prm.diag[f.id, L.D_DEB_S]
    # detection: the debounce time after the quantity passed the threshold, with one period of the
    # entry's task of slack (a sampled condition counts for the whole period it samples)
    per = max(DT, r.prm.pp[(L.P_TASK_FAST_S, L.P_TASK_MEDIUM_S, L.P_TASK_SLOW_S)[int(r.prm.diag[f.id, L.D_TASK])]])
    assert t_cross is not None
    assert deb - 1e-6 <= t_det - t_cross + per <= deb + 2 * per + 1e-6, (t_det, t_cross, deb)
    # where: the cell / sensor / board the quantity points at
    if name in LOCATION:
        assert r.st.fst[f.id, L.FS_LOC] == LOCATION[name]
    # CAN bits and reaction
    assert int(r.out[L.Y_FAULT_BITS]) >> f.id & 1
    assert int(r.out[L.Y_WARN_BITS]) >> f.id & 1
    react = int(r.st.s[L.S_REACT])
    assert react & f.reaction == f.reaction
    if f.reaction & L.RE_DERATE:
        assert r.st.s[L.S_DERATE_CHG] <= f.derate_chg + 1e-12
        assert r.st.s[L.S_DERATE_DIS] <= f.derate_dis + 1e-12
    if f.reaction & (L.RE_OPEN | L.RE_NO_CLOSE) or f.recovery == L.RC_RESET_STANDBY:
        r.i_load_a = 0.0  # the vehicle follows the limits down; then the contactors may open
    if f.reaction & L.RE_OPEN:
        r.run_until(lambda x: x.cmd & (L.K_NEG | L.K_POS) == 0, t_max_s=5.0)
        r.run_until(lambda x: x.state == L.ST_ERROR, t_max_s=1.0)
    if f.reaction & L.RE_NO_CLOSE:
        r.inp.u[L.U_VCU_REQUEST] = L.REQ_STANDBY
        r.step(n=3)
        r.inp.u[L.U_VCU_REQUEST] = L.REQ_DRIVE
        r.step(n=20)
        assert r.cmd & L.K_POS == 0 and r.state in (L.ST_ERROR, L.ST_STANDBY)
        r.inp.u[L.U_VCU_REQUEST] = L.REQ_STANDBY
    # remove the condition, wait past heal time and check the latch / recovery rule
    clear(r)
    thr, hyst = r.prm.diag[f.id, L.D_FAULT], r.prm.diag[f.id, L.D_HYST]
    # quantities with memory (the I2t filter) take their time to come back
    r.run_until(lambda x: not f.direction * (x.st.fst[f.id, L.FS_Q] - (thr - f.direction * hyst)) > 0, t_max_s=300.0)
    heal = r.prm.diag[f.id, L.D_HEAL_S]
    r.step(n=int(round((heal + 1.0) / DT)) + 5)
    sev = r.st.fst[f.id, L.FS_SEV]
    if not f.latch:
        assert sev < L.SEV_FAULT, f"{name} should recover by itself"
        return
    assert sev >= L.SEV_FAULT, f"{name} must stay latched without the recovery action"
    if f.recovery == L.RC_SERVICE:
        _reset_pulse(r)
        assert r.st.fst[f.id, L.FS_SEV] >= L.SEV_FAULT, "a vehicle reset must not clear a service fault"
        r.inp.u[L.U_SERVICE_RESET] = 1.0
        r.step(DT)
        r.inp.u[L.U_SERVICE_RESET] = 0.0
    else:
        if f.recovery == L.RC_RESET_STANDBY:
            assert r.cmd & (L.K_NEG | L.K_POS) == 0
        _reset_pulse(r)
    assert r.st.fst[f.id, L.FS_SEV] < L.SEV_FAULT
    # and the pack can operate again: ERROR is left on the vehicle's request
    r.step(n=5)
    if r.state == L.ST_ERROR:
        _reset_pulse(r)
        r.step(n=2)
    assert r.state in (L.ST_STANDBY, L.ST_DRIVE, L.ST_CHARGE), L.STATE_NAMES[r.state]
    assert r.out[L.Y_SEVERITY] < L.SEV_FAULT


CRITICAL = [f.name for f in T.FAULTS if "c" in f.levels]
CRIT_DRIVE = {
    "CELL_OV": _v(5, 4.15), "CELL_UV": _v(5, 2.5), "CELL_OT_CHG": _temp(3, 62.0), "CELL_OT_DIS": _temp(3, 67.0),
    "CELL_UT_CHG": _temp(3, -12.0), "CELL_UT_DIS": _temp(3, -32.0), "PACK_OC_CHG": _load(1100.0),
    "PACK_OC_DIS": _load(-2600.0), "PACK_I2T_CHG": _load(900.0), "PACK_I2T_DIS": _load(-900.0),
    "COMM_CMU": _attr("silent_boards", {3}), "COMM_ISENSE": _attr("isense_silent", True),
}


@pytest.mark.parametrize("name", CRITICAL)
def test_critical_opens_above_break_current_only_after_timer(name):
    """At CRITICAL the contactors open even while current flows, but only once the critical
    fault has persisted for critical_open_s."""
    assert set(CRIT_DRIVE) == set(CRITICAL)
    f = T.BY_NAME[name]
    r, _, _ = _prepare(name)
    if name in ("CELL_OV", "CELL_OT_CHG", "CELL_UT_CHG"):
        r.i_load_a = 400.0  # charging above the break current
    elif name not in ("PACK_OC_CHG", "PACK_OC_DIS", "PACK_I2T_CHG", "PACK_I2T_DIS"):
        r.i_load_a = -400.0
    r.step(n=2)
    CRIT_DRIVE[name](r)
    t = 0.0
    crit_t = None
    while t < 300.0:
        r.step(DT)
        t += DT
        if crit_t is None and r.out[L.Y_SEVERITY] == L.SEV_CRITICAL:
            crit_t = t
        if r.cmd & (L.K_NEG | L.K_POS) == 0:
            break
    assert crit_t is not None and r.st.fst[f.id, L.FS_SEV] == L.SEV_CRITICAL
    assert t - crit_t >= r.prm.pp[L.P_CRIT_OPEN_S] - 1e-6
    assert t - crit_t <= r.prm.pp[L.P_CRIT_OPEN_S] + 2 * DT
    r.step(n=2)
    assert r.state == L.ST_ERROR


def test_non_critical_fault_never_opens_above_break_current():
    """A FAULT with the open reaction waits for the current to fall below the break current."""
    r, apply, _ = _prepare("SENSE_WIRE_OPEN")
    r.i_load_a = -300.0
    r.step(n=3)
    apply(r)
    r.step(n=100)
    assert r.st.fst[L.F_SENSE_WIRE_OPEN, L.FS_SEV] == L.SEV_FAULT
    assert r.cmd & L.K_POS and r.out[L.Y_I_DIS_LIM_A] == 0.0  # limits at zero, still closed
    r.i_load_a = -30.0
    r.step(n=2)
    assert r.cmd & (L.K_NEG | L.K_POS) == 0


def test_deep_discharge_survives_restart(tmp_path):
    from bms.statefile import load_state, save_state

    r, apply, clear = _prepare("CELL_DEEP_DISCHARGE")
    apply(r)
    _detect(r, T.BY_NAME["CELL_DEEP_DISCHARGE"], L.SEV_FAULT, 20.0)
    path = save_state(r.st, tmp_path / "bms_state.npz")
    r2 = Rig(prm=r.prm)
    r2.st = load_state(r.prm, path)
    r2.step(n=20)  # healthy voltages after the restart
    assert r2.st.fst[L.F_CELL_DEEP_DISCHARGE, L.FS_SEV] == L.SEV_FAULT
    assert r2.state == L.ST_ERROR
    assert r2.st.fst[L.F_CELL_DEEP_DISCHARGE, L.FS_COUNT] == 1.0
    # a non-persistent fault's latch is not carried over
    assert r2.st.fst[L.F_CELL_UV, L.FS_LATCHED] == 0.0


def test_fault_bits_are_the_table_ids():
    r, apply, _ = _prepare("TEMP_SENSOR_SHORT")
    apply(r)
    _detect(r, T.BY_NAME["TEMP_SENSOR_SHORT"], L.SEV_FAULT, 10.0)
    bits = int(r.out[L.Y_FAULT_BITS])
    assert bits == 1 << L.F_TEMP_SENSOR_SHORT
    assert r.out[L.Y_TEMP_MAX_C] == 25.0  # the shorted sensor is excluded from the temperatures


def test_dbc_fault_bits_match_the_table():
    """The DBC's BMS_Faults / BMS_Warnings carry one bit per table entry at bit position = id."""
    import cantools

    from bms.faultdoc import DOC_PATH

    db = cantools.database.load_file(str(DOC_PATH.parent.parent / "dbc" / "bms_fil.dbc"))
    for msg, prefix in (("BMS_Faults", "Flt_"), ("BMS_Warnings", "Wrn_")):
        sigs = {s.name: s for s in db.get_message_by_name(msg).signals if s.name.startswith(prefix)}
        assert set(sigs) == {prefix + f.name for f in T.FAULTS}
        for f in T.FAULTS:
            s = sigs[prefix + f.name]
            assert (s.start, s.length, s.byte_order) == (f.id, 1, "little_endian")


@given(fid=st.integers(0, T.NF - 1), seq=st.lists(st.tuples(st.floats(-1.0, 2.0), st.booleans()), min_size=1, max_size=120),
       dt=st.sampled_from([0.01, 0.1, 0.25]))
def test_evaluate_invariants(fid, seq, dt):
    """For random quantity sequences on one table row (scaled around its thresholds), with the
    vehicle's reset toggling: the FAULT level is only entered after the condition held for the
    debounce time (time debounce), a latching entry never leaves FAULT without its recovery
    action, and the bit words equal the severities."""
    from bms_rig import params

    from bms import core
    from bms.diag import evaluate

    prm = params()
    d = prm.diag
    f = T.FAULTS[fid]
    stt = core.new_state(prm)
    levels = [x for x in d[fid, L.D_WARN:L.D_CRIT + 1] if not np.isnan(x)]
    lo, hi = min(levels) - 0.2 * abs(min(levels)) - 1.0, max(levels) + 0.2 * abs(max(levels)) + 1.0
    qi = int(d[fid, L.D_QTY])
    thr, deb = d[fid, L.D_FAULT], d[fid, L.D_DEB_S]
    thr_c, deb_c = d[fid, L.D_CRIT], d[fid, L.D_CRIT_DEB_S]  # critical: its own (shorter) debounce
    held = held_c = 0.0
    for x, reset in seq:
        stt.q[:] = np.nan
        stt.q[qi] = lo + (hi - lo) * (x + 1.0) / 3.0
        was = stt.fst[fid, L.FS_SEV]
        sev, react, dc, dd, fbits, wbits = evaluate(stt, d, np.full(L.NT, dt), (1 << L.NT) - 1, reset, False, True)
        cond = f.direction * (stt.q[qi] - thr) > 0
        held = held + dt if cond else 0.0
        held_c = held_c + dt if not np.isnan(thr_c) and f.direction * (stt.q[qi] - thr_c) > 0 else 0.0
        now = stt.fst[fid, L.FS_SEV]
        if now >= L.SEV_FAULT and was < L.SEV_FAULT and f.debounce == L.DEB_TIME:
            assert held >= deb - 1e-9 or held_c >= deb_c - 1e-9
        if f.latch and was >= L.SEV_FAULT and f.recovery != L.RC_AUTO:
            if f.recovery == L.RC_SERVICE or not reset:
                assert now >= L.SEV_FAULT
        assert (fbits >> fid & 1) == (now >= L.SEV_FAULT) and (wbits >> fid & 1) == (now >= L.SEV_WARNING)
        # only this row's quantity is driven; rows sharing it (CELL_UV, CELL_DEEP_DISCHARGE) count too
        assert sev == max(stt.fst[r, L.FS_SEV] for r in range(T.NF) if int(d[r, L.D_QTY]) == qi)
        assert 0.0 <= dc <= 1.0 and 0.0 <= dd <= 1.0


def test_temperature_thresholds_are_consistent_with_the_dbc():
    """Every temperature signal the map reads reaches beyond the sensor-fault thresholds (its
    bottom / top is what an open / shorted NTC reads), the real-temperature levels lie strictly
    between them, and the simulator's sensors clamp at exactly the DBC's range."""
    from bms.signal_map import load_map
    from hil.pack.params import SensorSpec

    smap = load_map()
    fl = smap.pack.faults
    t_open, t_short = fl["TEMP_SENSOR_OPEN"].fault, fl["TEMP_SENSOR_SHORT"].fault
    cold = [x for n in ("CELL_UT_CHG", "CELL_UT_DIS") for x in (fl[n].warning, fl[n].fault, fl[n].critical)]
    hot = [x for n in ("CELL_OT_CHG", "CELL_OT_DIS") for x in (fl[n].warning, fl[n].fault, fl[n].critical)]
    lo_rail, hi_rail = SensorSpec().temp_range_c
    for ref in smap.temps:
        sig = smap.db.get_message_by_name(ref.message).get_signal_by_name(ref.signal)
        assert sig.minimum < t_open - fl["TEMP_SENSOR_OPEN"].hysteresis < t_open < min(cold), ref.signal
        assert max(hot) < t_short < t_short + fl["TEMP_SENSOR_SHORT"].hysteresis < sig.maximum, ref.signal
        assert (sig.minimum, sig.maximum) == (lo_rail, hi_rail), ref.signal
        assert sig.minimum <= -40.0 and sig.maximum >= 125.0  # the front end's real range is covered
    prm = smap.pack.params()
    assert (prm.pp[L.P_T_OPEN_C], prm.pp[L.P_T_SHORT_C]) == (t_open, t_short)


@pytest.mark.parametrize("reading, sensor_fault, cell_faults", [
    (-55.0, "TEMP_SENSOR_OPEN", ("CELL_UT_CHG", "CELL_UT_DIS")),
    (150.0, "TEMP_SENSOR_SHORT", ("CELL_OT_CHG", "CELL_OT_DIS")),
])
def test_open_or_shorted_sensor_trips_the_sensor_fault_not_the_cell_fault(reading, sensor_fault, cell_faults):
    r, _, _ = _prepare(sensor_fault)
    r.inp.temp_c[17] = reading  # the rail reading of an open / shorted NTC
    r.step(DT, n=40)
    assert r.st.fst[getattr(L, "F_" + sensor_fault), L.FS_SEV] == L.SEV_FAULT
    assert r.st.fst[getattr(L, "F_" + sensor_fault), L.FS_LOC] == 17
    for name in cell_faults:
        assert r.st.fst[getattr(L, "F_" + name), L.FS_SEV] == L.SEV_NONE, name
    assert not r.st.temp_ok[17] and r.state == L.ST_DRIVE  # excluded; derated, not opened
    assert r.out[L.Y_TEMP_MIN_C] == r.out[L.Y_TEMP_MAX_C] == 25.0


def test_a_map_whose_temperature_range_stops_at_the_thresholds_is_refused(tmp_path):
    """A DBC whose temperature floor sits above TEMP_SENSOR_OPEN (the old -40 degC floor) is
    refused when the map is loaded: an open sensor would read as a real cold cell."""
    from bms.can.dbc import DEFAULT_DBC_PATH
    from bms.config import ConfigError
    from bms.signal_map import MAP_DIR, load_map

    dbc = tmp_path / "old.dbc"
    dbc.write_text(DEFAULT_DBC_PATH.read_text().replace('(0.5,-55) [-55|150] "degC"', '(0.5,-40) [-40|125] "degC"'))
    mp = tmp_path / "map.toml"
    mp.write_text((MAP_DIR / "bms_fil_heavy_duty_192s.toml").read_text().replace('dbc = "bms_fil"', 'dbc = "old.dbc"'))
    with pytest.raises(ConfigError) as e:
        load_map(mp)
    assert "inputs.temps.signal" in str(e.value) and "TEMP_SENSOR_OPEN" in str(e.value)
