"""Numba kernels of the batch CAN codec (layout tables built by :mod:`bms.can.codec`).

A classic CAN payload is read as two 64-bit words: ``le`` (byte k at bits 8k.., Intel) and ``be``
(byte k at bits 56-8k.., Motorola). Every signal is then ``raw = (word >> shift) & mask``, sign
extended if signed, and ``value = raw * scale + offset`` (exactly cantools' arithmetic).
"""

from __future__ import annotations

import numba as nb
import numpy as np

# columns of the int64 signal table
S_SHIFT, S_LEN, S_BIG, S_SIGNED, S_MUXVAL, S_SLOT, S_INVALID, S_HAS_INVALID, S_IS_MUX, S_RAW_LO, S_RAW_HI = range(11)
N_SIG_I = 11
# columns of the float64 signal table
F_SCALE, F_OFFSET = range(2)
N_SIG_F = 2
# columns of the int64 message table
M_KEY, M_LEN, M_BEGIN, M_END, M_MUXSIG = range(5)
N_MSG_I = 5

# per-frame decode status
ST_OK = 0
ST_UNKNOWN_ID = 1
ST_BAD_DLC = 2
ST_UNKNOWN_MUX = 3


@nb.njit(cache=True, inline="always")
def _words(data: np.ndarray, j: int):
    """le = sum_k d[k] << 8k ; be = sum_k d[k] << (56 - 8k), over the 8 payload bytes of frame j."""
    le = np.uint64(0)
    be = np.uint64(0)
    for k in range(8):
        b = np.uint64(data[j, k])
        le |= b << np.uint64(8 * k)
        be |= b << np.uint64(56 - 8 * k)
    return le, be


@nb.njit(cache=True, inline="always")
def _extract(le: np.uint64, be: np.uint64, sig_i: np.ndarray, sig_mask: np.ndarray, s: int) -> np.int64:
    """raw = ((be if big else le) >> shift) & mask, two's-complement sign extension if signed."""
    word = be if sig_i[s, S_BIG] else le
    u = (word >> np.uint64(sig_i[s, S_SHIFT])) & sig_mask[s]
    raw = np.int64(u)
    n = sig_i[s, S_LEN]
    if sig_i[s, S_SIGNED] and n < 64:
        if (u >> np.uint64(n - 1)) & np.uint64(1):
            raw = np.int64(u | ~sig_mask[s])
    return raw


@nb.njit(cache=True)
def find_row(msg_keys: np.ndarray, key: int) -> int:
    """Index i with msg_keys[i] == key in the sorted key array (binary search), -1 if absent."""
    lo = 0
    hi = msg_keys.shape[0] - 1
    while lo <= hi:
        mid = (lo + hi) // 2
        k = msg_keys[mid]
        if k == key:
            return mid
        if k < key:
            lo = mid + 1
        else:
            hi = mid - 1
    return -1


@nb.njit(cache=True, inline="always")
def decode_frame(keys, data, dlc, j, t_j, msg_keys, msg_i, sig_i, sig_mask, sig_f,
                 out_value, out_raw, out_valid, out_time_s) -> int:
    """Decode frame j (stamped t_j) into the slot arrays; returns its status (see :func:`decode_batch`)."""
    row = find_row(msg_keys, keys[j])
    if row < 0:
        return ST_UNKNOWN_ID
    if dlc[j] < msg_i[row, M_LEN]:
        return ST_BAD_DLC
    le, be = _words(data, j)
    b0 = msg_i[row, M_BEGIN]
    b1 = msg_i[row, M_END]
    mux = np.int64(-1)
    ms = msg_i[row, M_MUXSIG]
    if ms >= 0:
        mux = _extract(le, be, sig_i, sig_mask, ms)
        known = False
        for s in range(b0, b1):
            if sig_i[s, S_MUXVAL] == mux:
                known = True
                break
        if not known:
            return ST_UNKNOWN_MUX
    for s in range(b0, b1):
        mv = sig_i[s, S_MUXVAL]
        if mv >= 0 and mv != mux:
            continue
        raw = _extract(le, be, sig_i, sig_mask, s)
        slot = sig_i[s, S_SLOT]
        out_raw[slot] = raw
        out_value[slot] = np.float64(raw) * sig_f[s, F_SCALE] + sig_f[s, F_OFFSET]
        ok = sig_i[s, S_RAW_LO] <= raw <= sig_i[s, S_RAW_HI]
        if sig_i[s, S_HAS_INVALID] and raw == sig_i[s, S_INVALID]:
            ok = False
        out_valid[slot] = ok
        out_time_s[slot] = t_j
    return ST_OK


