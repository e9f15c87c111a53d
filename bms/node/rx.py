"""Receive side of the BMS node: screen every frame, decode the accepted ones, and assemble the
step's :class:`bms.layout.Inputs` with ages and validity.

A frame reaches the decoder only if it passes :func:`bms.node._screen.screen_batch` (known ID,
exact DLC, known multiplexer value, E2E CRC, every raw value in its DBC range, not older than
the last accepted one, alive counter advanced). Rejected frames are counted per reason and
change nothing. Timeouts: a message is silent once none of its multiplexer values was accepted
for ``timeout_cycles`` x its DBC cycle time; the step's COMM_* diagnostics act on the ages.
"""

from __future__ import annotations

import math
from typing import Iterable

import can
import numpy as np

from bms import layout as L
from bms.can import _kernels as K
from bms.can.codec import FrameCodec, frame_key
from bms.can.dbc import cycle_time_s, e2e_signals, mux_values
from bms.can.e2e import E2ESpec
from bms.layout import Inputs
from bms.node import stats as S
from bms.node._screen import screen_batch
from bms.signal_map import SignalMap

CAN_MAX_DLC = 8


def counter_signal(msg) -> str | None:
    """The alive counter of a message: its E2E counter, else its only signal named ``*_Counter``."""
    e2e = e2e_signals(msg)
    if e2e is not None:
        return e2e[0].name
    names = [s.name for s in msg.signals if s.name.endswith("_Counter")]
    return names[0] if len(names) == 1 else None


