"""``bms sim``: one JSON object with verdicts and figures, exit code 1 when a verdict fails."""

from __future__ import annotations

import json

import can

from bms.cli import main

SCN = ('[scenario]\nname = "cli"\n[initial]\nsoc = 0.5\n[[segment]]\nmode = "rest"\nduration_s = 0.5\n'
       '[[segment]]\nmode = "drive"\nduration_s = 2.0\npattern = [[1.0, -50.0]]\n[verdicts]\n')


def test_sim_json_pass_and_fail_exit_codes(tmp_path, capsys):
    ok = tmp_path / "ok.toml"
    ok.write_text(SCN + 'reached_state = "DRIVE"\n')
    log = tmp_path / "ok.log"
    assert main(["sim", str(ok), "--json", "--transport", "direct", "--log", str(log), "--blf", str(tmp_path / "ok.blf")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["passed"] is True and out["scenario"] == "cli" and "DRIVE" in out["states"]
    assert {v["name"] for v in out["verdicts"]} == {"reached_state", "no_unexpected_fault"}
    assert len(list(can.LogReader(str(log)))) == out["frames"]
    assert len(list(can.BLFReader(str(tmp_path / "ok.blf")))) == out["frames"]
    bad = tmp_path / "bad.toml"
    bad.write_text(SCN + 'reached_state = "CHARGE"\n')
    assert main(["sim", str(bad), "--json", "--transport", "direct"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["passed"] is False and [v["name"] for v in out["verdicts"] if not v["ok"]] == ["reached_state"]


def test_sim_config_error_exit_code_2(tmp_path, capsys):
    p = tmp_path / "x.toml"
    p.write_text('[scenario]\nname = "x"\n')
    assert main(["sim", str(p), "--json"]) == 2
    assert "segment" in capsys.readouterr().err


def test_sim_progress_bar_in_a_log_is_not_redrawn_every_simulated_second(tmp_path, capsys):
    """stderr not a terminal (a CI log): the bar reaches the end without a line per simulated second."""
    p = tmp_path / "long.toml"
    p.write_text(SCN.replace("duration_s = 2.0", "duration_s = 30.0") + 'reached_state = "DRIVE"\n')
    assert main(["sim", str(p), "--transport", "direct"]) == 0
    err = capsys.readouterr().err
    draws = [d for d in err.split("\r") if "sim s" in d]
    assert "30/30" in draws[-1] and "100%" in draws[-1]
    assert len(draws) <= 4, draws  # the first draw, the last, and at most one per 10 s of wall time
