"""The pack on the bus: a :mod:`hil.pack` model behind the CAN frames of its cell-monitoring
boards (CMUs), its current sensor (ISENSE) and its contactor / bleed drivers.

    node = PackNode(smap, model)                  # model: hil.pack (params, faults, state, inp, bleed)
    node.step(t_s, dt_s)                          # physics over (t - dt, t], sensors sampled at t
    frames = node.frames_due(t_s)                 # encoded CMU / ISENSE frames due at t (DBC periods)
    node.on_frames(frames)                        # BMS_State contactor commands, BMS_Balancing masks

Every message, signal, scaling and period comes from the DBC through the signal map
(``bms.signal_map``): the CMU messages are the map's board messages, the ISENSE messages those
of its current / voltage inputs and of the contactors' auxiliary contacts (the model's contact
positions: a welded contactor reads closed whatever the command). All frames due at one instant are encoded in one call of the
batch codec (:class:`bms.can.codec.FrameCodec`); alive counters advance once per message cycle.
Commands are obeyed as received: contactor command bits of the BMS's state message drive the
model's contactor inputs, each board's bleed mask drives its bleed resistors.
"""

from __future__ import annotations

from typing import NamedTuple

import can
import numpy as np

from bms.can.codec import FrameCodec, frame_key
from bms.can.dbc import cycle_time_s
from bms.node.rx import counter_signal
from bms.signal_map import SignalMap
from hil.pack import (
    IN_K0, K_NEG, K_POS, K_PRE, PK_IPACK, PK_KFB0, PK_VBUS, PK_VPACK, X_T, X_Z, pack_step, sample_sensors,
)


class PackModel(NamedTuple):
    """The arrays of one :mod:`hil.pack` model (as returned by ``hil.pack.ready.ready_pack``)."""

    p: object
    f: object
    st: object
    inp: np.ndarray
    bleed: np.ndarray


ISENSE_KEYS = ("pack_i_a", "pack_v", "bus_v", "fb_neg", "fb_pre", "fb_pos")  # signal-map scalars the sensor sends
_CMD_QTY = {"contactor_neg_cmd": K_NEG, "contactor_pre_cmd": K_PRE, "contactor_pos_cmd": K_POS}


