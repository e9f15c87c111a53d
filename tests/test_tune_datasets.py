"""Datasets of bms tune: lab CSV windows, CAN recordings written by python-can's own writers
from lab data encoded with the DBC codec and read back through LogReader + FrameCodec, model
replay, and the errors for unusable inputs."""

from __future__ import annotations

import gzip

import can
import numpy as np
import pytest

from bms.can.codec import FrameCodec
from bms.labdata import DataError, load_csv
from bms.profile import load_profile
from bms.tune.datasets import load_dataset, parse_spec
from bms.tune.evalrun import evaluate_matrix, parse_estimator
from bms.tune.perturb import PRESETS

LAB = "a123_26650/dyn_25C_script1.csv.gz"
START, N = 9000, 900  # a drive segment (1 s samples)
Q_AH, ETA, N_PAR = 2.5906, 0.9979, 2


@pytest.fixture(scope="module")
def lab():
    d = load_csv(LAB, require_soc_ref=True)
    k = int(np.searchsorted(d.time_s - d.time_s[0], START))
    return d.slice(k, k + N + 1)


def write_log(path, lab, invalid_at=()):
    """One CAN cycle per lab sample: pack current (N_PAR cells in parallel), the four voltage
    groups of board 0 (cell 0 = the lab voltage) and its two temperature groups."""
    codec = FrameCodec(["ISENSE_Current", "CMU00_CellV", "CMU00_Temps"])
    rows, mux, keys = codec.cycle_plan()
    vals = np.zeros(codec.n_slots)
    t0 = 1_700_000_000.0
    with can.Logger(str(path)) as log:
        for k in range(len(lab)):
            vals[codec.slot("ISENSE_Current")] = lab.current_a[k] * N_PAR
            vals[codec.slots([f"CellV_{c:03d}" for c in range(16)])] = 3.3
            vals[codec.slot("CellV_000")] = np.nan if k in invalid_at else lab.voltage_v[k]
            vals[codec.slots([f"Temp_{c:03d}" for c in range(8)])] = lab.temperature_c[k]
            data, sat = codec.encode(rows, mux, vals)
            assert not sat.any()
            for j in range(rows.size):
                log.on_message_received(can.Message(timestamp=t0 + k + 0.01 + 0.002 * j, arbitration_id=int(keys[j]),
                                                    is_extended_id=False, data=bytes(data[j])))


@pytest.mark.parametrize("suffix", [".log", ".asc", ".blf"])
def test_can_log_decodes_to_the_lab_series(tmp_path, lab, suffix):
    path = tmp_path / f"rec{suffix}"
    write_log(path, lab)
    ds = load_dataset(f"{path},n_parallel={N_PAR},capacity_ah={Q_AH},eta={ETA},soc0={lab.soc_ref[0]}")
    assert ds.kind == "can" and len(ds) == len(lab)
    assert np.max(np.abs(ds.voltage_v - lab.voltage_v)) <= 0.0005 + 1e-9  # 1 mV DBC resolution
    assert np.max(np.abs(ds.current_a - lab.current_a)) <= 0.0005 / N_PAR + 1e-9  # 1 mA
    assert np.max(np.abs(ds.temp_c - lab.temperature_c)) <= 0.25
    assert np.allclose(np.diff(ds.time_s), 1.0)
    # truth: the coulomb count of the recorded current (sample k stamped at the end of its period)
    i = lab.current_a
    count = lab.soc_ref[0] + np.cumsum(np.where(i > 0, ETA, 1.0) * i) / (3600 * Q_AH)
    assert np.max(np.abs(ds.soc_true - count)) < 1e-5  # 1 mA quantisation over 15 min
    assert np.max(np.abs(ds.soc_true[:-1] - lab.soc_ref[1:])) < 1e-3  # and the tester's own counters
    assert "coulomb count of ISENSE_Current" in ds.truth


def test_can_dataset_scores_like_the_lab_file(tmp_path, lab):
    path = tmp_path / "rec.log"
    write_log(path, lab, invalid_at={100, 101, 102})
    prof = load_profile("winston_lfp100")  # any profile: the two paths must agree with each other
    ds = load_dataset(f"{path},n_parallel={N_PAR},capacity_ah={Q_AH},eta={ETA},soc0={lab.soc_ref[0]}")
    assert np.isnan(ds.voltage_v[100:103]).all() and np.isfinite(np.delete(ds.voltage_v, [100, 101, 102])).all()
    ref = load_dataset(f"{LAB},start={START},duration={N + 1}", prof)
    est = [parse_estimator("cc")]
    a = evaluate_matrix(prof, [ds], est, [PRESETS["soc-20"]])[0].metrics
    b = evaluate_matrix(prof, [ref], est, [PRESETS["soc-20"]])[0].metrics
    assert a["rmse_pct"] == pytest.approx(b["rmse_pct"], abs=0.05)


def test_can_log_soc0_from_rest_voltage_needs_profile(tmp_path, lab):
    path = tmp_path / "rec.log"
    write_log(path, lab)
    with pytest.raises(DataError, match="needs a cell profile"):
        load_dataset(f"{path},n_parallel={N_PAR}")
    ds = load_dataset(f"{path},n_parallel={N_PAR}", load_profile("winston_lfp100"))
    assert 0.0 <= ds.soc_true[0] <= 1.0


