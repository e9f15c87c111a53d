"""Bad configuration and bad data files fail with messages naming file, key/column and range."""

import gzip

import numpy as np
import pytest

from bms.config import ConfigError
from bms.labdata import DataError, load_csv
from bms.profile import PROFILE_DIR, load_profile


def _shipped_text():
    return (PROFILE_DIR / "winston_lfp100.toml").read_text()


def test_profile_missing_key_names_file_and_key(tmp_path):
    text = _shipped_text()
    lines = [ln for ln in text.splitlines() if not ln.startswith("capacity_ah")]
    f = tmp_path / "bad.toml"
    f.write_text("\n".join(lines))
    with pytest.raises(ConfigError) as exc:
        load_profile(f)
    msg = str(exc.value)
    assert str(f) in msg and "cell.capacity_ah" in msg and "missing" in msg


@pytest.mark.parametrize("key,value,fragment", [
    ("capacity_ah", "-5.0", "(0.0, 10000.0]"),
    ("coulombic_efficiency", "1.5", "[0.8, 1.0]"),
    ("v_max_v", "\"high\"", "[2.0, 5.0]"),
])
def test_profile_out_of_range_names_range(tmp_path, key, value, fragment):
    out = []
    for ln in _shipped_text().splitlines():
        out.append(f"{key} = {value}" if ln.startswith(f"{key} =") else ln)
    f = tmp_path / "bad.toml"
    f.write_text("\n".join(out))
    with pytest.raises(ConfigError) as exc:
        load_profile(f)
    msg = str(exc.value)
    assert str(f) in msg and key in msg and fragment in msg


def test_profile_table_shape_and_range_checked(tmp_path):
    text = _shipped_text().replace("r0_dis_ohm = [", "r0_dis_ohm = [-1.0, ", 1)
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_profile(f)
    assert "tables.r0_dis_ohm" in str(exc.value)


def test_unknown_profile_lists_shipped():
    with pytest.raises(FileNotFoundError, match="winston_lfp100"):
        load_profile("no_such_cell")


def test_csv_missing_columns(tmp_path):
    f = tmp_path / "x.csv"
    f.write_text("time_s,current_a\n0,1\n1,2\n")
    with pytest.raises(DataError, match="missing column.*voltage_v.*temperature_c"):
        load_csv(f)


def test_csv_non_monotonic_time(tmp_path):
    f = tmp_path / "x.csv.gz"
    f.write_bytes(gzip.compress(b"time_s,current_a,voltage_v,temperature_c\n0,0,3.3,25\n1,0,3.3,25\n1,0,3.3,25\n"))
    with pytest.raises(DataError, match="not strictly increasing at row 4"):
        load_csv(f)


def test_csv_requires_soc_ref_when_scoring(tmp_path):
    f = tmp_path / "x.csv"
    f.write_text("time_s,current_a,voltage_v,temperature_c\n0,0,3.3,25\n1,0,3.3,25\n")
    assert len(load_csv(f)) == 2
    with pytest.raises(DataError, match="soc_ref"):
        load_csv(f, require_soc_ref=True)


def _without_table(text: str, key: str) -> str:
    """The profile text with its ``key`` table (a multi-line array) removed."""
    out, skip = [], False
    for ln in text.splitlines():
        if ln.startswith(f"{key} = ["):
            skip = True
            continue
        if skip:
            skip = not (ln.startswith("]") and not ln.startswith("],"))
            continue
        out.append(ln)
    return "\n".join(out)


SOC_FACTORS = ("r0_soc_factor", "rc_soc_factor")


def _text_with_rc_factor() -> str:
    """The shipped profile with an RC SOC factor table (a copy of its r0_soc_factor)."""
    import tomllib

    import tomli_w

    doc = tomllib.loads(_shipped_text())
    doc["tables"]["rc_soc_factor"] = doc["tables"]["r0_soc_factor"]
    return tomli_w.dumps(doc)


@pytest.mark.parametrize("key", SOC_FACTORS)
def test_profile_without_soc_factor_loads_with_factor_one(tmp_path, key):
    """Profiles written before the SOC factors existed load with the factor 1 (no SOC dependence)."""
    f = tmp_path / "old.toml"
    f.write_text(_without_table(_text_with_rc_factor(), key))
    prof = load_profile(f)
    assert f"{key} = [" not in f.read_text()
    assert np.array_equal(getattr(prof.params, key), np.ones((prof.temp_c.size, prof.soc.size)))
    other = load_profile("winston_lfp100").params  # its r0_soc_factor, also the rc one above
    assert all(np.array_equal(getattr(prof.params, k), other.r0_soc_factor) for k in SOC_FACTORS if k != key)


@pytest.mark.parametrize("key", SOC_FACTORS)
@pytest.mark.parametrize("change,fragment", [("zero", "[0.1, 10.0]"), ("row", "shape")])
def test_profile_soc_factor_range_and_shape_named(tmp_path, change, fragment, key):
    import tomllib

    import tomli_w

    doc = tomllib.loads(_text_with_rc_factor())
    f_tab = doc["tables"][key]
    if change == "zero":
        f_tab[0][0] = 0.0
    else:
        del f_tab[-1]
    f = tmp_path / "bad.toml"
    f.write_text(tomli_w.dumps(doc))
    with pytest.raises(ConfigError) as exc:
        load_profile(f)
    msg = str(exc.value)
    assert str(f) in msg and f"tables.{key}" in msg and fragment in msg


@pytest.mark.parametrize("key, value", [("r_v2", 0.0), ("r_v2", 1e-310), ("tau_innov_s", 1e-310), ("tau_innov_s", 1e-4)])
def test_tuning_that_would_divide_by_almost_zero_is_refused_by_name(key, value):
    from bms.soc.estimator import tuning_vector

    p = load_profile("winston_lfp100").params
    with pytest.raises(ValueError, match=rf"tuning {key}=.* must be >= "):
        tuning_vector(p, **{key: value})


def test_tuning_floors_let_zero_switch_averaging_off_and_keep_soc_finite():
    from bms.evaluate import evaluate

    # tau_innov_s = 0 is "no averaging", not a division; the smallest allowed values run finite
    for tuning in ({"tau_innov_s": 0.0, "q_soc_adapt_per_s": 1e-3}, {"tau_innov_s": 1e-3, "q_soc_adapt_per_s": 1e-3},
                   {"r_v2": 1e-12}):
        res = evaluate("winston_lfp100", "winston_lfp100/udds_P25.csv.gz", tuning=tuning)
        assert np.all(np.isfinite(res.soc_est)), tuning
