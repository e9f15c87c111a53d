"""What the vehicle sees of the BMS: every message the BMS node sends, decoded by signal name
(one batch codec over the map's transmit messages; E2E-protected frames with a wrong CRC are
dropped, as a receiving ECU would)."""

from __future__ import annotations

import math

import can
import numba as nb
import numpy as np

from bms.bound import bind
from bms.can.codec import FrameCodec
from bms.can.e2e import batch_arrays, decode_checked
from bms.can.frames import to_arrays
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
        self._qslot: dict[str, int] = {}
        c, b = self.codec, self.buf
        self._decode = bind(decode_checked, c.msg_keys, c.msg_i, c.sig_i, c.sig_mask, c.sig_f, self.ids, self.crc_bytes,
                            b.value, b.raw, b.valid, b.time_s,
                            free=(nb.int64[::1], nb.uint8[:, ::1], nb.int64[::1], nb.float64))

    def feed(self, frames: list[can.Message], t_s: float) -> None:
        if frames:
            a = to_arrays(frames)
            ok = a.data_frame
            self.feed_arrays(a.keys[ok], a.data[ok], a.dlc[ok], t_s)

    def feed_arrays(self, keys: np.ndarray, data: np.ndarray, dlc: np.ndarray, t_s: float) -> None:
        """As :meth:`feed` on frames given as arrays (classic data frames): one kernel call
        (:func:`bms.can.e2e.decode_checked`)."""
        if data.shape != (keys.shape[0], 8):
            raise ValueError(f"data must be of shape ({keys.shape[0]}, 8), got {data.shape}")
        self.bad_crc += self._decode(np.ascontiguousarray(keys, np.int64), np.ascontiguousarray(data, np.uint8),
                                     np.ascontiguousarray(dlc, np.int64), float(t_s))

    def signal(self, name: str) -> float:
        s = self.codec.slot(name)
        return float(self.buf.value[s]) if self.buf.valid[s] else math.nan

    def q(self, quantity: str) -> float:
        """A BMS output quantity (``bms.signal_map.QUANTITIES``) through the map's signal for it."""
        s = self._qslot.get(quantity)
        if s is None:
            s = self._qslot[quantity] = self.codec.slot(self.inv[quantity])
        return float(self.buf.value[s]) if self.buf.valid[s] else math.nan

    def slot_q(self, quantity: str) -> int:
        """The value slot of a BMS output quantity (for readers that read ``buf`` directly, as
        :meth:`q` does: ``buf.value[s]`` if ``buf.valid[s]`` else NaN)."""
        return self.codec.slot(self.inv[quantity])

    def age_s(self, name: str, t_s: float) -> float:
        return t_s - float(self.buf.time_s[self.codec.slot(name)])
