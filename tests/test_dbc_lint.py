"""Lint of dbc/bms_fil.dbc and of the Python sources that must not restate it."""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path

import cantools
import pytest

from bms import cli
from bms.can import dbc, docgen
from bms.can.dbc import DEFAULT_DBC_PATH

ROOT = Path(__file__).resolve().parents[1]
DB = dbc.database()
MESSAGES = sorted(DB.messages, key=lambda m: m.frame_id)
SIGNALS = [(m, s) for m in MESSAGES for s in m.signals]


def test_parses_strictly_from_the_file():
    db = cantools.database.load_file(str(DEFAULT_DBC_PATH), database_format="dbc", strict=True)
    assert len(db.messages) == len(MESSAGES) > 0
    assert {n.name for n in db.nodes} == {"BMS", "CMU", "ISENSE", "VCU", "CHARGER"}


def test_unique_ids_and_names():
    ids = [(m.frame_id, m.is_extended_frame) for m in MESSAGES]
    assert len(set(ids)) == len(ids)
    assert len({m.name for m in MESSAGES}) == len(MESSAGES)
    names = [s.name for _, s in SIGNALS]
    assert len(set(names)) == len(names), "signal names are unique across the DBC (codec slots are keyed by name)"
    assert all(not m.is_extended_frame and m.frame_id <= 0x7FF and m.length <= 8 for m in MESSAGES)


def _bits(sig) -> set[int]:
    """Payload bit numbers (byte * 8 + bit in byte) occupied by a signal."""
    if sig.byte_order == "little_endian":
        return set(range(sig.start, sig.start + sig.length))
    out, b = set(), sig.start
    for _ in range(sig.length):  # Motorola: from the MSB downwards, then bit 7 of the next byte
        out.add(b)
        b = b - 1 if b % 8 else b + 15
    return out


def test_no_overlapping_signals_per_multiplexer_value():
    for m in MESSAGES:
        mux_vals = dbc.mux_values(m) or [None]
        for v in mux_vals:
            present = [s for s in m.signals if not s.multiplexer_ids or v in s.multiplexer_ids]
            used: dict[int, str] = {}
            for s in present:
                bits = _bits(s)
                assert max(bits) < 8 * m.length and min(bits) >= 0, f"{m.name}.{s.name} outside the payload"
                clash = bits & used.keys()
                assert not clash, f"{m.name} mux {v}: {s.name} overlaps {used[min(clash)]}"
                used.update({b: s.name for b in bits})


def test_overlap_checker_sees_motorola_overlap():
    db = cantools.database.load_string(
        'VERSION ""\nBU_: A\nBO_ 1 M: 8 A\n SG_ X : 7|12@0+ (1,0) [0|1] "-" A\n SG_ Y : 8|4@1+ (1,0) [0|1] "-" A\n'
        ' SG_ Z : 13|2@1+ (1,0) [0|1] "-" A\n', database_format="dbc", strict=False)
    x, y, z = db.messages[0].signals
    assert _bits(x) == set(range(0, 8)) | set(range(12, 16))  # byte 0, then the high nibble of byte 1
    assert not _bits(x) & _bits(y) and _bits(x) & _bits(z)


def test_senders_receivers_and_cycle_times():
    nodes = {n.name for n in DB.nodes}
    send_type = DB.dbc.attribute_definitions["GenMsgSendType"]
    for m in MESSAGES:
        assert len(m.senders) == 1 and m.senders[0] in nodes, m.name
        assert m.receivers and set(m.receivers) <= nodes and m.senders[0] not in m.receivers, m.name
        attrs = m.dbc.attributes
        kind = send_type.choices[attrs["GenMsgSendType"].value] if "GenMsgSendType" in attrs else "NoMsgSendType"
        if kind == "Cyclic":
            assert m.cycle_time and m.cycle_time > 0, f"{m.name} is cyclic without GenMsgCycleTime"
        assert m.comment, m.name
    assert all(send_type.choices[m.dbc.attributes["GenMsgSendType"].value] == "Cyclic" for m in MESSAGES)


def test_every_signal_has_unit_range_start_value_and_comment():
    for m, s in SIGNALS:
        where = f"{m.name}.{s.name}"
        assert s.unit, f"{where}: no unit ('-' for dimensionless)"
        assert s.minimum is not None and s.maximum is not None and s.minimum < s.maximum, where
        lo = math.ceil((s.minimum - s.offset) / s.scale - 1e-9)
        hi = math.floor((s.maximum - s.offset) / s.scale + 1e-9)
        f_lo = -(1 << (s.length - 1)) if s.is_signed else 0
        f_hi = (1 << (s.length - 1)) - 1 if s.is_signed else (1 << s.length) - 1
        assert f_lo <= lo <= hi <= f_hi, f"{where}: range not representable in {s.length} bits"
        assert s.raw_initial is not None, f"{where}: no GenSigStartValue"
        assert lo <= s.raw_initial <= hi or s.raw_initial in (s.choices or {}), f"{where}: start value out of range"
        assert s.comment, where
        for raw in s.choices or {}:
            assert f_lo <= raw <= f_hi, f"{where}: value table entry {raw} not representable"


STATE_NAME = re.compile(r"(State|Request|Severity)$")


def test_value_tables_on_state_and_flag_signals():
    for m, s in SIGNALS:
        if STATE_NAME.search(s.name) or s.length == 1:
            assert s.choices, f"{m.name}.{s.name} needs a value table"
    assert dict(dbc.signal("BMS_State", "BMS_OpState").choices) == {
        0: "INIT", 1: "STANDBY", 2: "PRECHARGE", 3: "DRIVE", 4: "CHARGE", 5: "ERROR"}
    assert dict(dbc.signal("VCU_Request", "VCU_OpRequest").choices) == {0: "STANDBY", 1: "DRIVE", 2: "CHARGE"}
    assert dict(dbc.signal("BMS_Faults", "BMS_MaxSeverity").choices) == {0: "NONE", 1: "WARNING", 2: "FAULT", 3: "CRITICAL"}


