"""Pack TOML: the shipped heavy_duty_192s, the parameter arrays, and validation errors that name
the file, the key and the allowed range. Also: docs/faults.md is current."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from bms import diag_table as T
from bms import faultdoc
from bms import layout as L
from bms.config import ConfigError
from bms.pack import PACK_DIR, load_pack

SHIPPED = PACK_DIR / "heavy_duty_192s.toml"


@pytest.fixture(scope="module")
def pack():
    return load_pack("heavy_duty_192s")


def test_heavy_duty_192s(pack):
    assert (pack.n_series, pack.n_parallel, pack.n_boards) == (192, 2, 12)
    assert (pack.cells_per_board, pack.temps_per_board, pack.n_temps) == (16, 8, 96)
    assert 192 * 3.2 == pytest.approx(614.4)  # nominal pack voltage ~615 V
    energy_kwh = 192 * 2 * 100.0 * 3.2 / 1000.0  # rated 100 Ah cells
    assert energy_kwh == pytest.approx(122.9, abs=0.1)
    lim = pack.profile.limits
    f = pack.faults
    assert f["CELL_OV"].fault <= lim.v_max_v and f["CELL_UV"].fault >= lim.v_min_v
    assert f["CELL_DEEP_DISCHARGE"].fault == lim.v_damage_v
    assert f["CELL_UT_CHG"].fault == lim.temp_min_chg_c == 0.0
    assert f["CELL_OT_DIS"].critical <= lim.temp_max_c
    assert pack.pp[L.P_I_CHG_MAX_A] == 3 * 2 * 100.0  # 3C, 20-minute fast charge
    assert pack.pp[L.P_I_DIS_MAX_A] <= lim.i_max_dis_a * 2


def test_params_arrays(pack):
    prm = pack.params()
    assert prm.pp.shape == (L.NPP,) and prm.diag.shape == (T.NF, L.ND)
    assert prm.board_of_cell.shape == (192,) and prm.board_of_cell[16] == 1
    assert prm.temp_of_cell[16] == 8 and prm.temp_of_cell[191] == 95
    assert list(prm.cell_start[:3]) == [0, 16, 32] and prm.temp_start[-1] == 96
    for f in T.FAULTS:
        row = prm.diag[f.id]
        assert row[L.D_DIR] == f.direction and row[L.D_REACT] == f.reaction
        assert np.isnan(row[L.D_CRIT]) == ("c" not in f.levels)
        assert np.isnan(row[L.D_WARN]) == ("w" not in f.levels)
    assert prm.pp[L.P_BAL_STATES] == (1 << L.ST_STANDBY) | (1 << L.ST_CHARGE)


def _variant(tmp_path: Path, old: str, new: str) -> Path:
    text = SHIPPED.read_text()
    assert old in text, old
    path = tmp_path / "variant.toml"
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize("old, new, key, allowed", [
    ("n_series = 192", "n_series = 190", "boards.cells_per_board", "count * cells_per_board"),
    ("n_parallel = 2", "n_parallel = 0", "pack.n_parallel", "[1, 100]"),
    ('estimator = "ekf"', 'estimator = "magic"', "pack.estimator", "one of"),
    ("range_a = 2500.0", "range_a = -1.0", "current_sensor.range_a", "[1.0, 100000.0]"),
    ("timeout_s = 2.0", "timeout_s = 0.1", "precharge.timeout_s", "RC time"),
    ("fraction = 0.95", "fraction = 1.2", "precharge.fraction", "[0.5, 0.999]"),
    ("i_chg_max_a = 600.0", "i_chg_max_a = 900.0", "limits.i_chg_max_a", "[0.0, 600.0]"),
    ("charge    = [0.0,   0.0,   0.0,   0.0, 0.1,", "charge    = [0.0,   0.0,   0.0,   0.0, 1.1,",
     "limits.temperature.charge", "[0.0, 1.0]"),
    ('states = ["STANDBY", "CHARGE"]', 'states = ["PARKED"]', "balancing.states", "INIT"),
    ("stop_soc = 0.005", "stop_soc = 0.05", "balancing.stop_soc", "hysteresis"),
    ("warning = 3.85\nfault = 4.0", "warning = 4.05\nfault = 4.0", "faults.CELL_OV", "increasing"),
    ("warning = 3.85\nfault = 4.0", "warning = 3.85\nfault = 4.05", "faults.CELL_OV.fault", "[2.8, 4.0]"),
    ("[faults.CELL_DEEP_DISCHARGE]\nfault = 2.5", "[faults.CELL_DEEP_DISCHARGE]\nfault = 2.5\nwarning = 2.7",
     "faults.CELL_DEEP_DISCHARGE.warning", "only fault"),
    ("[faults.CELL_V_SPREAD]", "[faults.CELL_V_SPRED]\nfault = 1.0\n[faults.CELL_V_SPREAD]", "faults.CELL_V_SPRED",
     "CELL_OV"),
    ("[faults.PRECHARGE_FAIL]\nwarning = 0.5                 # one failed attempt\nfault = 2.5",
     "[faults.PRECHARGE_FAIL]\nwarning = 0.5\nfault = 3.5", "faults.PRECHARGE_FAIL.fault", "precharge.attempts"),
    ("debounce_s = 10.0", "debounce_s = -1.0", "faults.CELL_V_SPREAD.debounce_s", "[0.0, 3600.0]"),
])
def test_errors_name_file_key_and_range(tmp_path, old, new, key, allowed):
    path = _variant(tmp_path, old, new)
    with pytest.raises(ConfigError) as exc:
        load_pack(path)
    msg = str(exc.value)
    assert str(path) in msg and f"'{key}'" in msg and allowed in msg, msg


def test_missing_fault_section(tmp_path):
    text = SHIPPED.read_text()
    text = re.sub(r"\[faults\.COMM_VCU\][^\[]*", "", text)
    path = tmp_path / "p.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"'faults\.COMM_VCU' is missing"):
        load_pack(path)


def test_unknown_pack_name():
    with pytest.raises(FileNotFoundError, match="heavy_duty_192s"):
        load_pack("no_such_pack")


def test_faults_doc_is_current():
    """docs/faults.md is generated from the table: regenerate with `bms faults-doc`."""
    assert faultdoc.DOC_PATH.read_text() == faultdoc.render(load_pack(faultdoc.DEFAULT_PACK))
    text = faultdoc.DOC_PATH.read_text()
    for f in T.FAULTS:
        assert f"| {f.id} | {f.name} |" in text


def test_faults_doc_command(tmp_path, capsys):
    from bms.cli import main

    out = tmp_path / "faults.md"
    assert main(["faults-doc", "-o", str(out)]) == 0
    assert out.read_text() == faultdoc.DOC_PATH.read_text()
    assert main(["faults-doc", "--pack", "no_such_pack", "-o", str(out)]) == 2
    assert "no pack named" in capsys.readouterr().err