class PackNode:
    """CMU boards + current sensor + contactor / bleed drivers around a pack model."""

    def __init__(self, smap: SignalMap, model: PackModel, t0_s: float = 0.0):
        self.smap, self.m, db = smap, model, smap.db
        p = model.p
        pk = smap.pack
        if p.n_series != pk.n_series or p.n_ts != pk.n_temps:
            raise ValueError(f"pack model has {p.n_series} cells / {p.n_ts} sensors, the map's pack "
                             f"{pk.n_series} / {pk.n_temps}")
        sc = smap.scalars
        self.board_msgs = [list(ms) for ms in smap.board_messages]
        isense = sorted({sc[k].message for k in ISENSE_KEYS if k in sc})
        names = sorted({m for ms in self.board_msgs for m in ms} | set(isense))
        c = self.codec = FrameCodec(names, db)
        self.values = np.zeros(c.n_slots)
        self.board_of = {m: b for b, ms in enumerate(self.board_msgs) for m in ms}
        self.sched = []
        for name in names:
            msg = c.messages[c.row(name)]
            rows, mux, _ = c.cycle_plan([name])
            ctr = counter_signal(msg)
            self.sched.append([name, cycle_time_s(msg), float(t0_s), rows, mux,
                               c.slot(ctr) if ctr else -1, 1 << msg.get_signal_by_name(ctr).length if ctr else 1, 0,
                               msg.frame_id, msg.is_extended_frame, msg.length])
        self.cell_slots = c.slots(r.signal for r in smap.cells)
        self.temp_slots = c.slots(r.signal for r in smap.temps)
        self.s_i, self.s_pv, self.s_bv = (c.slot(sc[k].signal) for k in ("pack_i_a", "pack_v", "bus_v"))
        # auxiliary contacts: the model's contact positions as the sensor reads them (a weld reads closed)
        self.fb_slots = [(PK_KFB0 + k, c.slot(sc[f"fb_{q}"].signal))
                         for q, k in (("neg", K_NEG), ("pre", K_PRE), ("pos", K_POS)) if f"fb_{q}" in sc]
        self.ch_cells = np.arange(p.n_series)
        self.ch_temps = p.n_series + np.arange(p.n_ts)
        # board status signals (bleed feedback, board temperature), found by DBC signal name
        self.status_slots = []
        for b, ms in enumerate(self.board_msgs):
            fb = tmp = None
            for name in ms:
                for s in c.messages[c.row(name)].signals:
                    if s.name.endswith("_BalFeedback"):
                        fb = c.slot(s.name)
                    elif s.name.endswith("_BoardTemp"):
                        tmp = c.slot(s.name)
            self.status_slots.append((fb, tmp))
        self.cpb = pk.cells_per_board
        self.tpb = pk.temps_per_board
        self.bit_w = (1 << np.arange(self.cpb)).astype(np.float64)
        # commands from the BMS: contactor bits of its state message, bleed masks
        inv = {q: s for s, q in smap.out_signals.items()}
        cmd_sigs = {k: inv[q] for q, k in _CMD_QTY.items() if q in inv}
        state_msgs = {m.name for m in db.messages for s in m.signals if s.name in cmd_sigs.values()}
        bal_msgs = {m.name for m in db.messages for s in m.signals if s.name in {x for x in smap.bal_masks if x}}
        self.rx = FrameCodec(sorted(state_msgs | bal_msgs), db)
        self.rx_buf = self.rx.new_buffers()
        self.rx_keys = set(int(k) for k in self.rx.msg_keys)
        self.cmd_slots = [(k, self.rx.slot(s)) for k, s in cmd_sigs.items()]
        self.bal_slots = [(b, self.rx.slot(s)) for b, s in enumerate(smap.bal_masks) if s]
        self.t_sample_s = float(t0_s)
        self.commands_seen = 0

    # ---- physics ---------------------------------------------------------------------------
    def step(self, t_s: float, dt_s: float) -> None:
        """Advance the pack model by ``dt_s`` (ending at ``t_s``) and sample every sensor."""
        m = self.m
        pack_step(m.p, m.f, m.st, m.inp, m.bleed, dt_s)
        sample_sensors(m.p, m.f, m.st, max(t_s - self.t_sample_s, 0.0))
        self.t_sample_s = t_s

    # ---- frames out --------------------------------------------------------------------------
    def _fill(self, boards: bool) -> None:
        m, v = self.m, self.values
        meas = m.st.meas
        v[self.s_i] = meas[m.p.ch_current]
        v[self.s_pv] = meas[m.p.ch_pack_v]
        v[self.s_bv] = meas[m.p.ch_bus_v]
        for k, slot in self.fb_slots:
            v[slot] = m.st.pk[k]
        if not boards:
            return
        v[self.cell_slots] = meas[self.ch_cells]
        v[self.temp_slots] = meas[self.ch_temps]
        ts = m.st.ts_temp
        for b, (fb, tmp) in enumerate(self.status_slots):
            if fb is not None:
                v[fb] = float(m.bleed[b * self.cpb:(b + 1) * self.cpb] @ self.bit_w)
            if tmp is not None:
                v[tmp] = float(np.mean(ts[b * self.tpb:(b + 1) * self.tpb]))

    def frames_due(self, t_s: float) -> list[can.Message]:
        """Every frame due at ``t_s`` (each message on its DBC period), encoded in one batch."""
        due = [e for e in self.sched if e[2] <= t_s + 1e-9]
        if not due:
            return []
        self._fill(any(e[0] in self.board_of for e in due))
        rows, mux, meta = [], [], []
        for e in due:
            e[2] += e[1]
            if e[2] <= t_s + 1e-9:  # fell behind: resume on the period grid
                e[2] += e[1] * (int((t_s - e[2]) / e[1]) + 1)
            if e[5] >= 0:
                self.values[e[5]] = e[7]
                e[7] = (e[7] + 1) % e[6]
            rows.append(e[3])
            mux.append(e[4])
            meta += [(e[8], e[9], e[10], e[0])] * len(e[3])
        data, _ = self.codec.encode(np.concatenate(rows), np.concatenate(mux), self.values)
        return [can.Message(arbitration_id=fid, is_extended_id=ext, data=bytes(data[j, :n]), timestamp=t_s)
                for j, (fid, ext, n, _name) in enumerate(meta)]

    # ---- commands in -------------------------------------------------------------------------
    def on_frames(self, frames: list[can.Message]) -> int:
        """Decode the BMS's contactor and bleed commands among ``frames``; returns how many were used."""
        sel = [f for f in frames if frame_key(f.arbitration_id, f.is_extended_id) in self.rx_keys
               and not f.is_error_frame and not f.is_remote_frame and len(f.data) <= 8]
        if not sel:
            return 0
        keys = np.array([frame_key(f.arbitration_id, f.is_extended_id) for f in sel], np.int64)
        data = np.zeros((len(sel), 8), np.uint8)
        dlc = np.zeros(len(sel), np.int64)
        for j, f in enumerate(sel):
            d = bytes(f.data)
            data[j, :len(d)] = np.frombuffer(d, np.uint8)
            dlc[j] = len(d)
        self.rx.decode(keys, data, self.rx_buf, dlc)
        b, inp = self.rx_buf, self.m.inp
        for k, slot in self.cmd_slots:
            if b.valid[slot]:
                inp[IN_K0 + k] = 1.0 if b.value[slot] > 0.5 else 0.0
        for brd, slot in self.bal_slots:
            if b.valid[slot]:
                mask = int(b.value[slot])
                self.m.bleed[brd * self.cpb:(brd + 1) * self.cpb] = (mask >> np.arange(self.cpb)) & 1
        self.commands_seen += len(sel)
        return len(sel)

    # ---- truth -------------------------------------------------------------------------------
    def true_element_soc(self) -> np.ndarray:
        """True SOC per series element (mean over its parallel cells)."""
        p = self.m.p
        return self.m.st.x[:, X_Z].reshape(p.n_series, p.n_parallel).mean(axis=1)

    def true_cell_temp_c(self) -> np.ndarray:
        return self.m.st.x[:, X_T]

    def truth(self) -> dict:
        pk = self.m.st.pk
        return {"pack_i_a": float(pk[PK_IPACK]), "pack_v": float(pk[PK_VPACK]), "bus_v": float(pk[PK_VBUS])}
