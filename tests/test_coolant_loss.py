"""The coolant-loss scenario (issue 5: over-temperature and coolant loss as injectable faults):
the firmware warns, derates by its temperature table, raises CELL_OT_DIS at 55 degC and then
derates per the fault table, without opening the contactors (CELL_OT_DIS has no open reaction)."""

from __future__ import annotations

import numpy as np

from bms import layout as L
from bms.diag_table import BY_NAME
from hil.cosim import run_scenario
from hil.scenario import load_scenario


def test_coolant_loss_warns_then_faults_and_derates_without_opening():
    scn = load_scenario("fault_coolant_loss")
    res = run_scenario(scn, "direct")
    failed = [v for v in res.verdicts if not v.ok]
    assert not failed, failed
    assert sum(" -> " in v.name for v in res.verdicts) == 2  # the warning and the FAULT, each with its latency
    f = res.faults[0]
    assert f.kind == "coolant_loss" and f.t_on == scn.faults[0].at_s
    rec, t = res.rec, res.rec["t_s"]
    ot = BY_NAME["CELL_OT_DIS"]
    warn = (rec["warn_bits"].astype(np.int64) >> ot.id) & 1 == 1
    t_warn, t_fault = t[np.argmax(warn)], res.faults_raised["CELL_OT_DIS"]
    assert f.t_on + 300.0 < t_warn < t_fault - 200.0  # minutes of heating, the warning well before the FAULT
    # the cells really heated: no coolant, ~15 K over the pack's start
    assert rec["temp_true_max"][t <= f.t_on].max() < scn.initial.temp_c + 2.0
    assert rec["temp_true_max"][t >= t_fault][0] > 54.5
    # before the FAULT the temperature table already cut the discharge limit (0.5 at 50 degC) ...
    hot = (t > t_warn) & (t < t_fault)
    assert rec["i_dis_lim_a"][hot].max() < 0.6 * 600.0
    # ... after it, the fault's derate (x0.2); contactors stay closed: the fault table opens only at CRITICAL
    assert not ot.reaction & L.RE_OPEN
    after = t > t_fault + 10.0
    assert rec["i_dis_lim_a"][after].max() <= ot.derate_dis * 600.0 + 1e-6
    assert np.all(rec["state"][after] == L.ST_DRIVE) and f.t_open is None
    assert rec["temp_true_max"].max() < 60.0  # far from CRITICAL (65 degC)
