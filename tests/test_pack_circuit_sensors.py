"""Pack model (hil.pack): contactors, precharge and bus circuit, faults, sensors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st_

from bms.profile import CellLimits, Profile, load_profile, save_profile
from hil.pack import (
    E_IBL, E_V, IN_I_A, IN_K0, IN_KIND, IN_P_W, K_NEG, K_POS, K_PRE, PK_IDEM, PK_IPACK, PK_K0, PK_KBREAK0,
    PK_KFB0, PK_PLIM, PK_PRE_FUSED, PK_TPRE, PK_VBUS, S_GAIN, S_HI, S_LO, S_NOISE, S_OFFSET, S_QUANT, X_I, X_Z,
    PackGeometry, PackSpread, copy_state, pack_step, sample_sensors,
)
from hil.pack.ready import ready_pack
from hil.pack.sensors import seed_rng
from hil.pack.synthetic import synthetic_lfp100_profile

DT = 0.01
SMALL = PackGeometry(n_series=4, n_parallel=2, cells_per_board=4, temp_sensors_per_board=2, thermal_every=10)
NO_SD = PackSpread(self_discharge_pct_month=0.0)


@pytest.fixture(scope="module")
def profile(tmp_path_factory):
    return synthetic_lfp100_profile(tmp_path_factory.mktemp("profile"))


def make(profile, geom=SMALL, spread=NO_SD, soc=0.5, temp_c=25.0, seed=0, close=True, dt=DT):
    return ready_pack(profile, geom, spread, soc=soc, temp_c=temp_c, seed=seed, close=close, dt_s=dt)


# ---------------------------------------------------------------- circuit and faults
def test_precharge_resistor_open_and_welded_contactor(profile):
    p, f, st, inp, bleed = make(profile, close=False)
    f.precharge_open[0] = 1
    inp[IN_K0 + K_NEG] = inp[IN_K0 + K_PRE] = 1.0
    for _ in range(50):
        pack_step(p, f, st, inp, bleed, DT)
    assert st.pk[PK_K0 + K_PRE] == 1.0 and st.pk[PK_VBUS] == 0.0 and st.pk[PK_IPACK] == 0.0
    p, f, st, inp, bleed = make(profile)
    f.k_welded[K_POS] = 1
    inp[IN_I_A] = -100.0
    pack_step(p, f, st, inp, bleed, DT)
    inp[IN_K0 + K_POS] = 0.0
    for _ in range(10):
        pack_step(p, f, st, inp, bleed, DT)
    assert st.pk[PK_K0 + K_POS] == 1.0 and st.pk[PK_IPACK] == pytest.approx(-100.0, abs=0.5)
    inp[IN_K0 + K_NEG] = 0.0  # opening the healthy negative contactor under load
    for _ in range(5):
        pack_step(p, f, st, inp, bleed, DT)
    assert st.pk[PK_K0 + K_NEG] == 0.0 and st.pk[PK_IPACK] == 0.0
    assert st.pk[PK_KBREAK0 + K_NEG] == pytest.approx(100.0, abs=0.5)


def test_open_contactors_leave_only_bleed(profile):
    p, f, st, inp, bleed = make(profile, close=False)
    bleed[1] = 1
    for _ in range(100):
        pack_step(p, f, st, inp, bleed, DT)
    v = st.elem[:, E_V]
    assert st.pk[PK_IPACK] == 0.0
    assert st.elem[1, E_IBL] == pytest.approx(v[1] / p.bleed_ohm[1]) and 0.09 < st.elem[1, E_IBL] < 0.11
    assert np.all(st.elem[[0, 2, 3], E_IBL] == 0.0)
    i_el = st.x[:, X_I].reshape(p.n_series, p.n_parallel).sum(axis=1)
    np.testing.assert_allclose(i_el, -st.elem[:, E_IBL], atol=1e-9)


def test_power_demand(profile):
    p, f, st, inp, bleed = make(profile, soc=0.7)
    inp[IN_KIND], inp[IN_P_W] = 1.0, -3000.0
    for _ in range(50):
        pack_step(p, f, st, inp, bleed, DT)
    assert st.pk[PK_VBUS] * st.pk[PK_IDEM] == pytest.approx(-3000.0, rel=1e-3)
    assert st.pk[PK_PLIM] == 0.0
    inp[IN_P_W] = -1e9  # beyond E^2 / 4R: maximum power, flagged
    pack_step(p, f, st, inp, bleed, DT)
    assert st.pk[PK_PLIM] == 1.0 and np.isfinite(st.pk[PK_IPACK])


# ---------------------------------------------------------------- sensors
def test_sensors_quantised_deterministic_and_noisy(profile):
    p, f, st, inp, bleed = make(profile, seed=5)
    inp[IN_I_A] = -50.0
    pack_step(p, f, st, inp, bleed, DT)
    st2 = copy_state(st)
    sample_sensors(p, f, st, 0.1)
    sample_sensors(p, f, st2, 0.1)
    assert np.array_equal(st.meas, st2.meas)
    ns = p.n_series
    mv = st.meas[:ns] * 1000.0
    assert np.allclose(mv, np.round(mv), atol=1e-6)
    assert np.all(np.abs(st.meas[:ns] - st.elem[:, E_V]) < 0.006)
    assert abs(st.meas[p.ch_current] + 50.0) < 1.5 and abs(st.meas[p.ch_bus_v] - st.pk[PK_VBUS]) < 2.0
    # noise statistics: many samples of one channel with calibration errors removed
    p.sens[0, :3] = (1.0, 0.0, 0.5e-3)
    err = []
    for _ in range(3000):
        sample_sensors(p, f, st, 0.01)
        err.append(st.meas[0] - st.truth[0])
    sd = np.std(err)
    assert 0.85 < sd / math.sqrt(0.5e-3 ** 2 + 1e-6 / 12) < 1.15
    assert abs(np.mean(err)) < 1e-4
    st3 = copy_state(st)
    st3.rng[:] = seed_rng(6)
    sample_sensors(p, f, st, 0.01)
    sample_sensors(p, f, st3, 0.01)
    assert not np.array_equal(st.meas, st3.meas)


def test_sensor_faults(profile):
    p, f, st, inp, bleed = make(profile)
    pack_step(p, f, st, inp, bleed, DT)
    sample_sensors(p, f, st, 0.1)
    clean = st.meas.copy()
    f.wire_open[2] = 1  # between element 1 and element 2
    f.wire_shift_v[2] = 0.3
    k = p.ch_temp(1)
    f.sens_stuck[k] = 1
    f.sens_stuck_val[k] = p.sens[k, S_LO]  # temperature sensor open
    f.sens_offset[p.ch_current] = 5.0
    f.sens_drift_per_s[p.ch_pack_v] = 1.0
    sample_sensors(p, f, st, 10.0)
    assert st.meas[1] - clean[1] == pytest.approx(0.3, abs=0.005)
    assert st.meas[2] - clean[2] == pytest.approx(-0.3, abs=0.005)
    assert abs(st.meas[0] - clean[0]) < 0.005 and abs(st.meas[3] - clean[3]) < 0.005
    assert st.meas[k] == p.sens[k, S_LO]
    assert st.meas[p.ch_current] - clean[p.ch_current] == pytest.approx(5.0, abs=0.8)
    assert st.meas[p.ch_pack_v] - clean[p.ch_pack_v] == pytest.approx(10.0, abs=1.5)
    f.sens_gain_err[p.ch_bus_v] = 1e6  # absurd reading clamps to the range
    sample_sensors(p, f, st, 0.1)
    assert st.meas[p.ch_bus_v] == p.sens[p.ch_bus_v, S_HI]


def test_contactor_feedback_follows_position_unless_stuck(profile):
    p, f, st, inp, bleed = make(profile)
    assert list(st.pk[PK_KFB0:PK_KFB0 + 3]) == [1.0, 0.0, 1.0]
    f.k_fb_stuck[K_POS] = 1
    f.k_fb_stuck_val[K_POS] = 1
    inp[IN_K0 + K_POS] = 0.0
    for _ in range(5):
        pack_step(p, f, st, inp, bleed, DT)
    assert st.pk[PK_K0 + K_POS] == 0.0 and st.pk[PK_KFB0 + K_POS] == 1.0  # opened, feedback says closed
    assert st.pk[PK_IPACK] == 0.0


def test_stuck_open_contactor_never_closes(profile):
    p, f, st, inp, bleed = make(profile, close=False)
    f.k_stuck_open[K_NEG] = 1
    with pytest.raises(RuntimeError, match="drive position"):
        from hil.pack.ready import precharge_and_close
        precharge_and_close(p, f, st, inp, bleed, DT)
    assert st.pk[PK_VBUS] == 0.0


@pytest.fixture(scope="module")
def one_temp_profile(tmp_path_factory) -> Profile:
    """A profile on a single temperature (like a 25 degC-only lab set)."""
    soc = np.linspace(0.0, 1.0, 21)
    one = np.ones(1)
    prof = Profile(
        name="one_temp", path=Path("."), chemistry="LFP", capacity_ah=2.5, eta_chg=0.998,
        limits=CellLimits(2.5, 3.6, 2.0, 10.0, 10.0, 70.0, 0.0, 60.0), soc=soc, temp_c=np.array([25.0]),
        tables={"ocv_v": (3.0 + 0.4 * soc)[None, :], "hyst_v": np.full((1, soc.size), 0.01),
                "r0_chg_ohm": 0.01 * one, "r0_dis_ohm": 0.012 * one, "r1_ohm": 0.005 * one, "tau1_s": 10 * one,
                "r2_ohm": 0.0 * one, "tau2_s": 100 * one, "gamma": 100 * one, "m0_v": 0.002 * one},
    )
    return load_profile(save_profile(prof, tmp_path_factory.mktemp("one") / "one_temp.toml"))


def test_single_temperature_profile_and_over_discharge(one_temp_profile):
    """Any valid profile works (one temperature, R2 = 0); below the SOC table the OCV collapses."""
    g = PackGeometry(n_series=4, n_parallel=3, cells_per_board=4, temp_sensors_per_board=4, ocv_edge_slope_v=10.0)
    p, f, st, inp, bleed = make(one_temp_profile, g, PackSpread(soc0_sd=0.0), soc=0.02, temp_c=0.0)
    inp[IN_I_A] = -7.5  # 1C
    v = []
    for _ in range(int(150 / 0.1)):
        pack_step(p, f, st, inp, bleed, 0.1)
        v.append(st.elem[:, E_V].min())
    z = st.x[:, X_Z]
    assert np.all(z < 0.0) and np.all(np.isfinite(st.x))
    # OCV at -2 % SOC is 0.2 V below the table's end, the resistive drop adds on top
    assert v[-1] < 3.0 - 10.0 * 0.01 and v[-1] < v[len(v) // 2]
    np.testing.assert_allclose(st.x[:, X_I].reshape(4, 3).sum(axis=1), st.pk[PK_IPACK], rtol=1e-9)
    assert st.pk[PK_IPACK] == pytest.approx(-7.5, abs=1e-3)  # the DC-link discharge resistor takes the rest


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(gain=st_.floats(0.5, 1.5), offset=st_.floats(-1.0, 1.0), quant=st_.sampled_from([0.0, 1e-3, 0.1, 0.5]),
       noise=st_.floats(0.0, 0.2), lo=st_.floats(-5.0, 3.0), span=st_.floats(0.1, 10.0), seed=st_.integers(0, 99))
def test_sensor_channel_law(profile, gain, offset, quant, noise, lo, span, seed):
    """Every reading is on the quantisation grid (or a range end) and inside the range; without
    noise it is exactly clamp(Q(gain x + offset))."""
    p, f, st, inp, bleed = make(profile, seed=seed)
    pack_step(p, f, st, inp, bleed, DT)
    ns = p.n_series
    p.sens[:ns, S_GAIN], p.sens[:ns, S_OFFSET], p.sens[:ns, S_QUANT] = gain, offset, quant
    p.sens[:ns, S_LO], p.sens[:ns, S_HI] = lo, lo + span
    p.sens[:ns, S_NOISE] = 0.0
    sample_sensors(p, f, st, 0.1)
    y = gain * st.truth[:ns] + offset
    if quant > 0:
        y = np.floor(y / quant + 0.5) * quant
    np.testing.assert_allclose(st.meas[:ns], np.clip(y, lo, lo + span), rtol=0, atol=1e-12)
    p.sens[:ns, S_NOISE] = noise
    for _ in range(5):
        sample_sensors(p, f, st, 0.1)
        m = st.meas[:ns]
        assert np.all((m >= lo) & (m <= lo + span))
        if quant > 0:
            inner = (m > lo) & (m < lo + span)
            k = m[inner] / quant
            np.testing.assert_allclose(k, np.round(k), atol=1e-6)


def test_precharge_resistor_heats_and_fuses_into_a_short(profile):
    """A normal precharge warms the resistor by about C V^2 / 2 / C_th; precharging into a shorted
    DC link (5 ohm) overheats it within seconds and its thermal fuse opens the path."""
    p, f, st, inp, bleed = make(profile, PackGeometry(), soc=0.6, close=False)
    inp[IN_K0 + K_NEG] = inp[IN_K0 + K_PRE] = 1.0
    for _ in range(100):
        pack_step(p, f, st, inp, bleed, DT)
    rise = st.pk[PK_TPRE] - 25.0
    assert rise == pytest.approx(0.5 * p.bus_cap_f * st.pk[PK_VBUS] ** 2 / p.pre_heat_cap_j_k, rel=0.03)
    assert st.pk[PK_PRE_FUSED] == 0.0
    p, f, st, inp, bleed = make(profile, PackGeometry(bus_dis_ohm=5.0), soc=0.6, close=False)
    inp[IN_K0 + K_NEG] = inp[IN_K0 + K_PRE] = 1.0
    t_fuse = None
    for k in range(1000):
        pack_step(p, f, st, inp, bleed, DT)
        if t_fuse is None and st.pk[PK_PRE_FUSED] == 1.0:
            t_fuse = k * DT
    assert t_fuse is not None and 0.5 < t_fuse < 5.0
    assert st.pk[PK_IPACK] == 0.0 and st.pk[PK_VBUS] < 1.0 and st.pk[PK_TPRE] < p.pre_fuse_c + 10.0


def test_bound_step_and_sensors_match_the_dispatcher(profile):
    """hil.pack.bound: same evolution and readings as the plain calls, in-place inputs seen."""
    from hil.pack.bound import bind_sensors, bind_step

    p, f, st, inp, bleed = make(profile, seed=3)
    st2 = copy_state(st)
    inp2, bleed2 = inp.copy(), bleed.copy()
    step, sample = bind_step(p, f, st2, inp2, bleed2), bind_sensors(p, f, st2)
    for k in range(200):
        inp[IN_I_A] = inp2[IN_I_A] = -100.0 if k < 100 else 50.0
        bleed[1] = bleed2[1] = 1 if k > 50 else 0
        pack_step(p, f, st, inp, bleed, DT)
        step(DT)
        if k % 10 == 0:
            sample_sensors(p, f, st, 0.1)
            sample(0.1)
    for a, b in zip(st, st2):
        np.testing.assert_array_equal(a, b)
    assert st2.elem[1, E_IBL] > 0.0 and st2.pk[PK_IPACK] == pytest.approx(50.0, abs=0.1)
