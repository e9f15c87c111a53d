"""The vehicle side of the bus: a vehicle controller (VCU) and a CC-CV charger, both following a
scenario and obeying what the BMS publishes (:class:`hil.bmsview.BmsView`).

- :class:`Vcu` sends the operating request on its DBC period with the E2E alive counter and
  CRC (:class:`bms.can.e2e.E2ESpec`); its load draws the scenario's demand only while the BMS
  is in DRIVE with the mains closed, clamped to the BMS's current and power limits.
- :class:`Charger` sends its status on its DBC period while connected; while the BMS requests
  charge it delivers min(BMS current request, its own current / power rating), ramped, and
  turns to constant voltage at the BMS's voltage request.
"""

from __future__ import annotations

import math

import can
import numpy as np

from bms import layout as L
from bms.bound import bind
from bms.can import _kernels as K
from bms.can.codec import EXTENDED_FLAG, FrameCodec
from bms.can.dbc import cycle_time_s
from bms.can.e2e import E2ESpec, protect_batch
from bms.can.frames import data_messages
from bms.node.rx import counter_signal
from bms.signal_map import SignalMap
from hil.bmsview import BmsView

REQUESTS = {"standby": L.REQ_STANDBY, "drive": L.REQ_DRIVE, "charge": L.REQ_CHARGE}


class _Sender:
    """One cyclic message encoded with the batch codec (counter and, if protected, CRC)."""

    def __init__(self, db, name: str, t0_s: float):
        self.codec = FrameCodec([name], db)
        self.msg = self.codec.messages[0]
        self.values = np.zeros(self.codec.n_slots)
        self.rows, self.mux, _ = self.codec.cycle_plan([name])
        ctr = counter_signal(self.msg)
        self.ctr_slot = self.codec.slot(ctr) if ctr else -1
        self.ctr_mod = 1 << self.msg.get_signal_by_name(ctr).length if ctr else 1
        self.counter = 0
        try:
            self.e2e: E2ESpec | None = E2ESpec.from_message(self.msg)
        except (ValueError, TypeError):
            self.e2e = None
        self.period_s = cycle_time_s(self.msg)
        self.next_s = float(t0_s)
        self.silent = False
        # the frames of one cycle encoded and CRC-protected by kernels bound to these arrays
        c, n = self.codec, self.rows.shape[0]
        self._data = np.zeros((n, 8), np.uint8)
        self._encode = bind(K.encode_batch, self.rows, self.mux, self.values, c.msg_i, c.sig_i, c.sig_mask, c.sig_f,
                            self._data, np.zeros(n, np.int64))
        self._protect = None
        if self.e2e is not None:
            self._protect = bind(protect_batch, self._data, np.full(n, self.e2e.data_id, np.int64),
                                 np.full(n, self.e2e.crc_byte, np.int64), np.full(n, self.msg.length, np.int64))
        key = self.msg.frame_id | (EXTENDED_FLAG if self.msg.is_extended_frame else 0)
        self._keys, self._dlc = [key] * n, [self.msg.length] * n

    def set(self, signal: str, value: float) -> None:
        self.values[self.codec.slot(signal)] = value

    def due(self, t_s: float) -> list[can.Message]:
        if self.next_s > t_s + 1e-9:
            return []
        self.next_s += self.period_s * (math.floor((t_s - self.next_s) / self.period_s + 1e-9) + 1)
        if self.silent:
            return []
        if self.ctr_slot >= 0:
            self.values[self.ctr_slot] = self.counter
            self.counter = (self.counter + 1) % self.ctr_mod
        self._encode()
        if self._protect is not None:
            self._protect()  # E2E: the CRC of each frame's first DLC bytes into its CRC byte
        # the frames can.Message(arbitration_id, is_extended_id, data=payload[:length], timestamp=t_s) gives
        return data_messages(self._keys, self._dlc, self._data.tobytes(), 8, t_s, None, True)


