"""Pack model (hil.pack): parameters, conservation of charge and energy, thermal balance, analytic
cases (2RC step response, precharge exponential), cells (parallel split, hysteresis, Arrhenius,
SOC-dependent resistance, self-discharge). Circuit, faults and sensors: test_pack_circuit_sensors.py."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st_
from scipy.interpolate import RegularGridInterpolator

from bms.profile import CellLimits, Profile, load_profile, save_profile
from hil.pack import (
    A_E_BLEED, A_E_DIS, A_E_LOAD, A_E_PATH, A_E_PRE, A_E_TERM, A_Q_AMB, A_Q_COOL, A_Q_PACK, C_C1, C_C2, C_R0C,
    C_R0D, C_SD, E_IBL, E_V, IN_FLOW, IN_I_A, IN_K0, IN_TCOOL, K_NEG, K_POS, K_PRE, PK_BADIN,
    PK_ETH, PK_IDEM, PK_IPACK, PK_IPEAK, PK_K0, PK_RTH, PK_TCOOL_OUT, PK_VBUS, PK_VPACK,
    X_H, X_I, X_QGEN, X_QTOT, X_T, X_V1, X_V2, X_Z, PackGeometry, PackSpread, build_params,
    init_state, pack_step,
)
from hil.pack.ready import ready_pack
from hil.pack.synthetic import synthetic_lfp100_profile
from hil.pack.thermal import arrhenius

DT = 0.01
SMALL = PackGeometry(n_series=4, n_parallel=2, cells_per_board=4, temp_sensors_per_board=2, thermal_every=10)
NO_SD = PackSpread(self_discharge_pct_month=0.0)
HYP = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def profile(tmp_path_factory):
    return synthetic_lfp100_profile(tmp_path_factory.mktemp("profile"))


@pytest.fixture(scope="module")
def flat_profile(tmp_path_factory) -> Profile:
    """Flat 3.3 V OCV, no hysteresis, temperature-independent 2RC: the analytic step response."""
    soc = np.linspace(0.0, 1.0, 11)
    temps = np.array([0.0, 50.0])
    nt = temps.size
    prof = Profile(
        name="flat", path=Path("."), chemistry="LFP", capacity_ah=100.0, eta_chg=1.0,
        limits=CellLimits(2.5, 3.8, 2.0, 100.0, 100.0, 300.0, 0.0, 60.0), soc=soc, temp_c=temps,
        tables={"ocv_v": np.full((nt, soc.size), 3.3), "hyst_v": np.zeros((nt, soc.size)),
                "r0_chg_ohm": np.full(nt, 1e-3), "r0_dis_ohm": np.full(nt, 1e-3),
                "r1_ohm": np.full(nt, 2e-3), "tau1_s": np.full(nt, 2.0),
                "r2_ohm": np.full(nt, 3e-3), "tau2_s": np.full(nt, 20.0),
                "gamma": np.zeros(nt), "m0_v": np.zeros(nt)},
    )
    return load_profile(save_profile(prof, tmp_path_factory.mktemp("flat") / "flat.toml"))


@pytest.fixture(scope="module")
def profile_g(profile, tmp_path_factory) -> Profile:
    """The synthetic profile with a steep RC SOC factor G(T, z) = 1 + 3 (1 - z)^3 (x 1.2 at -5 C)."""
    import dataclasses

    g = 1.0 + 3.0 * (1.0 - profile.soc[None, :]) ** 3 * np.where(profile.temp_c[:, None] < 0.0, 1.2, 1.0)
    prof = dataclasses.replace(profile, name="rcsoc", tables={**profile.tables, "rc_soc_factor": g})
    return load_profile(save_profile(prof, tmp_path_factory.mktemp("rcsoc") / "rcsoc.toml"))


def make(profile, geom=SMALL, spread=NO_SD, soc=0.5, temp_c=25.0, seed=0, close=True, dt=DT):
    return ready_pack(profile, geom, spread, soc=soc, temp_c=temp_c, seed=seed, close=close, dt_s=dt)


segments = st_.lists(st_.tuples(st_.floats(-300.0, 300.0), st_.integers(1, 120)), min_size=1, max_size=6)


# ---------------------------------------------------------------- parameters and state
def test_params_seeded_spread_and_determinism(profile):
    g = PackGeometry()
    a = build_params(profile, g, seed=3)
    b = build_params(profile, g, seed=3)
    c = build_params(profile, g, seed=4)
    assert a.n_cells == 384 and a.n_ts == 96 and a.n_ch == 192 + 96 + 3
    for name in ("cap_as", "r_scale", "sd_a25", "soc0_offset", "sens"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
        assert not np.array_equal(getattr(a, name), getattr(c, name))
    rel = a.cap_as / (3600 * profile.capacity_ah) - 1.0
    assert 0.006 < rel.std() < 0.014 and abs(rel.mean()) < 0.003
    assert 0.03 < np.std(a.r_scale) < 0.07
    # temperature sensors: each sees 2 adjacent series elements x 2 parallel cells
    assert np.array_equal(a.ts_count, np.full(96, 4)) and a.ts_first[1] == 4
    # thermal chain is weaker across board boundaries (every 32 cells)
    assert a.g_nbr_w_k[31] < a.g_nbr_w_k[30]


@pytest.mark.parametrize("kw, word", [
    ({"n_series": 10}, "cells_per_board"), ({"bleed_ohm": -1.0}, "bleed_ohm"), ({"bus_cap_f": 0.0}, "bus_cap_f"),
    ({"n_parallel": 0}, "n_parallel"), ({"bleed_heat_to_cell": 1.5}, "bleed_heat_to_cell"),
])
def test_params_reject_bad_geometry(profile, kw, word):
    with pytest.raises(ValueError, match=word):
        build_params(profile, PackGeometry(**kw))


def test_init_state_rejects_bad_values(profile):
    p = build_params(profile, SMALL)
    for kw in ({"soc": 1.2}, {"soc": float("nan")}, {"temp_c": 300.0}, {"dt_s": 0.0}, {"h": 2.0},
               {"soc": np.full(3, 0.5)}):
        with pytest.raises(ValueError):
            init_state(p, **kw)


def test_shipped_profile_runs(profile):
    """Any valid profile works: the shipped fitted profile when present, else the stand-in."""
    try:
        prof = load_profile("winston_lfp100")
    except FileNotFoundError:
        prof = profile
    p, f, st, inp, bleed = make(prof, soc=0.8)
    inp[IN_I_A] = -100.0
    for _ in range(500):
        pack_step(p, f, st, inp, bleed, DT)
    v_cell = st.elem[:, E_V]
    assert np.all((v_cell > 3.0) & (v_cell < 3.4)) and abs(st.pk[PK_IPACK] + 100.0) < 0.1


def test_bad_step_inputs_are_counted_and_harmless(profile):
    p, f, st, inp, bleed = make(profile)
    x0 = st.x.copy()
    pack_step(p, f, st, inp, bleed, -1.0)
    pack_step(p, f, st, inp, np.zeros(3, np.uint8), DT)
    assert st.pk[PK_BADIN] == 2 and np.array_equal(st.x, x0)
    inp[IN_I_A] = float("nan")
    inp[IN_FLOW] = float("nan")
    for _ in range(20):
        pack_step(p, f, st, inp, bleed, DT)
    assert st.pk[PK_BADIN] == 22
    assert np.all(np.isfinite(st.x)) and abs(st.pk[PK_IDEM]) == 0.0


# ---------------------------------------------------------------- charge
cell_socs = st_.lists(st_.floats(0.15, 0.85), min_size=8, max_size=8).map(np.array)
cell_temps = st_.lists(st_.floats(-10.0, 50.0), min_size=8, max_size=8).map(np.array)


@HYP
@given(segs=segments, bleed_bits=st_.integers(0, 15), seed=st_.integers(0, 50), socs=cell_socs, temps=cell_temps)
def test_charge_conservation(profile, segs, bleed_bits, seed, socs, temps):
    """Per cell: Q_c dz = sum (eta(i) i) dt; per element: sum of parallel currents + bleed = I_pack
    (cells at different SOC and temperature, so the parallel split is uneven)."""
    p, f, st, inp, bleed = make(profile, seed=seed, soc=socs, temp_c=temps)
    bleed[:] = [(bleed_bits >> s) & 1 for s in range(p.n_series)]
    z0 = st.x[:, X_Z].copy()
    q_cells = np.zeros(p.n_cells)
    q_pack = 0.0
    acc0 = st.acc[A_Q_PACK]
    for i_a, n in segs:
        inp[IN_I_A] = i_a
        for _ in range(n):
            pack_step(p, f, st, inp, bleed, DT)
            i_c = st.x[:, X_I]
            q_cells += np.where(i_c > 0, p.eta_chg, 1.0) * i_c * DT
            ip = st.pk[PK_IPACK]
            q_pack += ip * DT
            split = i_c.reshape(p.n_series, p.n_parallel).sum(axis=1) + st.elem[:, E_IBL]
            np.testing.assert_allclose(split, ip, rtol=0, atol=1e-9 * (1 + abs(ip)))
    np.testing.assert_allclose(p.cap_as * (st.x[:, X_Z] - z0), q_cells, rtol=1e-9, atol=1e-9)
    assert st.acc[A_Q_PACK] - acc0 == pytest.approx(q_pack, rel=1e-12, abs=1e-12)


def test_self_discharge_rate_and_internal_short(profile):
    """Contactors open, no bleed: a day at 25 degC loses exactly I_sd * t; a shorted cell loses more."""
    p, f, st, inp, bleed = make(profile, spread=PackSpread(), close=False, dt=60.0)
    f.short_s[3] = 1.0 / 100.0  # 100 ohm internal short
    z0 = st.x[:, X_Z].copy()
    for _ in range(24 * 60):
        pack_step(p, f, st, inp, bleed, 60.0)
    assert st.pk[PK_IPACK] == 0.0
    loss = ((z0 - st.x[:, X_Z]) * p.cap_as).reshape(p.n_series, -1).sum(axis=1)
    expected = (st.cache[:, C_SD] * 86400.0).reshape(p.n_series, -1).sum(axis=1)
    # parallel partners exchange charge through their terminals; the element total is the internal loss
    np.testing.assert_allclose(loss[[0, 2, 3]], expected[[0, 2, 3]], rtol=1e-4)
    # the rate is the cell's seeded 25 degC rate times the Arrhenius factor at its temperature, and the
    # seeded rates are the spec's median times a lognormal factor clipped at 3 sd, different per cell
    sp = PackSpread()
    tk = st.x[:, X_T] + 273.15
    np.testing.assert_allclose(st.cache[:, C_SD], p.sd_a25 * np.exp(-p.sd_ea_k * (1.0 / tk - 1.0 / 298.15)), rtol=1e-12)
    month_pct = 100.0 * p.sd_a25 * 30 * 86400 / p.cap_as
    log_ratio = np.log(month_pct / sp.self_discharge_pct_month)
    assert np.all(np.abs(log_ratio) <= 3.0 * sp.self_discharge_log_sd + 1e-9) and np.unique(month_pct).size == p.n_cells
    # element 1 holds the shorted cell 3: extra loss = integral of OCV / R_short
    assert loss[1] - expected[1] == pytest.approx(3.3 / 100.0 * 86400.0, rel=0.05)
    assert st.x[3, X_QTOT] - st.x[0, X_QTOT] == pytest.approx(3.3 ** 2 / 100.0 * 86400.0, rel=0.15)


# ---------------------------------------------------------------- energy
def _ocv_fn(p):
    soc = p.soc0 + p.dsoc * np.arange(p.ocv_v.shape[1])
    return RegularGridInterpolator((p.temp_c, soc), p.ocv_v, bounds_error=False, fill_value=None)


def _rc_energy(st):
    return 0.5 * np.sum(st.cache[:, C_C1] * st.x[:, X_V1] ** 2 + st.cache[:, C_C2] * st.x[:, X_V2] ** 2)


def _thermal_energy(p, st):
    return float(np.sum(p.heat_cap_j_k * st.x[:, X_T]) + st.acc[A_Q_COOL] + st.acc[A_Q_AMB]
                 + np.sum(st.x[:, X_QGEN]))


@pytest.mark.parametrize("prof_name", ["profile", "profile_g"])
@HYP
@given(segs=segments, bleed_bits=st_.integers(0, 15), seed=st_.integers(0, 50), socs=cell_socs, temps=cell_temps)
def test_energy_conservation(request, prof_name, segs, bleed_bits, seed, socs, temps):
    """Chemical energy released (integral of OCV dq, from the SOC trajectory) = energy out of the
    terminals + bleed heat on the boards + heat in the cells (seen by the thermal network) +
    change of RC energy; the load takes V_bus I_load, the path R I^2 plus the bus jumps' C dV^2 / 2.
    Also with SOC-dependent RC resistances (``profile_g``: R_j and C_j = tau_j / R_j move with
    the SOC at each coefficient refresh, the stored-energy change booked as heat)."""
    profile = request.getfixturevalue(prof_name)
    p, f, st, inp, bleed = make(profile, seed=seed, soc=socs, temp_c=temps)
    bleed[:] = [(bleed_bits >> s) & 1 for s in range(p.n_series)]
    ocv = _ocv_fn(p)
    e_chem = 0.0
    e_term = 0.0
    e_load = 0.0
    e_bleed = 0.0
    e_path_r = 0.0
    e_jump = 0.0
    e_dis = np.zeros(2)
    load_tol = 0.0
    th0, rc0, acc0, vb0 = _thermal_energy(p, st), _rc_energy(st), st.acc.copy(), st.pk[PK_VBUS]
    for i_a, n in segs:
        inp[IN_I_A] = i_a
        for _ in range(n):
            z_a, t_a, vb_a = st.x[:, X_Z].copy(), st.x[:, X_T].copy(), st.pk[PK_VBUS]
            pack_step(p, f, st, inp, bleed, DT)
            z_b = st.x[:, X_Z]
            t_grid = np.clip(t_a, p.temp_c[0], p.temp_c[-1])  # OCV is held beyond the temperature grid
            e_chem += np.sum(ocv(np.c_[t_grid, 0.5 * (z_a + z_b)]) * p.cap_as * (z_b - z_a))
            e_term += st.pk[PK_VPACK] * st.pk[PK_IPACK] * DT
            e_load -= st.pk[PK_IDEM] * st.pk[PK_VBUS] * DT  # tau of the closed path << dt
            load_tol += abs(st.pk[PK_IDEM] * (st.pk[PK_VBUS] - vb_a)) * DT  # step mean lies in [V_a, V_b]
            e_path_r += p.r_contact_ohm * st.pk[PK_IPACK] ** 2 * DT
            e_dis += np.array(sorted([vb_a ** 2, st.pk[PK_VBUS] ** 2])) / p.bus_dis_ohm * DT  # bounds
            e_jump += 0.5 * p.bus_cap_f * (st.pk[PK_VBUS] - vb_a) ** 2
            e_bleed += np.sum(bleed * st.elem[:, E_V] ** 2 / p.bleed_ohm) * DT
    heat = _thermal_energy(p, st) - th0
    d_rc = _rc_energy(st) - rc0
    scale = 1.0 + abs(e_term) + e_bleed
    assert -e_chem == pytest.approx(-e_term + (1 - p.bleed_to_cell) * e_bleed + heat + d_rc, abs=2e-4 * scale)
    d = st.acc - acc0
    assert d[A_E_TERM] == pytest.approx(e_term, rel=1e-9, abs=1e-6)
    assert d[A_E_BLEED] == pytest.approx(e_bleed, rel=1e-9, abs=1e-6)
    assert abs(d[A_E_LOAD] - e_load) <= load_tol + 1e-9 * scale
    # path heat: R_contact I^2 in steady operation plus C dV^2 / 2 per bus voltage jump
    assert e_path_r - 1e-6 * scale <= d[A_E_PATH] <= e_path_r + e_jump + 1e-6 * scale
    assert e_dis[0] * (1 - 1e-9) <= d[A_E_DIS] <= e_dis[1] * (1 + 1e-9)


# ---------------------------------------------------------------- thermal
@HYP
@given(i_a=st_.floats(-400.0, 400.0), flow=st_.floats(0.0, 0.5), t_in=st_.floats(0.0, 40.0),
       bleed_bits=st_.integers(0, 15))
def test_thermal_energy_balance(profile, i_a, flow, t_in, bleed_bits):
    """Heat generated = heat stored + heat to coolant + heat to ambient (to rounding)."""
    p, f, st, inp, bleed = make(profile)
    bleed[:] = [(bleed_bits >> s) & 1 for s in range(p.n_series)]
    inp[IN_I_A], inp[IN_FLOW], inp[IN_TCOOL] = i_a, flow, t_in
    q0, th0 = np.sum(st.x[:, X_QTOT]), _thermal_energy(p, st)
    for _ in range(300):
        pack_step(p, f, st, inp, bleed, DT)
    q_gen = np.sum(st.x[:, X_QTOT]) - q0
    assert _thermal_energy(p, st) - th0 == pytest.approx(q_gen, rel=1e-9, abs=1e-6)


def test_coolant_loop_and_coolant_loss(profile):
    """Under load the coolant warms along the string (outlet = inlet + Q / (m cp)); with the
    coolant lost the cells end hotter and the coolant carries nothing."""
    res = {}
    for scale in (1.0, 0.0):
        p, f, st, inp, bleed = make(profile, PackGeometry(thermal_every=100), dt=0.1)
        f.coolant_flow_scale[0] = scale
        inp[IN_I_A], inp[IN_FLOW], inp[IN_TCOOL] = -400.0, 0.1, 25.0
        for _ in range(6000):  # 10 min at 2C
            q_cool0 = st.acc[A_Q_COOL]
            pack_step(p, f, st, inp, bleed, 0.1)
            if st.acc[A_Q_COOL] != q_cool0:
                dq = st.acc[A_Q_COOL] - q_cool0  # heat to coolant of the last thermal update (10 s)
        res[scale] = (st.x[:, X_T].copy(), st.pk[PK_TCOOL_OUT], st.acc[A_Q_COOL])
        if scale == 1.0:
            rise = dq / 10.0 / (0.1 * p.coolant_cp)
            assert st.pk[PK_TCOOL_OUT] - 25.0 == pytest.approx(rise, rel=1e-6)
            assert rise > 0.5
            t = st.x[:, X_T]
            assert t[-10:].mean() > t[:10].mean()  # downstream cells see warmer coolant
    assert res[0.0][2] == 0.0 and res[0.0][1] == 25.0
    # without coolant the pack keeps the heat the coolant carried away (R(T) and ambient differ a bit)
    stored_extra = np.sum(p.heat_cap_j_k * (res[0.0][0] - res[1.0][0]))
    assert stored_extra == pytest.approx(res[1.0][2], rel=0.1) and res[1.0][2] > 1e5


# ---------------------------------------------------------------- analytic cases
def test_two_rc_step_response(flat_profile):
    """Flat OCV, no hysteresis: V(t) = E + I (R0 + R1 (1 - e^-t/tau1) + R2 (1 - e^-t/tau2)); the
    model's step-mean voltage equals the exact mean over each step."""
    g = PackGeometry(n_series=1, n_parallel=1, cells_per_board=1, temp_sensors_per_board=1, bus_cap_f=1e-9,
                     bus_dis_ohm=1e12, r_soc_lo_gain=0.0, r_soc_hi_gain=0.0, r_contact_ohm=1e-6)
    spread = PackSpread(0, 0, 0, 0, 0, 0)
    p, f, st, inp, bleed = make(flat_profile, g, spread)
    inp[IN_I_A] = -50.0
    r0, r1, r2, t1, t2 = 1e-3, 2e-3, 3e-3, 2.0, 20.0
    for k in range(3000):
        pack_step(p, f, st, inp, bleed, DT)
        ta, tb = k * DT, (k + 1) * DT
        mean_exp = lambda tau: tau * (math.exp(-ta / tau) - math.exp(-tb / tau)) / DT  # noqa: E731
        v = 3.3 - 50.0 * (r0 + r1 * (1 - mean_exp(t1)) + r2 * (1 - mean_exp(t2)))
        assert st.pk[PK_VPACK] == pytest.approx(v, abs=2e-7), k


