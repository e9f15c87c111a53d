"""Numba kernel of a cyclic transmit schedule: which messages are due, their next time, alive counters."""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from bms.can import _kernels as K
from bms.can.e2e import frame_crc


@nb.njit(cache=True, nogil=True)
def due_kernel(next_s, period_s, t_s, ctr_slot, ctr_mod, counter, values, due):
    """Message i is due at ``t_s`` when next_s[i] <= t_s + 1e-9 (due[i] = True). A due message moves
    to the first point of its period grid after t_s, next_s[i] += p (floor((t_s - next_s[i]) / p
    + 1e-9) + 1) with p = period_s[i], and, if it has an alive counter (ctr_slot[i] >= 0), writes
    it to values[ctr_slot[i]] and advances it: counter[i] = (counter[i] + 1) mod ctr_mod[i].
    Returns the number of due messages."""
    n = 0
    for i in range(next_s.shape[0]):
        if next_s[i] > t_s + 1e-9:
            due[i] = False
            continue
        due[i] = True
        n += 1
        p = period_s[i]
        next_s[i] += p * (math.floor((t_s - next_s[i]) / p + 1e-9) + 1)
        if ctr_slot[i] >= 0:
            values[ctr_slot[i]] = counter[i]
            counter[i] = (counter[i] + 1) % ctr_mod[i]
    return n


@nb.njit(cache=True, nogil=True)
def encode_plan(due, plan_begin, plan_rows, plan_mux, values, msg_i, sig_i, sig_mask, sig_f, e2e_id, e2e_crc_byte,
                keys_out, data_out, dlc_out, saturated) -> int:
    """The frames of the due messages (``due[i]``), in message order, encoded in one batch: message
    i's frames are rows r = plan_rows[k] with multiplexer values plan_mux[k], k in
    plan_begin[i]..plan_begin[i+1]; frame j gets data_out[j] = the payload of r from ``values``
    (:func:`bms.can._kernels.encode_frame`), keys_out[j] = msg_i[r, M_KEY], dlc_out[j] =
    msg_i[r, M_LEN] and, where e2e_crc_byte[r] >= 0, its E2E CRC data_out[j, e2e_crc_byte[r]] =
    CRC8-J1850 over e2e_id[r] and the payload (:func:`bms.can.e2e.frame_crc`).
    saturated[0] += values clamped to their range. Returns the number of frames."""
    j = 0
    for i in range(due.shape[0]):
        if not due[i]:
            continue
        for k in range(plan_begin[i], plan_begin[i + 1]):
            r = plan_rows[k]
            saturated[0] += K.encode_frame(r, plan_mux[k], values, msg_i, sig_i, sig_mask, sig_f, data_out, j)
            keys_out[j] = msg_i[r, K.M_KEY]
            dlc_out[j] = msg_i[r, K.M_LEN]
            cb = e2e_crc_byte[r]
            if cb >= 0:
                data_out[j, cb] = np.uint8(frame_crc(data_out[j], e2e_id[r], cb, msg_i[r, K.M_LEN]))
            j += 1
    return j


class Plan:
    """The frames of a sender's scheduled messages as flat arrays for :func:`encode_plan`, and the
    output buffers one call of it fills (room for every message at once)."""

    def __init__(self, codec, names, e2e: bool = True):
        from bms.can.e2e import batch_arrays

        plans = [codec.cycle_plan([name])[:2] for name in names]
        self.begin = np.zeros(len(plans) + 1, np.int64)
        self.begin[1:] = np.cumsum([len(r) for r, _ in plans])
        self.rows = np.concatenate([r for r, _ in plans]) if plans else np.zeros(0, np.int64)
        self.mux = np.concatenate([m for _, m in plans]) if plans else np.zeros(0, np.int64)
        ids, crc_bytes, _ = batch_arrays(list(codec.messages))
        self.e2e_id = ids
        self.e2e_crc_byte = crc_bytes if e2e else np.full_like(crc_bytes, -1)
        n = int(self.begin[-1])
        self.keys = np.zeros(n, np.int64)
        self.data = np.zeros((n, 8), np.uint8)
        self.dlc = np.zeros(n, np.int64)
        self.saturated = np.zeros(1, np.int64)