class Vcu:
    """Vehicle controller: operating request + load current demand (A, positive = charge)."""

    def __init__(self, smap: SignalMap, view: BmsView, t0_s: float = 0.0):
        sc = smap.scalars
        self.view = view
        self.tx = _Sender(smap.db, sc["vcu_request"].message, t0_s)
        self.s_req = sc["vcu_request"].signal
        self.s_reset = sc["vcu_reset"].signal if "vcu_reset" in sc else None
        self.request = L.REQ_STANDBY
        self.reset = False
        self.limited_s = 0.0          # time the demand was clamped by a BMS limit
        self.demand_a = 0.0           # what the load actually drew last
        # the view's value slots read every tick (as view.q does, without its per-call lookups)
        self._s_drive = tuple(view.slot_q(q) for q in ("state", "contactor_pos_cmd", "contactor_neg_cmd"))
        self._s_lim = tuple(view.slot_q(q) for q in ("i_dis_lim_a", "i_chg_lim_a", "p_dis_lim_kw", "p_chg_lim_kw"))

    def frames_due(self, t_s: float) -> list[can.Message]:
        if self.tx.next_s > t_s + 1e-9:  # nothing due (the values are set when it is)
            return []
        self.tx.set(self.s_req, self.request)
        if self.s_reset:
            self.tx.set(self.s_reset, 1.0 if self.reset else 0.0)
        return self.tx.due(t_s)

    def driving(self) -> bool:
        """The BMS reports DRIVE with both mains commanded closed (absent values: not driving)."""
        b = self.view.buf
        val, ok = b.value, b.valid
        s_state, s_pos, s_neg = self._s_drive
        return (ok[s_state] and val[s_state] == L.ST_DRIVE and ok[s_pos] and val[s_pos] == 1
                and ok[s_neg] and val[s_neg] == 1)

    def load_current(self, want: float, unit: str, bus_v: float, dt_s: float) -> float:
        """Current the load draws for the scenario's demand ``want`` (A or W, + = charge): ``want``
        clamped to [-min(I_dis, P_dis / V), min(I_chg, P_chg / V)] over the BMS limits received
        (a power limit not received is ignored; no current limit received: 0)."""
        if not self.driving() or not math.isfinite(want):
            self.demand_a = 0.0
            return 0.0
        b = self.view.buf
        val, ok = b.value, b.valid
        s_idis, s_ichg, s_pdis, s_pchg = self._s_lim
        nan = math.nan
        v_div = max(bus_v, 1.0)
        i = want / v_div if unit == "W" else want
        lim_dis = float(val[s_idis]) if ok[s_idis] else nan
        lim_chg = float(val[s_ichg]) if ok[s_ichg] else nan
        p_dis = (float(val[s_pdis]) if ok[s_pdis] else nan) * 1000.0 / v_div
        p_chg = (float(val[s_pchg]) if ok[s_pchg] else nan) * 1000.0 / v_div
        isfinite = math.isfinite
        lo = -(min(lim_dis, p_dis) if isfinite(p_dis) else lim_dis) if isfinite(lim_dis) else 0.0
        hi = (min(lim_chg, p_chg) if isfinite(p_chg) else lim_chg) if isfinite(lim_chg) else 0.0
        clamped = min(max(i, lo), hi)
        if abs(clamped - i) > 1e-6:
            self.limited_s += dt_s
        self.demand_a = clamped
        return clamped


class Charger:
    """CC-CV charger on the BMS's charge request (current positive = into the pack)."""

    def __init__(self, smap: SignalMap, view: BmsView, t0_s: float = 0.0, max_a: float = 600.0,
                 max_w: float = 400e3, ramp_a_s: float = 200.0, r_est_ohm: float = 0.2):
        if smap.charger_message is None:
            raise ValueError(f"signal map {smap.path} has no charger message")
        self.view = view
        self.tx = _Sender(smap.db, smap.charger_message, t0_s)
        names = {s.name.rsplit("_", 1)[-1]: s.name for s in self.tx.msg.signals}
        self.s_v, self.s_i, self.s_state = names.get("OutputVoltage"), names.get("OutputCurrent"), names.get("State")
        self.max_a, self.max_w, self.ramp_a_s, self.r_est_ohm = max_a, max_w, ramp_a_s, r_est_ohm
        self.connected = False
        self.tx.silent = True
        self.i_a = 0.0
        self.cv = False

    def connect(self, on: bool) -> None:
        self.connected = on
        self.tx.silent = not on
        if not on:
            self.i_a = 0.0

    def frames_due(self, t_s: float, bus_v: float) -> list[can.Message]:
        if self.tx.next_s > t_s + 1e-9:  # nothing due (the values are set when it is)
            return []
        if self.s_v:
            self.tx.set(self.s_v, min(max(bus_v, 0.0), 1000.0))
        if self.s_i:
            self.tx.set(self.s_i, max(self.i_a, 0.0))
        if self.s_state:
            self.tx.set(self.s_state, 1.0 if self.i_a > 0.5 else 0.0)
        return self.tx.due(t_s)

    def current(self, bus_v: float, dt_s: float) -> float:
        v = self.view
        on = (self.connected and v.q("chg_req_enable") == 1 and v.q("state") == L.ST_CHARGE)
        if not on:
            self.i_a = max(0.0, self.i_a - 10.0 * self.ramp_a_s * dt_s)
            self.cv = False
            return self.i_a
        v_req, i_req = v.q("chg_req_v"), v.q("chg_req_a")
        if not (math.isfinite(v_req) and math.isfinite(i_req)):
            self.i_a = 0.0
            return 0.0
        target = min(i_req, self.max_a, self.max_w / max(bus_v, 1.0))
        # constant voltage: the current that brings the output to v_req (pack ~ E + R i)
        i_cv = self.i_a + 0.5 * (v_req - bus_v) / self.r_est_ohm
        self.cv = i_cv < target
        target = max(0.0, min(target, i_cv))
        step = self.ramp_a_s * dt_s
        self.i_a = min(target, self.i_a + step) if target > self.i_a else max(target, self.i_a - 10.0 * step)
        return self.i_a


SEGMENT_REQUEST = {"drive": "drive", "charge": "charge", "rest": "standby"}


def segment_current(seg, t_in_seg_s: float, vcu: Vcu, chg: Charger, bus_v: float, dt_s: float) -> float:
    """One tick of a scenario segment (:class:`hil.scenario.Segment`) on the vehicle side: the
    VCU's request, the charger (dis)connected, and the pack current (A, + = charge) the load
    and the charger draw."""
    vcu.request = REQUESTS[SEGMENT_REQUEST[seg.mode]]
    if seg.mode == "charge":
        if not chg.connected:
            chg.connect(True)
            chg.max_a, chg.max_w = seg.charger_max_a, seg.charger_max_w
    elif chg.connected:
        chg.connect(False)
    i_load = vcu.load_current(seg.demand(t_in_seg_s), seg.unit, bus_v, dt_s) if seg.mode == "drive" else 0.0
    i_chg = chg.current(bus_v, dt_s) if (seg.mode == "charge" or chg.i_a > 0) else 0.0
    return i_load + i_chg