def test_precharge_exponential_reference_pack(profile):
    """192s2p, 50 ohm, 1 mF: V_bus = E (1 - exp(-t / tau)), tau = (R_pre + R_contact + R_th) C
    ~ 50 ms, 95 % at ~3 tau; the resistors dissipate C V^2 / 2 (as much as the capacitor stores)."""
    g = PackGeometry(r_precharge_ohm=50.0, bus_cap_f=1e-3)
    p, f, st, inp, bleed = make(profile, g, PackSpread(), soc=0.6, close=False)
    inp[IN_K0 + K_NEG] = inp[IN_K0 + K_PRE] = 1.0
    vb, closed = [], []
    for _ in range(70):
        pack_step(p, f, st, inp, bleed, DT)
        vb.append(st.pk[PK_VBUS])
        closed.append(st.pk[PK_K0 + K_PRE])
    k0 = closed.index(1.0)
    assert k0 == 2 and vb[k0 - 1] == 0.0  # 30 ms closing delay
    e = st.pk[PK_ETH]
    tau = (p.r_pre_ohm + p.r_contact_ohm + st.pk[PK_RTH]) * p.bus_cap_f
    assert 0.049 < tau < 0.052
    vb = np.array(vb[k0:])
    t = (np.arange(vb.size) + 1) * DT
    np.testing.assert_allclose(vb / e, 1 - np.exp(-t / tau), atol=2e-3)
    t95 = t[np.argmax(vb > 0.95 * e)]
    assert 0.14 <= t95 <= 0.16
    assert st.acc[A_E_PRE] == pytest.approx(0.5 * p.bus_cap_f * st.pk[PK_VBUS] ** 2, rel=0.02)
    # closing the positive contactor now: small inrush; opening pre-charge later
    inp[IN_K0 + K_POS] = 1.0
    for _ in range(5):
        pack_step(p, f, st, inp, bleed, DT)
    assert st.pk[PK_IPEAK] < 0.05 * e / (p.r_contact_ohm + st.pk[PK_RTH])