def test_fault_and_warning_bits_follow_the_diagnostics_table():
    from bms.diag_table import FAULTS

    for msg, prefix in (("BMS_Faults", "Flt_"), ("BMS_Warnings", "Wrn_")):
        bits = {s.name[len(prefix):]: s.start for s in dbc.message(msg).signals if s.name.startswith(prefix)}
        assert bits == {f.name: f.id for f in FAULTS}, msg
        assert all(s.length == 1 and s.byte_order == "little_endian" and s.start < 32
                   for s in dbc.message(msg).signals if s.name.startswith(prefix))


def test_cell_and_temperature_coverage():
    cells = sorted(s.name for _, s in SIGNALS if re.fullmatch(r"CellV_\d{3}", s.name))
    temps = sorted(s.name for _, s in SIGNALS if re.fullmatch(r"Temp_\d{3}", s.name))
    assert cells == [f"CellV_{i:03d}" for i in range(192)] and temps == [f"Temp_{i:03d}" for i in range(96)]
    diag = {s.name for s in dbc.message("BMS_CellDiag").signals}
    assert {f"Diag_{n}" for n in cells + temps} <= diag
    for m, s in SIGNALS:
        if re.fullmatch(r"(Diag_)?CellV_\d{3}", s.name):
            assert s.scale <= 0.001 and s.unit == "V" and s.choices and "INVALID" in s.choices.values()
        if re.fullmatch(r"(Diag_)?Temp_\d{3}", s.name):
            assert s.scale <= 1 and s.unit == "degC" and s.choices and "INVALID" in s.choices.values()


def test_bus_load_is_well_below_capacity():
    _, load = docgen.bus_load(DB, worst_case_stuffing=True)
    assert 0.0 < load < 0.5
    assert docgen.frame_bits(8) == 135 and docgen.frame_bits(8, worst_case_stuffing=False) == 111
    assert docgen.frame_bits(8, extended=True, worst_case_stuffing=False) == 131


def test_docs_can_md_is_up_to_date(tmp_path):
    assert docgen.is_up_to_date(ROOT / "docs" / "can.md"), "docs/can.md is stale: run `bms can-doc`"
    assert cli.main(["can-doc", "--check"]) == 0
    stale = tmp_path / "can.md"
    stale.write_text("old\n")
    assert cli.main(["can-doc", "--check", "--out", str(stale)]) == 1
    assert cli.main(["can-doc", "--out", str(stale)]) == 0 and docgen.is_up_to_date(stale)


# ---- the DBC is not restated in Python ---------------------------------------------------------
FRAME_IDS = {m.frame_id for m in MESSAGES}
PERIODS = {m.cycle_time for m in MESSAGES if m.cycle_time}
PERIOD_VALUES = {float(p) for p in PERIODS} | {p / 1000.0 for p in PERIODS}
SCALES = {float(s.scale) for _, s in SIGNALS if s.scale != 1}
NUM = r"([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
RULES = [
    ("frame ID as hex literal", re.compile(r"\b0[xX][0-9a-fA-F]+\b"), lambda v: int(v, 16) in FRAME_IDS),
    ("literal CAN ID", re.compile(r"\b(?:arbitration_id|frame_id|can_id)\s*(?:==?|!=)\s*(\d+)\b"), lambda v: True),
    ("CAN period literal", re.compile(
        r"\b\w*(?:cycle_time|(?:tx|rx|msg|message|frame|can|send)\w*(?:period|cycle|interval))\w*\s*=\s*" + NUM),
     lambda v: float(v) in PERIOD_VALUES),
    ("send_periodic literal", re.compile(r"send_periodic\([^,()]*,\s*" + NUM), lambda v: True),
    ("DBC scaling literal", re.compile(r"\braw\w*\s*[*/]\s*" + NUM + r"|\b" + NUM + r"\s*\*\s*raw\w*"
                                       r"|\b(?:scale|factor|resolution)\w*\s*=\s*" + NUM),
     lambda *v: any(x is not None and float(x) in SCALES for x in v)),
]


def _violations(text: str, where: str = "<text>") -> list[str]:
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        code = line.split("#", 1)[0]
        for what, rx, bad in RULES:
            for mt in rx.finditer(code):
                groups = [g for g in mt.groups()] or [mt.group(0)]
                if bad(*groups):
                    out.append(f"{where}:{lineno}: {what}: {line.strip()}")
    return out


@pytest.mark.parametrize("snippet", [
    "bus.send(can.Message(arbitration_id=0x110, data=d))",
    "if msg.arbitration_id == 272:",
    "tx_period_s = 0.01",
    "task = bus.send_periodic(msg, 0.1)",
    "cell_v = raw * 0.001",
    "cycle_time = 100",
])
def test_source_scan_catches_restated_dbc_facts(snippet):
    assert _violations(snippet)


def test_source_scan_accepts_ordinary_code():
    ok = "crc = _TABLE[(crc ^ 0xFF) & 0xFF]\nmeasurement_period_s = 0.5\ndt_s = 0.01\nkey = frame_id | flag"
    assert not _violations(ok)


def test_python_sources_do_not_restate_the_dbc():
    found = []
    for top in ("bms", "hil"):
        for path in sorted((ROOT / top).rglob("*.py")):
            found += _violations(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    assert not found, "DBC facts restated in Python (read them from bms.can.dbc):\n" + "\n".join(found)
