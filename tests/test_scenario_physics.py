"""The shipped scenarios ask for what the pack can physically do, and the closed loop delivers it:
a duty cycle that needs more charge than the pack holds, or a charge the plant cannot accept,
fails only after hours of simulation otherwise (the suite runs them shortened)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from bms import layout as L
from bms.signal_map import load_map
from hil.cosim import CoSim, build_model
from hil.pack import IN_I_A, PK_VBUS, X_Z, pack_step
from hil.pack.ready import precharge_and_close
from hil.scenario import END_VERDICTS, load_scenario, shipped_names

V_CELL_NOMINAL = 3.2  # W -> A for power duty cycles (LFP plateau)
SOC_FLOOR = 0.05      # a scenario's drive must not need the pack below this


def soc_bound(scn, dt_s: float = 0.5) -> tuple[np.ndarray, float]:
    """Running mean SOC if every drive segment's demand is met and every charge segment delivers
    its charger's rating (an upper bound on the charge: the BMS's limits only lower it),
    clipped to [.., 1]; and the pack capacity, Ah."""
    pk = load_map(scn.map).pack
    cap_as = pk.profile.capacity_ah * pk.n_parallel * 3600.0
    z, out = scn.initial.soc, []
    for seg in scn.segments:
        t = np.arange(0.0, seg.duration_s, dt_s)
        if seg.mode == "drive":
            tau = t % seg.period_s
            want = seg.values[np.searchsorted(seg.times_s, tau, side="right") - 1]
            i = want / (pk.n_series * V_CELL_NOMINAL) if seg.unit == "W" else want
        elif seg.mode == "charge":
            i = np.full(t.size, min(seg.charger_max_a, seg.charger_max_w / (pk.n_series * V_CELL_NOMINAL)))
        else:
            i = np.zeros(t.size)
        for di in np.split(i * dt_s / cap_as, np.flatnonzero(np.diff(np.sign(i)) != 0) + 1):
            zz = np.minimum(z + np.cumsum(di), 1.0)   # a full pack stops charging
            out.append(zz)
            z = float(zz[-1]) if zz.size else z
    return np.concatenate(out), cap_as / 3600.0


@pytest.mark.parametrize("name", shipped_names())
def test_duty_cycle_fits_in_the_pack(name):
    scn = load_scenario(name)
    z, cap_ah = soc_bound(scn)
    assert z.min() >= SOC_FLOOR, (
        f"{name}: the duty cycle needs the pack down to mean SOC {z.min():.2f} even with every charge "
        f"at its charger's rating ({cap_ah:.0f} Ah pack): the scenario asks for more than the pack holds")


def test_duty_bound_catches_an_overlong_shift():
    """The check fails a scenario that draws more than the pack holds (the yard shift run for
    eight hours instead of until the first charge: 840 Ah from a 219 Ah pack)."""
    scn = load_scenario("yard_tractor_shift")
    long = replace(scn, segments=[scn.segments[0], replace(scn.segments[1], duration_s=28800.0)])
    assert soc_bound(long)[0].min() < -2.0
    assert soc_bound(scn)[0].min() > 0.15


def ideal_cccv_soc(scn, seconds: float, dt_s: float = 0.01) -> tuple[float, float]:
    """(start, end) true mean SOC of the scenario's own seeded plant charged by an ideal CC-CV
    without BMS or bus: terminal held at the BMS's voltage request, current capped at the
    charger's rating, the same CV regulator as hil.vehicle.Charger without ramps."""
    smap = load_map(scn.map)
    m = build_model(scn, smap, dt_s)
    seg = scn.segments[-1]
    precharge_and_close(m.p, m.f, m.st, m.inp, m.bleed, dt_s)
    z0 = float(m.st.x[:, X_Z].mean())
    v_req = smap.pack.pp[L.P_N_SERIES] * smap.pack.pp[L.P_V_CHG_CELL_V]
    i_max = min(seg.charger_max_a, seg.charger_max_w / v_req)
    i = 0.0
    for _ in range(int(round(seconds / dt_s))):
        m.inp[IN_I_A] = i
        pack_step(m.p, m.f, m.st, m.inp, m.bleed, dt_s)
        i = min(i_max, max(0.0, i + 0.5 * (v_req - m.st.pk[PK_VBUS]) / 0.2))
    return z0, float(m.st.x[:, X_Z].mean())


