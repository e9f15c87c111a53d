"""docs/signal-map.md: its worked example (a vendor DBC with renamed cell-voltage frames and
signals) loads and resolves every cell to the vendor's names; a misspelt signal is refused."""

from __future__ import annotations

import re
from pathlib import Path

import cantools
import pytest

from bms.config import ConfigError
from bms.signal_map import load_map

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "signal-map.md"
DEFAULT = ROOT / "bms" / "maps" / "bms_fil_heavy_duty_192s.toml"


def _vendor_dbc(path: Path) -> None:
    """dbc/bms_fil.dbc with the CMU cell-voltage messages and signals renamed the vendor's way."""
    db = cantools.database.load_file(str(ROOT / "dbc" / "bms_fil.dbc"))
    for msg in db.messages:
        m = re.fullmatch(r"CMU(\d\d)_CellV", msg.name)
        if not m:
            continue
        board = int(m.group(1))
        msg.name = f"BMU{board}_Voltages"
        first = min(int(s.name[6:]) for s in msg.signals if re.fullmatch(r"CellV_\d{3}", s.name))
        for s in msg.signals:
            if re.fullmatch(r"CellV_\d{3}", s.name):
                s.name = f"B{board:02d}_V{int(s.name[6:]) - first:02d}"
    path.write_text(db.as_dbc_string())


def _example_map(tmp: Path, signal_template: str | None = None) -> Path:
    block = re.search(r"```toml\n(.*?)```", DOC.read_text(), re.S).group(1)
    if signal_template:
        block = block.replace('signal = "B{board:02d}_V{k:02d}"', f'signal = "{signal_template}"')
    default = DEFAULT.read_text()
    # "every other section as in the default map": the default file without the two replaced sections
    rest = re.sub(r"\[map\].*?(?=\n# ---- inputs)", "", default, flags=re.S)
    rest = re.sub(r"\[inputs\.cells\].*?(?=\n\[inputs\.temps\])", "", rest, flags=re.S)
    path = tmp / "vendor_map.toml"
    path.write_text(block + "\n" + rest)
    return path


def test_doc_example_map_loads_and_reads_cells_from_the_vendor_frames(tmp_path):
    _vendor_dbc(tmp_path / "vendor.dbc")
    smap = load_map(_example_map(tmp_path))
    assert len(smap.cells) == 192
    assert (smap.cells[0].message, smap.cells[0].signal) == ("BMU0_Voltages", "B00_V00")
    assert (smap.cells[191].message, smap.cells[191].signal) == ("BMU11_Voltages", "B11_V15")
    assert all(r.message.startswith("BMU") for r in smap.cells)
    assert smap.db.get_message_by_name("BMU3_Voltages").frame_id == \
        load_map().db.get_message_by_name("CMU03_CellV").frame_id  # IDs come from the DBC only


def test_misspelt_signal_names_the_file_and_key(tmp_path):
    _vendor_dbc(tmp_path / "vendor.dbc")
    path = _example_map(tmp_path, signal_template="B{board:02d}_V{k:03d}")
    with pytest.raises(ConfigError) as e:
        load_map(path)
    assert "vendor_map.toml" in str(e.value) and "inputs.cells" in str(e.value)
