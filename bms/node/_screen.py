"""Numba kernel of the receive screen: every frame is checked before anything is decoded."""

from __future__ import annotations

import numba as nb
import numpy as np

from bms.can import _kernels as K
from bms.can.e2e import E2E_REPEATED, E2E_WRONG_SEQUENCE, counter_status, frame_crc
from bms.node import stats as S


@nb.njit(cache=True, nogil=True)
def screen_batch(keys, data, dlc, t_s, msg_keys, msg_i, sig_i, sig_mask, ctr_sig, crc_byte, data_id, strict,
                 max_delta, prev_ctr, last_t, verdict, mux_out):
    """Verdict per frame j, first failing check wins:

    unknown key -> UNKNOWN_ID; DLC != message length -> BAD_DLC; multiplexer value not in the DBC
    -> UNKNOWN_MUX; E2E CRC (CRC-8 J1850 over data ID + payload) wrong -> BAD_CRC; any raw value
    outside its DBC range (the INVALID marker excepted) -> OUT_OF_RANGE; stamp older than the last
    accepted frame of the same (message, multiplexer value) -> STALE; alive counter delta
    d = (c - c_prev) mod 2^n: d = 0 -> COUNTER_REPEATED; d > max_delta on an E2E message ->
    COUNTER_JUMP, d > 1 elsewhere -> OK_GAP. Only accepted frames (OK or OK_GAP) update prev_ctr /
    last_t of their (row, mux): a rejected frame (a replay, a forgery) never moves the reference,
    so the genuine sequence that follows is still accepted. After a genuine jump (sender restarted,
    more than max_delta frames lost) the sender's counter comes back within 1..max_delta of the
    reference after at most 2^n frames, and is accepted from there. Verdict codes are those of
    :mod:`bms.node.stats`. mux_out[j] is the multiplexer value (0 if none)."""
    for j in range(keys.shape[0]):
        mux_out[j] = 0
        if verdict[j] == S.NOT_DATA:
            continue
        row = K.find_row(msg_keys, keys[j])
        if row < 0:
            verdict[j] = S.UNKNOWN_ID
            continue
        if dlc[j] != msg_i[row, K.M_LEN]:
            verdict[j] = S.BAD_DLC
            continue
        le, be = K._words(data, j)
        b0 = msg_i[row, K.M_BEGIN]
        b1 = msg_i[row, K.M_END]
        mux = np.int64(-1)
        ms = msg_i[row, K.M_MUXSIG]
        if ms >= 0:
            mux = K._extract(le, be, sig_i, sig_mask, ms)
            known = False
            for s in range(b0, b1):
                if sig_i[s, K.S_MUXVAL] == mux:
                    known = True
                    break
            if not known or mux >= prev_ctr.shape[1]:
                verdict[j] = S.UNKNOWN_MUX
                continue
        m = mux if mux >= 0 else 0
        mux_out[j] = m
        cb = crc_byte[row]
        if cb >= 0 and data[j, cb] != frame_crc(data[j], data_id[row], cb, msg_i[row, K.M_LEN]):
            verdict[j] = S.BAD_CRC
            continue
        bad = False
        for s in range(b0, b1):
            mv = sig_i[s, K.S_MUXVAL]
            if mv >= 0 and mv != mux:
                continue
            raw = K._extract(le, be, sig_i, sig_mask, s)
            if not (sig_i[s, K.S_RAW_LO] <= raw <= sig_i[s, K.S_RAW_HI]):
                if not (sig_i[s, K.S_HAS_INVALID] and raw == sig_i[s, K.S_INVALID]):
                    bad = True
                    break
        if bad:
            verdict[j] = S.OUT_OF_RANGE
            continue
        if t_s[j] < last_t[row, m]:
            verdict[j] = S.STALE
            continue
        v = S.OK
        cs = ctr_sig[row]
        if cs >= 0:
            c = K._extract(le, be, sig_i, sig_mask, cs)
            p = prev_ctr[row, m]
            if p >= 0:
                st = counter_status(p, c, max_delta if strict[row] else 1, np.int64(1) << sig_i[cs, K.S_LEN])
                if st == E2E_REPEATED:
                    verdict[j] = S.COUNTER_REPEATED
                    continue
                if st == E2E_WRONG_SEQUENCE:
                    if strict[row]:  # the reference stays: a replayed frame must not move it
                        verdict[j] = S.COUNTER_JUMP
                        continue
                    v = S.OK_GAP
            prev_ctr[row, m] = c
        last_t[row, m] = t_s[j]
        verdict[j] = v


@nb.njit(cache=True, nogil=True)
def receive_kernel(msg_keys, msg_i, sig_i, sig_mask, sig_f, ctr_sig, crc_byte, data_id, strict, max_delta, prev_ctr,
                   last_t, value, raw, valid, time_s, verdict, mux, t_buf, counts, keys, data, dlc, data_frame, t_each,
                   t_one):
    """Screen and decode n frames in one call: t_j = t_each[j] if t_each holds n stamps, else t_one
    (into t_buf); verdict[j] = NOT_DATA where not data_frame[j], else :func:`screen_batch`'s; the
    accepted frames (OK, OK_GAP) are decoded in order into value / raw / valid / time_s
    (:func:`bms.can._kernels.decode_frame`); counts[c] += number of verdicts c. Returns the number
    of frames not OK (code != 0)."""
    n = keys.shape[0]
    counts[:] = 0
    for j in range(n):
        t_buf[j] = t_each[j] if t_each.shape[0] == n else t_one
        verdict[j] = S.OK if data_frame[j] else S.NOT_DATA
    v, t = verdict[:n], t_buf[:n]
    screen_batch(keys, data, dlc, t, msg_keys, msg_i, sig_i, sig_mask, ctr_sig, crc_byte, data_id, strict,
                 max_delta, prev_ctr, last_t, v, mux[:n])
    not_ok = 0
    for j in range(n):
        c = v[j]
        counts[c] += 1
        if c != S.OK:
            not_ok += 1
        if c == S.OK or c == S.OK_GAP:
            K.decode_frame(keys, data, dlc, j, t[j], msg_keys, msg_i, sig_i, sig_mask, sig_f, value, raw, valid,
                           time_s)
    return not_ok
