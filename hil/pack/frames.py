"""Numba kernels of the pack's frames (:class:`hil.packnode.PackNode`): the sensors' readings into
the CMU and current-sensor messages due at one instant, encoded in one call (with the physics
step before it and each sensor sampled only when a frame due carries it: :func:`plant_tick_kernel`);
the BMS's contactor and bleed commands decoded in one call."""

from __future__ import annotations

import numpy as np

from bms.can import _kernels as K
from bms.can.schedule import due_kernel, encode_plan
from hil.pack.jit import pack_jit
from hil.pack.model import pack_step
from hil.pack.sensors import advance_drift, sample_channels


@pack_jit
def numpy_mean(a, b0, n):
    """mean(a[b0:b0 + n]) with numpy's summation order (its pairwise sum, for n <= 128: a plain
    sum below 8 terms, else eight running sums r_k = sum_i a[b0 + 8 i + k] combined as
    ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7)), the remainder added in order), / n."""
    if n < 8:
        s = 0.0
        for i in range(n):
            s += a[b0 + i]
        return s / n
    r0, r1, r2, r3 = a[b0], a[b0 + 1], a[b0 + 2], a[b0 + 3]
    r4, r5, r6, r7 = a[b0 + 4], a[b0 + 5], a[b0 + 6], a[b0 + 7]
    m = n - n % 8
    for i in range(8, m, 8):
        r0 += a[b0 + i]
        r1 += a[b0 + i + 1]
        r2 += a[b0 + i + 2]
        r3 += a[b0 + i + 3]
        r4 += a[b0 + i + 4]
        r5 += a[b0 + i + 5]
        r6 += a[b0 + i + 6]
        r7 += a[b0 + i + 7]
    s = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    for i in range(m, n):
        s += a[b0 + i]
    return s / n


@pack_jit
def due_kinds(due, is_board):
    """(any board message due, any other message due) among ``due``."""
    boards = False
    others = False
    for i in range(due.shape[0]):
        if due[i]:
            if is_board[i]:
                boards = True
            else:
                others = True
    return boards, others


@pack_jit
def fill_encode(meas, pk, bleed, ts_temp, fill_always, fill_board, balfb, board_temp, cpb, tpb, boards, due, v,
                plan_begin, plan_rows, plan_mux, msg_i, sig_i, sig_mask, sig_f, e2e_id, e2e_crc_byte, keys_out,
                data_out, dlc_out, saturated):
    """The signal values of the frames ``due`` (as :func:`plant_frames_kernel` describes; the board
    rows only if ``boards``), then the frames encoded (:func:`bms.can.schedule.encode_plan`); returns n."""
    nm = meas.shape[0]
    for r in range(fill_always.shape[0]):
        c = fill_always[r, 1]
        v[fill_always[r, 0]] = meas[c] if c < nm else pk[c - nm]
    if boards:
        for r in range(fill_board.shape[0]):
            v[fill_board[r, 0]] = meas[fill_board[r, 1]]
        for r in range(balfb.shape[0]):
            b = balfb[r, 1]
            m = 0.0
            for k in range(cpb):
                m += bleed[b * cpb + k] * 2.0 ** k
            v[balfb[r, 0]] = m
        for r in range(board_temp.shape[0]):
            v[board_temp[r, 0]] = numpy_mean(ts_temp, board_temp[r, 1] * tpb, tpb)
    return encode_plan(due, plan_begin, plan_rows, plan_mux, v, msg_i, sig_i, sig_mask, sig_f, e2e_id, e2e_crc_byte,
                       keys_out, data_out, dlc_out, saturated)


@pack_jit(nogil=True)
def plant_frames_kernel(meas, pk, bleed, ts_temp, fill_always, fill_board, balfb, board_temp, cpb, tpb, is_board,
                        next_s, period_s, ctr_slot, ctr_mod, counter, due, v, plan_begin, plan_rows, plan_mux,
                        msg_i, sig_i, sig_mask, sig_f, e2e_id, e2e_crc_byte, keys_out, data_out, dlc_out, saturated,
                        t_s):
    """The frames due at ``t_s`` (:func:`bms.can.schedule.due_kernel`), encoded
    (:func:`bms.can.schedule.encode_plan`) into keys_out / data_out / dlc_out[:n]; returns n.

    Before encoding, when anything is due: v[s] = meas[c] for the rows (s, c) of ``fill_always``
    (current sensor; c >= len(meas) reads pk[c - len(meas)], the contact positions); when a board
    message is due (``is_board``) also for the rows of ``fill_board`` (cell voltages, sensor
    temperatures), the bleed feedback v[s] = sum_k bleed[b cpb + k] 2^k for the rows (s, b) of
    ``balfb`` and the board temperature v[s] = mean_k ts_temp[b tpb + k] (:func:`numpy_mean`) for
    the rows (s, b) of ``board_temp``."""
    if due_kernel(next_s, period_s, t_s, ctr_slot, ctr_mod, counter, v, due) == 0:
        return 0
    boards, _ = due_kinds(due, is_board)
    return fill_encode(meas, pk, bleed, ts_temp, fill_always, fill_board, balfb, board_temp, cpb, tpb, boards, due, v,
                       plan_begin, plan_rows, plan_mux, msg_i, sig_i, sig_mask, sig_f, e2e_id, e2e_crc_byte,
                       keys_out, data_out, dlc_out, saturated)


