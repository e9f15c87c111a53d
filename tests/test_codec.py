"""The batch codec agrees with cantools (the source of truth) on every message of the project DBC."""

from __future__ import annotations

import math

import cantools
import numpy as np
import pytest
from cantools.database.errors import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bms.can import dbc
from bms.can.codec import ST_BAD_DLC, ST_OK, ST_UNKNOWN_ID, ST_UNKNOWN_MUX, FrameCodec, frame_key

DB = dbc.database()
MESSAGES = sorted(DB.messages, key=lambda m: m.frame_id)
NAMES = [m.name for m in MESSAGES]
CELL_NAMES = [f"CellV_{i:03d}" for i in range(192)]
CODEC = FrameCodec(DB.messages, slot_order=CELL_NAMES)
SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])  # example count: conftest profile


def _expected_valid(sig, raw: int, value: float) -> bool:
    if sig.choices and str(sig.choices.get(raw, "")).upper() == "INVALID":
        return False
    return sig.minimum - 1e-9 <= value <= sig.maximum + 1e-9


def _decode_one(msg, payload: bytes):
    out = CODEC.new_buffers()
    status = CODEC.decode(np.array([msg.frame_id], np.int64), np.frombuffer(payload, np.uint8).reshape(1, 8).copy(), out)
    return status[0], out


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(payload=st.binary(min_size=8, max_size=8))
def test_decode_matches_cantools(name, payload):
    msg = DB.get_message_by_name(name)
    status, out = _decode_one(msg, payload)
    try:
        ref = msg.decode(payload, decode_choices=False, scaling=True)
        raw_ref = msg.decode(payload, decode_choices=False, scaling=False)
    except DecodeError:
        # only an unknown multiplexer value makes cantools refuse a full-length frame
        assert status == ST_UNKNOWN_MUX
        assert np.isnan(out.value).all() and not out.valid.any()
        return
    assert status == ST_OK
    written = np.flatnonzero(~np.isnan(out.value))
    assert sorted(CODEC.names[i] for i in written) == sorted(ref)
    for sname, value in ref.items():
        slot = CODEC.slot(sname)
        assert out.value[slot] == value  # exact, same IEEE arithmetic
        assert out.raw[slot] == raw_ref[sname]
        sig = msg.get_signal_by_name(sname)
        assert out.valid[slot] == _expected_valid(sig, raw_ref[sname], value)


@st.composite
def physical_frame(draw, name):
    """A multiplexer value and an in-range physical value for every signal present in that frame."""
    msg = DB.get_message_by_name(name)
    mux_vals = dbc.mux_values(msg)
    mux = draw(st.sampled_from(mux_vals)) if mux_vals else -1
    values = {}
    for s in msg.signals:
        if s.multiplexer_ids and mux not in s.multiplexer_ids:
            continue
        if s.is_multiplexer:
            values[s.name] = mux
            continue
        if draw(st.booleans()):  # exactly representable value
            lo = math.ceil((s.minimum - s.offset) / s.scale - 1e-9)
            hi = math.floor((s.maximum - s.offset) / s.scale + 1e-9)
            values[s.name] = draw(st.integers(lo, hi)) * s.scale + s.offset
        else:  # any float in range: exercises rounding (half to even like cantools)
            values[s.name] = draw(st.floats(s.minimum, s.maximum, allow_nan=False))
    return msg, mux, values


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(data=st.data())
def test_encode_matches_cantools_and_round_trips(name, data):
    msg, mux, phys = data.draw(physical_frame(name))
    ref = msg.encode(phys, scaling=True, strict=True)
    values = np.full(CODEC.n_slots, np.nan)
    for sname, v in phys.items():
        values[CODEC.slot(sname)] = v
    payload, saturated = CODEC.encode(np.array([CODEC.row(name)]), np.array([mux]), values)
    assert bytes(payload[0, : msg.length]) == ref
    assert saturated[0] == 0
    # round trip: decoding our payload gives cantools' decode of it, within half a step of the input
    status, out = _decode_one(msg, bytes(payload[0]))
    assert status == ST_OK
    back = msg.decode(ref, decode_choices=False)
    for sname, v in phys.items():
        slot = CODEC.slot(sname)
        assert out.value[slot] == back[sname]
        sig = msg.get_signal_by_name(sname)
        assert abs(out.value[slot] - v) <= abs(sig.scale) / 2 * (1 + 1e-9)


