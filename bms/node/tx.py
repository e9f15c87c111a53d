"""Transmit side of the BMS node: the DBC's cyclic messages of our node, on their DBC periods.

Each message is sent every ``cycle_time`` (a multiplexed one sends all its multiplexer values
in that cycle). Values come from the step's outputs through the signal map's quantities
(:data:`bms.signal_map.QUANTITIES`); alive counters advance once per cycle and E2E messages
get their CRC (:func:`bms.can.e2e.protect_batch`). A value that is unknown (NaN) goes out as
the signal's INVALID marker, or, where it has none, as its DBC start value.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from bms.can import _kernels as K
from bms.can.codec import EXTENDED_FLAG, FrameCodec
from bms.can.dbc import cycle_time_s
from bms.bound import bind
from bms.can.schedule import Plan, due_kernel, encode_plan
from bms.layout import Inputs, State
from bms.node._fill import ORDER, fill_kernel, index_table, quantities_kernel, transmit_kernel
from bms.node.rx import counter_signal
from bms.pack import PackParams
from bms.signal_map import QUANTITIES, SignalMap

QNAMES = tuple(QUANTITIES)
QI = {n: i for i, n in enumerate(QNAMES)}
if set(ORDER) != set(QNAMES) or len(ORDER) != len(QNAMES):
    raise ImportError("bms.node._fill.ORDER must list exactly bms.signal_map.QUANTITIES")
TO_Q = np.array([QI[n] for n in ORDER], np.int64)


def quantities(st: State, inp: Inputs, prm: PackParams, cmu_timeout_mask: int, out: np.ndarray) -> np.ndarray:
    """The output quantities (order of :data:`bms.signal_map.QUANTITIES`) from the step's state."""
    return quantities_kernel(st.out, inp.u, prm.pp, float(cmu_timeout_mask), TO_Q, out)


