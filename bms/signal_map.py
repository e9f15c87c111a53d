"""Signal maps: which DBC message/signal carries which input of the firmware step, and which
step output goes into which transmitted signal (TOML files in ``bms/maps/``; the format is
documented in ``bms/maps/bms_fil_heavy_duty_192s.toml``).

``load_map(name_or_path)`` validates every key with :class:`bms.config.Section` (errors name the
file, the key and the allowed range), expands the per-board templates, and cross-checks the
result against the DBC (every message and signal exists, the DBC units match the output
quantities, every signal our node sends is mapped) and against the pack (cell, sensor and
board counts). Frame IDs, scalings and periods are never in a map: they come from the DBC.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cantools.database.can import Database, Message

from bms import diag_table as T
from bms import layout as L
from bms.can.dbc import DEFAULT_DBC_PATH, database, e2e_signals, multiplexer_signal
from bms.config import ConfigError, Section, load_toml
from bms.pack import Pack, load_pack

MAP_DIR = Path(__file__).parent / "maps"
DEFAULT_MAP = "bms_fil_heavy_duty_192s"

# output quantities the node computes from the step's outputs, with their units (DBC spelling)
QUANTITIES: dict[str, str] = {
    "state": "-", "contactor_neg_cmd": "-", "contactor_pre_cmd": "-", "contactor_pos_cmd": "-",
    "contactor_neg_fb": "-", "contactor_pre_fb": "-", "contactor_pos_fb": "-", "balancing_active": "-",
    "pack_v": "V", "pack_i_a": "A", "pack_power_kw": "kW", "severity": "-", "cmu_timeout_mask": "-",
    "i_chg_lim_a": "A", "p_chg_lim_kw": "kW", "v_chg_max_v": "V",
    "i_dis_lim_a": "A", "p_dis_lim_kw": "kW", "v_dis_min_v": "V",
    "soc_min_pct": "%", "soc_mean_pct": "%", "soc_max_pct": "%", "soc_display_pct": "%", "soh_pct": "%",
    "energy_remaining_kwh": "kWh", "energy_full_kwh": "kWh", "capacity_ah": "Ah",
    "cell_v_min_v": "V", "cell_v_max_v": "V", "cell_v_min_idx": "-", "cell_v_max_idx": "-",
    "temp_min_c": "degC", "temp_max_c": "degC", "temp_min_idx": "-", "temp_max_idx": "-",
    "chg_req_v": "V", "chg_req_a": "A", "chg_req_enable": "-",
}
FEEDBACK_SOURCES = ("message", "command", "external")
FEEDBACK_KEYS = ("neg", "pre", "pos")  # [inputs.contactor_feedback] signal keys, bits K_NEG, K_PRE, K_POS


@dataclass(frozen=True)
class Ref:
    """One signal of one message."""

    message: str
    signal: str


@dataclass
class SignalMap:
    """A validated, expanded signal map (all names checked against ``db``)."""

    path: Path
    db: Database
    dbc_path: Path
    pack: Pack
    node: str
    step_period_s: float
    timeout_cycles: float
    max_counter_delta: int
    cells: list[Ref]                 # index = pack cell
    temps: list[Ref]                 # index = pack sensor
    board_status: list[Ref | None]   # per board: its error flag (or None)
    board_messages: list[list[str]]  # per board: every message it sends (timeouts)
    scalars: dict[str, Ref]          # pack_i_a, isense_error, pack_v, bus_v, vcu_request, vcu_reset, fb_neg/pre/pos
    charger_message: str | None
    feedback_source: str             # "message": auxiliary contacts from fb_* frames; "command": echo; "external"
    out_signals: dict[str, str]      # tx signal -> quantity
    fault_bits: dict[str, int]       # tx signal -> fault id (faults)
    warn_bits: dict[str, int]        # tx signal -> fault id (warnings)
    bal_masks: list[str | None]      # per board: tx signal of its bleed mask
    diag_cells: list[str | None]     # per cell: tx signal of its diagnostic copy
    diag_temps: list[str | None]     # per sensor
    rx_messages: list[str] = field(default_factory=list)
    tx_messages: list[str] = field(default_factory=list)

    def messages_of(self, quantity: str) -> list[str]:
        """Transmitted messages carrying ``quantity`` (e.g. the final state frame at shutdown)."""
        sigs = {sig for sig, q in self.out_signals.items() if q == quantity}
        return [m.name for m in self.db.messages if m.name in self.tx_messages and sigs & {s.name for s in m.signals}]

    def sources(self) -> dict[str, list[str]]:
        """Timeout sources: one per board (``CMU<b>``), the current sensor, the VCU, the charger."""
        src = {f"CMU{b:02d}": msgs for b, msgs in enumerate(self.board_messages)}
        src["ISENSE"] = sorted({self.scalars[k].message for k in ("pack_i_a", "pack_v", "fb_neg") if k in self.scalars})
        src["VCU"] = [self.scalars["vcu_request"].message]
        if self.charger_message:
            src["CHARGER"] = [self.charger_message]
        return src


def resolve(name_or_path: str | Path) -> Path:
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no such signal map file")
        return p
    shipped = MAP_DIR / f"{name_or_path}.toml"
    if not shipped.is_file():
        names = ", ".join(sorted(q.stem for q in MAP_DIR.glob("*.toml")))
        raise FileNotFoundError(f"no signal map named {name_or_path!r} (shipped: {names})")
    return shipped


def _dbc_path(path: Path, sec: Section) -> Path:
    val = sec.string("dbc", default="bms_fil")
    cand = Path(val)
    if cand.suffix.lower() != ".dbc":
        shipped = DEFAULT_DBC_PATH.parent / f"{val}.dbc"
        if shipped.is_file():
            return shipped
        cand = cand.with_suffix(".dbc")
    cand = cand if cand.is_absolute() else (path.parent / cand)
    if not cand.is_file():
        raise ConfigError(path, "map.dbc", f"is {val!r}: no such DBC",
                          f"a DBC stem in {DEFAULT_DBC_PATH.parent} or a path relative to the map")
    return cand


class _Checker:
    """Template expansion with DBC lookups whose errors name the map key."""

    def __init__(self, path: Path, db: Database):
        self.path, self.db = path, db
        self._msgs = {m.name: m for m in db.messages}

    def fmt(self, key: str, template: str, **kw) -> str:
        try:
            return template.format(**kw)
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(self.path, key, f"is {template!r}: bad template ({exc!r})",
                              "placeholders " + ", ".join("{" + k + "}" for k in kw)) from None

    def message(self, key: str, name: str) -> Message:
        msg = self._msgs.get(name)
        if msg is None:
            raise ConfigError(self.path, key, f"names message {name!r}, which is not in the DBC")
        return msg

    def signal(self, key: str, message: str, signal: str) -> Ref:
        msg = self.message(key, message)
        if signal not in {s.name for s in msg.signals}:
            raise ConfigError(self.path, key, f"names signal {signal!r}, which is not in message {message!r}")
        return Ref(message, signal)


def _check_temp_range(path: Path, chk: "_Checker", temps: list[Ref], pk: Pack) -> None:
    """Every temperature signal must reach beyond the pack's sensor-fault thresholds: an open
    (shorted) sensor reads the bottom (top) of its range and must trip TEMP_SENSOR_OPEN (_SHORT),
    not pass for a real cold (hot) cell."""
    lo_thr, hi_thr = pk.faults["TEMP_SENSOR_OPEN"].fault, pk.faults["TEMP_SENSOR_SHORT"].fault
    for ref in temps:
        sig = chk.message("inputs.temps.message", ref.message).get_signal_by_name(ref.signal)
        lo = sig.minimum if sig.minimum is not None else sig.offset
        hi = sig.maximum if sig.maximum is not None else sig.offset + sig.scale * ((1 << sig.length) - 1)
        if not (lo < lo_thr and hi > hi_thr):
            raise ConfigError(path, "inputs.temps.signal",
                              f"maps {ref.signal!r}, whose DBC range [{lo:g}, {hi:g}] degC does not reach beyond the "
                              f"sensor-fault thresholds ({lo_thr:g} / {hi_thr:g} degC of pack {pk.name})",
                              "a temperature range wider than TEMP_SENSOR_OPEN .. TEMP_SENSOR_SHORT "
                              "(an open or shorted sensor must not read as a real temperature)")


def _tick(path: Path, mp: Section, pk: Pack) -> float:
    """The node's tick: the pack's fast task period (``[tasks] fast_s``); a map may restate it
    as ``step_period_s`` only with the same value."""
    fast_s = float(pk.pp[L.P_TASK_FAST_S])
    if mp.has("step_period_s"):
        given = mp.number("step_period_s", 1e-4, 1.0)
        if abs(given - fast_s) > 1e-12:
            raise ConfigError(path, "map.step_period_s", f"is {given} s, the pack's fast task period is {fast_s} s",
                              "no step_period_s (the pack's [tasks] fast_s is the tick)")
    return fast_s


def _string(sec: Section, key: str, required: bool = True) -> str | None:
    if not required and not sec.has(key):
        return None
    return sec.string(key)


def load_map(name_or_path: str | Path = DEFAULT_MAP, pack: Pack | str | None = None) -> SignalMap:
    """Load, expand and validate a signal map; ``pack`` overrides the pack the map names."""
    path = resolve(name_or_path)
    root = Section(path, load_toml(path))
    mp = root.section("map")
    dbc_path = _dbc_path(path, mp)
    db = database(dbc_path)
    pk = pack if isinstance(pack, Pack) else load_pack(pack if pack is not None else mp.string("pack"))
    node = mp.string("node")
    if node not in {n.name for n in db.nodes}:
        raise ConfigError(path, "map.node", f"is {node!r}, not a node of the DBC",
                          ", ".join(n.name for n in db.nodes))
    chk = _Checker(path, db)
    cpb, tpb = pk.cells_per_board, pk.temps_per_board

    ins = root.section("inputs")
    c = ins.section("cells")
    cells = []
    for cell in range(pk.n_series):
        b, k = divmod(cell, cpb)
        kw = dict(board=b, cell=cell, k=k)
        m = chk.fmt("inputs.cells.message", c.string("message"), **kw)
        chk.message("inputs.cells.message", m)
        cells.append(chk.signal("inputs.cells.signal", m, chk.fmt("inputs.cells.signal", c.string("signal"), **kw)))
    t = ins.section("temps")
    temps = []
    for j in range(pk.n_temps):
        b, k = divmod(j, tpb)
        kw = dict(board=b, sensor=j, k=k)
        m = chk.fmt("inputs.temps.message", t.string("message"), **kw)
        chk.message("inputs.temps.message", m)
        temps.append(chk.signal("inputs.temps.signal", m, chk.fmt("inputs.temps.signal", t.string("signal"), **kw)))
    _check_temp_range(path, chk, temps, pk)
    for what, refs in (("cells", cells), ("temps", temps)):
        seen = [r.signal for r in refs]
        if len(set(seen)) != len(seen):
            dup = next(s for s in seen if seen.count(s) > 1)
            raise ConfigError(path, f"inputs.{what}.signal", f"maps signal {dup!r} to two inputs",
                              "one signal per input")
    bs = ins.section("boards", required=False)
    board_status: list[Ref | None] = []
    board_messages: list[list[str]] = []
    for b in range(pk.n_boards):
        msgs = sorted({r.message for r in cells[b * cpb:(b + 1) * cpb]} | {r.message for r in temps[b * tpb:(b + 1) * tpb]})
        ref = None
        if bs.has("message"):
            m = chk.fmt("inputs.boards.message", bs.string("message"), board=b)
            chk.message("inputs.boards.message", m)
            msgs.append(m)
            if bs.has("error"):
                ref = chk.signal("inputs.boards.error", m, chk.fmt("inputs.boards.error", bs.string("error"), board=b))
        board_status.append(ref)
        board_messages.append(sorted(set(msgs)))

    scalars: dict[str, Ref] = {}
    for sect, keys, required in (("current", ("pack_i_a", "error"), ("pack_i_a",)),
                                 ("voltage", ("pack_v", "bus_v"), ("pack_v", "bus_v")),
                                 ("vcu", ("request", "reset"), ("request",))):
        s = ins.section(sect)
        m = s.string("message")
        chk.message(f"inputs.{sect}.message", m)
        for key in keys:
            sig = _string(s, key, required=key in required)
            if sig is not None:
                name = {"error": "isense_error", "request": "vcu_request", "reset": "vcu_reset"}.get(key, key)
                scalars[name] = chk.signal(f"inputs.{sect}.{key}", m, sig)
    ch = ins.section("charger", required=False)
    charger = _string(ch, "message", required=False)
    if charger is not None:
        chk.message("inputs.charger.message", charger)
    fb = ins.section("contactor_feedback", required=False)
    feedback = fb.string("source", default="message" if fb.has("message") else "command", choices=FEEDBACK_SOURCES)
    if feedback == "message":
        m = fb.string("message")
        chk.message("inputs.contactor_feedback.message", m)
        for key in FEEDBACK_KEYS:
            scalars[f"fb_{key}"] = chk.signal(f"inputs.contactor_feedback.{key}", m, fb.string(key))
    elif fb.has("message"):
        raise ConfigError(path, "inputs.contactor_feedback.message", f"is set with source = {feedback!r}",
                          'source = "message" (or no message key)')

    outs = root.section("outputs")
    sig_sec = outs.section("signals")
    out_signals: dict[str, str] = {}
    tx = [m for m in db.messages if node in m.senders]
    if not tx:
        raise ConfigError(path, "map.node", f"is {node!r}, which sends no message in the DBC")
    tx_sigs = {s.name: (m, s) for m in tx for s in m.signals}
    for sig, qty in sig_sec.data.items():
        key = f"outputs.signals.{sig}"
        if sig not in tx_sigs:
            raise ConfigError(path, key, f"is not a signal of a message sent by {node}")
        if not isinstance(qty, str) or qty not in QUANTITIES:
            raise ConfigError(path, key, f"is {qty!r}", "one of " + ", ".join(QUANTITIES))
        unit = tx_sigs[sig][1].unit or "-"
        if unit != QUANTITIES[qty]:
            raise ConfigError(path, key, f"maps {qty!r} ({QUANTITIES[qty]}) to a signal in {unit!r}",
                              f"a quantity in {unit!r}")
        out_signals[sig] = qty
    fl = outs.section("faults", required=False)
    fault_bits, warn_bits = {}, {}
    for key, dest in (("fault", fault_bits), ("warning", warn_bits)):
        tmpl = _string(fl, key, required=False)
        if tmpl is None:
            continue
        for f in T.FAULTS:
            sig = chk.fmt(f"outputs.faults.{key}", tmpl, name=f.name)
            if sig not in tx_sigs:
                raise ConfigError(path, f"outputs.faults.{key}", f"gives {sig!r} for fault {f.name}, "
                                  f"which is not a signal sent by {node}")
            dest[sig] = f.id
    bl = outs.section("balancing", required=False)
    tmpl = _string(bl, "mask", required=False)
    bal_masks: list[str | None] = [None] * pk.n_boards
    if tmpl is not None:
        for b in range(pk.n_boards):
            sig = chk.fmt("outputs.balancing.mask", tmpl, board=b)
            if sig not in tx_sigs:
                raise ConfigError(path, "outputs.balancing.mask", f"gives {sig!r} for board {b}, not a signal sent by {node}")
            if tx_sigs[sig][1].length < cpb:
                raise ConfigError(path, "outputs.balancing.mask", f"gives {sig!r} with {tx_sigs[sig][1].length} bits",
                                  f">= cells_per_board ({cpb})")
            bal_masks[b] = sig
    cd = outs.section("cell_diag", required=False)
    diag_cells: list[str | None] = [None] * pk.n_series
    diag_temps: list[str | None] = [None] * pk.n_temps
    for key, dest, n, var in (("cell_v", diag_cells, pk.n_series, "cell"), ("temp", diag_temps, pk.n_temps, "sensor")):
        tmpl = _string(cd, key, required=False)
        if tmpl is None:
            continue
        for i in range(n):
            sig = chk.fmt(f"outputs.cell_diag.{key}", tmpl, **{var: i})
            if sig not in tx_sigs:
                raise ConfigError(path, f"outputs.cell_diag.{key}", f"gives {sig!r}, not a signal sent by {node}")
            dest[i] = sig

    # every signal we send must be filled: mapped, a multiplexer, or a counter / CRC
    filled = set(out_signals) | set(fault_bits) | set(warn_bits) | {s for s in bal_masks + diag_cells + diag_temps if s}
    for m in tx:
        auto = {m.name + "_Counter", m.name + "_CRC"}
        mux = multiplexer_signal(m)
        for s in m.signals:
            if s.name in filled or s.name in auto or (mux is not None and s.name == mux.name):
                continue
            raise ConfigError(path, "outputs", f"leaves signal {s.name!r} of {m.name} (sent by {node}) unmapped",
                              "every transmitted signal mapped to a quantity")
        if e2e_signals(m) is None and m.cycle_time is None:
            raise ConfigError(path, "map.node", f"sends {m.name}, which has no GenMsgCycleTime in the DBC",
                              "cyclic messages only")

    rx = sorted({r.message for r in cells + temps} | {r.message for r in scalars.values()}
                | {m for msgs in board_messages for m in msgs} | ({charger} if charger else set()))
    for name in rx:
        msg = chk.message("inputs", name)
        if not msg.cycle_time:
            raise ConfigError(path, "inputs", f"reads {name}, which has no GenMsgCycleTime in the DBC",
                              "cyclic messages (their timeouts derive from the period)")
        if node in msg.senders:
            raise ConfigError(path, "inputs", f"reads {name}, which {node} sends itself")
    return SignalMap(
        path=path, db=db, dbc_path=dbc_path, pack=pk, node=node,
        step_period_s=_tick(path, mp, pk),
        timeout_cycles=mp.number("timeout_cycles", 1.0, 100.0),
        max_counter_delta=mp.integer("max_counter_delta", 1, 14),
        cells=cells, temps=temps, board_status=board_status, board_messages=board_messages,
        scalars=scalars, charger_message=charger, feedback_source=feedback, out_signals=out_signals,
        fault_bits=fault_bits, warn_bits=warn_bits, bal_masks=bal_masks, diag_cells=diag_cells,
        diag_temps=diag_temps, rx_messages=rx, tx_messages=[m.name for m in tx])
