"""Every shipped scenario runs in closed loop (shortened where long) and its verdicts pass;
the schema rejects bad files with errors naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from bms.config import ConfigError
from hil.cosim import run_scenario
from hil.scenario import END_VERDICTS, load_scenario, shipped_names, shorten

MAX_S = 30.0  # simulated seconds per scenario in the suite
LONGER = {"demo": 80.0,  # its last drive (60 s, with the fault) is kept whole
          "fault_internal_short": 2900.0}  # whole: 50x coarser schedule (time_scale), ~3 s of CPU
# run whole, once, by their own test with more checks on their behaviour (see test_run_elsewhere)
ELSEWHERE = {"yard_tractor_8h_shift": "test_shift.py", "fault_coolant_loss": "test_coolant_loss.py",
             "cold_morning_start": "test_cold_start.py"}


@pytest.mark.parametrize("name", [n for n in shipped_names() if n not in ELSEWHERE])
def test_shipped_scenario_verdicts_pass(name):
    full = load_scenario(name)
    scn = shorten(full, LONGER.get(name, MAX_S))
    res = run_scenario(scn, "direct")
    failed = [v for v in res.verdicts if not v.ok]
    assert not failed, failed
    # every injected fault was injected, every expectation checked
    assert all(f.t_on is not None for f in res.faults)
    n_expect = sum(len(f.expect) + len(f.expect_warning) + (f.open_within_s is not None) for f in full.faults)
    assert sum(" -> " in v.name for v in res.verdicts) == n_expect


def test_run_elsewhere():
    """The scenarios not run above are run whole by a test that checks all their verdicts."""
    here = Path(__file__).parent
    for name, test in ELSEWHERE.items():
        assert name in shipped_names()
        text = (here / test).read_text()
        assert f'load_scenario("{name}")' in text and "not failed" in text


def test_shorten_keeps_short_segments_and_moves_faults_with_them():
    full = load_scenario("demo")
    s = shorten(full, 80.0)
    assert s.duration_s == pytest.approx(80.0)
    assert [sg.duration_s for sg in s.segments][0] == 2.0 and s.segments[-1].duration_s == 60.0
    # the fault stays 30 s into the last segment
    assert s.faults[0].at_s == pytest.approx(80.0 - 60.0 + 30.0)
    assert not set(s.verdicts) & set(END_VERDICTS) and "max_soc_error_pct" in s.verdicts


def _write(tmp_path, text):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    return p


BASE = '[scenario]\nname = "x"\n[[segment]]\nmode = "drive"\nduration_s = 5.0\npattern = [[1.0, -10.0]]\n'


@pytest.mark.parametrize("extra,key", [
    ('[initial]\nsoc = 1.5\n', "initial.soc"),
    ('[[fault]]\nkind = "melt"\nat_s = 1.0\n', "fault[0].kind"),
    ('[[fault]]\nkind = "board_silent"\nboard = 1\n', "fault[0].at_s"),
    ('[[fault]]\nkind = "board_silent"\nboard = 1\nat_s = 1.0\nexpect = ["NOPE"]\n', "fault[0].expect"),
    ('[[fault]]\nkind = "board_silent"\nboard = 1\nwhen = "soc < 0.3"\n', "fault[0].when"),
    ('[[fault]]\nkind = "coolant_loss"\nat_s = 1.0\nexpect_warning = ["NOPE"]\n', "fault[0].expect_warning"),
    ('[verdicts]\nmax_soc_eror_pct = 2.0\n', "verdicts.max_soc_eror_pct"),
])
def test_bad_scenarios_name_file_and_key(tmp_path, extra, key):
    p = _write(tmp_path, BASE + extra)
    with pytest.raises(ConfigError) as ei:
        load_scenario(p)
    assert ei.value.key == key and str(p) in str(ei.value)


def test_bad_segment_and_csv(tmp_path):
    p = _write(tmp_path, '[scenario]\nname = "x"\n[[segment]]\nmode = "fly"\nduration_s = 5.0\n')
    with pytest.raises(ConfigError, match="segment\\[0\\].mode"):
        load_scenario(p)
    p = _write(tmp_path, '[scenario]\nname = "x"\n[[segment]]\nmode = "drive"\nduration_s = 5.0\ncsv = "none.csv"\n')
    with pytest.raises(ConfigError, match="none.csv"):
        load_scenario(p)
    with pytest.raises(FileNotFoundError, match="shipped"):
        load_scenario("no_such_scenario")
