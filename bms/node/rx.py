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
import numba as nb
import numpy as np

from bms.bound import bind
from bms.can import _kernels as K
from bms.can.codec import FrameCodec
from bms.can.dbc import cycle_time_s, e2e_signals, mux_values
from bms.can.e2e import E2ESpec
from bms.can.frames import to_arrays
from bms.layout import Inputs
from bms.node import _assemble as A
from bms.node import stats as S
from bms.node._screen import receive_kernel
from bms.signal_map import SignalMap


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
        # arrays of the assemble kernel (bms.node._assemble)
        self.cpb = int(pk.cells_per_board)
        self.board_err_a = np.array([-1 if s is None else s for s in self.board_err], np.int64)
        self.board_row_a = np.array([-1 if r is None else r for r in self.board_status_row], np.int64)
        sc_a = np.full(A.N_SC, -1, np.int64)
        for k, v in ((A.SC_I, self.s_i), (A.SC_IERR, self.s_ierr), (A.SC_PV, self.s_pv), (A.SC_BV, self.s_bv),
                     (A.SC_REQ, self.s_req), (A.SC_RESET, self.s_reset), (A.SC_ROW_VOLT, self.r_volt),
                     (A.SC_ROW_CHARGER, self.r_charger), (A.SC_ROW_FB, self.r_fb)):
            sc_a[k] = -1 if v is None else v
        if self.fb_slots is not None:  # auxiliary contacts K_NEG, K_PRE, K_POS from their frame
            sc_a[A.SC_FB:A.SC_FB + 3] = self.fb_slots
        self.sc = sc_a
        self.age = np.zeros(n_rows)
        self.late = np.zeros(n_rows, np.bool_)
        self._silent: dict[str, bool] | None = None
        self.counts = np.zeros(len(S.REASONS), np.int64)   # verdicts of the last batch, per code
        self.not_ok = 0
        self._age_at = math.nan             # the instant self.age was computed for (NaN: stale)
        self._no_stamps = np.zeros(0)
        self._inputs, self._inputs_of = None, None  # inputs_kernel bound to an Inputs (see assemble)
        self._bind(64)

    # ---- frames in -----------------------------------------------------------------------
    def receive(self, frames: Iterable[can.Message], t_s: float | np.ndarray) -> np.ndarray:
        """Screen and decode python-can frames received at ``t_s`` (one stamp or one per frame);
        returns the verdict codes (:mod:`bms.node.stats`)."""
        a = to_arrays(list(frames))
        return self.receive_arrays(a.keys, a.data, a.dlc, t_s, a.data_frame)

    def _bind(self, n: int) -> None:
        """Buffers for batches of up to ``n`` frames and the receive kernel bound to them."""
        c, b = self.codec, self.buf
        self.verdict, self.mux = np.zeros(n, np.int8), np.zeros(n, np.int64)
        self.t_buf, self.all_data = np.zeros(n), np.ones(n, np.bool_)
        self._kernel = bind(receive_kernel, c.msg_keys, c.msg_i, c.sig_i, c.sig_mask, c.sig_f, self.ctr_sig,
                            self.crc_byte, self.data_id, self.strict, self.max_delta, self.prev_ctr, self.last_t,
                            b.value, b.raw, b.valid, b.time_s, self.verdict, self.mux, self.t_buf, self.counts,
                            free=(nb.int64[::1], nb.uint8[:, ::1], nb.int64[::1], nb.bool_[::1], nb.float64[::1],
                                  nb.float64))

    def receive_arrays(self, keys: np.ndarray, data: np.ndarray, dlc: np.ndarray, t_s,
                       data_frame: np.ndarray | None = None) -> np.ndarray:
        """As :meth:`receive` on arrays: keys (n,) int64 (:func:`bms.can.codec.frame_key`), data (n, 8)
        uint8, dlc (n,); ``data_frame`` (n,) bool False for frames to ignore (error / remote / FD:
        NOT_DATA). One kernel call (:func:`bms.node._screen.receive_kernel`); ``counts`` then holds
        the batch's verdicts per code and ``not_ok`` how many were not OK. The verdicts returned
        are a view reused by the next call: copy them to keep them."""
        n = keys.shape[0]
        if n > self.verdict.shape[0]:
            self._bind(max(n, 2 * self.verdict.shape[0]))
        keys = np.ascontiguousarray(keys, np.int64)
        data = np.ascontiguousarray(data, np.uint8)
        if data.shape != (n, 8):
            raise ValueError(f"data must be uint8 of shape ({n}, 8), got {data.dtype} {data.shape}")
        dlc = np.ascontiguousarray(dlc, np.int64)
        data_frame = self.all_data[:n] if data_frame is None else np.ascontiguousarray(data_frame, np.bool_)
        if isinstance(t_s, float) or np.ndim(t_s) == 0:
            t_each, t_one = self._no_stamps, float(t_s)
        else:
            t_each, t_one = np.ascontiguousarray(np.broadcast_to(t_s, (n,)), np.float64), 0.0
        self.not_ok = self._kernel(keys, data, dlc, data_frame, t_each, t_one)
        self._age_at = math.nan
        return self.verdict[:n]

    # ---- ages and timeouts ---------------------------------------------------------------
    def message_age_s(self, now_s: float) -> np.ndarray:
        """Age of every receive message: now minus the oldest accepted frame over its multiplexer values
        (the array is updated in place by the next call)."""
        if now_s == self._age_at:  # nothing received since the ages at this instant
            return self.age
        if A.ages_kernel(self.mux_mask, self.last_t, self.timeout_s, float(now_s), self.age, self.late):
            self._silent = None
        self._age_at = now_s
        return self.age

    def silent(self, now_s: float) -> dict[str, bool]:
        """Per source: some message of it exceeded timeout_cycles x its cycle time. The same dict
        object is returned as long as no source changed (do not modify it)."""
        self.message_age_s(now_s)
        if self._silent is None:
            late = self.late
            self._silent = {name: bool(late[rows].any()) for name, rows in self.sources.items()}
        return self._silent

    # ---- inputs --------------------------------------------------------------------------
    def assemble(self, inp: Inputs, now_s: float, contactor_fb: int) -> None:
        """Fill the step's inputs from the decoded values at ``now_s`` (``contactor_fb``: the feedback
        bits when the map's feedback source is not "message"). ``cell_v`` / ``temp_c`` are NaN
        exactly where no valid reading exists; scalar inputs ``u`` are never NaN (an invalid one is 0
        with its validity flag cleared); ages count from the frame that last carried the value (inf if
        never received). One kernel call: :func:`bms.node._assemble.inputs_kernel` (message ages, then
        :func:`bms.node._assemble.assemble_kernel`), bound to ``inp``'s arrays (replace them only with
        a new Inputs)."""
        if self._inputs_of is not inp:  # bound once per Inputs (ages and assembly in one call)
            b = self.buf
            self._inputs = bind(A.inputs_kernel, self.mux_mask, self.last_t, b.value, b.valid, b.time_s,
                                self.cell_slots, self.cpb, self.temp_slots, self.board_err_a, self.board_row_a, self.sc,
                                self.age, self.late, self.timeout_s, inp.cell_v, inp.board_valid, inp.board_age_s,
                                inp.temp_c, inp.temp_valid, inp.temp_age_s, inp.u, free=(nb.float64, nb.float64))
            self._inputs_of = inp
        # the ages are recomputed even when cached for now_s: the same values, late[] unchanged then
        if self._inputs(float(now_s), float(contactor_fb)):
            self._silent = None
        self._age_at = now_s