def test_can_log_errors(tmp_path, lab):
    path = tmp_path / "rec.log"
    write_log(path, lab)
    kw = f"capacity_ah={Q_AH},eta={ETA},soc0=0.5"
    with pytest.raises(DataError, match="not in the DBC"):
        load_dataset(f"{path},voltage=NoSuchSignal,{kw}")
    with pytest.raises(DataError, match="no frames of message CMU01_CellV"):
        load_dataset(f"{path},cell=20,{kw}")
    with pytest.raises(DataError, match="unknown option"):
        load_dataset(f"{path},colour=red,{kw}")
    bad = tmp_path / "bad.log"
    bad.write_text("this is not a candump line\n")
    with pytest.raises(DataError, match="bad.log"):
        load_dataset(f"{bad},{kw}")


def test_lab_dataset_window_and_ref_column(lab):
    ds = load_dataset(f"{LAB},start={START},duration=600,every=3,ref=soc_ref_dynQ")
    assert len(ds) == 200 and ds.truth == "column soc_ref_dynQ"
    assert np.allclose(np.diff(ds.time_s), 3.0)
    with pytest.raises(DataError, match="missing column nope"):
        load_dataset(f"{LAB},ref=nope")
    with pytest.raises(DataError, match="outside"):
        load_dataset(f"{LAB},start=1e9")
    with pytest.raises(DataError, match="every must be a int|option every"):
        load_dataset(f"{LAB},every=x")
    assert parse_spec("x.asc,cell=3") == ("can", "x.asc", {"cell": "3"})
    assert parse_spec("model:y.csv") == ("model", "y.csv", {})


def test_model_replay_truth_is_the_model(tmp_path, lab):
    prof = load_profile("winston_lfp100")
    csv = tmp_path / "cycle.csv.gz"
    rows = "\n".join(f"{k},{-50.0 if k < 600 else 0.0},0,25" for k in range(900))
    csv.write_bytes(gzip.compress(("time_s,current_a,voltage_v,temperature_c\n" + rows + "\n").encode()))
    ds = load_dataset(f"model:{csv},soc0=0.9", prof)
    assert ds.soc_true[0] == pytest.approx(0.9)
    assert ds.soc_true[-1] == pytest.approx(0.9 - 50 * 600 / 3600 / prof.capacity_ah, abs=1e-6)
    assert ds.voltage_v[599] < ds.voltage_v[899]  # relaxes after the discharge
    with pytest.raises(DataError, match="needs a cell profile"):
        load_dataset(f"model:{csv}")


def test_scenario_dataset_is_what_the_bms_sees_beside_the_model_truth():
    """fault_current_offset: a short drive, then contactors open while the current sensor gains a
    +30 A offset at 4 s. The dataset's current is the sensor's (15 A per parallel cell, no charge
    moving), its truth the model's SOC (which stays put); scored by bms tune like any dataset."""
    prof = load_profile("winston_lfp100")
    ds = load_dataset("scenario:fault_current_offset,cell=5,period=0.5", prof)
    assert ds.kind == "scenario" and ds.name == "scenario:fault_current_offset[cell 5]" and len(ds) == 17
    np.testing.assert_allclose(np.diff(ds.time_s), 0.5)
    t, i, z = ds.time_s, ds.current_a, ds.soc_true
    late = t >= 5.0
    np.testing.assert_allclose(i[late], 15.0, atol=0.3)  # the offset over n_parallel = 2
    assert np.ptp(z[late]) < 1e-6  # the truth does not follow the faulty sensor
    drive = (t > 0.5) & (t <= 2.5)
    assert i[drive].min() < -5.0 and i[drive].max() < 0.5
    # the truth fell by the charge the (then healthy) sensor measured, within its offset
    dz = z[t == 0.5][0] - z[t == 3.0][0]
    assert dz == pytest.approx(-np.sum(i[(t > 0.5) & (t <= 3.0)]) * 0.5 / 3600 / prof.capacity_ah, rel=0.1)
    assert np.all((ds.voltage_v > 3.0) & (ds.voltage_v < 3.5)) and np.all(np.abs(ds.temp_c - 25.0) < 2.0)
    run = evaluate_matrix(prof, [ds], [parse_estimator("cc")], [PRESETS["nominal"]])[0]
    assert np.isfinite(run.metrics["rmse_pct"]) and run.metrics["max_abs_pct"] > 0.0


@pytest.mark.parametrize("spec,word", [
    ("scenario:no_such_scenario", "no scenario named"),
    ("scenario:fault_current_offset,cell=999", "cell=999 is outside"),
    ("scenario:fault_current_offset,period=0.001", "period"),
    ("scenario:fault_current_offset,max_s=0", "max_s"),
    ("scenario:fault_current_offset,colour=red", "unknown option"),
])
def test_scenario_dataset_errors(spec, word):
    with pytest.raises(DataError, match=word):
        load_dataset(spec, load_profile("winston_lfp100"))


def test_decimation_keeps_the_charge():
    full = load_dataset(f"{LAB},start={START},duration=600")
    dec = load_dataset(f"{LAB},start={START},duration=600,every=7")
    assert dec.current_a[0] == pytest.approx(full.current_a[:7].mean())
    assert np.sum(dec.current_a * np.diff(np.append(dec.time_s, full.time_s[-1] + 1))) == \
        pytest.approx(np.sum(full.current_a), rel=1e-12)