@nb.njit(cache=True, nogil=True)
def decode_batch(keys, data, dlc, t_s, msg_keys, msg_i, sig_i, sig_mask, sig_f,
                 out_value, out_raw, out_valid, out_time_s, status) -> int:
    """Decode n frames into slot arrays; returns the number of frames accepted.

    For each frame j with a known key, DLC >= message length and (if multiplexed) a known
    multiplexer value, every signal s present in the frame gets
    out_raw[slot] = raw, out_value[slot] = raw * scale + offset,
    out_valid[slot] = (raw_lo <= raw <= raw_hi) and raw != invalid marker, out_time_s[slot] = t_s[j].
    status[j] is ST_OK / ST_UNKNOWN_ID / ST_BAD_DLC / ST_UNKNOWN_MUX; rejected frames write nothing.
    """
    n_ok = 0
    for j in range(keys.shape[0]):
        status[j] = decode_frame(keys, data, dlc, j, t_s[j], msg_keys, msg_i, sig_i, sig_mask, sig_f,
                                 out_value, out_raw, out_valid, out_time_s)
        if status[j] == ST_OK:
            n_ok += 1
    return n_ok


@nb.njit(cache=True, inline="always")
def _to_raw(v: float, sig_i: np.ndarray, sig_f: np.ndarray, s: int):
    """raw = rint((v - offset) / scale) (Python round: half to even), saturated to [raw_lo, raw_hi].

    NaN encodes the signal's invalid marker (or raw_lo, flagged, if it has none). Returns (raw, saturated).
    """
    lo = sig_i[s, S_RAW_LO]
    hi = sig_i[s, S_RAW_HI]
    if np.isnan(v):
        if sig_i[s, S_HAS_INVALID]:
            return sig_i[s, S_INVALID], False
        return lo, True
    r = np.rint((v - sig_f[s, F_OFFSET]) / sig_f[s, F_SCALE])
    if r < lo:
        return lo, True
    if r > hi:
        return hi, True
    return np.int64(r), False


@nb.njit(cache=True, inline="always")
def encode_frame(row, mux_value, values, msg_i, sig_i, sig_mask, sig_f, out_data, j) -> int:
    """Encode one frame of message ``row`` into out_data[j] (see :func:`encode_batch`); returns
    the number of saturated values."""
    if row < 0 or row >= msg_i.shape[0]:
        raise IndexError("encode_batch: message row out of range")
    mux = mux_value if msg_i[row, M_MUXSIG] >= 0 else np.int64(-1)
    le = np.uint64(0)
    be = np.uint64(0)
    nsat = 0
    for s in range(msg_i[row, M_BEGIN], msg_i[row, M_END]):
        mv = sig_i[s, S_MUXVAL]
        if mv >= 0 and mv != mux:
            continue
        if sig_i[s, S_IS_MUX]:
            raw = mux
        else:
            raw, sat = _to_raw(values[sig_i[s, S_SLOT]], sig_i, sig_f, s)
            if sat:
                nsat += 1
        u = (np.uint64(raw) & sig_mask[s]) << np.uint64(sig_i[s, S_SHIFT])
        if sig_i[s, S_BIG]:
            be |= u
        else:
            le |= u
    for k in range(8):
        out_data[j, k] = np.uint8(((le >> np.uint64(8 * k)) | (be >> np.uint64(56 - 8 * k))) & np.uint64(0xFF))
    return nsat


@nb.njit(cache=True, nogil=True)
def encode_batch(rows, mux_values, values, msg_i, sig_i, sig_mask, sig_f, out_data, saturated) -> int:
    """Encode frame j of message rows[j] (multiplexer value mux_values[j]) from values[slot] into out_data[j].

    Payload = OR over present signals of (raw & mask) << shift in the Intel or Motorola word; the
    multiplexer selector takes mux_values[j]. saturated[j] counts values clamped to their range
    (or NaN without an invalid marker). Returns the total count of saturated values.
    """
    total = 0
    for j in range(rows.shape[0]):
        nsat = encode_frame(rows[j], mux_values[j], values, msg_i, sig_i, sig_mask, sig_f, out_data, j)
        saturated[j] = nsat
        total += nsat
    return total
