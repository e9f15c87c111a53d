"""The scenario's plant as a real bus node: the pack (CMUs, current sensor, contactor and bleed
drivers), the vehicle controller and the charger of a scenario, seeing the BMS only through
the frames it sends -- what ``bms pack`` runs against a BMS in another process or ECU.

    plant = Plant(load_scenario("bench_short"))
    frames = plant.tick(t_s)           # scenario, faults, physics over (t - 10 ms, t]; frames due at t
    plant.on_frames(bms_frames, t_s)   # contactor / bleed commands, limits, state, faults seen
    res = plant.result(wall_s)         # hil.cosim.RunResult: verdicts, figures, plots (hil.report)

    run_realtime(bus, plant, clock)    # one tick per 10 ms of the clock (x ``rate``), until the end

Unlike :class:`hil.cosim.CoSim` nothing here reads the BMS's memory: state, contactor commands,
fault bits and estimates come from its frames (:class:`hil.bmsview.BmsView`), so per-cell
estimates and the BMS's receive statistics are not known (NaN / empty in the result).
"""

from __future__ import annotations

import math
import time
from typing import Callable

import can
import numpy as np

from bms import layout as L
from bms.can.socketbatch import SocketBatch
from bms.diag_table import FAULTS
from hil.bmsview import BmsView
from hil.cosim import DT_S, REC_FIELDS, RunResult, build_model
from hil.faults import FaultInjector
from hil.pack import IN_I_A, PK_K0, PK_VBUS, X_T
from hil.packnode import PackNode
from hil.scenario import Scenario, evaluate
from hil.vehicle import REQUESTS, Charger, Vcu, segment_current

MAX_CATCH_UP_TICKS = 20  # a late loop runs this many ticks back to back, then skips ahead


