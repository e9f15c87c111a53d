"""Real-time figures from a recording's time stamps (a candump ``-L`` log or any python-can log):
the period and jitter of the BMS's cyclic frames, per DBC cycle time, and the time from an
injected fault to the contactor-open command.

    cyc = cyclic_figures("bus.log", smap)         # {10: {...}, 100: {...}} per cycle time in ms
    lat = open_latency_s("bus.log", smap, t_fault) # first BMS state frame commanding open after t

Period = time between consecutive frames of one message (and multiplexer value); jitter =
|period - DBC cycle time|; both in ms, as p50 / p99 / max over every message of that cycle time.
"""

from __future__ import annotations

from collections import defaultdict

import can
import numpy as np

from bms.can.dbc import cycle_time_s


def read_frames(path) -> list[can.Message]:
    with can.LogReader(str(path)) as r:
        return [m for m in r if not m.is_error_frame]


def _frames(frames_or_path) -> list[can.Message]:
    """A list of frames as given, or read from a log file's path."""
    return frames_or_path if isinstance(frames_or_path, list) else read_frames(frames_or_path)


def _tx_ids(smap) -> set[int]:
    """Frame IDs of the BMS's transmit messages."""
    return {smap.db.get_message_by_name(n).frame_id for n in smap.tx_messages}


def _pct(x: np.ndarray) -> dict:
    if x.size == 0:
        return {"p50": None, "p99": None, "max": None}
    return {"p50": round(float(np.percentile(x, 50)), 4), "p99": round(float(np.percentile(x, 99)), 4),
            "max": round(float(x.max()), 4)}


def cyclic_figures(frames_or_path, smap, t_from: float | None = None, t_to: float | None = None) -> dict:
    """Per DBC cycle time (ms) of the BMS's transmit messages: frame count, messages, period and
    jitter statistics (ms) over the frames stamped in [t_from, t_to]. A multiplexed message is
    timed per multiplexer value (each value comes once per cycle)."""
    frames = _frames(frames_or_path)
    db = smap.db
    tx = {db.get_message_by_name(n).frame_id: db.get_message_by_name(n) for n in smap.tx_messages}
    stamps: dict[tuple[int, int], list[float]] = defaultdict(list)
    for m in frames:
        msg = tx.get(m.arbitration_id)
        if msg is None or (t_from is not None and m.timestamp < t_from) or (t_to is not None and m.timestamp > t_to):
            continue
        mux = 0
        if msg.is_multiplexed():
            sig = next(s.name for s in msg.signals if s.is_multiplexer)
            mux = int(msg.decode(bytes(m.data), decode_choices=False, allow_truncated=True)[sig])
        stamps[(m.arbitration_id, mux)].append(m.timestamp)
    by_ms: dict[int, dict] = {}
    for (fid, _mux), ts in stamps.items():
        nominal = cycle_time_s(tx[fid])
        ms = int(round(nominal * 1000))
        d = by_ms.setdefault(ms, {"periods": [], "messages": set(), "frames": 0})
        d["periods"].append(np.diff(np.asarray(ts)) * 1000.0)
        d["messages"].add(tx[fid].name)
        d["frames"] += len(ts)
    out = {}
    for ms, d in sorted(by_ms.items()):
        per = np.concatenate(d["periods"]) if d["periods"] else np.zeros(0)
        out[ms] = {"frames": d["frames"], "messages": sorted(d["messages"]), "period_ms": _pct(per),
                   "jitter_ms": _pct(np.abs(per - ms))}
    return out


def run_window(frames_or_path, smap) -> tuple[float | None, float | None]:
    """(t_from, t_to): from the BMS's first frame to the last frame of another node (the pack
    simulator's end), i.e. while the BMS and its peers both ran; ``cyclic_figures`` over it
    leaves out the frames the BMS sends once its peers are gone (the shutdown's out-of-schedule
    state frame). (None, None) if either side sent nothing."""
    frames = _frames(frames_or_path)
    tx = _tx_ids(smap)
    bms = [m.timestamp for m in frames if m.arbitration_id in tx]
    other = [m.timestamp for m in frames if m.arbitration_id not in tx]
    if not bms or not other:
        return None, None
    return min(bms), max(other)


def open_latency_s(frames_or_path, smap, t_fault: float) -> float | None:
    """Seconds from ``t_fault`` (same clock as the stamps) to the first BMS frame after it that
    commands the positive and negative contactors open; None if none does."""
    frames = _frames(frames_or_path)
    inv = {q: s for s, q in smap.out_signals.items()}
    sig_pos, sig_neg = inv["contactor_pos_cmd"], inv["contactor_neg_cmd"]
    msg = next(m for m in smap.db.messages if any(s.name == sig_pos for s in m.signals))
    for m in frames:
        if m.arbitration_id != msg.frame_id or m.timestamp < t_fault:
            continue
        v = msg.decode(bytes(m.data), decode_choices=False)
        if v[sig_pos] == 0 and v.get(sig_neg, 0) == 0:
            return m.timestamp - t_fault
    return None
