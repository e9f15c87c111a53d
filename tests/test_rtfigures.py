"""hil.rtfigures on a synthetic recording: the period / jitter figures and the window while the
BMS and its peers both ran (the benchmark's measurement window)."""

from __future__ import annotations

import can
import pytest

from bms.signal_map import load_map
from hil.rtfigures import cyclic_figures, run_window


def _frames(smap):
    state = smap.db.get_message_by_name("BMS_State")
    cur = smap.db.get_message_by_name("ISENSE_Current")
    fr = []
    for k in range(100):   # both nodes for 1 s: the BMS's state frame every 10 ms, the sensor's too
        fr.append(can.Message(timestamp=100.0 + 0.01 * k, arbitration_id=cur.frame_id, is_extended_id=False, data=bytes(8)))
        fr.append(can.Message(timestamp=100.0005 + 0.01 * k + (0.004 if k == 50 else 0.0),
                              arbitration_id=state.frame_id, is_extended_id=False, data=bytes(8)))
    # the sensor's node has gone; the BMS sends a last state frame 0.2 s later (its shutdown)
    fr.append(can.Message(timestamp=101.2, arbitration_id=state.frame_id, is_extended_id=False, data=bytes(8)))
    return fr


def test_run_window_is_while_the_bms_and_its_peers_both_ran():
    smap = load_map()
    fr = _frames(smap)
    t_from, t_to = run_window(fr, smap)
    assert t_from == pytest.approx(100.0005) and t_to == pytest.approx(100.99)
    whole = cyclic_figures(fr, smap)[10]
    inside = cyclic_figures(fr, smap, t_from, t_to)[10]
    assert whole["jitter_ms"]["max"] == pytest.approx(199.5, abs=1e-3)   # the shutdown frame's gap
    assert inside["frames"] == 99 and inside["jitter_ms"]["max"] == pytest.approx(4.0, abs=1e-3)  # the one late frame (the BMS frame after the peer's last one is outside)
    assert inside["period_ms"]["p50"] == pytest.approx(10.0, abs=1e-3)


def test_run_window_without_one_side_is_none():
    smap = load_map()
    bms_only = [m for m in _frames(smap) if m.arbitration_id == smap.db.get_message_by_name("BMS_State").frame_id]
    assert run_window(bms_only, smap) == (None, None)
    assert run_window([], smap) == (None, None)