def test_fast_charge_delivers_what_an_ideal_cccv_charger_would():
    """200 s of the 20-minute fast charge in closed loop (BMS charge request, limits and
    derating, charger on the bus) put at least 95 % of the charge an ideal CC-CV puts into the
    same plant, and the BMS's SOC stays within the scenario's error limit (the start of a
    charge at 10 % SOC is where the estimate strays most)."""
    scn = load_scenario("fast_charge_20min")
    scn = replace(scn, segments=[scn.segments[0], replace(scn.segments[1], duration_s=200.0)], duration_s=201.0,
                  verdicts={k: v for k, v in scn.verdicts.items() if k in ("max_soc_error_pct", "no_unexpected_fault")})
    res = CoSim(scn, "direct").run()
    assert res.passed, [v for v in res.verdicts if not v.ok]
    z = res.rec["soc_true_mean"]
    z0, z1 = ideal_cccv_soc(scn, 200.0)
    assert z[0] == pytest.approx(z0, abs=1e-3)
    assert z[-1] - z[0] >= 0.95 * (z1 - z0), (z[-1] - z[0], z1 - z0)
    assert z1 - z0 > 0.05   # ~1C: the plant does charge


# ---- the long scenarios whole, with every verdict, on hil.timescale's 10x coarser schedule ----
# The suite's shortened runs (test_scenarios.py, 30 s) drop the end-of-run verdicts and never
# reach the SOC range where a long duty ends, so a failure at full length went unseen. At
# time_scale 10 cell frames come every second, as often as the slow task's SOC estimator runs,
# and the SOC error matches the full-rate run (yard_tractor_8h_shift: 1.46 % at 10x over 8 h,
# 1.18 % at 1x over the first hour; 20x pairs voltages ~1 s older than the current and is not
# honest). Not always: city_bus_route passes at 10x (2.31 %, limit 2.5) but peaks at 3.09 % at
# full rate (seeds 1 and 2: 3.05 / 3.09 %, at 0.78-0.80 true SOC on the upper plateau, 0.4 % at
# the end; 47 s of CPU, not run here; docs/soc-tuning.md). Fault scenarios are not run this way: their latency verdicts count samples of the
# 10x schedule. Not run here, with the reason:
NOT_AT_10X = {
    "overnight_rest_balancing": "8 h of rest (~90 s of CPU at 10x) and balancing pauses every 1 s for a "
                                "0.2 s measurement window, shorter than the 10x medium task",
    "cold_morning_start": "at -15 degC the resistances are ~7x those at 25 degC and 1 s cell frames pair "
                          "voltages with currents R dI apart; run whole at the full rate in test_cold_start.py",
}
# Known to fail at full length too (measured, not a 10x artefact): kept here, strict, so that the
# fix shows up as an XPASS failure and the failure stays visible meanwhile.
# city_bus_route was here until the string's power-up became mean plus differences with the mean
# cell's SOC and hysteresis correlated (bms.soc.estimator.init_from_rest): 3.77 -> 2.31 % at 10x.
KNOWN_FAILING: dict[str, str] = {}


def long_plain_scenarios() -> list[str]:
    from test_scenarios import ELSEWHERE, LONGER, MAX_S
    out = []
    for name in shipped_names():
        scn = load_scenario(name)
        if (scn.duration_s > LONGER.get(name, MAX_S) and not scn.faults and scn.time_scale == 1
                and name not in ELSEWHERE and name not in NOT_AT_10X):
            out.append(name)
    return out


def test_long_scenarios_found():
    assert {"city_bus_route", "fast_charge_20min", "yard_tractor_shift"} <= set(long_plain_scenarios())


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=KNOWN_FAILING[n]))
                                  if n in KNOWN_FAILING else n for n in long_plain_scenarios()])
def test_long_scenario_whole_at_10x_passes_every_verdict(name):
    scn = replace(load_scenario(name), time_scale=10)
    res = CoSim(scn, "direct").run()
    assert res.sim_s == pytest.approx(scn.duration_s, abs=0.2)
    end = {k for k, v in scn.verdicts.items() if k in END_VERDICTS and v is not False}
    assert {v.name for v in res.verdicts} >= end   # the end-of-run verdicts the 30 s cut drops
    assert res.passed, [v for v in res.verdicts if not v.ok]