def test_closing_without_precharge_gives_inrush_and_path_heat(profile):
    p, f, st, inp, bleed = make(profile, close=False)
    inp[IN_K0 + K_NEG] = inp[IN_K0 + K_POS] = 1.0
    for _ in range(10):
        pack_step(p, f, st, inp, bleed, DT)
    e = st.pk[PK_ETH]
    assert st.pk[PK_IPEAK] > 0.9 * e / (st.pk[PK_RTH] + p.r_contact_ohm)
    assert st.acc[A_E_PATH] == pytest.approx(0.5 * p.bus_cap_f * e ** 2, rel=0.05)


# ---------------------------------------------------------------- cells
def test_parallel_cells_equalise_at_rest(profile):
    p, f, st, inp, bleed = make(profile, close=False, dt=1.0)
    st.x[0::2, X_Z] = 0.3
    st.x[1::2, X_Z] = 0.5
    for _ in range(3600):
        pack_step(p, f, st, inp, bleed, 1.0)
    z = st.x[:, X_Z].reshape(p.n_series, 2)
    assert np.all(z[:, 1] - z[:, 0] < 0.2 - 0.002)  # the gap shrinks (hysteresis slows it: LFP)
    i = st.x[:, X_I].reshape(p.n_series, 2)
    assert np.all(i[:, 0] > 0.0)  # the emptier cell is charged by its partner
    np.testing.assert_allclose(i.sum(axis=1), 0.0, atol=1e-9)


