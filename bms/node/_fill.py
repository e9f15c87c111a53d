"""Numba kernel of the transmit side: every value the node sends, from the step's outputs, in one call.

The output quantities (:data:`bms.signal_map.QUANTITIES`) are computed in the order of
:data:`ORDER`; ``to_q[k]`` is the index of ``ORDER[k]`` in the caller's quantity array, passed as an
argument (not frozen into the cache) so that a change of ``QUANTITIES`` never meets a stale cache.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from bms import layout as L
from bms.can.schedule import due_kernel, encode_plan

ORDER = (
    "state", "contactor_neg_cmd", "contactor_pre_cmd", "contactor_pos_cmd", "contactor_neg_fb", "contactor_pre_fb",
    "contactor_pos_fb", "balancing_active", "pack_v", "pack_i_a", "pack_power_kw", "severity", "cmu_timeout_mask",
    "i_chg_lim_a", "p_chg_lim_kw", "v_chg_max_v", "i_dis_lim_a", "p_dis_lim_kw", "v_dis_min_v", "soc_min_pct",
    "soc_mean_pct", "soc_max_pct", "soc_display_pct", "soh_pct", "energy_remaining_kwh", "energy_full_kwh",
    "capacity_ah", "cell_v_min_v", "cell_v_max_v", "cell_v_min_idx", "cell_v_max_idx", "temp_min_c", "temp_max_c",
    "temp_min_idx", "temp_max_idx", "chg_req_v", "chg_req_a", "chg_req_enable",
)


@nb.njit(cache=True)
def _idx(v):
    return v if v >= 0.0 else math.nan


@nb.njit(cache=True, nogil=True)
def quantities_kernel(y, u, pp, cmu_timeout_mask, to_q, out):
    """The output quantities of the step's outputs ``y`` and inputs ``u``:

    pack_v = U_PACK_V if the HV reading is valid else the cell sum; pack_i_a = U_PACK_I_A if valid
    else NaN; power = pack_v i / 1000; energy_full = capacity_ah pack_v / 1000, remaining = full x
    mean SOC; soh = min(100, 100 capacity / (cell capacity x n_parallel)) (100 if unknown); the
    charge request is (V_chg_max, I_chg_lim) only in CHARGE with both mains closed; indices < 0
    (none) are NaN; contactor bits split into 0/1 values."""
    state = y[L.Y_STATE]
    cmd = 0 if math.isnan(y[L.Y_CONTACTORS]) else int(y[L.Y_CONTACTORS])
    fb = int(u[L.U_CONTACTOR_FB])
    pack_v = u[L.U_PACK_V] if u[L.U_HV_VALID] > 0.5 else y[L.Y_CELL_V_SUM]
    i_a = u[L.U_PACK_I_A] if u[L.U_ISENSE_VALID] > 0.5 else math.nan
    cap_ah = y[L.Y_CAPACITY_AH]
    e_full = cap_ah * pack_v / 1000.0
    mains = L.K_NEG | L.K_POS
    charging = state == L.ST_CHARGE and (cmd & mains) == mains
    soh = 100.0
    s = 100.0 * cap_ah / (pp[L.P_CELL_CAPACITY_AH] * pp[L.P_N_PARALLEL])
    if s < 100.0:
        soh = s
    out[to_q[0]] = state
    out[to_q[1]] = float(cmd & L.K_NEG)
    out[to_q[2]] = float((cmd & L.K_PRE) >> 1)
    out[to_q[3]] = float((cmd & L.K_POS) >> 2)
    out[to_q[4]] = float(fb & L.K_NEG)
    out[to_q[5]] = float((fb & L.K_PRE) >> 1)
    out[to_q[6]] = float((fb & L.K_POS) >> 2)
    out[to_q[7]] = 1.0 if y[L.Y_N_BLEEDING] > 0 else 0.0
    out[to_q[8]] = pack_v
    out[to_q[9]] = i_a
    out[to_q[10]] = pack_v * i_a / 1000.0
    out[to_q[11]] = y[L.Y_SEVERITY]
    out[to_q[12]] = float(cmu_timeout_mask)
    out[to_q[13]] = y[L.Y_I_CHG_LIM_A]
    out[to_q[14]] = y[L.Y_P_CHG_LIM_W] / 1000.0
    out[to_q[15]] = y[L.Y_V_CHG_MAX_V]
    out[to_q[16]] = y[L.Y_I_DIS_LIM_A]
    out[to_q[17]] = y[L.Y_P_DIS_LIM_W] / 1000.0
    out[to_q[18]] = y[L.Y_V_DIS_MIN_V]
    out[to_q[19]] = 100.0 * y[L.Y_SOC_MIN]
    out[to_q[20]] = 100.0 * y[L.Y_SOC_MEAN]
    out[to_q[21]] = 100.0 * y[L.Y_SOC_MAX]
    out[to_q[22]] = 100.0 * y[L.Y_SOC_DISPLAY]
    out[to_q[23]] = soh
    out[to_q[24]] = e_full * y[L.Y_SOC_MEAN]
    out[to_q[25]] = e_full
    out[to_q[26]] = cap_ah
    out[to_q[27]] = y[L.Y_CELL_V_MIN]
    out[to_q[28]] = y[L.Y_CELL_V_MAX]
    out[to_q[29]] = _idx(y[L.Y_CELL_V_MIN_IDX])
    out[to_q[30]] = _idx(y[L.Y_CELL_V_MAX_IDX])
    out[to_q[31]] = y[L.Y_TEMP_MIN_C]
    out[to_q[32]] = y[L.Y_TEMP_MAX_C]
    out[to_q[33]] = _idx(y[L.Y_TEMP_MIN_IDX])
    out[to_q[34]] = _idx(y[L.Y_TEMP_MAX_IDX])
    out[to_q[35]] = y[L.Y_V_CHG_MAX_V]
    out[to_q[36]] = y[L.Y_I_CHG_LIM_A] if charging else 0.0
    out[to_q[37]] = 1.0 if charging else 0.0
    return out


@nb.njit(cache=True, nogil=True)
def fill_kernel(y, u, pp, bleed, cell_v, temp_c, cmu_timeout_mask, to_q, q, idx, v, fill_values):
    """Every transmitted slot value ``v[slot]`` from the step (see :meth:`bms.node.tx.Transmitter.fill`).

    ``idx`` (13, m) int64 rows, -1 padded: 0 out_slots, 1 their quantity, 2 fault-bit slots,
    3 their fault ids, 4 warning-bit slots, 5 their ids, 6 balancing-mask slot per board (-1: none),
    7 diagnosed cells / 8 their slots, 9 diagnosed temperature sensors / 10 their slots,
    11 slots without an INVALID marker (a NaN there is sent as ``fill_values``, the DBC start value).
    Fault / warning bits: (word >> id) & 1 of the outputs' bit words (0 if NaN); balancing mask of
    board b: sum_k bleed[b cpb + k] 2^k with cpb = idx[12, 0] cells per board."""
    quantities_kernel(y, u, pp, cmu_timeout_mask, to_q, q)
    for k in range(idx.shape[1]):
        s = idx[0, k]
        if s < 0:
            break
        v[s] = q[idx[1, k]]
    fbits = 0 if math.isnan(y[L.Y_FAULT_BITS]) else int(y[L.Y_FAULT_BITS])
    wbits = 0 if math.isnan(y[L.Y_WARN_BITS]) else int(y[L.Y_WARN_BITS])
    for k in range(idx.shape[1]):
        if idx[2, k] >= 0:
            v[idx[2, k]] = (fbits >> idx[3, k]) & 1
        if idx[4, k] >= 0:
            v[idx[4, k]] = (wbits >> idx[5, k]) & 1
    cpb = idx[12, 0]
    for b in range(idx.shape[1]):
        s = idx[6, b]
        if s < 0:
            continue
        m = 0
        for k in range(cpb):
            if bleed[b * cpb + k]:
                m += 1 << k
        v[s] = m
    for k in range(idx.shape[1]):
        if idx[7, k] >= 0:
            v[idx[8, k]] = cell_v[idx[7, k]]
        if idx[9, k] >= 0:
            v[idx[10, k]] = temp_c[idx[9, k]]
    for k in range(idx.shape[1]):
        s = idx[11, k]
        if s < 0:
            break
        if math.isnan(v[s]):
            v[s] = fill_values[k]


def index_table(rows: list[np.ndarray]) -> np.ndarray:
    """Stack index arrays into one (len(rows), m) int64 table padded with -1 (for :func:`fill_kernel`)."""
    m = max(1, max(len(r) for r in rows))
    out = np.full((len(rows), m), -1, np.int64)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out


@nb.njit(cache=True, nogil=True)
def transmit_kernel(y, u, pp, bleed, cell_v, temp_c, to_q, q, idx, v, fill_values, next_s, period_s, ctr_slot,
                    ctr_mod, counter, due, plan_begin, plan_rows, plan_mux, msg_i, sig_i, sig_mask, sig_f, e2e_id,
                    e2e_crc_byte, keys_out, data_out, dlc_out, saturated, cmu_timeout_mask, t_s):
    """One transmit of the node: v = :func:`fill_kernel` of the step; the messages due at ``t_s``
    (:func:`bms.can.schedule.due_kernel`: next times, alive counters) encoded with their E2E CRC
    (:func:`bms.can.schedule.encode_plan`) into keys_out / data_out / dlc_out[:n]; returns n."""
    fill_kernel(y, u, pp, bleed, cell_v, temp_c, cmu_timeout_mask, to_q, q, idx, v, fill_values)
    if due_kernel(next_s, period_s, t_s, ctr_slot, ctr_mod, counter, v, due) == 0:
        return 0
    return encode_plan(due, plan_begin, plan_rows, plan_mux, v, msg_i, sig_i, sig_mask, sig_f, e2e_id, e2e_crc_byte,
                       keys_out, data_out, dlc_out, saturated)
