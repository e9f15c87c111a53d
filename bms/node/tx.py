"""Transmit side of the BMS node: the DBC's cyclic messages of our node, on their DBC periods.

Each message is sent every ``cycle_time`` (a multiplexed one sends all its multiplexer values
in that cycle). Values come from the step's outputs through the signal map's quantities
(:data:`bms.signal_map.QUANTITIES`); alive counters advance once per cycle and E2E messages
get their CRC (:func:`bms.can.e2e.protect_batch`). A value that is unknown (NaN) goes out as
the signal's INVALID marker, or, where it has none, as its DBC start value.
"""

from __future__ import annotations

import math

import numpy as np

from bms import layout as L
from bms.can import _kernels as K
from bms.can.codec import FrameCodec
from bms.can.dbc import cycle_time_s
from bms.can.e2e import batch_arrays, protect_batch
from bms.layout import Inputs, State
from bms.node.rx import counter_signal
from bms.pack import PackParams
from bms.signal_map import QUANTITIES, SignalMap

QNAMES = tuple(QUANTITIES)
QI = {n: i for i, n in enumerate(QNAMES)}


def quantities(st: State, inp: Inputs, prm: PackParams, cmu_timeout_mask: int, out: np.ndarray) -> np.ndarray:
    """The output quantities (order of :data:`bms.signal_map.QUANTITIES`) from the step's state."""
    y, u, pp = st.out, inp.u, prm.pp
    state = y[L.Y_STATE]
    cmd = 0 if math.isnan(y[L.Y_CONTACTORS]) else int(y[L.Y_CONTACTORS])
    fb = int(u[L.U_CONTACTOR_FB])
    hv = u[L.U_HV_VALID] > 0.5
    pack_v = u[L.U_PACK_V] if hv else y[L.Y_CELL_V_SUM]
    i_a = u[L.U_PACK_I_A] if u[L.U_ISENSE_VALID] > 0.5 else math.nan
    cap_ah = y[L.Y_CAPACITY_AH]
    e_full = cap_ah * pack_v / 1000.0  # at the present pack voltage
    charging = state == L.ST_CHARGE and (cmd & (L.K_NEG | L.K_POS)) == (L.K_NEG | L.K_POS)

    def idx(v):
        return v if v >= 0 else math.nan

    vals = {
        "state": state, "contactor_neg_cmd": cmd & L.K_NEG, "contactor_pre_cmd": (cmd & L.K_PRE) >> 1,
        "contactor_pos_cmd": (cmd & L.K_POS) >> 2, "contactor_neg_fb": fb & L.K_NEG,
        "contactor_pre_fb": (fb & L.K_PRE) >> 1, "contactor_pos_fb": (fb & L.K_POS) >> 2,
        "balancing_active": 1.0 if y[L.Y_N_BLEEDING] > 0 else 0.0,
        "pack_v": pack_v, "pack_i_a": i_a, "pack_power_kw": pack_v * i_a / 1000.0,
        "severity": y[L.Y_SEVERITY], "cmu_timeout_mask": float(cmu_timeout_mask),
        "i_chg_lim_a": y[L.Y_I_CHG_LIM_A], "p_chg_lim_kw": y[L.Y_P_CHG_LIM_W] / 1000.0,
        "v_chg_max_v": y[L.Y_V_CHG_MAX_V], "i_dis_lim_a": y[L.Y_I_DIS_LIM_A],
        "p_dis_lim_kw": y[L.Y_P_DIS_LIM_W] / 1000.0, "v_dis_min_v": y[L.Y_V_DIS_MIN_V],
        "soc_min_pct": 100.0 * y[L.Y_SOC_MIN], "soc_mean_pct": 100.0 * y[L.Y_SOC_MEAN],
        "soc_max_pct": 100.0 * y[L.Y_SOC_MAX], "soc_display_pct": 100.0 * y[L.Y_SOC_DISPLAY],
        "soh_pct": min(100.0, 100.0 * cap_ah / (pp[L.P_CELL_CAPACITY_AH] * pp[L.P_N_PARALLEL])),
        "energy_remaining_kwh": e_full * y[L.Y_SOC_MEAN], "energy_full_kwh": e_full, "capacity_ah": cap_ah,
        "cell_v_min_v": y[L.Y_CELL_V_MIN], "cell_v_max_v": y[L.Y_CELL_V_MAX],
        "cell_v_min_idx": idx(y[L.Y_CELL_V_MIN_IDX]), "cell_v_max_idx": idx(y[L.Y_CELL_V_MAX_IDX]),
        "temp_min_c": y[L.Y_TEMP_MIN_C], "temp_max_c": y[L.Y_TEMP_MAX_C],
        "temp_min_idx": idx(y[L.Y_TEMP_MIN_IDX]), "temp_max_idx": idx(y[L.Y_TEMP_MAX_IDX]),
        "chg_req_v": y[L.Y_V_CHG_MAX_V], "chg_req_a": y[L.Y_I_CHG_LIM_A] if charging else 0.0,
        "chg_req_enable": 1.0 if charging else 0.0,
    }
    for k, v in vals.items():
        out[QI[k]] = float(v)
    return out


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
        # schedule: one entry per message
        self.ids, self.crc_bytes, self.lengths = batch_arrays(list(c.messages))
        self.sched = []
        for name in smap.tx_messages:
            m = c.messages[c.row(name)]
            rows, mux, keys = c.cycle_plan([name])
            ctr = counter_signal(m)
            self.sched.append({"name": name, "period_s": cycle_time_s(m), "next_s": t0_s, "rows": rows, "mux": mux,
                               "msg": m, "ctr_slot": c.slot(ctr) if ctr else -1, "ctr_mod": 1 << (
                                   m.get_signal_by_name(ctr).length if ctr else 0), "counter": 0})
        self.saturated = 0

    def fill(self, st: State, inp: Inputs, prm: PackParams, cmu_timeout_mask: int) -> None:
        """Compute every transmitted value from the step's state and inputs."""
        v = self.values
        quantities(st, inp, prm, cmu_timeout_mask, self.q)
        v[self.out_slots] = self.q[self.out_q]
        fb = 0 if math.isnan(st.out[L.Y_FAULT_BITS]) else int(st.out[L.Y_FAULT_BITS])
        wb = 0 if math.isnan(st.out[L.Y_WARN_BITS]) else int(st.out[L.Y_WARN_BITS])
        v[self.flt_slots] = (fb >> self.flt_ids) & 1
        v[self.wrn_slots] = (wb >> self.wrn_ids) & 1
        for b, slot in self.bal:
            v[slot] = float(st.bleed[b * self.cpb:(b + 1) * self.cpb] @ self.bit_w)
        v[self.dc_slots] = inp.cell_v[self.dc]
        v[self.dt_slots] = inp.temp_c[self.dt]
        nan = np.isnan(v[self.fill_slots])
        v[self.fill_slots[nan]] = self.fill_values[nan]

    def due(self, t_s: float, only: tuple[str, ...] | None = None) -> list[tuple[int, bool, bytes]]:
        """Encode the messages due at ``t_s`` (or exactly the messages ``only``, now); returns
        ``(frame_id, is_extended, payload)`` per frame and advances the schedule past ``t_s``."""
        frames: list[tuple[int, bool, bytes]] = []
        for e in self.sched:
            if only is not None:
                if e["name"] not in only:
                    continue
            elif e["next_s"] > t_s + 1e-9:
                continue
            else:
                p = e["period_s"]
                e["next_s"] += p * (math.floor((t_s - e["next_s"]) / p + 1e-9) + 1)
            if e["ctr_slot"] >= 0:
                self.values[e["ctr_slot"]] = e["counter"]
                e["counter"] = (e["counter"] + 1) % e["ctr_mod"]
            self._encode(e["rows"], e["mux"], frames)
        return frames

    def _encode(self, rows: np.ndarray, mux: np.ndarray, frames: list) -> None:
        data, sat = self.codec.encode(rows, mux, self.values)
        self.saturated += int(sat.sum())
        protect_batch(data, self.ids[rows], self.crc_bytes[rows], self.lengths[rows])
        for j in range(rows.shape[0]):
            msg = self.codec.messages[rows[j]]
            frames.append((msg.frame_id, msg.is_extended_frame, bytes(data[j, :msg.length])))