def test_hysteresis_per_cell_and_rest_voltage(profile):
    """After discharge h -> -1 and the rest voltage sits below the one after charge."""
    rest_v = {}
    for sign in (-1.0, 1.0):
        p, f, st, inp, bleed = make(profile, soc=0.5 - 0.254 * sign)
        inp[IN_I_A] = 200.0 * sign
        for _ in range(int(1000 / 0.1)):
            pack_step(p, f, st, inp, bleed, 0.1)
        assert np.all(np.sign(st.x[:, X_H]) == sign) and np.all(np.abs(st.x[:, X_H]) > 0.9)
        inp[IN_I_A] = 0.0
        for _ in range(int(3600 / 1.0)):
            pack_step(p, f, st, inp, bleed, 1.0)
        rest_v[sign] = st.elem[:, E_V].mean()
    assert rest_v[1.0] - rest_v[-1.0] > 0.03


def test_arrhenius_resistance(profile):
    """At grid temperatures the table value; between them ln R linear in 1/T (below the linear
    interpolation of R, which is convex in T); beyond the grid extrapolated, then held."""
    p = build_params(profile, SMALL, PackSpread(0, 0, 0, 0, 0, 0))
    tab = profile.tables["r0_dis_ohm"]
    for k, t in enumerate(profile.temp_c):
        assert arrhenius(p.ln_r0d, p.temp_c, p.inv_temp_k, t, 20.0) == pytest.approx(tab[k], rel=1e-12)
    mid = arrhenius(p.ln_r0d, p.temp_c, p.inv_temp_k, 0.0, 20.0)
    assert tab[1] < mid < 0.5 * (tab[0] + tab[1])
    cold = arrhenius(p.ln_r0d, p.temp_c, p.inv_temp_k, -15.0, 20.0)
    colder = arrhenius(p.ln_r0d, p.temp_c, p.inv_temp_k, -25.0, 20.0)
    assert tab[0] < cold < colder == arrhenius(p.ln_r0d, p.temp_c, p.inv_temp_k, -40.0, 20.0)
    st = init_state(p, temp_c=np.linspace(0.0, 40.0, p.n_cells))
    assert np.all(np.diff(st.cache[:, C_R0D]) < 0) and np.all(st.cache[:, C_R0C] > 0)