class Plant:
    """Pack + VCU + charger of a scenario, observing the BMS through its frames only."""

    def __init__(self, scn: Scenario, vcu: bool = True, wait_for_bms: bool = False):
        from bms.signal_map import load_map

        self.scn = scn
        self.smap = smap = load_map(scn.map)
        self.model = build_model(scn, smap)
        self.pack = PackNode(smap, self.model)
        self.view = BmsView(smap)
        self.vcu = Vcu(smap, self.view)
        self.vcu_enabled = vcu
        self.charger = Charger(smap, self.view)
        db = smap.db
        vcu_ids = {db.get_message_by_name(smap.scalars["vcu_request"].message).frame_id}
        chg_ids = {db.get_message_by_name(smap.charger_message).frame_id} if smap.charger_message else set()
        self.inj = FaultInjector(scn.faults, self.pack, vcu_ids, chg_ids)
        self.fault_sigs = [(s, i) for s, i in smap.fault_bits.items()]
        self.seg_i, self.seg_t0 = 0, 0.0
        self.t_s = 0.0                # scenario time of the last tick
        self.t_bus_s = 0.0            # bus time of the last tick
        self.done = False
        self.frames_out = 0
        self.frames_in = 0
        self.rec = {k: [] for k in REC_FIELDS}
        self.rec_every = max(1, int(round(scn.record_period_s / DT_S)))
        self.ticks = 0
        self.events: list[tuple[float, str, str]] = []
        self.raised: dict[str, float] = {}
        self.states_seen: set[int] = set()
        self.prev_state, self.prev_cmd, self.prev_bits = -1, 0, 0
        self.bleed_ticks = 0
        self.fault_wall: dict[str, float] = {}   # fault label -> time.time() when switched on
        self.holding = wait_for_bms   # scenario held at its start until the BMS's first state frame
        self.t0_s = 0.0               # bus time at which the scenario started

    # ---- scenario and physics -------------------------------------------------------------
    def tick(self, t_bus_s: float) -> list[can.Message]:
        """Advance the plant to bus time ``t_bus_s`` (one 10 ms tick) and return its frames due.
        While :attr:`holding`, the pack rests and the scenario does not advance."""
        scn, model, vcu, chg, inj = self.scn, self.model, self.vcu, self.charger, self.inj
        self.t_bus_s = t_bus_s
        if self.holding:
            model.inp[IN_I_A] = 0.0
            vcu.request = REQUESTS["standby"]
            self.pack.step(t_bus_s, DT_S)
            frames = self.pack.frames_due(t_bus_s) + (vcu.frames_due(t_bus_s) if self.vcu_enabled else [])
            self.frames_out += len(frames)
            return frames
        t_s = t_bus_s - self.t0_s
        segs = scn.segments
        while self.seg_i < len(segs) and t_s - self.seg_t0 > segs[self.seg_i].duration_s + 1e-9:
            self.seg_t0 += segs[self.seg_i].duration_s
            self.seg_i += 1
        if self.seg_i >= len(segs) or t_s > scn.duration_s + 1e-9:
            self.done = True
            return []
        seg = segs[self.seg_i]
        if inj.specs:
            before = {id(f) for f in inj.specs if f.t_on is not None}
            if inj.due(t_s, self.pack.conditions):
                for f in inj.specs:
                    if f.t_on is not None and id(f) not in before:
                        self.fault_wall[f.label] = time.time()
                        self.events.append((t_s, "inject", f.label))
        inp, pk = model.inp, model.st.pk
        bus_v = pk[PK_VBUS]
        inp[IN_I_A] = segment_current(seg, t_s - self.seg_t0, vcu, chg, bus_v, DT_S)
        if seg.mode == "charge" and seg.stop_a is not None and chg.cv and 0.0 < chg.i_a < seg.stop_a:
            self.events.append((t_s, "charge", f"charge complete (CV current {chg.i_a:.1f} A < {seg.stop_a} A)"))
            self.seg_t0 = t_s - seg.duration_s
        self.pack.step(t_bus_s, DT_S)
        frames = self.pack.frames_due(t_bus_s)
        vf = vcu.frames_due(t_bus_s)
        if self.vcu_enabled:
            frames += vf
        if chg.connected:
            frames += chg.frames_due(t_bus_s, bus_v)
        frames = inj.filter(frames)
        self.t_s = t_s
        self.ticks += 1
        if self.pack.bleeding:   # tracked by the pack node's command decoding
            self.bleed_ticks += 1
        if self.ticks % self.rec_every == 0:
            self._record(t_s)
        self.frames_out += len(frames)
        return frames

    # ---- what the BMS says ------------------------------------------------------------------
    def on_frames(self, frames: list[can.Message], t_bus_s: float) -> None:
        """Obey the BMS's commands among ``frames`` and note its state, contactors and faults."""
        if not frames:
            return
        self.frames_in += len(frames)
        self.pack.on_frames(frames)
        v = self.view
        v.feed(frames, t_bus_s)
        st = v.q("state")
        if not math.isfinite(st):
            return
        if self.holding:  # the BMS is up: the scenario starts now
            self.holding = False
            self.t0_s = t_bus_s
        t_s = t_bus_s - self.t0_s
        state = int(st)
        cmd = sum(int(v.q(q) == 1) << b for q, b in (("contactor_neg_cmd", 0), ("contactor_pre_cmd", 1),
                                                      ("contactor_pos_cmd", 2)))
        bits = 0
        for sig, fid in self.fault_sigs:
            if v.signal(sig) == 1:
                bits |= 1 << fid
        if state != self.prev_state:
            prev = L.STATE_NAMES[self.prev_state] if self.prev_state >= 0 else "-"
            self.events.append((t_s, "state", f"{prev} -> {L.STATE_NAMES[state]}"))
            self.states_seen.add(state)
            self.prev_state = state
        if cmd != self.prev_cmd:
            self.events.append((t_s, "contactors", f"command {cmd:03b} (pos pre neg)"))
            self.prev_cmd = cmd
        if cmd & (L.K_NEG | L.K_POS | L.K_PRE) == 0:
            for f in self.inj.specs:
                if f.t_on is not None and f.t_open is None:
                    f.t_open = t_s
        if bits != self.prev_bits:
            for fd in FAULTS:
                if (bits & ~self.prev_bits) >> fd.id & 1:
                    self.raised.setdefault(fd.name, t_s)
                    self.events.append((t_s, "fault", f"{fd.name} raised"))
                    for f in self.inj.specs:
                        if f.t_on is not None and fd.name not in f.detected:
                            f.detected[fd.name] = t_s
                elif (self.prev_bits & ~bits) >> fd.id & 1:
                    self.events.append((t_s, "fault", f"{fd.name} cleared"))
            self.prev_bits = bits

    def _record(self, t: float) -> None:
        model, v = self.model, self.view
        x = self.pack.true_element_soc()
        tc = model.st.x[:, X_T]
        pk = model.st.pk
        meas = model.st.meas[:model.p.n_series]
        truth = self.pack.truth()
        row = {
            "t_s": t, "state": self.prev_state if self.prev_state >= 0 else 0, "contactors": self.prev_cmd,
            "k_actual": int(pk[PK_K0]) | int(pk[PK_K0 + 1]) << 1 | int(pk[PK_K0 + 2]) << 2,
            "pack_i_a": truth["pack_i_a"], "pack_v": truth["pack_v"], "bus_v": pk[PK_VBUS],
            "demand_a": model.inp[IN_I_A], "i_chg_lim_a": v.q("i_chg_lim_a"), "i_dis_lim_a": v.q("i_dis_lim_a"),
            "soc_true_mean": x.mean(), "soc_true_min": x.min(), "soc_true_max": x.max(),
            "soc_bms_mean": v.q("soc_mean_pct") / 100.0, "soc_bms_min": v.q("soc_min_pct") / 100.0,
            "soc_bms_max": v.q("soc_max_pct") / 100.0, "soc_display": v.q("soc_display_pct") / 100.0,
            "cell_soc_err_max": math.nan,  # per-cell estimates are not on the bus
            "cell_v_min": meas.min(), "cell_v_max": meas.max(), "temp_true_min": tc.min(), "temp_true_max": tc.max(),
            "temp_bms_max": v.q("temp_max_c"), "n_bleeding": float(np.count_nonzero(model.bleed)),
            "fault_bits": self.prev_bits, "warn_bits": 0, "segment": self.seg_i,
        }
        for key, val in row.items():
            self.rec[key].append(val)

    def result(self, wall_s: float) -> RunResult:
        arrays = {k: np.asarray(v, dtype=np.float64) for k, v in self.rec.items()}
        stats = {"frames_in": 0, "frames_accepted": 0, "ignored": {}, "rejected": {}}  # the BMS's own: unknown here
        res = RunResult(self.scn, arrays, self.events, self.inj.specs, self.raised, np.array(sorted(self.states_seen)),
                        stats, self.frames_out + self.frames_in, self.t_s, wall_s, self.vcu.limited_s,
                        self.bleed_ticks * DT_S)
        res.verdicts = evaluate(self.scn, res)
        return res


