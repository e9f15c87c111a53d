"""Generate ``docs/can.md`` from the DBC (``bms can-doc``): messages, signals, E2E profile, bus load."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cantools.database.can import Database, Message, Signal

from bms.can.dbc import DEFAULT_DBC_PATH, bitrate_bps, cycle_time_s, database, e2e_signals, frames_per_cycle

DEFAULT_DOC_PATH = DEFAULT_DBC_PATH.parents[1] / "docs" / "can.md"


def frame_bits(dlc: int, extended: bool = False, worst_case_stuffing: bool = True) -> int:
    """Bits on the wire of a classic CAN data frame, interframe space included.

    Standard: 47 + 8*dlc bits (SOF, 11-bit ID, RTR, IDE, r0, DLC, data, CRC 15, delimiters, ACK, EOF 7, IFS 3);
    extended: 67 + 8*dlc. Worst-case stuffing adds floor((n_stuffable - 1) / 4) bits, n_stuffable =
    34 + 8*dlc (standard) or 54 + 8*dlc (extended): the bits from SOF to the end of the CRC.
    """
    overhead, stuffable = (67, 54) if extended else (47, 34)
    bits = overhead + 8 * dlc
    if worst_case_stuffing:
        bits += (stuffable + 8 * dlc - 1) // 4
    return bits


@dataclass(frozen=True)
class LoadRow:
    message: str
    frames_per_s: float
    bits_per_frame: int
    bits_per_s: float


def bus_load(db: Database | None = None, worst_case_stuffing: bool = True) -> tuple[list[LoadRow], float]:
    """Per-message load rows and the total bus load as a fraction of the DBC's bit rate.

    frames/s = frames per cycle (one per multiplexer value) / GenMsgCycleTime; messages without a
    cycle time add nothing (event messages are outside this estimate).
    """
    db = db or database()
    rows = []
    for m in sorted(db.messages, key=lambda m: m.frame_id):
        period = cycle_time_s(m)
        if not period:
            continue
        fps = frames_per_cycle(m) / period
        bits = frame_bits(m.length, m.is_extended_frame, worst_case_stuffing)
        rows.append(LoadRow(m.name, fps, bits, fps * bits))
    return rows, sum(r.bits_per_s for r in rows) / bitrate_bps(db)


def _num(x) -> str:
    if x is None:
        return ""
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    return f"{x:g}" if isinstance(x, float) else str(x)


def _choices(s: Signal) -> str:
    if not s.choices:
        return ""
    return ", ".join(f"{k}={v}" for k, v in sorted(s.choices.items()))


def _byte_order(s: Signal) -> str:
    return "Intel" if s.byte_order == "little_endian" else "Motorola"


def _mux(s: Signal) -> str:
    if s.is_multiplexer:
        return "M"
    return ",".join(str(v) for v in s.multiplexer_ids) if s.multiplexer_ids else ""


def _signal_table(msg: Message) -> list[str]:
    out = ["| signal | mux | start | len | order | signed | scale | offset | min | max | unit | start value | values | comment |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in msg.signals:
        out.append(
            f"| {s.name} | {_mux(s)} | {s.start} | {s.length} | {_byte_order(s)} | {'yes' if s.is_signed else 'no'} "
            f"| {_num(s.scale)} | {_num(s.offset)} | {_num(s.minimum)} | {_num(s.maximum)} | {s.unit or ''} "
            f"| {_num(s.raw_initial)} | {_choices(s)} | {s.comment or ''} |")
    return out


def _compress(msg: Message) -> bool:
    """Large multiplexed messages whose multiplexed signals all share one layout per slot are summarized."""
    return len(msg.signals) > 24


def _summary_table(msg: Message) -> list[str]:
    """One row per non-multiplexed signal and per slot layout of multiplexed ones (names listed as a range)."""
    groups: dict[tuple, list[Signal]] = {}
    order: list[tuple] = []
    for s in msg.signals:
        if s.multiplexer_ids and not s.is_multiplexer:
            key = (s.start, s.length, s.byte_order, s.is_signed, s.scale, s.offset, s.minimum, s.maximum, s.unit,
                   s.raw_initial, _choices(s), s.name.rstrip("0123456789"))
        else:
            key = (s.name,)
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(s)
    out = ["| signal(s) | mux | start | len | order | signed | scale | offset | min | max | unit | start value | values |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for key in order:
        sigs = groups[key]
        s = sigs[0]
        names = s.name if len(sigs) == 1 else f"{s.name}, {sigs[1].name} ... {sigs[-1].name} ({len(sigs)} signals)"
        muxes = sorted(v for g in sigs for v in (g.multiplexer_ids or []))
        mux = "M" if s.is_multiplexer else (f"{muxes[0]}..{muxes[-1]}" if len(muxes) > 1 else _mux(s))
        out.append(
            f"| {names} | {mux} | {s.start} | {s.length} | {_byte_order(s)} | {'yes' if s.is_signed else 'no'} "
            f"| {_num(s.scale)} | {_num(s.offset)} | {_num(s.minimum)} | {_num(s.maximum)} | {s.unit or ''} "
            f"| {_num(s.raw_initial)} | {_choices(s)} |")
    return out


def render(db: Database | None = None, dbc_name: str = "dbc/bms_fil.dbc") -> str:
    """The whole ``docs/can.md`` text."""
    db = db or database()
    rate = bitrate_bps(db)
    rows, load = bus_load(db, worst_case_stuffing=True)
    _, load_nominal = bus_load(db, worst_case_stuffing=False)
    msgs = sorted(db.messages, key=lambda m: m.frame_id)
    out = [
        "# CAN bus (generated)",
        "",
        f"Generated from `{dbc_name}` by `bms can-doc`; do not edit by hand (a test checks it is up to date).",
        "",
        (db.dbc.attributes["BusType"].value if db.dbc and "BusType" in db.dbc.attributes else "CAN")
        + f" at {rate // 1000} kbit/s, {len(msgs)} messages, {sum(len(m.signals) for m in msgs)} signals.",
        "",
        "Conventions",
        "",
        "- Current is positive in charge. Cell, sensor and board indices are 0-based.",
        "- A multiplexed message sends every multiplexer value once per cycle time.",
        "- `INVALID` in a signal's value table is its invalid marker (e.g. a cell voltage that could not be measured).",
        "- Raw values outside a signal's [min, max] or equal to its INVALID marker are rejected by the BMS decoder "
        "(per-value validity flag, `bms.can.codec`).",
        "",
        "## Frame design",
        "",
        "- CMU board b (0..11) owns three IDs: `CMUbb_CellV` (multiplexer = cell group g 0..3, slots k 0..3 carry "
        "`CellV_<16b+4g+k>`, 13 bits at 1 mV, 8191 = INVALID), `CMUbb_Temps` (group g 0..1, slots k 0..3 carry "
        "`Temp_<8b+4g+k>`, 9 bits at 0.5 degC from -55, 511 = INVALID) and `CMUbb_Status` (bleed feedback, board "
        "temperature, open-wire mask, alive counter). Each board has its own IDs, so no two nodes ever send the same ID.",
        "- Temperature readings span the NTC front end's whole range, wider than any real cell temperature: an open "
        "sensor reads the bottom, a shorted one the top, beyond the TEMP_SENSOR_OPEN / TEMP_SENSOR_SHORT thresholds "
        "(which also bound the readings the BMS uses; a test checks them against the DBC).",
        "- `ISENSE_Contactors`: the auxiliary contacts of the negative, precharge and positive contactors as read by the "
        "junction-box sensor (the contact positions: a welded contactor reads CLOSED), checked against the BMS's commands.",
        "- `BMS_Balancing` is multiplexed by board: frame b carries the 16-bit bleed mask `BalMask_CMUbb` (bit k = cell 16b+k).",
        "- `BMS_CellDiag` repeats every cell voltage (`Diag_CellV_<i>`) and temperature (`Diag_Temp_<i>`) as used by the BMS.",
        "- `BMS_Faults` / `BMS_Warnings`: `Flt_<NAME>` / `Wrn_<NAME>` at bit position = diagnostic id (bits 0..31 reserved "
        "for them), `BMS_MaxSeverity`, `BMS_CmuTimeoutMask` (bit b = board b silent).",
        "- ISENSE and charger messages use Motorola byte order (as the usual sensor and charger protocols do); "
        "all others are Intel.",
        "",
        "## E2E protection",
        "",
        "Messages with `<Message>_Counter` and `<Message>_CRC` signals: "
        + ", ".join(f"`{m.name}`" for m in msgs if e2e_signals(m)) + ".",
        "",
        "- CRC-8 SAE J1850: polynomial 0x1D, initial value 0xFF, final XOR 0xFF, MSB first (AUTOSAR `Crc_CalculateCRC8`).",
        "- CRC input: data ID low byte (frame ID bits 0..7), data ID high byte (frame ID bits 8..15), then payload "
        "bytes 0..DLC-1 in order, skipping the CRC byte (byte 7 in every E2E message of this DBC).",
        "- Alive counter: 4 bits, +1 modulo 16 per transmitted frame; the receiver accepts a delta of 1..max_delta, "
        "flags 0 as a repeated frame and larger deltas as a lost sequence (`bms.can.e2e.counter_status`).",
        "",
        "## Messages",
        "",
        "| ID | name | sender | receivers | DLC | period (ms) | frames/cycle | comment |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in msgs:
        ct = m.cycle_time or ""
        out.append(f"| 0x{m.frame_id:03X} | {m.name} | {', '.join(sorted(m.senders))} | {', '.join(sorted(m.receivers))} | {m.length} "
                   f"| {ct} | {frames_per_cycle(m)} | {m.comment or ''} |")
    out += ["", "## Bus load", "",
            f"Classic CAN frame length including interframe space; worst case with maximum bit stuffing at {rate} bit/s.",
            "",
            "| message | frames/s | bits/frame | kbit/s |", "|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r.message} | {r.frames_per_s:g} | {r.bits_per_frame} | {r.bits_per_s / 1000:.1f} |")
    out += ["", f"**Total: {sum(r.frames_per_s for r in rows):g} frames/s, {load * 100:.1f} % bus load worst case "
            f"({load_nominal * 100:.1f} % without stuffing).**", "", "## Signals", ""]
    for m in msgs:
        out += [f"### 0x{m.frame_id:03X} {m.name}", "", m.comment or "", ""]
        out += _summary_table(m) if _compress(m) else _signal_table(m)
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def write(path: Path | str = DEFAULT_DOC_PATH, db: Database | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(db), encoding="utf-8")
    return path


def is_up_to_date(path: Path | str = DEFAULT_DOC_PATH, db: Database | None = None) -> bool:
    path = Path(path)
    return path.is_file() and path.read_text(encoding="utf-8") == render(db)
