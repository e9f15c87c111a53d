"""What the vehicle sees of the BMS: every message the BMS node sends, decoded by signal name
(one batch codec over the map's transmit messages; E2E-protected frames with a wrong CRC are
dropped, as a receiving ECU would)."""

from __future__ import annotations

import math

import can
import numpy as np

from bms.can.codec import FrameCodec, frame_key
from bms.can.e2e import batch_arrays, check_batch
from bms.signal_map import SignalMap


class BmsView:
    """Latest decoded value of every signal the BMS sends (NaN until received)."""

    def __init__(self, smap: SignalMap):
        self.smap = smap
        self.codec = FrameCodec(smap.tx_messages, smap.db)
        self.buf = self.codec.new_buffers()
        self.keys = set(int(k) for k in self.codec.msg_keys)
        self.ids, self.crc_bytes, self.lengths = batch_arrays(list(self.codec.messages))
        self._row_of_key = {int(k): r for r, k in enumerate(self.codec.msg_keys)}
        self.inv = {q: s for s, q in smap.out_signals.items()}
        self.bad_crc = 0

    def feed(self, frames: list[can.Message], t_s: float) -> None:
        sel = [f for f in frames if frame_key(f.arbitration_id, f.is_extended_id) in self.keys and len(f.data) <= 8]
        if not sel:
            return
        n = len(sel)
        keys = np.array([frame_key(f.arbitration_id, f.is_extended_id) for f in sel], np.int64)
        data = np.zeros((n, 8), np.uint8)
        dlc = np.zeros(n, np.int64)
        for j, f in enumerate(sel):
            d = bytes(f.data)
            data[j, :len(d)] = np.frombuffer(d, np.uint8)
            dlc[j] = len(d)
        rows = np.array([self._row_of_key[int(k)] for k in keys], np.int64)
        ok = np.zeros(n, np.bool_)
        self.bad_crc += check_batch(data, self.ids[rows], self.crc_bytes[rows], self.lengths[rows], ok)
        if ok.any():
            self.codec.decode(keys[ok], np.ascontiguousarray(data[ok]), self.buf, dlc[ok], np.full(int(ok.sum()), t_s))

    def signal(self, name: str) -> float:
        s = self.codec.slot(name)
        return float(self.buf.value[s]) if self.buf.valid[s] else math.nan

    def q(self, quantity: str) -> float:
        """A BMS output quantity (``bms.signal_map.QUANTITIES``) through the map's signal for it."""
        return self.signal(self.inv[quantity])

    def age_s(self, name: str, t_s: float) -> float:
        return t_s - float(self.buf.time_s[self.codec.slot(name)])