@pack_jit(nogil=True)
def plant_tick_kernel(p, f, st, inp, bleed, ch_always, ch_board, fill_always, fill_board, balfb, board_temp, cpb, tpb,
                      is_board, next_s, period_s, ctr_slot, ctr_mod, counter, due, v, plan_begin, plan_rows, plan_mux,
                      msg_i, sig_i, sig_mask, sig_f, e2e_id, e2e_crc_byte, keys_out, data_out, dlc_out, saturated,
                      dt_s, dt_since_s, t_s):
    """One tick of the pack node in one call: :func:`hil.pack.model.pack_step` over ``dt_s``, the
    drift over ``dt_since_s`` (:func:`hil.pack.sensors.advance_drift`), then the frames due at
    ``t_s`` (as :func:`plant_frames_kernel`) from sensors sampled only when a frame carries them
    (:func:`hil.pack.sensors.sample_channels`): the channels ``ch_always`` (current sensor) when a
    non-board message is due, ``ch_board`` (cell voltages, temperatures) when a board message is
    due; otherwise st.meas keeps their last readings. Returns the number n of frames."""
    pack_step(p, f, st, inp, bleed, dt_s)
    advance_drift(f, st, dt_since_s)
    if due_kernel(next_s, period_s, t_s, ctr_slot, ctr_mod, counter, v, due) == 0:
        return 0
    boards, others = due_kinds(due, is_board)
    if others:
        sample_channels(p, f, st, ch_always)
    if boards:
        sample_channels(p, f, st, ch_board)
    return fill_encode(st.meas, st.pk, bleed, st.ts_temp, fill_always, fill_board, balfb, board_temp, cpb, tpb, boards,
                       due, v, plan_begin, plan_rows, plan_mux, msg_i, sig_i, sig_mask, sig_f, e2e_id, e2e_crc_byte,
                       keys_out, data_out, dlc_out, saturated)


@pack_jit(nogil=True)
def commands_kernel(msg_keys, msg_i, sig_i, sig_mask, sig_f, value, raw, valid, time_s, cmd, bal, bal_keys, cpb, inp,
                    bleed, bleeding, keys, data, dlc):
    """Decode the frames (:func:`bms.can._kernels.decode_frame`, stamp 0) and, if any was decoded:
    inp[i] = (value[s] > 0.5) for the rows (i, s) of ``cmd`` whose slot is valid (contactor
    commands); if a frame's key is in ``bal_keys``, bleed[b cpb + k] = (int(value[s]) >> k) & 1
    for the rows (b, s) of ``bal`` whose slot is valid (balancing masks), and bleeding[0] =
    any(bleed). Returns the number of frames decoded."""
    n = 0
    masks = False
    for j in range(keys.shape[0]):
        if K.decode_frame(keys, data, dlc, j, 0.0, msg_keys, msg_i, sig_i, sig_mask, sig_f, value, raw, valid,
                          time_s) == K.ST_OK:
            n += 1
        for b in range(bal_keys.shape[0]):
            if keys[j] == bal_keys[b]:
                masks = True
    if n == 0:
        return 0
    for r in range(cmd.shape[0]):
        if valid[cmd[r, 1]]:
            inp[cmd[r, 0]] = 1.0 if value[cmd[r, 1]] > 0.5 else 0.0
    if masks:
        for r in range(bal.shape[0]):
            s = bal[r, 1]
            if valid[s]:
                m = np.int64(value[s])
                for k in range(cpb):
                    bleed[bal[r, 0] * cpb + k] = (m >> k) & 1
        bleeding[0] = False
        for i in range(bleed.shape[0]):
            if bleed[i]:
                bleeding[0] = True
                break
    return n
