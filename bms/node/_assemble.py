"""Numba kernels of the receive side after decoding: message ages, timeouts and the step's inputs."""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from bms import layout as L

# rows of the scalar index array ``sc`` of assemble_kernel (-1: not mapped); SC_FB.. SC_FB + 2: the
# slots of the auxiliary contacts K_NEG, K_PRE, K_POS (-1: feedback wired directly, ``contactor_fb``)
SC_I, SC_IERR, SC_PV, SC_BV, SC_REQ, SC_RESET, SC_ROW_VOLT, SC_ROW_CHARGER, SC_ROW_FB, SC_FB, N_SC = (
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 12)


@nb.njit(cache=True, nogil=True)
def ages_kernel(mux_mask, last_t, timeout_s, now_s, age, late):
    """age[r] = now - min over the message's multiplexer values m of last_t[r, m] (inf if never);
    late[r] = age[r] > timeout_s[r]. Returns True if any late[r] changed."""
    changed = False
    for r in range(last_t.shape[0]):
        oldest = np.inf
        for m in range(last_t.shape[1]):
            if mux_mask[r, m] and last_t[r, m] < oldest:
                oldest = last_t[r, m]
        age[r] = now_s - oldest
        x = age[r] > timeout_s[r]
        if x != late[r]:
            changed = True
            late[r] = x
    return changed


@nb.njit(cache=True)
def _fresh(row, age, timeout_s):
    return row >= 0 and age[row] <= timeout_s[row]


@nb.njit(cache=True, nogil=True)
def assemble_kernel(value, valid, time_s, cell_slots, cpb, temp_slots, board_err, board_row, sc, age, timeout_s,
                    now_s, contactor_fb, cell_v, board_valid, board_age_s, temp_c, temp_valid, temp_age_s, u):
    """The step's inputs from the decoded slots at ``now_s`` (ages from :func:`ages_kernel`):

    cell_v / temp_c = value where valid, else NaN; board b's age = now - the oldest stamp of its
    cpb cells (>= 0), valid if all were ever received and its status (``board_err[b]``, fresh
    message ``board_row[b]``) reports no self-test error; temp_valid = valid and ever received;
    pack current valid if received, valid and the sensor reports no error (0 A otherwise); pack and
    bus voltage valid if both valid and their message fresh; contactor feedback: bits of the three
    auxiliary contacts (valid if all are valid and their message fresh; ``contactor_fb``, always
    valid, when wired directly); VCU request valid if received (else
    STANDBY), reset only with a valid request; charger connected while its message is fresh.
    Ages are now - stamp, at least 0 (inf if never received)."""
    n = cell_slots.shape[0]
    for i in range(n):
        s = cell_slots[i]
        cell_v[i] = value[s] if valid[s] else math.nan
    for b in range(board_valid.shape[0]):
        oldest = np.inf
        for i in range(b * cpb, min((b + 1) * cpb, n)):
            t = time_s[cell_slots[i]]
            if t < oldest:
                oldest = t
        board_age_s[b] = max(now_s - oldest, 0.0)
        ok = math.isfinite(oldest)
        s = board_err[b]
        if s >= 0 and _fresh(board_row[b], age, timeout_s) and valid[s] and value[s] > 0.5:
            ok = False
        board_valid[b] = ok
    for k in range(temp_slots.shape[0]):
        s = temp_slots[k]
        temp_c[k] = value[s] if valid[s] else math.nan
        temp_valid[k] = valid[s] and math.isfinite(time_s[s])
        temp_age_s[k] = max(now_s - time_s[s], 0.0)
    s = sc[SC_I]
    i_ok = valid[s] and math.isfinite(time_s[s])
    e = sc[SC_IERR]
    if e >= 0 and valid[e] and value[e] > 0.5:
        i_ok = False
    u[L.U_PACK_I_A] = value[s] if i_ok else 0.0
    u[L.U_ISENSE_VALID] = 1.0 if i_ok else 0.0
    u[L.U_ISENSE_AGE_S] = max(now_s - time_s[s], 0.0)
    pv, bv = sc[SC_PV], sc[SC_BV]
    hv_ok = valid[pv] and valid[bv] and _fresh(sc[SC_ROW_VOLT], age, timeout_s)
    u[L.U_PACK_V] = value[pv] if hv_ok else 0.0
    u[L.U_BUS_V] = value[bv] if hv_ok else 0.0
    u[L.U_HV_VALID] = 1.0 if hv_ok else 0.0
    if sc[SC_FB] < 0:  # wired directly (or echoed): always fresh
        u[L.U_CONTACTOR_FB], u[L.U_CONTACTOR_FB_VALID], u[L.U_CONTACTOR_FB_AGE_S] = contactor_fb, 1.0, 0.0
    else:  # auxiliary contacts from their frame
        fb_ok = _fresh(sc[SC_ROW_FB], age, timeout_s)
        bits = 0
        for j in range(3):
            k = sc[SC_FB + j]
            fb_ok = fb_ok and valid[k]
            if valid[k] and value[k] > 0.5:
                bits += 1 << j
        u[L.U_CONTACTOR_FB] = float(bits) if fb_ok else 0.0
        u[L.U_CONTACTOR_FB_VALID] = 1.0 if fb_ok else 0.0
        u[L.U_CONTACTOR_FB_AGE_S] = max(now_s - time_s[sc[SC_FB]], 0.0)
    q = sc[SC_REQ]
    req_ok = valid[q] and math.isfinite(time_s[q])
    u[L.U_VCU_REQUEST] = value[q] if req_ok else float(L.REQ_STANDBY)
    r = sc[SC_RESET]
    reset = r >= 0 and valid[r] and value[r] > 0.5
    u[L.U_VCU_RESET] = 1.0 if (req_ok and reset) else 0.0
    u[L.U_VCU_VALID] = 1.0 if req_ok else 0.0
    u[L.U_VCU_AGE_S] = max(now_s - time_s[q], 0.0)
    u[L.U_CHARGER_CONNECTED] = 1.0 if _fresh(sc[SC_ROW_CHARGER], age, timeout_s) else 0.0


@nb.njit(cache=True, nogil=True)
def inputs_kernel(mux_mask, last_t, value, valid, time_s, cell_slots, cpb, temp_slots, board_err, board_row, sc, age,
                  late, timeout_s, cell_v, board_valid, board_age_s, temp_c, temp_valid, temp_age_s, u, now_s,
                  contactor_fb):
    """:func:`ages_kernel` then :func:`assemble_kernel` at ``now_s`` in one call (the node's receive
    side once per tick, arguments ordered for :func:`bms.bound.bind`: the instant and the contactor
    feedback last). Returns ages_kernel's result (some late[r] changed)."""
    changed = ages_kernel(mux_mask, last_t, timeout_s, now_s, age, late)
    assemble_kernel(value, valid, time_s, cell_slots, cpb, temp_slots, board_err, board_row, sc, age, timeout_s, now_s,
                    contactor_fb, cell_v, board_valid, board_age_s, temp_c, temp_valid, temp_age_s, u)
    return changed
