"""The pack on the bus: a :mod:`hil.pack` model behind the CAN frames of its cell-monitoring
boards (CMUs), its current sensor (ISENSE) and its contactor / bleed drivers.

    node = PackNode(smap, model)                  # model: hil.pack (params, faults, state, inp, bleed)
    node.step(t_s, dt_s)                          # physics over (t - dt, t], sensors sampled at t
    frames = node.frames_due(t_s)                 # encoded CMU / ISENSE frames due at t (DBC periods)
    keys, data, dlc = node.step_frames(t_s, dt_s) # both in one compiled call (sensors read when sent)
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
import numba as nb
import numpy as np

from bms.bound import bind
from bms.can.codec import FrameCodec
from bms.can.dbc import cycle_time_s
from bms.can.frames import to_arrays, to_messages
from bms.can.schedule import Plan
from bms.node.rx import counter_signal
from bms.signal_map import SignalMap
from hil.pack import IN_K0, K_NEG, K_POS, K_PRE, PK_IPACK, PK_KFB0, PK_VBUS, PK_VPACK, X_T, X_Z
from hil.pack.bound import bind_sensors, bind_step
from hil.pack.frames import commands_kernel, plant_frames_kernel, plant_tick_kernel


class PackModel(NamedTuple):
    """The arrays of one :mod:`hil.pack` model (as returned by ``hil.pack.ready.ready_pack``)."""

    p: object
    f: object
    st: object
    inp: np.ndarray
    bleed: np.ndarray


ISENSE_KEYS = ("pack_i_a", "pack_v", "bus_v", "fb_neg", "fb_pre", "fb_pos")  # signal-map scalars the sensor sends
_CMD_QTY = {"contactor_neg_cmd": K_NEG, "contactor_pre_cmd": K_PRE, "contactor_pos_cmd": K_POS}


def _pairs(rows) -> np.ndarray:
    """(n, 2) int64 index pairs (for the frame kernel's fill tables)."""
    return np.array(rows, np.int64).reshape(-1, 2)


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
        # schedule as arrays: one entry per message (the due set is found without a Python loop)
        self.names = names
        self.plan = Plan(c, names, e2e=False)
        period, ctr_slot, ctr_mod = [], [], []
        for name in names:
            msg = c.messages[c.row(name)]
            ctr = counter_signal(msg)
            period.append(cycle_time_s(msg))
            ctr_slot.append(c.slot(ctr) if ctr else -1)
            ctr_mod.append(1 << msg.get_signal_by_name(ctr).length if ctr else 1)
        self.period_s = np.array(period)
        self.next_s = np.full(len(names), float(t0_s))
        self.ctr_slot = np.array(ctr_slot, np.int64)
        self.ctr_mod = np.array(ctr_mod, np.int64)
        self.counter = np.zeros(len(names), np.int64)
        self.is_board = np.array([n in self.board_of for n in names], np.bool_)
        self._due = np.zeros(len(names), np.bool_)
        self.cell_slots = c.slots(r.signal for r in smap.cells)
        self.temp_slots = c.slots(r.signal for r in smap.temps)
        self.s_i, self.s_pv, self.s_bv = (c.slot(sc[k].signal) for k in ("pack_i_a", "pack_v", "bus_v"))
        # auxiliary contacts: the model's contact positions as the sensor reads them (a weld reads closed)
        self.fb_slots = [(PK_KFB0 + k, c.slot(sc[f"fb_{q}"].signal))
                         for q, k in (("neg", K_NEG), ("pre", K_PRE), ("pos", K_POS)) if f"fb_{q}" in sc]
        self.kfb_idx = np.array([k for k, _ in self.fb_slots], np.int64)
        self.kfb_slots = np.array([s for _, s in self.fb_slots], np.int64)
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
        self.balfb_boards = np.array([b for b, (fb, _) in enumerate(self.status_slots) if fb is not None], np.int64)
        self.balfb_slots = np.array([fb for fb, _ in self.status_slots if fb is not None], np.int64)
        self.tmp_boards = np.array([b for b, (_, t) in enumerate(self.status_slots) if t is not None], np.int64)
        self.tmp_slots = np.array([t for _, t in self.status_slots if t is not None], np.int64)
        self.cpb = pk.cells_per_board
        self.tpb = pk.temps_per_board
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
        self.bal_keys = {int(self.rx.msg_keys[self.rx.row(m)]) for m in bal_msgs}
        self._frames = self._bind_frames()
        self._bleeding = np.array([bool(model.bleed.any())])
        r, b = self.rx, self.rx_buf
        self._commands = bind(commands_kernel, r.msg_keys, r.msg_i, r.sig_i, r.sig_mask, r.sig_f, b.value, b.raw,
                              b.valid, b.time_s, _pairs([(IN_K0 + k, s) for k, s in self.cmd_slots]),
                              _pairs(self.bal_slots), np.array(sorted(self.bal_keys), np.int64), int(self.cpb),
                              model.inp, model.bleed, self._bleeding,
                              free=(nb.int64[::1], nb.uint8[:, ::1], nb.int64[::1]))
        self._step = bind_step(p, model.f, model.st, model.inp, model.bleed)
        self._sample = bind_sensors(p, model.f, model.st)
        self.t_sample_s = float(t0_s)
        self.commands_seen = 0

    # ---- physics ---------------------------------------------------------------------------
    def step(self, t_s: float, dt_s: float) -> None:
        """Advance the pack model by ``dt_s`` (ending at ``t_s``) and sample every sensor (the kernels
        are bound to the model's arrays once: change them in place only)."""
        self._step(dt_s)
        self._sample(max(t_s - self.t_sample_s, 0.0))
        self.t_sample_s = t_s

    def step_frames(self, t_s: float, dt_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`step` then :meth:`frames_due_arrays` at ``t_s`` in one compiled call
        (:func:`hil.pack.frames.plant_tick_kernel`; the same arrays, reused by a later call), except
        that a sensor is sampled only when a frame due carries it (the current sensor's on its
        messages' ticks, the cell voltages and temperatures on the boards'): the other channels of
        st.meas keep their last readings, their drift still advances every tick."""
        n = self._tick(dt_s, max(t_s - self.t_sample_s, 0.0), t_s)
        self.t_sample_s = t_s
        pl = self.plan
        return pl.keys[:n], pl.data[:n], pl.dlc[:n]

    # ---- frames out --------------------------------------------------------------------------
    def _bind_frames(self):
        """:func:`hil.pack.frames.plant_frames_kernel` bound to the model's and the schedule's arrays,
        and :func:`hil.pack.frames.plant_tick_kernel` (with the physics step and the sensors) bound
        to them too."""
        m, pl, c = self.m, self.plan, self.codec
        nm = m.st.meas.shape[0]
        fill_always = _pairs([(self.s_i, m.p.ch_current), (self.s_pv, m.p.ch_pack_v), (self.s_bv, m.p.ch_bus_v)]
                            + [(s, nm + k) for k, s in self.fb_slots])
        fill_board = _pairs(list(zip(self.cell_slots, self.ch_cells)) + list(zip(self.temp_slots, self.ch_temps)))
        balfb = _pairs(list(zip(self.balfb_slots, self.balfb_boards)))
        board_temp = _pairs(list(zip(self.tmp_slots, self.tmp_boards)))
        plan = (fill_always, fill_board, balfb, board_temp, int(self.cpb), int(self.tpb), self.is_board, self.next_s,
                self.period_s, self.ctr_slot, self.ctr_mod, self.counter, self._due, self.values, pl.begin, pl.rows,
                pl.mux, c.msg_i, c.sig_i, c.sig_mask, c.sig_f, pl.e2e_id, pl.e2e_crc_byte, pl.keys, pl.data, pl.dlc,
                pl.saturated)
        ch_always = np.array(sorted({int(c) for c in fill_always[:, 1] if c < nm}), np.int64)
        ch_board = np.array(sorted({int(c) for c in fill_board[:, 1]}), np.int64)
        self._tick = bind(plant_tick_kernel, m.p, m.f, m.st, m.inp, m.bleed, ch_always, ch_board, *plan,
                          free=(nb.float64, nb.float64, nb.float64))
        return bind(plant_frames_kernel, m.st.meas, m.st.pk, m.bleed, m.st.ts_temp, *plan, free=(nb.float64,))

    def frames_due_arrays(self, t_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every frame due at ``t_s`` (each message on its DBC period), encoded in one batch:
        ``(keys, data (n, 8) uint8, dlc)``. The arrays are reused by a later call: copy to keep."""
        n = self._frames(t_s)
        pl = self.plan
        return pl.keys[:n], pl.data[:n], pl.dlc[:n]

    def frames_due(self, t_s: float) -> list[can.Message]:
        """As :meth:`frames_due_arrays`, as python-can frames stamped ``t_s``."""
        return to_messages(*self.frames_due_arrays(t_s), t_s)

    # ---- commands in -------------------------------------------------------------------------
    def on_arrays(self, keys: np.ndarray, data: np.ndarray, dlc: np.ndarray) -> int:
        """Decode the BMS's contactor and bleed commands among frames given as arrays (classic data
        frames; others are ignored by the decoder); returns how many were used. One kernel call
        (:func:`hil.pack.frames.commands_kernel`)."""
        if keys.shape[0] == 0:
            return 0
        if data.shape != (keys.shape[0], 8):
            raise ValueError(f"data must be of shape ({keys.shape[0]}, 8), got {data.shape}")
        n = self._commands(np.ascontiguousarray(keys, np.int64), np.ascontiguousarray(data, np.uint8),
                           np.ascontiguousarray(dlc, np.int64))
        self.commands_seen += n
        return n

    @property
    def bleeding(self) -> bool:
        """Some bleed resistor is on (as of the last balancing command)."""
        return bool(self._bleeding[0])

    def on_frames(self, frames: list[can.Message]) -> int:
        """Decode the BMS's contactor and bleed commands among ``frames``; returns how many were used."""
        if not frames:
            return 0
        a = to_arrays(frames)
        ok = a.data_frame
        return self.on_arrays(a.keys[ok], a.data[ok], a.dlc[ok])

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

    def conditions(self) -> dict:
        """The true quantities a fault's ``when`` condition reads (hil.faults): element SOC
        min/mean/max, pack current and voltage, cell temperature min/max."""
        x = self.true_element_soc()
        tc = self.true_cell_temp_c()
        t = self.truth()
        return {"soc_min": float(x.min()), "soc_mean": float(x.mean()), "soc_max": float(x.max()),
                "pack_i_a": t["pack_i_a"], "pack_v": t["pack_v"], "temp_max_c": float(tc.max()),
                "temp_min_c": float(tc.min())}
