"""Signal map: the default map wires bms_fil.dbc to heavy_duty_192s; bad maps give errors that
name the file and the key."""

from __future__ import annotations

import pytest

from bms.config import ConfigError
from bms.signal_map import MAP_DIR, QUANTITIES, load_map

DEFAULT = MAP_DIR / "bms_fil_heavy_duty_192s.toml"


def test_default_map_expands_every_cell_sensor_and_board():
    m = load_map()
    pk = m.pack
    assert len(m.cells) == pk.n_series == 192 and len(m.temps) == pk.n_temps == 96
    assert (m.cells[0].message, m.cells[0].signal) == ("CMU00_CellV", "CellV_000")
    assert (m.cells[17].message, m.cells[17].signal) == ("CMU01_CellV", "CellV_017")
    assert (m.temps[95].message, m.temps[95].signal) == ("CMU11_Temps", "Temp_095")
    assert m.board_messages[3] == ["CMU03_CellV", "CMU03_Status", "CMU03_Temps"]
    assert m.board_status[3].signal == "CMU03_Error"
    assert m.scalars["pack_i_a"].signal == "ISENSE_Current" and m.scalars["vcu_request"].message == "VCU_Request"
    assert set(m.fault_bits.values()) == set(range(28)) and m.fault_bits["Flt_COMM_VCU"] == 21
    assert m.bal_masks[11] == "BalMask_CMU11" and m.diag_cells[191] == "Diag_CellV_191"
    assert m.messages_of("state") == ["BMS_State"]
    # every signal each cell maps to sits in the message of its own board
    for c, ref in enumerate(m.cells):
        sig = m.db.get_message_by_name(ref.message).get_signal_by_name(ref.signal)
        assert ref.message == f"CMU{c // 16:02d}_CellV" and sig.unit == "V"
    assert set(m.sources()) == {f"CMU{b:02d}" for b in range(12)} | {"ISENSE", "VCU", "CHARGER"}


def test_every_output_unit_matches_the_dbc():
    m = load_map()
    for sig, qty in m.out_signals.items():
        msg = next(x for x in m.db.messages if sig in {s.name for s in x.signals})
        assert (msg.get_signal_by_name(sig).unit or "-") == QUANTITIES[qty]


def variant(tmp_path, old: str, new: str):
    text = DEFAULT.read_text()
    assert old in text, old
    p = tmp_path / "variant.toml"
    p.write_text(text.replace(old, new))
    return p


@pytest.mark.parametrize("old, new, key, words", [
    ('message = "CMU{board:02d}_CellV"', 'message = "CMU{board:02d}_Cells"', "inputs.cells.message", "not in the DBC"),
    ('signal = "CellV_{cell:03d}"', 'signal = "CellV_{k:03d}"', "inputs.cells.signal", "not in message"),
    ('signal = "CellV_{cell:03d}"', 'signal = "CellV_{celll:03d}"', "inputs.cells.signal", "bad template"),
    ('BMS_SOCMin = "soc_min_pct"', 'BMS_SOCMin = "pack_v"', "outputs.signals.BMS_SOCMin", "a quantity in '%'"),
    ('BMS_SOCMin = "soc_min_pct"', 'BMS_SOCMin = "soc_minimum"', "outputs.signals.BMS_SOCMin", "one of"),
    ('BMS_SOH = "soh_pct"\n', '', "outputs", "BMS_SOH"),
    ('node = "BMS"', 'node = "BMS"\nstep_period_s = 0.02', "map.step_period_s", "fast task period is 0.01 s"),
    ('node = "BMS"', 'node = "ECU"', "map.node", "not a node"),
    ('pack_i_a = "ISENSE_Current"', 'pack_i_a = "ISENSE_Curent"', "inputs.current.pack_i_a", "not in message"),
    ('source = "message"', 'source = "gpio"', "inputs.contactor_feedback.source", "message, command, external"),
    ('source = "message"', 'source = "command"', "inputs.contactor_feedback.message", 'source = "message"'),
    ('pos = "ISENSE_AuxPos"', 'pos = "ISENSE_AuxPlus"', "inputs.contactor_feedback.pos", "not in message"),
    ('fault = "Flt_{name}"', 'fault = "Fault_{name}"', "outputs.faults.fault", "Fault_CELL_OV"),
])
def test_bad_maps_name_the_file_and_key(tmp_path, old, new, key, words):
    p = variant(tmp_path, old, new)
    with pytest.raises(ConfigError) as exc:
        load_map(p)
    assert exc.value.key == key and str(p) in str(exc.value) and words in str(exc.value)


def test_map_reading_a_message_the_node_sends_is_rejected(tmp_path):
    p = variant(tmp_path, 'message = "CHARGER_Status"', 'message = "BMS_State"')
    with pytest.raises(ConfigError, match="BMS_State, which BMS sends itself"):
        load_map(p)


def test_a_pack_whose_cells_the_dbc_does_not_carry_is_rejected(tmp_path):
    pack = (MAP_DIR.parent / "packs" / "heavy_duty_192s.toml").read_text()
    pack = pack.replace("n_series = 192", "n_series = 208").replace("count = 12", "count = 13")
    pp = tmp_path / "pack208.toml"
    pp.write_text(pack)
    with pytest.raises(ConfigError, match="CMU12_CellV"):
        load_map(pack=str(pp))


def test_unknown_map_name_lists_the_shipped_ones():
    with pytest.raises(FileNotFoundError, match="bms_fil_heavy_duty_192s"):
        load_map("no_such_map")
