"""Replay a recorded bus log into the BMS node, offline: what would this firmware have estimated
and decided on that traffic?

    res = replay("drive.log")                   # hil.cosim.RunResult: hil.report.figures / plot
    res = replay("drive.blf", realtime=True)    # paced on the wall clock as recorded

Every frame of the log (candump ``.log``, ``.asc``, ``.blf``: whatever ``can.LogReader`` reads)
reaches a fresh :class:`bms.node.BmsNode` stamped with its recorded time (relative to the first
frame); the node's steps run on its task period in between, on a :class:`bms.node.SimClock`.
Frames the node would have sent are decoded as the vehicle sees them (:class:`hil.bmsview.
BmsView`) and sampled every ``record_period_s`` into the record of :mod:`hil.report`. A recording
holds no truth: the "true" columns are NaN, except the pack current (the current sensor's
reading as received) and the cell voltage extremes (as the BMS reports them).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from types import SimpleNamespace

import can
import numpy as np

from bms import layout as L
from bms.diag_table import FAULTS
from bms.node import BmsNode, SimClock
from bms.signal_map import DEFAULT_MAP, load_map
from hil.bmsview import BmsView
from hil.cosim import REC_FIELDS, RunResult


def replay(path: str | Path, map_name: str = DEFAULT_MAP, pack: str | None = None, realtime: bool = False,
           record_period_s: float = 1.0) -> RunResult:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such log file")
    smap = load_map(map_name, pack=pack)
    clock = SimClock()
    node = BmsNode(None, smap, clock=clock)
    view = BmsView(smap)
    rec = {k: [] for k in REC_FIELDS}
    events: list[tuple[float, str, str]] = []
    raised: dict[str, float] = {}
    states: set[int] = set()
    prev = {"state": -1, "cmd": 0, "bits": 0}
    next_rec = record_period_s
    batch: list[can.Message] = []
    stamps: list[float] = []
    n_frames = 0
    t0 = None
    wall0 = time.perf_counter()

    def flush_to(t: float) -> None:
        nonlocal next_rec
        if batch:
            node.receive(batch, np.asarray(stamps))
            batch.clear()
            stamps.clear()
        clock.set(max(t, clock.now_s()))
        node.step_to(t, poll=False)
        if node.sent:
            view.feed(node.sent, t)
            node.sent = []
            _events(node, t, prev, events, raised, states)
        while t >= next_rec - 1e-9:
            _record(rec, next_rec, node, view)
            next_rec += record_period_s

    with can.LogReader(str(path)) as reader:
        for m in reader:
            if m.is_error_frame:
                continue
            if t0 is None:
                t0 = m.timestamp
            t = m.timestamp - t0
            if realtime and (lag := t - (time.perf_counter() - wall0)) > 0:
                time.sleep(lag)
            while t > node.next_step_s + 1e-9:  # frames stamped at a step time count for that step
                flush_to(node.next_step_s)
            batch.append(m)
            stamps.append(max(t, clock.now_s()))
            n_frames += 1
    if t0 is None:
        raise ValueError(f"{path}: no CAN frames in the log")
    flush_to(node.next_step_s)
    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in rec.items()}
    scn = SimpleNamespace(name=f"replay of {path.name}", description=f"{n_frames} frames replayed into the BMS node")
    return RunResult(scn, arrays, events, [], raised, np.array(sorted(states)), node.stats.as_dict(), n_frames,
                     node.t_s, time.perf_counter() - wall0, 0.0, 0.0, log_paths=[str(path)])


def _events(node, t, prev, events, raised, states) -> None:
    out = node.st.out
    state = int(out[L.Y_STATE]) if out[L.Y_STATE] == out[L.Y_STATE] else 0
    cmd = int(node.st.s[L.S_CONTACTORS])
    bits = 0 if math.isnan(out[L.Y_FAULT_BITS]) else int(out[L.Y_FAULT_BITS])
    if state != prev["state"]:
        events.append((t, "state", f"{L.STATE_NAMES[prev['state']] if prev['state'] >= 0 else '-'} -> {L.STATE_NAMES[state]}"))
        states.add(state)
    if cmd != prev["cmd"]:
        events.append((t, "contactors", f"command {cmd:03b} (pos pre neg)"))
    for fd in FAULTS:
        if (bits & ~prev["bits"]) >> fd.id & 1:
            raised.setdefault(fd.name, t)
            events.append((t, "fault", f"{fd.name} raised"))
        elif (prev["bits"] & ~bits) >> fd.id & 1:
            events.append((t, "fault", f"{fd.name} cleared"))
    prev.update(state=state, cmd=cmd, bits=bits)


def _record(rec, t, node, view) -> None:
    q = view.q
    out = node.st.out
    nan = math.nan
    row = {
        "t_s": t, "state": out[L.Y_STATE], "contactors": node.st.s[L.S_CONTACTORS], "k_actual": nan,
        "pack_i_a": node.inp.u[L.U_PACK_I_A] if node.inp.u[L.U_ISENSE_VALID] > 0.5 else nan,
        "pack_v": node.inp.u[L.U_PACK_V], "bus_v": node.inp.u[L.U_BUS_V], "demand_a": nan,
        "i_chg_lim_a": q("i_chg_lim_a"), "i_dis_lim_a": q("i_dis_lim_a"),
        "soc_true_mean": nan, "soc_true_min": nan, "soc_true_max": nan,
        "soc_bms_mean": q("soc_mean_pct") / 100.0, "soc_bms_min": q("soc_min_pct") / 100.0,
        "soc_bms_max": q("soc_max_pct") / 100.0, "soc_display": q("soc_display_pct") / 100.0,
        "cell_soc_err_max": nan, "cell_v_min": q("cell_v_min_v"), "cell_v_max": q("cell_v_max_v"),
        "temp_true_min": nan, "temp_true_max": nan, "temp_bms_max": q("temp_max_c"),
        "n_bleeding": float(np.count_nonzero(node.st.bleed)),
        "fault_bits": 0 if math.isnan(out[L.Y_FAULT_BITS]) else out[L.Y_FAULT_BITS],
        "warn_bits": 0 if math.isnan(out[L.Y_WARN_BITS]) else out[L.Y_WARN_BITS], "segment": 0,
    }
    for k, v in row.items():
        rec[k].append(float(v))


def summary(res: RunResult) -> dict:
    """What the replayed BMS estimated and decided (JSON-able)."""
    r = res.rec
    last = {k: (None if len(r[k]) == 0 or not math.isfinite(r[k][-1]) else round(float(r[k][-1]), 4))
            for k in ("soc_bms_mean", "soc_bms_min", "soc_bms_max", "soc_display", "i_chg_lim_a", "i_dis_lim_a")}
    return {
        "log": res.log_paths[0] if res.log_paths else None, "frames": res.frames, "span_s": round(res.sim_s, 3),
        "wall_s": round(res.wall_s, 3), "speedup": round(res.speedup, 1) if math.isfinite(res.speedup) else None,
        "states": [L.STATE_NAMES[int(s)] for s in res.states_seen],
        "faults_raised": {k: round(v, 3) for k, v in res.faults_raised.items()},
        "events": [[round(t, 3), k, x] for t, k, x in res.events], "final": last,
        "frames_accepted": res.node_stats["frames_accepted"], "rejected": res.node_stats["rejected"],
        "ignored": res.node_stats["ignored"],
    }
