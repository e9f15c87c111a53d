"""Lock-step co-simulation: the pack node (CMUs, current sensor, contactors, bleed resistors),
the vehicle controller and the charger on one side, the BMS node (:class:`bms.node.BmsNode`, the
firmware) on the other, exchanging real DBC-encoded frames on a simulated clock.

Every tick of ``dt_s`` (10 ms): faults due are switched; the VCU and charger turn the duty cycle
into a current demand within the limits the BMS published; the pack model advances and its
sensors sample; the plant's frames due (DBC periods) pass the fault filter to the BMS; the BMS
node runs its step(s) and sends its frames, which the pack node (contactor and bleed commands),
the VCU and the charger (state, limits, charge request) decode.

Transports: ``"virtual"`` -- python-can's virtual bus (one channel per run, a unique name; the BMS
node and the plant each own a :class:`bms.can.vbus.LockstepBus`, python-can's ``VirtualBus`` with
batch send / receive: every frame is a ``can.Message`` on the channel); ``"virtual_plain"`` -- the
same over ``can.Bus(interface="virtual")`` one frame at a time (python-can's own send, which
deep-copies each frame, and ``recv``; the benchmark's baseline); ``"direct"`` -- the same frames
handed over as lists (no bus objects; same bytes, same order). All are deterministic for a seed
and exchange the same frames.

Recorded every ``record_period_s``: the truth (true cell SOC, temperatures, current, voltages)
beside the BMS's estimates and decisions as seen on the bus (SOC, limits, state, faults) and its
per-cell SOC; events (state changes, contactor commands, faults raised) at tick resolution; all
frames to a candump ``.log`` (and ``.blf``) with python-can's writers.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import can
import numpy as np

from bms import layout as L
from bms.can.codec import EXTENDED_FLAG
from bms.can.frames import FrameArrays, all_data, all_true, to_arrays, to_messages
from bms.can.vbus import LockstepBus
from bms.diag_table import FAULTS
from bms.node import BmsNode, SimClock
from bms.signal_map import load_map
from hil.bmsview import BmsView
from hil.faults import FaultInjector
from hil.pack import (
    IN_I_A, IN_TAMB, IN_TCOOL, PK_K0, PK_PLIM, PK_VBUS, PackGeometry, PackSpread, X_T, build_params,
    init_state, new_faults, new_inputs,
)
from hil.packnode import PackModel, PackNode
from hil.scenario import Scenario, evaluate
from hil.vehicle import Charger, Vcu, segment_current

DT_S = 0.01
TRANSPORTS = ("virtual", "virtual_plain", "direct")
_channels = itertools.count()
_NO_FRAMES = FrameArrays(np.zeros(0, np.int64), np.zeros((0, 8), np.uint8), np.zeros(0, np.int64), np.zeros(0, np.bool_))
REC_FIELDS = (
    "t_s", "state", "contactors", "k_actual", "pack_i_a", "pack_v", "bus_v", "demand_a", "i_chg_lim_a",
    "i_dis_lim_a", "soc_true_mean", "soc_true_min", "soc_true_max", "soc_bms_mean", "soc_bms_min", "soc_bms_max",
    "soc_display", "cell_soc_err_max", "cell_v_min", "cell_v_max", "temp_true_min", "temp_true_max",
    "temp_bms_max", "n_bleeding", "fault_bits", "warn_bits", "segment",
)


@dataclass
class RunResult:
    scenario: Scenario
    rec: dict[str, np.ndarray]
    events: list[tuple[float, str, str]]          # (t_s, kind, text)
    faults: list                                  # FaultSpec with runtime fields
    faults_raised: dict[str, float]               # BMS fault name -> first time at FAULT level
    states_seen: np.ndarray
    node_stats: dict
    frames: int
    sim_s: float
    wall_s: float
    limited_s: float
    bleed_s: float
    verdicts: list = field(default_factory=list)
    log_paths: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(v.ok for v in self.verdicts)

    @property
    def speedup(self) -> float:
        return self.sim_s / self.wall_s if self.wall_s > 0 else math.inf


def build_model(scn: Scenario, smap, dt_s: float = DT_S) -> PackModel:
    """The pack model of a scenario: the map's pack geometry, the scenario's spread and state."""
    pk, ini = smap.pack, scn.initial
    geo = PackGeometry(n_series=pk.n_series, n_parallel=pk.n_parallel, cells_per_board=pk.cells_per_board,
                       temp_sensors_per_board=pk.temps_per_board, r_precharge_ohm=scn.plant.precharge_ohm,
                       bus_cap_f=scn.plant.bus_capacitance_f, bus_dis_ohm=scn.plant.bus_discharge_ohm)
    spread = PackSpread(capacity_rel_sd=ini.capacity_spread_sd, resistance_rel_sd=ini.resistance_spread_sd,
                        soc0_sd=ini.soc_spread_sd)
    p = build_params(pk.profile, geo, spread, seed=scn.seed)
    soc = np.full(p.n_cells, ini.soc)
    for cell, d in ini.soc_offsets:
        if not 0 <= cell < pk.n_series:
            raise ValueError(f"{scn.path}: initial.soc_offsets names cell {cell} (pack has {pk.n_series})")
        soc[cell * p.n_parallel:(cell + 1) * p.n_parallel] += d
    st = init_state(p, soc=np.clip(soc, 0.0, 1.0), temp_c=ini.temp_c, dt_s=dt_s, seed=scn.seed)
    inp = new_inputs(flow_kg_s=ini.coolant_flow_kg_s, coolant_c=ini.coolant_c, ambient_c=ini.ambient_c)
    return PackModel(p, new_faults(p), st, inp, np.zeros(p.n_series, np.uint8))


class CoSim:
    """One scenario run (see module docstring)."""

    def __init__(self, scn: Scenario, transport: str = "virtual", log_path: str | Path | None = None,
                 blf_path: str | Path | None = None, dt_s: float = DT_S):
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {', '.join(map(repr, TRANSPORTS))}, got {transport!r}")
        if scn.time_scale > 1:  # the scenario asks for hil.timescale's k-times coarser schedule
            from hil.timescale import scaled_map_cached
            dt_s = scn.time_scale * dt_s
            scn = replace(scn, map=scaled_map_cached(scn.time_scale, scn.map), time_scale=1)
        if not 0.0 < dt_s <= 1.0:
            raise ValueError(f"dt_s (physics tick) must be in (0, 1] s, got {dt_s!r}")
        self.scn, self.transport, self.dt_s = scn, transport, float(dt_s)
        self.smap = load_map(scn.map)
        self.model = build_model(scn, self.smap, self.dt_s)
        self.pack = PackNode(self.smap, self.model)
        self.view = BmsView(self.smap)
        self.vcu = Vcu(self.smap, self.view)
        self.charger = Charger(self.smap, self.view)
        db = self.smap.db
        vcu_ids = {db.get_message_by_name(self.smap.scalars["vcu_request"].message).frame_id}
        chg_ids = {db.get_message_by_name(self.smap.charger_message).frame_id} if self.smap.charger_message else set()
        self.inj = FaultInjector(scn.faults, self.pack, vcu_ids, chg_ids)
        self.clock = SimClock()
        self.buses: list[can.BusABC] = []
        if transport != "direct":
            ch = f"bms-fil-cosim-{next(_channels)}-{id(self)}"
            if transport == "virtual":
                self.buses = [LockstepBus(channel=ch, preserve_timestamps=True) for _ in range(2)]
            else:
                self.buses = [can.Bus(interface="virtual", channel=ch, preserve_timestamps=True) for _ in range(2)]
        self.node = BmsNode(self.buses[0] if self.buses else None, self.smap, clock=self.clock)
        if transport == "direct":
            self.node.sent_arrays = []  # its frames as arrays (python-can frames only for a log)
        self.writers = []
        self.log_paths = []
        for pth in (log_path, blf_path):
            if pth is not None:
                Path(pth).parent.mkdir(parents=True, exist_ok=True)
                self.writers.append(can.Logger(str(pth)))
                self.log_paths.append(str(pth))

    # ---- one tick --------------------------------------------------------------------------
    def _plant_frames(self, t: float, bus_v: float) -> tuple[FrameArrays, list[can.Message] | None]:
        """The pack's physics tick to ``t`` and its frames due at ``t`` as the BMS receives them (after
        the fault filter), as arrays; python-can frames too when they are needed (a log, a
        frame-altering fault)."""
        pk_keys, pk_data, pk_dlc = self.pack.step_frames(t, self.dt_s)
        extra = self.vcu.frames_due(t) + (self.charger.frames_due(t, bus_v) if self.charger.connected else [])
        inj = self.inj
        if inj.frame_faults or inj.replay_store or self.writers or self.transport == "virtual_plain":
            frames = inj.filter(to_messages(pk_keys, pk_data, pk_dlc, t) + extra)
            return to_arrays(frames), frames
        if extra:
            e = to_arrays(extra)
            keys, data, dlc = (np.concatenate([pk_keys, e.keys]), np.concatenate([pk_data, e.data]),
                               np.concatenate([pk_dlc, e.dlc]))
        else:
            keys, data, dlc = pk_keys, pk_data, pk_dlc
        if inj.drop:  # silent senders (by arbitration ID)
            keep = ~np.isin(keys & ~EXTENDED_FLAG, np.fromiter(inj.drop, np.int64))
            keys, data, dlc = keys[keep], data[keep], dlc[keep]
        return FrameArrays(keys, data, dlc, all_data(keys.shape[0])), None

    def _exchange(self, plant: FrameArrays, plant_msgs: list[can.Message] | None,
                  t: float) -> tuple[FrameArrays, list[can.Message] | None]:
        """Plant frames to the BMS node, its step(s), its frames back: as arrays, and as python-can
        frames (``None`` in the direct transport unless a log needs them)."""
        node = self.node
        if self.transport == "direct":
            if plant_msgs is None:
                node.receive_arrays(plant.keys, plant.data, plant.dlc, t)
            else:
                node.receive(plant_msgs, t)
            node.step_to(t, poll=False)
            sent, node.sent_arrays = node.sent_arrays, []
            if not sent:
                return _NO_FRAMES, ([] if self.writers else None)
            msgs = [m for ts, *a in sent for m in to_messages(*a, ts)] if self.writers else None
            if len(sent) == 1:
                _, keys, data, dlc = sent[0]
            else:
                keys, data, dlc = (np.concatenate(x) for x in list(zip(*sent))[1:])
            return FrameArrays(keys, data, dlc, all_data(keys.shape[0])), msgs
        bus = self.buses[1]
        if plant_msgs is None:
            bus.send_frames(plant.keys, plant.data, plant.dlc, t)
        else:
            for f in plant_msgs:
                bus.send(f)
        node.step_to(t)
        if self.transport == "virtual":
            return bus.recv_all_arrays()
        out = []
        while (m := bus.recv(timeout=0.0)) is not None:
            out.append(m)
        return to_arrays(out), out

    def run(self, progress: Callable[[float, float], None] | None = None) -> RunResult:
        scn, model, pack, vcu, chg, node, inj = self.scn, self.model, self.pack, self.vcu, self.charger, self.node, self.inj
        inp, pk = model.inp, model.st.pk
        dt = self.dt_s
        n_ticks = int(round(scn.duration_s / dt))
        rec_every = max(1, int(round(scn.record_period_s / dt)))
        rec = {k: [] for k in REC_FIELDS}
        events: list[tuple[float, str, str]] = []
        raised: dict[str, float] = {}
        seg_i, seg_t0 = 0, 0.0
        segs = scn.segments
        prev_state, prev_cmd, prev_bits = -1, 0, 0
        states_seen = set()
        frames = 0
        bleed_ticks = 0
        writers = self.writers
        specs = inj.specs
        wall0 = time.perf_counter()
        t = 0.0
        for k in range(1, n_ticks + 1):
            t = k * dt
            self.clock.set(t)
            # ---- scenario: segment, faults, requests and demand
            while seg_i < len(segs) and t - seg_t0 > segs[seg_i].duration_s + 1e-9:
                seg_t0 += segs[seg_i].duration_s
                seg_i += 1
            if seg_i >= len(segs):
                break
            seg = segs[seg_i]
            if specs:
                inj.due(t, self.pack.conditions)
            bus_v = pk[PK_VBUS]
            inp[IN_I_A] = segment_current(seg, t - seg_t0, vcu, chg, bus_v, dt)
            if seg.mode == "charge" and seg.stop_a is not None and chg.cv and 0.0 < chg.i_a < seg.stop_a:
                events.append((t, "charge", f"charge complete (CV current {chg.i_a:.1f} A < {seg.stop_a} A)"))
                seg_t0 = t - seg.duration_s  # the next tick moves on to the next segment
            # ---- plant physics and frames
            plant, plant_msgs = self._plant_frames(t, bus_v)
            a, bms_frames = self._exchange(plant, plant_msgs, t)
            n_bms = a.keys.shape[0]
            if n_bms:
                if not all_true(a.data_frame):
                    a = FrameArrays(*(x[a.data_frame] for x in a))
                pack.on_arrays(a.keys, a.data, a.dlc)
                self.view.feed_arrays(a.keys, a.data, a.dlc, t)
            frames += plant.keys.shape[0] + n_bms
            if writers:
                for w in writers:
                    for m in plant_msgs:
                        w.on_message_received(m)
                    for m in bms_frames:
                        w.on_message_received(m)
            # ---- events at tick resolution
            out = node.st.out
            y_state, y_fbits = out[L.Y_STATE], out[L.Y_FAULT_BITS]
            state = int(y_state) if y_state == y_state else 0
            cmd = int(node.st.s[L.S_CONTACTORS])
            fbits = int(y_fbits) if y_fbits == y_fbits else 0
            if state != prev_state:
                events.append((t, "state", f"{L.STATE_NAMES[prev_state] if prev_state >= 0 else '-'} -> {L.STATE_NAMES[state]}"))
                states_seen.add(state)
                prev_state = state
            if cmd != prev_cmd:
                events.append((t, "contactors", f"command {cmd:03b} (pos pre neg)"))
                if cmd & (L.K_NEG | L.K_POS | L.K_PRE) == 0:
                    for f in inj.specs:
                        if f.t_on is not None and f.t_open is None:
                            f.t_open = t
                prev_cmd = cmd
            if fbits != prev_bits:
                rose = fbits & ~prev_bits
                for fd in FAULTS:
                    if rose >> fd.id & 1:
                        raised.setdefault(fd.name, t)
                        events.append((t, "fault", f"{fd.name} raised"))
                        for f in inj.specs:
                            if f.t_on is not None and fd.name not in f.detected:
                                f.detected[fd.name] = t
                    elif (prev_bits & ~fbits) >> fd.id & 1:
                        events.append((t, "fault", f"{fd.name} cleared"))
                prev_bits = fbits
            if specs and cmd & (L.K_NEG | L.K_POS | L.K_PRE) == 0:  # contactors already open when a fault came
                for f in specs:
                    if f.t_on is not None and f.t_open is None:
                        f.t_open = t
            if pack.bleeding:
                bleed_ticks += 1
            if k % rec_every == 0:
                self._record(rec, t, state, cmd, fbits, out, seg_i)
                if progress is not None:
                    progress(t, scn.duration_s)
        wall = time.perf_counter() - wall0
        for w in self.writers:
            w.stop()
        self.close()
        arrays = {k: np.asarray(v, dtype=np.float64) for k, v in rec.items()}
        res = RunResult(scn, arrays, events, inj.specs, raised, np.array(sorted(states_seen)), node.stats.as_dict(),
                        frames, t, wall, vcu.limited_s, bleed_ticks * dt, log_paths=list(self.log_paths))
        res.verdicts = evaluate(scn, res)
        return res

    def _record(self, rec, t, state, cmd, fbits, out, seg_i) -> None:
        model, v = self.model, self.view
        x = self.pack.true_element_soc()
        tc = model.st.x[:, X_T]
        pk = model.st.pk
        est = self.node.st.x[:, 0]
        meas = model.st.meas[:model.p.n_series]
        wb = out[L.Y_WARN_BITS]
        truth = self.pack.truth()
        row = {
            "t_s": t, "state": state, "contactors": cmd,
            "k_actual": int(pk[PK_K0]) | int(pk[PK_K0 + 1]) << 1 | int(pk[PK_K0 + 2]) << 2,
            "pack_i_a": truth["pack_i_a"], "pack_v": truth["pack_v"], "bus_v": pk[PK_VBUS],
            "demand_a": model.inp[IN_I_A], "i_chg_lim_a": v.q("i_chg_lim_a"), "i_dis_lim_a": v.q("i_dis_lim_a"),
            "soc_true_mean": x.mean(), "soc_true_min": x.min(), "soc_true_max": x.max(),
            "soc_bms_mean": v.q("soc_mean_pct") / 100.0, "soc_bms_min": v.q("soc_min_pct") / 100.0,
            "soc_bms_max": v.q("soc_max_pct") / 100.0, "soc_display": v.q("soc_display_pct") / 100.0,
            "cell_soc_err_max": float(np.max(np.abs(est - x))) if np.all(np.isfinite(est)) else math.nan,
            "cell_v_min": meas.min(), "cell_v_max": meas.max(), "temp_true_min": tc.min(), "temp_true_max": tc.max(),
            "temp_bms_max": v.q("temp_max_c"), "n_bleeding": float(np.count_nonzero(model.bleed)),
            "fault_bits": fbits, "warn_bits": 0 if math.isnan(wb) else int(wb), "segment": seg_i,
        }
        for key, val in row.items():
            rec[key].append(val)

    def close(self) -> None:
        for b in self.buses:
            b.shutdown()
        self.buses = []


def run_scenario(scn: Scenario, transport: str = "virtual", log_path=None, blf_path=None, progress=None) -> RunResult:
    return CoSim(scn, transport, log_path, blf_path).run(progress)