def run_realtime(bus: can.BusABC, plant: Plant, clock, rate: float = 1.0, duration_s: float | None = None,
                 stop: Callable[[], bool] = lambda: False,
                 on_tick: Callable[[float], None] | None = None) -> dict:
    """Run ``plant`` on ``bus`` in real time: tick k (simulated time k x 10 ms) is due at
    ``k x 10 ms / rate`` on ``clock``; between ticks, receive. Ends with the scenario, after
    ``duration_s`` of clock time, or when ``stop()``. A late loop runs up to
    :data:`MAX_CATCH_UP_TICKS` ticks back to back, then skips ahead (counted). Returns loop
    statistics (ticks, late ticks, skipped ticks, send errors)."""
    if not rate > 0:
        raise ValueError(f"rate must be > 0, got {rate!r}")
    # only the BMS's frames are of use here (on SocketCAN the kernel filters the rest)
    bus.set_filters([{"can_id": m.frame_id, "can_mask": 0x1FFFFFFF if m.is_extended_frame else 0x7FF,
                      "extended": m.is_extended_frame} for m in plant.view.codec.messages])
    sock = SocketBatch.of(bus)  # SocketCAN: each tick's frames in one system call, receive in batches
    t0 = clock.now_s()
    period = DT_S / rate
    k, late, skipped, tx_err, wakes = 0, 0, 0, 0, 0
    inbox: list[can.Message] = []
    while not stop() and not plant.done:
        now = clock.now_s() - t0
        if duration_s is not None and now >= duration_s:
            break
        due = int(math.floor(now / period + 1e-9))
        if due - k > MAX_CATCH_UP_TICKS:
            skipped += due - k - MAX_CATCH_UP_TICKS
            k = due - MAX_CATCH_UP_TICKS
        if due > k + 1:
            late += 1
        while k < due and not plant.done:
            k += 1
            t = k * DT_S
            frames = plant.tick(t)
            if sock is not None and frames:
                try:
                    tx_err += len(frames) - sock.send_messages(frames)
                except can.CanError:
                    tx_err += len(frames)
                frames = []
            for m in frames:
                try:
                    bus.send(m)
                except can.CanError:
                    tx_err += 1
            if on_tick is not None:
                on_tick(t)
        if inbox:
            plant.on_frames(inbox, plant.t_bus_s)
            inbox = []
        wait = (k + 1) * period - (clock.now_s() - t0)
        while wait > 0:
            wakes += 1
            if sock is not None:
                if not sock.wait(wait):
                    break
                inbox += sock.recv_messages(bus.channel)
            else:
                msg = bus.recv(timeout=wait)
                if msg is None:
                    break
                inbox.append(msg)
            wait = (k + 1) * period - (clock.now_s() - t0)
    if inbox:
        plant.on_frames(inbox, plant.t_bus_s)
    return {"ticks": k, "late_loops": late, "skipped_ticks": skipped, "tx_errors": tx_err, "wakes": wakes}


def warm_up(scn: Scenario) -> None:
    """Compile (or load from numba's cache) every kernel a plant uses, on a scratch plant fed with
    a scratch BMS node's frames, so that real time starts fast."""
    from bms.node import BmsNode, SimClock

    plant = Plant(scn)
    node = BmsNode(None, plant.smap, clock=SimClock())
    for k in range(1, 4):
        node.receive(plant.tick(k * DT_S), k * DT_S)
        node.step_to(k * DT_S, poll=False)
        plant.on_frames(node.sent, k * DT_S)
        node.sent = []
