"""SOC accuracy of the default estimator with the shipped profiles on the shipped lab data.

Two kinds of checks, all computed from the data in this run:
* guards at the level the estimator reaches today (a regression fails them);
* the issue-2 targets that are not met yet, as strict xfails: when the estimator improves
  enough they XPASS, which fails the run, and the marker must be removed.
"""

import math

import pytest

from bms.evaluate import evaluate, rest_end_near
from bms.labdata import load_csv

W = "winston_lfp100/"


@pytest.fixture(scope="module")
def files():
    return {n: load_csv(W + n, require_soc_ref=True) for n in
            ("udds_P25.csv.gz", "udds_P05_approx.csv.gz", "udds_N05_approx.csv.gz")}


def _m(files, name, **kw):
    return evaluate("winston_lfp100", files[name], **kw).metrics


def test_p25_from_rest_init(files):
    m = _m(files, "udds_P25.csv.gz")
    assert m["rmse_pct"] <= 0.8 and m["max_abs_pct"] <= 2.0


def test_p25_offset_bounded(files):
    """+0.5 A offset: coulomb counting alone drifts ~9 %; the estimator stays bounded."""
    m = _m(files, "udds_P25.csv.gz", current_offset_a=0.5)
    cc = evaluate("winston_lfp100", files["udds_P25.csv.gz"], estimator="cc", current_offset_a=0.5,
                  tuning={"rest_s": 1e12}).metrics
    assert cc["max_abs_pct"] > 5.0  # the perturbation is real
    assert m["max_abs_pct"] <= 3.0


def test_p25_recovers_from_mid_plateau_error(files):
    """Started at the end of the rest closest to 70 % SOC, 20 points low: |error| < 3 % for
    good within 1800 s (a textbook 1RC EKF without hysteresis needs 9-11 h)."""
    d = files["udds_P25.csv.gz"]
    t0 = rest_end_near(d, 0.7)
    m = evaluate("winston_lfp100", d, start_s=t0, soc_error=-0.2).metrics
    assert m["converge_s"] is not None and m["converge_s"] <= 1800


def test_n05_loose_bar(files):
    m = _m(files, "udds_N05_approx.csv.gz")
    assert m["rmse_pct"] <= 1.5 and m["max_abs_pct"] <= 3.0


def test_p25_target(files):
    """Issue-2 bar: RMSE <= 0.8 %, max |error| <= 2.0 % from the firmware's own initialisation."""
    m = _m(files, "udds_P25.csv.gz")
    assert m["rmse_pct"] <= 0.8 and m["max_abs_pct"] <= 2.0


def test_p25_offset_target(files):
    """Issue-2 bar: +0.5 A offset, max |error| <= 2.0 %."""
    assert _m(files, "udds_P25.csv.gz", current_offset_a=0.5)["max_abs_pct"] <= 2.0


def test_target_p05(files):
    """Issue-2 bar (approximate reference): RMSE <= 1.5 %, max |error| <= 3 %. Needs the RC
    resistances' SOC factor G (the early-rest relaxation grows toward empty at 5 C)."""
    m = _m(files, "udds_P05_approx.csv.gz")
    assert m["rmse_pct"] <= 1.5 and m["max_abs_pct"] <= 3.0


def test_a123_dynamic_tracks_offset_free_reference():
    """The A123 run's current carries an offset (data/README.md); ``soc_ref`` integrates it,
    ``soc_ref_dynQ`` closes the run's own charge balance. The EKF follows the physics."""
    import numpy as np

    d = load_csv("a123_26650/dyn_25C_script1.csv.gz", require_soc_ref=True)
    res = evaluate("a123_26650", d)
    ref_q = d.columns["soc_ref_dynQ"]
    assert 100 * np.sqrt(np.mean((res.soc_est - ref_q) ** 2)) <= 2.0
    # and the disagreement with soc_ref is the offset's drift, not noise: it grows with time
    gap = res.soc_est - d.soc_ref
    assert abs(gap[-3600:].mean()) > abs(gap[:3600].mean())


@pytest.mark.xfail(strict=True, reason="issue 2 bar vs soc_ref not met: 4.3 % RMSE, because soc_ref integrates "
                   "the run's ~+16 mA current offset (vs the offset-free soc_ref_dynQ: 0.8 %)")
def test_target_a123_vs_soc_ref():
    assert evaluate("a123_26650", "a123_26650/dyn_25C_script1.csv.gz").metrics["rmse_pct"] <= 2.0


def test_eval_cli_json(tmp_path, capsys):
    import json

    from bms.cli import main

    png = tmp_path / "e.png"
    rc = main(["eval", "--profile", "winston_lfp100", "--data", W + "udds_N05_approx.csv.gz",
               "--start-s", "20000", "--soc-error", "-0.1", "--current-offset-a", "0.2", "--plot", str(png), "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"rmse_pct", "max_abs_pct", "converge_s", "rmse_after_2h_pct"}
    assert math.isfinite(out["rmse_pct"]) and png.stat().st_size > 10000


def test_eval_cli_bad_input_is_clear(capsys):
    from bms.cli import main

    assert main(["eval", "--profile", "winston_lfp100", "--data", "nope.csv"]) == 2
    assert "nope.csv" in capsys.readouterr().err
    assert main(["eval", "--profile", "winston_lfp100", "--data", W + "udds_P25.csv.gz", "--start-s", "1e9"]) == 2