def test_rc_resistances_follow_the_rc_soc_factor(profile_g):
    """R1 and R2 in the coefficient cache are the Arrhenius values times G(T, z) at each cell's
    SOC (the profile's rc_soc_factor, bilinear), so C_j = tau_j / R_j; the cell's polarisation
    after a discharge pulse is larger at low SOC."""
    from hil.pack import C_R1, C_R2

    p = build_params(profile_g, SMALL, PackSpread(0, 0, 0, 0, 0, 0))
    flat = build_params(synthetic_lfp100_profile(), SMALL, PackSpread(0, 0, 0, 0, 0, 0))
    socs = np.linspace(0.05, 0.95, p.n_cells)
    temps = np.linspace(-10.0, 40.0, p.n_cells)
    st = init_state(p, soc=socs, temp_c=temps)
    st0 = init_state(flat, soc=socs, temp_c=temps)
    tab = profile_g.tables["rc_soc_factor"]
    t = np.clip(temps, profile_g.temp_c[0], profile_g.temp_c[-1])
    g = [np.interp(tc, profile_g.temp_c, [np.interp(z, profile_g.soc, row) for row in tab]) for z, tc in zip(socs, t)]
    for col in (C_R1, C_R2):
        np.testing.assert_allclose(st.cache[:, col], np.array(g) * st0.cache[:, col], rtol=1e-12)
    np.testing.assert_allclose(st.cache[:, C_C1] * st.cache[:, C_R1], st0.cache[:, C_C1] * st0.cache[:, C_R1], rtol=1e-12)


def test_resistance_rises_near_empty(profile):
    drops = []
    for soc in (0.02, 0.5):
        p, f, st, inp, bleed = make(profile, soc=soc)
        v0 = st.pk[PK_VPACK]
        inp[IN_I_A] = -100.0
        pack_step(p, f, st, inp, bleed, DT)
        drops.append(v0 - st.pk[PK_VPACK])
    assert drops[0] > 1.3 * drops[1]


@settings(max_examples=200, deadline=None)
@given(y=st_.floats(0.0, 50.0))
def test_exp_neg_series_matches_exp(y):
    from hil.pack.model import exp_neg

    assert abs(exp_neg(y) - math.exp(-y)) <= 3e-11 * math.exp(-y)