class Transmitter:
    """Cyclic schedule, encoding and E2E protection of our node's messages."""

    def __init__(self, smap: SignalMap, t0_s: float = 0.0):
        self.smap = smap
        c = self.codec = FrameCodec(smap.tx_messages, smap.db)
        self.values = np.full(c.n_slots, np.nan)
        self.q = np.full(len(QNAMES), np.nan)
        self.out_slots = c.slots(smap.out_signals)
        self.out_q = np.array([QI[q] for q in smap.out_signals.values()], np.int64)
        self.flt_slots = c.slots(smap.fault_bits)
        self.flt_ids = np.array(list(smap.fault_bits.values()), np.int64)
        self.wrn_slots = c.slots(smap.warn_bits)
        self.wrn_ids = np.array(list(smap.warn_bits.values()), np.int64)
        pk = smap.pack
        self.bal = [(b, c.slot(s)) for b, s in enumerate(smap.bal_masks) if s is not None]
        self.cpb = pk.cells_per_board
        self.bit_w = (1 << np.arange(self.cpb)).astype(np.float64)
        self.dc = np.array([i for i, s in enumerate(smap.diag_cells) if s], np.int64)
        self.dc_slots = c.slots(s for s in smap.diag_cells if s)
        self.dt = np.array([i for i, s in enumerate(smap.diag_temps) if s], np.int64)
        self.dt_slots = c.slots(s for s in smap.diag_temps if s)
        # unknown (NaN) values without an INVALID marker are sent as the DBC start value
        sig_of_slot = {}
        for m in c.messages:
            for s in m.signals:
                sig_of_slot[c.slot(s.name)] = s
        has_invalid = np.zeros(c.n_slots, np.bool_)
        has_invalid[c.sig_i[:, K.S_SLOT]] = c.sig_i[:, K.S_HAS_INVALID] > 0
        self.fill_slots = np.array([i for i in range(c.n_slots) if not has_invalid[i]], np.int64)
        self.fill_values = np.array([float(sig_of_slot[i].raw_initial or 0) * sig_of_slot[i].scale + sig_of_slot[i].offset
                                     for i in self.fill_slots])
        # schedule: one entry per message (arrays, so that the due set is found without a Python loop)
        self.names = list(smap.tx_messages)
        self.plan = Plan(c, self.names)
        ctr_slot, ctr_mod, period = [], [], []
        for name in self.names:
            m = c.messages[c.row(name)]
            ctr = counter_signal(m)
            ctr_slot.append(c.slot(ctr) if ctr else -1)
            ctr_mod.append(1 << (m.get_signal_by_name(ctr).length if ctr else 0))
            period.append(cycle_time_s(m))
        self.period_s = np.array(period)
        self.next_s = np.full(len(self.names), float(t0_s))
        self.ctr_slot = np.array(ctr_slot, np.int64)
        self.ctr_mod = np.array(ctr_mod, np.int64)
        self.counter = np.zeros(len(self.names), np.int64)
        self._due = np.zeros(len(self.names), np.bool_)
        # one index table for the fill kernel (rows of bms.node._fill.fill_kernel)
        bal_rows = np.full(pk.n_boards, -1, np.int64)
        for b, slot in self.bal:
            bal_rows[b] = slot
        self.idx = index_table([self.out_slots, self.out_q, self.flt_slots, self.flt_ids, self.wrn_slots,
                                self.wrn_ids, bal_rows, self.dc, self.dc_slots, self.dt, self.dt_slots,
                                self.fill_slots, np.array([self.cpb])])
        self.fill_pad = np.zeros(self.idx.shape[1])
        self.fill_pad[:len(self.fill_values)] = self.fill_values

    def fill(self, st: State, inp: Inputs, prm: PackParams, cmu_timeout_mask: int) -> None:
        """Compute every transmitted value from the step's state and inputs (one kernel call)."""
        fill_kernel(st.out, inp.u, prm.pp, st.bleed, inp.cell_v, inp.temp_c, float(cmu_timeout_mask), TO_Q,
                    self.q, self.idx, self.values, self.fill_pad)

    @property
    def saturated(self) -> int:
        """Transmitted values clamped to their DBC range (or NaN without an INVALID marker), in total."""
        return int(self.plan.saturated[0])

    def bind(self, st: State, inp: Inputs, prm: PackParams):
        """``f(cmu_timeout_mask, t_s) -> n``: :meth:`fill` and :meth:`due_arrays` at ``t_s`` in one
        compiled call (:func:`bms.node._fill.transmit_kernel`, bound to these arrays through
        :func:`bms.bound.bind`); the frames are ``plan.keys / data / dlc[:n]`` (reused by the next call)."""
        pl, c = self.plan, self.codec
        return bind(transmit_kernel, st.out, inp.u, prm.pp, st.bleed, inp.cell_v, inp.temp_c, TO_Q, self.q, self.idx,
                    self.values, self.fill_pad, self.next_s, self.period_s, self.ctr_slot, self.ctr_mod, self.counter,
                    self._due, pl.begin, pl.rows, pl.mux, c.msg_i, c.sig_i, c.sig_mask, c.sig_f, pl.e2e_id,
                    pl.e2e_crc_byte, pl.keys, pl.data, pl.dlc, pl.saturated, free=(nb.float64, nb.float64))

    def due_arrays(self, t_s: float, only: tuple[str, ...] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Encode the messages due at ``t_s`` (or exactly the messages ``only``, now) in one batch;
        returns ``(keys, data (n, 8) uint8, dlc)`` and advances the schedule past ``t_s``. The
        arrays are reused by the next call: copy them to keep them."""
        if only is not None:
            sel = self._due
            sel[:] = [n in only for n in self.names]
            for i in np.flatnonzero(sel):
                if self.ctr_slot[i] >= 0:
                    self.values[self.ctr_slot[i]] = self.counter[i]
                    self.counter[i] = (self.counter[i] + 1) % self.ctr_mod[i]
        elif due_kernel(self.next_s, self.period_s, t_s, self.ctr_slot, self.ctr_mod, self.counter, self.values,
                        self._due) == 0:
            return self.plan.keys[:0], self.plan.data[:0], self.plan.dlc[:0]
        pl, c = self.plan, self.codec
        n = encode_plan(self._due, pl.begin, pl.rows, pl.mux, self.values, c.msg_i, c.sig_i, c.sig_mask, c.sig_f,
                        pl.e2e_id, pl.e2e_crc_byte, pl.keys, pl.data, pl.dlc, pl.saturated)
        return pl.keys[:n], pl.data[:n], pl.dlc[:n]

    def due(self, t_s: float, only: tuple[str, ...] | None = None) -> list[tuple[int, bool, bytes]]:
        """As :meth:`due_arrays`, as ``(frame_id, is_extended, payload)`` per frame."""
        keys, data, dlc = self.due_arrays(t_s, only)
        return [(k & ~EXTENDED_FLAG, k >= EXTENDED_FLAG, bytes(data[j, :n]))
                for j, (k, n) in enumerate(zip(keys.tolist(), dlc.tolist()))]