class Receiver:
    """Screens and decodes frames of the map's receive messages; fills the step's inputs."""

    def __init__(self, smap: SignalMap):
        self.smap = smap
        db = smap.db
        order = [r.signal for r in smap.cells] + [r.signal for r in smap.temps]
        self.codec = FrameCodec(smap.rx_messages, db, slot_order=order)
        self.buf = self.codec.new_buffers()
        c = self.codec
        msgs = c.messages
        n_rows = len(msgs)
        slot_to_sig = np.empty(c.n_slots, np.int64)
        slot_to_sig[c.sig_i[:, K.S_SLOT]] = np.arange(c.sig_i.shape[0])
        self.ctr_sig = np.full(n_rows, -1, np.int64)
        self.crc_byte = np.full(n_rows, -1, np.int64)
        self.data_id = np.zeros(n_rows, np.int64)
        self.strict = np.zeros(n_rows, np.bool_)
        n_mux = 1
        self.mux_mask = np.zeros((n_rows, 1), np.bool_)
        mux_lists = []
        for r, m in enumerate(msgs):
            name = counter_signal(m)
            if name is not None:
                self.ctr_sig[r] = slot_to_sig[c.slot(name)]
            if e2e_signals(m) is not None:
                spec = E2ESpec.from_message(m)
                self.crc_byte[r], self.data_id[r], self.strict[r] = spec.crc_byte, spec.data_id, True
            vals = mux_values(m) or [0]
            mux_lists.append(vals)
            n_mux = max(n_mux, max(vals) + 1)
        self.mux_mask = np.zeros((n_rows, n_mux), np.bool_)
        for r, vals in enumerate(mux_lists):
            self.mux_mask[r, vals] = True
        self.prev_ctr = np.full((n_rows, n_mux), -1, np.int64)
        self.last_t = np.full((n_rows, n_mux), -np.inf)
        # timeouts: per row k x period
        self.timeout_s = np.array([smap.timeout_cycles * cycle_time_s(m) for m in msgs])
        self.max_delta = int(smap.max_counter_delta)
        # input slots
        self.cell_slots = c.slots(r.signal for r in smap.cells)
        self.temp_slots = c.slots(r.signal for r in smap.temps)
        pk = smap.pack
        self.cell_start = np.arange(pk.n_boards) * pk.cells_per_board
        self.board_err = [None if r is None else c.slot(r.signal) for r in smap.board_status]
        self.board_status_row = [None if r is None else c.row(r.message) for r in smap.board_status]
        sc = smap.scalars
        self.s_i = c.slot(sc["pack_i_a"].signal)
        self.s_ierr = c.slot(sc["isense_error"].signal) if "isense_error" in sc else None
        self.s_pv, self.s_bv = c.slot(sc["pack_v"].signal), c.slot(sc["bus_v"].signal)
        self.s_req = c.slot(sc["vcu_request"].signal)
        self.s_reset = c.slot(sc["vcu_reset"].signal) if "vcu_reset" in sc else None
        self.r_volt = c.row(sc["pack_v"].message)
        self.r_charger = c.row(smap.charger_message) if smap.charger_message else None
        fb = [f"fb_{k}" for k in ("neg", "pre", "pos")]  # bits K_NEG, K_PRE, K_POS
        self.fb_slots = [c.slot(sc[k].signal) for k in fb] if smap.feedback_source == "message" else None
        self.r_fb = c.row(sc["fb_neg"].message) if self.fb_slots else None
        self.sources = {name: [c.row(m) for m in ms] for name, ms in smap.sources().items()}
        self.board_sources = [f"CMU{b:02d}" for b in range(pk.n_boards)]
        self._scratch_v = np.zeros(0, np.int8)

    # ---- frames in -----------------------------------------------------------------------
    def receive(self, frames: Iterable[can.Message], t_s: float | np.ndarray) -> np.ndarray:
        """Screen and decode python-can frames received at ``t_s`` (one stamp or one per frame);
        returns the verdict codes (:mod:`bms.node.stats`)."""
        frames = list(frames)
        n = len(frames)
        keys = np.zeros(n, np.int64)
        data = np.zeros((n, CAN_MAX_DLC), np.uint8)
        dlc = np.zeros(n, np.int64)
        verdict = np.zeros(n, np.int8)
        for j, f in enumerate(frames):
            if f.is_error_frame or f.is_remote_frame or f.is_fd or len(f.data) > CAN_MAX_DLC:
                verdict[j] = S.NOT_DATA
                continue
            keys[j] = frame_key(f.arbitration_id, f.is_extended_id)
            d = bytes(f.data)
            data[j, :len(d)] = np.frombuffer(d, np.uint8)
            dlc[j] = len(d)
        return self.receive_arrays(keys, data, dlc, t_s, verdict)

    def receive_arrays(self, keys: np.ndarray, data: np.ndarray, dlc: np.ndarray, t_s, verdict=None) -> np.ndarray:
        """As :meth:`receive` on arrays: keys (n,) int64 (:func:`bms.can.codec.frame_key`), data (n, 8) uint8, dlc (n,)."""
        n = keys.shape[0]
        t = np.broadcast_to(np.asarray(t_s, dtype=np.float64), (n,)).copy()
        verdict = np.zeros(n, np.int8) if verdict is None else verdict
        mux = np.zeros(n, np.int64)
        c = self.codec
        screen_batch(keys, data, dlc.astype(np.int64), t, c.msg_keys, c.msg_i, c.sig_i, c.sig_mask, self.ctr_sig,
                     self.crc_byte, self.data_id, self.strict, self.max_delta, self.prev_ctr, self.last_t, verdict, mux)
        acc = (verdict == S.OK) | (verdict == S.OK_GAP)
        if acc.any():
            c.decode(keys[acc], np.ascontiguousarray(data[acc]), self.buf, dlc[acc].astype(np.int64), t[acc])
        return verdict

    # ---- ages and timeouts ---------------------------------------------------------------
    def message_age_s(self, now_s: float) -> np.ndarray:
        """Age of every receive message: now minus the oldest accepted frame over its multiplexer values."""
        oldest = np.where(self.mux_mask, self.last_t, np.inf).min(axis=1)
        return now_s - oldest

    def silent(self, now_s: float) -> dict[str, bool]:
        """Per source: some message of it exceeded timeout_cycles x its cycle time."""
        late = self.message_age_s(now_s) > self.timeout_s
        return {name: bool(late[rows].any()) for name, rows in self.sources.items()}

    # ---- inputs --------------------------------------------------------------------------
    def _fresh(self, row: int | None, now_s: float, age: np.ndarray) -> bool:
        return row is not None and age[row] <= self.timeout_s[row]

    def assemble(self, inp: Inputs, now_s: float, contactor_fb: int) -> None:
        """Fill the step's inputs from the decoded values at ``now_s`` (``contactor_fb``: the feedback
        bits when the map's feedback source is not "message"). ``cell_v`` / ``temp_c`` are NaN
        exactly where no valid reading exists; scalar inputs ``u`` are never NaN (an invalid one is 0
        with its validity flag cleared); ages count from the frame that last carried the value (inf if
        never received)."""
        b = self.buf
        age = self.message_age_s(now_s)
        cv = b.value[self.cell_slots]
        cv[~b.valid[self.cell_slots]] = np.nan
        inp.cell_v[:] = cv
        t_cells = b.time_s[self.cell_slots]
        oldest = np.minimum.reduceat(t_cells, self.cell_start)
        inp.board_age_s[:] = np.maximum(now_s - oldest, 0.0)  # a frame stamped after the step time counts as new
        ok = np.isfinite(oldest)
        for i, (slot, row) in enumerate(zip(self.board_err, self.board_status_row)):
            if slot is not None and self._fresh(row, now_s, age) and b.valid[slot] and b.value[slot] > 0.5:
                ok[i] = False  # the board reports a self-test failure
        inp.board_valid[:] = ok
        tv = b.value[self.temp_slots]
        tok = b.valid[self.temp_slots]
        tv[~tok] = np.nan
        inp.temp_c[:] = tv
        inp.temp_valid[:] = tok & np.isfinite(b.time_s[self.temp_slots])
        inp.temp_age_s[:] = np.maximum(now_s - b.time_s[self.temp_slots], 0.0)
        u = inp.u
        i_ok = b.valid[self.s_i] and math.isfinite(b.time_s[self.s_i])
        if self.s_ierr is not None and b.valid[self.s_ierr] and b.value[self.s_ierr] > 0.5:
            i_ok = False
        u[L.U_PACK_I_A] = b.value[self.s_i] if i_ok else 0.0  # u never holds NaN: the flag says invalid
        u[L.U_ISENSE_VALID] = 1.0 if i_ok else 0.0
        u[L.U_ISENSE_AGE_S] = max(now_s - b.time_s[self.s_i], 0.0)
        hv_ok = b.valid[self.s_pv] and b.valid[self.s_bv] and self._fresh(self.r_volt, now_s, age)
        u[L.U_PACK_V] = b.value[self.s_pv] if hv_ok else 0.0
        u[L.U_BUS_V] = b.value[self.s_bv] if hv_ok else 0.0
        u[L.U_HV_VALID] = 1.0 if hv_ok else 0.0
        if self.fb_slots is None:  # wired directly (or echoed): always fresh
            u[L.U_CONTACTOR_FB], u[L.U_CONTACTOR_FB_VALID], u[L.U_CONTACTOR_FB_AGE_S] = float(contactor_fb), 1.0, 0.0
        else:  # auxiliary contacts from their frame; ``contactor_fb`` is not used
            fb_ok = all(b.valid[k] for k in self.fb_slots) and self._fresh(self.r_fb, now_s, age)
            bits = sum(1 << j for j, k in enumerate(self.fb_slots) if b.valid[k] and b.value[k] > 0.5)
            u[L.U_CONTACTOR_FB] = float(bits) if fb_ok else 0.0
            u[L.U_CONTACTOR_FB_VALID] = 1.0 if fb_ok else 0.0
            u[L.U_CONTACTOR_FB_AGE_S] = max(now_s - b.time_s[self.fb_slots[0]], 0.0)
        req_ok = b.valid[self.s_req] and math.isfinite(b.time_s[self.s_req])
        u[L.U_VCU_REQUEST] = b.value[self.s_req] if req_ok else float(L.REQ_STANDBY)
        reset = self.s_reset is not None and b.valid[self.s_reset] and b.value[self.s_reset] > 0.5
        u[L.U_VCU_RESET] = 1.0 if (req_ok and reset) else 0.0
        u[L.U_VCU_VALID] = 1.0 if req_ok else 0.0
        u[L.U_VCU_AGE_S] = max(now_s - b.time_s[self.s_req], 0.0)
        u[L.U_CHARGER_CONNECTED] = 1.0 if self._fresh(self.r_charger, now_s, age) else 0.0
