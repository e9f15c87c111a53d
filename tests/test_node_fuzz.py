"""Hypothesis: thousands of random frames (IDs, lengths, payloads, mutated valid frames) never
raise in the node and never hand the step a NaN scalar or an out-of-range value."""

from __future__ import annotations

import math

import can
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bms import layout as L
from bms.node import BmsNode, SimClock
from bms.signal_map import load_map

SMAP = load_map()
RX_IDS = sorted({SMAP.db.get_message_by_name(n).frame_id for n in SMAP.rx_messages})
NODE = BmsNode(None, SMAP, clock=SimClock())
T = [0.0]


def _range(sig):
    return sig.minimum, sig.maximum


CELL_RANGE = _range(SMAP.db.get_message_by_name(SMAP.cells[0].message).get_signal_by_name(SMAP.cells[0].signal))
TEMP_RANGE = _range(SMAP.db.get_message_by_name(SMAP.temps[0].message).get_signal_by_name(SMAP.temps[0].signal))


def _sig(key):
    r = SMAP.scalars[key]
    return SMAP.db.get_message_by_name(r.message).get_signal_by_name(r.signal)


frame = st.builds(
    lambda ident, ext, payload, flags: can.Message(
        arbitration_id=ident if not ext else ident | 0x10000, is_extended_id=ext, data=payload,
        is_remote_frame=flags == 1, is_error_frame=flags == 2, dlc=len(payload) if flags != 1 else 8),
    st.one_of(st.sampled_from(RX_IDS), st.integers(0, 0x7FF)),
    st.booleans(),
    st.binary(min_size=0, max_size=8),
    st.sampled_from([0] * 8 + [1, 2]),
)


def check_inputs(inp):
    u = inp.u
    assert not np.isnan(u).any(), "scalar input NaN"
    assert np.all((u[[L.U_ISENSE_AGE_S, L.U_VCU_AGE_S, L.U_CONTACTOR_FB_AGE_S]] >= 0))
    assert int(u[L.U_CONTACTOR_FB]) == u[L.U_CONTACTOR_FB] and 0 <= u[L.U_CONTACTOR_FB] <= 7
    lo, hi = _range(_sig("pack_i_a"))
    assert lo <= u[L.U_PACK_I_A] <= hi
    for k, idx in (("pack_v", L.U_PACK_V), ("bus_v", L.U_BUS_V)):
        lo, hi = _range(_sig(k))
        assert lo <= u[idx] <= hi
    assert u[L.U_VCU_REQUEST] in (L.REQ_STANDBY, L.REQ_DRIVE, L.REQ_CHARGE)
    for idx in (L.U_ISENSE_VALID, L.U_HV_VALID, L.U_VCU_VALID, L.U_VCU_RESET, L.U_CHARGER_CONNECTED,
                L.U_CONTACTOR_FB_VALID):
        assert u[idx] in (0.0, 1.0)
    cv = inp.cell_v[np.isfinite(inp.cell_v)]
    assert np.all((cv >= CELL_RANGE[0]) & (cv <= CELL_RANGE[1]))
    assert not np.isinf(inp.cell_v).any()
    tv = inp.temp_c[np.isfinite(inp.temp_c)]
    assert np.all((tv >= TEMP_RANGE[0]) & (tv <= TEMP_RANGE[1]))
    assert np.array_equal(inp.temp_valid, np.isfinite(inp.temp_c))
    assert not np.isnan(inp.board_age_s).any() and np.all(inp.board_age_s >= 0)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(frame, min_size=1, max_size=60), st.floats(0.0, 0.05))
def test_random_frames_never_raise_nor_poison_the_inputs(frames, dt_s):
    T[0] += dt_s
    NODE.receive(frames, T[0])
    NODE.step_to(T[0])
    check_inputs(NODE.inp)
    s = NODE.st.out[L.Y_STATE]
    assert s in range(6)
    assert NODE.stats.frames_in == sum(NODE.stats.rejected.values()) + NODE.stats.frames_accepted + sum(
        NODE.stats.ignored.values())


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_mutated_valid_frames_never_raise(data):
    """Valid frames of the node's own receive codec with random bit flips, truncations and counters."""
    c = NODE.rx.codec
    name = data.draw(st.sampled_from(SMAP.rx_messages))
    msg = SMAP.db.get_message_by_name(name)
    rows, mux, _ = c.cycle_plan([name])
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    values = rng.uniform(-1e4, 1e4, c.n_slots) * rng.choice([1e-4, 1e-2, 1.0], c.n_slots)
    values[rng.random(c.n_slots) < 0.05] = math.nan
    payloads, _ = c.encode(rows, mux, values)
    frames = []
    for d in payloads:
        b = bytearray(d[:msg.length])
        for _ in range(data.draw(st.integers(0, 3))):
            pos = data.draw(st.integers(0, 8 * len(b) - 1))
            b[pos // 8] ^= 1 << (pos % 8)
        cut = data.draw(st.integers(0, len(b)))
        frames.append(can.Message(arbitration_id=msg.frame_id, is_extended_id=False, data=bytes(b[:cut] if
                                  data.draw(st.booleans()) else b)))
    T[0] += 0.01
    NODE.receive(frames, T[0])
    NODE.step_to(T[0])
    check_inputs(NODE.inp)
