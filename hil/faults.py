"""Scriptable fault injection: a timeline of faults, each switched on at a time (``at_s``) or on
a condition over the truth (``when = "soc_min < 0.3"``), optionally off again at ``until_s``.

Physical and sensor faults set the :class:`hil.pack.PackFaults` arrays (or the model's inputs) in
place; communication faults act on the frames between the plant and the BMS
(:meth:`FaultInjector.filter`): a board / the current sensor / the VCU / the charger going silent,
frames of a message corrupted (a payload bit flipped), replayed (an earlier genuine frame sent
again after each new one) or forged (a frame with an attacker's request value and a wrong CRC).

Kinds (:data:`KINDS`, the target key each needs):
sense_wire_open (wire; value = potential shift V, default 0.2), cell_v_stuck / cell_v_noisy / cell_v_drift (cell; value = stuck V, noise sd V,
drift V/s), temp_sensor_open / temp_sensor_short (sensor), temp_sensor_drift (sensor, value degC/s),
internal_short (cell, value = conductance S), cell_overheat (board, value = degC forced on its cells),
coolant_loss (optional value = fraction of the nominal flow left, default 0; the pack model applies
it to the nominal flow input, the plant never rescales the input), current_offset (value A), current_gain (value relative), board_silent (board),
isense_silent, vcu_silent, charger_silent, contactor_welded (contactor = "pos" | "neg" | "both"),
precharge_open, frame_corrupt / frame_replay (message), frame_forge (message, value = request).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

import can
import numpy as np

from hil.pack import K_NEG, K_POS, S_HI, S_LO, X_T
from hil.packnode import ISENSE_KEYS, PackNode

KINDS: dict[str, tuple[str, ...]] = {
    "sense_wire_open": ("wire",), "cell_v_stuck": ("cell",), "cell_v_noisy": ("cell", "value"),
    "cell_v_drift": ("cell", "value"), "temp_sensor_open": ("sensor",), "temp_sensor_short": ("sensor",),
    "temp_sensor_drift": ("sensor", "value"), "internal_short": ("cell", "value"),
    "cell_overheat": ("board", "value"), "coolant_loss": (), "current_offset": ("value",),
    "current_gain": ("value",), "board_silent": ("board",), "isense_silent": (), "vcu_silent": (),
    "charger_silent": (), "contactor_welded": ("contactor",), "precharge_open": (),
    "frame_corrupt": ("message",), "frame_replay": ("message",), "frame_forge": ("message", "value"),
}
CONTACTORS = {"neg": (K_NEG,), "pos": (K_POS,), "both": (K_NEG, K_POS)}
_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
CONDITION_NAMES = ("t_s", "soc_min", "soc_mean", "soc_max", "pack_i_a", "pack_v", "temp_max_c", "temp_min_c")


def parse_condition(text: str) -> tuple[str, str, float]:
    """``"<name> <op> <number>"`` with a name of :data:`CONDITION_NAMES` and op one of < <= > >=."""
    parts = text.split()
    if len(parts) != 3 or parts[0] not in CONDITION_NAMES or parts[1] not in _OPS:
        raise ValueError(f"condition {text!r}: expected '<name> <op> <number>' with name in "
                         f"{', '.join(CONDITION_NAMES)} and op in {', '.join(_OPS)}")
    try:
        value = float(parts[2])
    except ValueError:
        raise ValueError(f"condition {text!r}: {parts[2]!r} is not a number") from None
    return parts[0], parts[1], value


@dataclass
class FaultSpec:
    kind: str
    at_s: float | None = None
    when: str | None = None
    until_s: float | None = None
    wire: int = -1
    cell: int = -1
    sensor: int = -1
    board: int = -1
    contactor: str = ""
    message: str = ""
    value: float = float("nan")
    expect: tuple[str, ...] = ()      # BMS faults (diag table names) that must be raised ...
    within_s: float | None = None     # ... within this time of the injection
    open_within_s: float | None = None  # contactors must be commanded open within this time
    expect_warning: tuple[str, ...] = ()  # BMS warnings that must be raised ...
    warn_within_s: float | None = None    # ... within this time (judged on the record, record_period_s)
    # runtime
    t_on: float | None = None
    t_off: float | None = None
    detected: dict[str, float] = field(default_factory=dict)   # fault name -> first time raised after t_on
    t_open: float | None = None
    injected: int = 0                                           # frames corrupted / replayed / forged

    @property
    def label(self) -> str:
        tgt = next((f"{k}={getattr(self, k)}" for k in KINDS[self.kind] if k != "value"), "")
        return f"{self.kind}({tgt})" if tgt else self.kind


class FaultInjector:
    """Applies a fault timeline to a :class:`hil.packnode.PackNode` and to the frames."""

    def __init__(self, specs: list[FaultSpec], pack: PackNode, vcu_ids: set[int] = frozenset(),
                 charger_ids: set[int] = frozenset()):
        self.specs = specs
        self.pack = pack
        m = pack.m
        self.p, self.f, self.st, self.inp = m.p, m.f, m.st, m.inp
        db = pack.smap.db
        self.board_ids = [{db.get_message_by_name(n).frame_id for n in ms} for ms in pack.board_msgs]
        sc = pack.smap.scalars
        self.isense_ids = {db.get_message_by_name(sc[k].message).frame_id for k in ISENSE_KEYS if k in sc}
        self.vcu_ids, self.charger_ids = set(vcu_ids), set(charger_ids)
        self.drop: set[int] = set()
        self.frame_faults: list[tuple[FaultSpec, int]] = []
        self.replay_store: dict[int, list[bytes]] = {}
        self.overheat: list[FaultSpec] = []
        self._conds = {id(s): parse_condition(s.when) for s in specs if s.when}
        for s in specs:
            if s.kind not in KINDS:
                raise ValueError(f"unknown fault kind {s.kind!r} (kinds: {', '.join(KINDS)})")
            if s.message:
                s._fid = db.get_message_by_name(s.message).frame_id  # KeyError names the message

    # ---- timeline ------------------------------------------------------------------------------
    def due(self, t_s: float, truth=None) -> bool:
        """Switch faults on / off at ``t_s``; ``truth`` (callable -> dict) is asked only when a
        pending fault has a condition. Returns True if anything changed."""
        changed = False
        vals = None
        for s in self.specs:
            if s.t_on is None:
                go = s.at_s is not None and t_s >= s.at_s - 1e-9
                if not go and s.when:
                    if vals is None:
                        vals = truth() if truth is not None else {}
                    name, op, ref = self._conds[id(s)]
                    x = t_s if name == "t_s" else vals.get(name)
                    go = x is not None and _OPS[op](x, ref)
                if go:
                    self._apply(s, True)
                    s.t_on = t_s
                    changed = True
            elif s.t_off is None and s.until_s is not None and t_s >= s.until_s - 1e-9:
                self._apply(s, False)
                s.t_off = t_s
                changed = True
        for s in self.overheat:  # forced temperature: re-applied every step while active
            b, cpb = s.board, self.pack.cpb * self.p.n_parallel
            self.st.x[b * cpb:(b + 1) * cpb, X_T] = s.value
        return changed

    def active(self, t_s: float) -> list[FaultSpec]:
        return [s for s in self.specs if s.t_on is not None and s.t_off is None]

    def _apply(self, s: FaultSpec, on: bool) -> None:
        f, p, k = self.f, self.p, s.kind
        u8 = 1 if on else 0
        if k == "sense_wire_open":
            if np.isfinite(s.value):
                f.wire_shift_v[s.wire] = s.value
            f.wire_open[s.wire] = u8
        elif k == "cell_v_stuck":
            ch = p.ch_cell_v(s.cell)
            f.sens_stuck_val[ch] = s.value if np.isfinite(s.value) else self.st.meas[ch]
            f.sens_stuck[ch] = u8
        elif k == "cell_v_noisy":
            f.sens_noise[p.ch_cell_v(s.cell)] = s.value if on else 0.0
        elif k == "cell_v_drift":
            f.sens_drift_per_s[p.ch_cell_v(s.cell)] = s.value if on else 0.0
        elif k in ("temp_sensor_open", "temp_sensor_short"):
            ch = p.ch_temp(s.sensor)
            f.sens_stuck_val[ch] = p.sens[ch, S_LO if k.endswith("open") else S_HI]
            f.sens_stuck[ch] = u8
        elif k == "temp_sensor_drift":
            f.sens_drift_per_s[p.ch_temp(s.sensor)] = s.value if on else 0.0
        elif k == "internal_short":
            f.short_s[s.cell * p.n_parallel] = s.value if on else 0.0
        elif k == "cell_overheat":
            (self.overheat.append if on else self.overheat.remove)(s)
        elif k == "coolant_loss":
            rest = s.value if np.isfinite(s.value) else 0.0  # the fraction of the nominal flow left
            f.coolant_flow_scale[0] = min(max(rest, 0.0), 1.0) if on else 1.0
        elif k == "current_offset":
            f.sens_offset[p.ch_current] = s.value if on else 0.0
        elif k == "current_gain":
            f.sens_gain_err[p.ch_current] = s.value if on else 0.0
        elif k == "contactor_welded":
            for kk in CONTACTORS[s.contactor]:
                f.k_welded[kk] = u8
        elif k == "precharge_open":
            f.precharge_open[0] = u8
        elif k in ("board_silent", "isense_silent", "vcu_silent", "charger_silent"):
            ids = {"board_silent": lambda: self.board_ids[s.board], "isense_silent": lambda: self.isense_ids,
                   "vcu_silent": lambda: self.vcu_ids, "charger_silent": lambda: self.charger_ids}[k]()
            if on:
                self.drop |= ids
            else:
                self.drop -= ids
        elif k in ("frame_corrupt", "frame_replay", "frame_forge"):
            if on:
                self.frame_faults.append((s, s._fid))
            else:
                self.frame_faults = [x for x in self.frame_faults if x[0] is not s]

    # ---- frames --------------------------------------------------------------------------------
    def filter(self, frames: list[can.Message]) -> list[can.Message]:
        """The frames as the BMS receives them (dropped, corrupted, replayed, forged)."""
        for fr in frames:  # keep a little history of genuine frames for replays
            hist = self.replay_store.get(fr.arbitration_id)
            if hist is not None or any(fid == fr.arbitration_id for _, fid in self.frame_faults):
                hist = self.replay_store.setdefault(fr.arbitration_id, [])
                hist.append(bytes(fr.data))
                del hist[:-32]
        if not self.drop and not self.frame_faults:
            return frames
        out = [fr for fr in frames if fr.arbitration_id not in self.drop]
        for s, fid in self.frame_faults:
            extra = []
            for j, fr in enumerate(out):
                if fr.arbitration_id != fid:
                    continue
                if s.kind == "frame_corrupt":
                    d = bytearray(fr.data)
                    d[0] ^= 0x01
                    out[j] = can.Message(arbitration_id=fid, is_extended_id=fr.is_extended_id, data=bytes(d),
                                         timestamp=fr.timestamp)
                elif s.kind == "frame_replay":
                    hist = self.replay_store.get(fid, [])
                    if len(hist) > 8:
                        extra.append(can.Message(arbitration_id=fid, is_extended_id=fr.is_extended_id,
                                                 data=hist[-8], timestamp=fr.timestamp))
                else:  # forge: the attacker's value in the message's first signal, CRC guessed wrong
                    msg = self.pack.smap.db.get_message_by_frame_id(fid)
                    sig = msg.decode(bytes(fr.data), decode_choices=False)
                    target = next(x.name for x in msg.signals if not x.name.endswith(("_Counter", "_CRC")))
                    sig[target] = s.value
                    d = msg.encode(sig, strict=False)  # the genuine frame's CRC: wrong for the new payload
                    extra.append(can.Message(arbitration_id=fid, is_extended_id=fr.is_extended_id, data=bytes(d),
                                             timestamp=fr.timestamp))
                s.injected += 1
            out += extra
        return out