def test_full_cmu_cycle_lands_in_cell_slots_in_order():
    """One 100 ms cycle of all boards decodes into values[0:192] in cell order (the signal map)."""
    names = [m.name for m in MESSAGES if m.name.endswith("_CellV")]
    rows, mux, keys = CODEC.cycle_plan(names)
    assert len(rows) == 48
    rng = np.random.default_rng(3)
    cell_v = np.round(rng.uniform(2.5, 3.6, 192), 3)
    values = np.full(CODEC.n_slots, np.nan)
    values[:192] = cell_v
    values[CODEC.slots([f"CMU{b:02d}_CellV_Counter" for b in range(12)])] = 7
    payload, sat = CODEC.encode(rows, mux, values)
    assert sat.sum() == 0
    out = CODEC.new_buffers()
    t = np.linspace(0.0, 0.099, len(rows))
    status = CODEC.decode(keys, payload, out, t_s=t)
    assert (status == ST_OK).all()
    np.testing.assert_allclose(out.value[:192], cell_v, atol=1e-12)
    assert out.valid[:192].all()
    # each cell carries the time of the frame that carried it: board b group g is frame 4b+g
    cells = np.arange(192)
    np.testing.assert_array_equal(out.time_s[:192], t[(cells // 16) * 4 + (cells % 16) // 4])


def test_out_of_range_encode_saturates_and_nan_sends_invalid_marker():
    row = CODEC.row("CMU00_CellV")
    values = np.full(CODEC.n_slots, np.nan)
    values[CODEC.slot("CellV_000")] = 7.0  # above 5 V max: clamped and counted
    values[CODEC.slot("CellV_001")] = -1.0  # below 0: clamped and counted
    values[CODEC.slot("CellV_002")] = np.nan  # unknown: INVALID marker, not counted
    values[CODEC.slot("CellV_003")] = 3.3
    values[CODEC.slot("CMU00_CellV_Counter")] = np.inf  # clamped to 15
    payload, sat = CODEC.encode(np.array([row]), np.array([0]), values)
    assert sat[0] == 3
    ref = DB.get_message_by_name("CMU00_CellV").decode(bytes(payload[0]), decode_choices=False, scaling=False)
    assert (ref["CellV_000"], ref["CellV_001"], ref["CellV_002"], ref["CellV_003"]) == (5000, 0, 8191, 3300)
    assert ref["CMU00_CellV_Counter"] == 15
    out = CODEC.new_buffers()
    CODEC.decode(np.array([DB.get_message_by_name("CMU00_CellV").frame_id]), payload, out)
    assert out.valid[CODEC.slots(["CellV_000", "CellV_001", "CellV_003"])].all()
    assert not out.valid[CODEC.slot("CellV_002")]  # the marker is reported, so the node can count it


def test_rejected_frames_are_reported_and_write_nothing():
    cmu = DB.get_message_by_name("CMU03_CellV")
    pack = DB.get_message_by_name("BMS_Pack")
    unused_id = max(m.frame_id for m in MESSAGES) + 1
    data = np.zeros((4, 8), np.uint8)
    data[2, 0] = 0x0F  # group 15 does not exist
    data[3, 0] = 0x01  # a good frame, group 1
    keys = np.array([unused_id, pack.frame_id, cmu.frame_id, cmu.frame_id], np.int64)
    dlc = np.array([8, 5, 8, 8])
    out = CODEC.new_buffers()
    status = CODEC.decode(keys, data, out, dlc=dlc)
    assert list(status) == [ST_UNKNOWN_ID, ST_BAD_DLC, ST_UNKNOWN_MUX, ST_OK]
    written = {CODEC.names[i] for i in np.flatnonzero(~np.isnan(out.value))}
    assert written == {"CMU03_CellV_Group", "CMU03_CellV_Counter", "CellV_052", "CellV_053", "CellV_054", "CellV_055"}
    assert out.valid[CODEC.slots([f"CellV_{c:03d}" for c in range(52, 56)])].all()  # 0 V is in range


def test_extended_ids_are_distinct_keys():
    db = cantools.database.load_string(
        'VERSION ""\nBU_: A\nBO_ 2147483904 EXT: 8 A\n SG_ X : 0|8@1+ (1,0) [0|255] "-" A\n'
        'BO_ 256 STD: 8 A\n SG_ Y : 0|8@1- (2,1) [-255|255] "-" A\n', database_format="dbc")
    codec = FrameCodec(db.messages, db=db)
    out = codec.new_buffers()
    data = np.array([[5, 0, 0, 0, 0, 0, 0, 0], [0xFF, 0, 0, 0, 0, 0, 0, 0]], np.uint8)
    status = codec.decode(frame_key(np.array([0x100, 0x100]), np.array([True, False])), data, out)
    assert list(status) == [ST_OK, ST_OK]
    assert out.value[codec.slot("X")] == 5 and out.value[codec.slot("Y")] == -1  # signed -1 * 2 + 1


def test_unsupported_layouts_fail_at_compile_time():
    db = cantools.database.load_string(
        'VERSION ""\nBU_: A\nBO_ 1 F: 8 A\n SG_ X : 0|32@1- (1,0) [0|0] "-" A\nSIG_VALTYPE_ 1 X : 1;\n',
        database_format="dbc")
    with pytest.raises(ValueError, match="float"):
        FrameCodec(db.messages, db=db)
    twins = cantools.database.load_string(
        'VERSION ""\nBU_: A\nBO_ 1 P: 8 A\n SG_ X : 0|8@1+ (1,0) [0|255] "-" A\n'
        'BO_ 2 Q: 8 A\n SG_ X : 0|8@1+ (1,0) [0|255] "-" A\n', database_format="dbc")
    with pytest.raises(ValueError, match="unique"):
        FrameCodec(twins.messages, db=twins)
    with pytest.raises(ValueError, match="repeated"):
        FrameCodec(["CMU00_CellV"], slot_order=["CellV_000", "CellV_000"])
    with pytest.raises(ValueError, match="shape"):
        CODEC.decode(np.zeros(2, np.int64), np.zeros((2, 7), np.uint8), CODEC.new_buffers())


def test_encode_refuses_unknown_rows():
    values = np.zeros(CODEC.n_slots)
    with pytest.raises(IndexError):
        CODEC.encode(np.array([len(CODEC.messages)]), np.array([0]), values)
    with pytest.raises(ValueError, match="shape"):
        CODEC.encode(np.array([0]), np.array([0]), values[:-1])
