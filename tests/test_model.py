"""The equivalent-circuit cell model kernel against analytic solutions and its invariants."""

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from bms.model import IH, IV1, IV2, IZ, initial_state, model_step, simulate


def test_rc_step_response_matches_analytic(winston):
    """A current step through RC pair j gives v_j(t) = R_j i (1 - exp(-t / tau_j)), exactly
    at every sample, whatever the step size (zero-order hold is exact for constant current).
    The RC SOC factor G is set to 1 here (the SOC moves during the step response)."""
    p = winston.params
    p = p._replace(rc_soc_factor=np.ones_like(p.rc_soc_factor), rc_soc_on=False)
    j = int(np.searchsorted(p.temp_c, 25.0))
    r1, tau1, r2, tau2 = p.r1_ohm[j], p.tau1_s[j], p.r2_ohm[j], p.tau2_s[j]
    i = -50.0
    for dt in (0.1, 1.0, 7.3):
        x = initial_state(1, 0.6)
        n = int(600 / dt)
        v_out = np.empty(1)
        for k in range(1, n + 1):
            model_step(p, x, np.array([i]), np.array([25.0]), dt, v_out)
            t = k * dt
            assert math.isclose(x[0, IV1], r1 * i * (1 - math.exp(-t / tau1)), rel_tol=1e-9, abs_tol=1e-12)
            assert math.isclose(x[0, IV2], r2 * i * (1 - math.exp(-t / tau2)), rel_tol=1e-9, abs_tol=1e-12)


def test_hysteresis_relaxes_towards_current_sign(winston):
    """dh/dt = -gamma |i| / Q (h - sign i): h(t) = sign(i) + (h0 - sign(i)) exp(-gamma |i| t / Q)."""
    p = winston.params
    i = 20.0
    j = int(np.searchsorted(p.temp_c, 25.0))
    xs = initial_state(1, 0.5, h=-1.0)
    v_out = np.empty(1)
    for _ in range(100):
        model_step(p, xs, np.array([i]), np.array([25.0]), 1.0, v_out)
    expect = 1.0 + (-1.0 - 1.0) * math.exp(-p.gamma[j] * i * 100 / (3600 * p.capacity_ah))
    assert math.isclose(xs[0, IH], expect, rel_tol=1e-9)


@given(st.lists(st.floats(-300, 300), min_size=1, max_size=200), st.floats(0.05, 0.95), st.floats(0.1, 5.0))
def test_soc_integrates_charge_with_efficiency(winston, currents, z0, dt):
    """SOC moves by exactly eta * sum(i dt) / (3600 Q) with eta applied to charge only."""
    p = winston.params
    i = np.asarray(currents)
    x = initial_state(1, z0)
    v_out = np.empty(1)
    for ik in i:
        model_step(p, x, np.array([ik]), np.array([25.0]), dt, v_out)
    expect = z0 + (np.sum(np.where(i > 0, p.eta_chg * i, i)) * dt) / (3600 * p.capacity_ah)
    assert math.isclose(x[0, IZ], expect, rel_tol=0, abs_tol=1e-12)
    assert -1.0 <= x[0, IH] <= 1.0


@given(st.floats(-40, 80), st.floats(0.0, 1.0))
def test_voltage_is_ocv_plus_hysteresis_at_rest(winston, temp_c, z):
    """With no current and relaxed RC pairs, v = OCV(z, T) + M(z, T) h (+ M0 s)."""
    p = winston.params
    lo = initial_state(1, z, h=-1.0)
    hi = initial_state(1, z, h=1.0)
    v_lo, _ = simulate(p, lo[0], np.zeros(1), np.full(1, temp_c), 1.0)
    v_hi, _ = simulate(p, hi[0], np.zeros(1), np.full(1, temp_c), 1.0)
    assert v_hi[0] >= v_lo[0]
    assert 2.0 < v_lo[0] < 4.2


@given(st.floats(0.0, 1.0), st.floats(-10.0, 60.0), st.sampled_from([-150.0, -20.0, 30.0]))
def test_series_resistance_follows_the_soc_factor(winston, z, temp_c, i):
    """From a rested state the instantaneous voltage step is R0(T, sign i) F(T, z) i, F the
    profile's r0_soc_factor interpolated bilinearly (LFP's resistance rises toward empty)."""
    p = winston.params
    x = initial_state(1, z)[0]
    v0, _ = simulate(p, x, np.zeros(1), np.full(1, temp_c), 1.0)
    v1, _ = simulate(p, x, np.full(1, i), np.full(1, temp_c), 1.0)
    t = np.clip(temp_c, p.temp_c[0], p.temp_c[-1])
    r0 = np.interp(t, p.temp_c, p.r0_chg_ohm if i > 0 else p.r0_dis_ohm)
    soc = p.soc0 + p.dsoc * np.arange(p.r0_soc_factor.shape[1])
    f_t = [np.interp(z, soc, row) for row in p.r0_soc_factor]
    f = np.interp(t, p.temp_c, f_t)
    assert math.isclose(v1[0] - v0[0], r0 * f * i, rel_tol=1e-9, abs_tol=1e-12)


def test_shipped_soc_factor_rises_toward_empty(winston):
    """The fitted factor is 1 at the reference SOC 0.7 and never increases with SOC."""
    f = winston.params.r0_soc_factor
    assert np.allclose(f[:, 70], 1.0, atol=1e-4)
    assert np.all(np.diff(f, axis=1) <= 1e-9)
    assert f[:, 10].min() > 1.0  # drive data at 5 and 25 C show the rise below 0.5


@given(st.floats(0.0, 1.0), st.floats(-10.0, 60.0), st.sampled_from([-150.0, -20.0, 30.0]),
       st.floats(-0.02, 0.02), st.floats(-0.03, 0.03))
def test_rc_resistances_follow_the_rc_soc_factor(winston, z, temp_c, i, v1, v2):
    """One step: vj' = aj vj + Rj(T) G(T, z) (1 - aj) i with G the profile's rc_soc_factor
    (here a steep one, 1 + 2 (1 - z)^2, x 1.3 at the coldest grid temperature) interpolated
    bilinearly at the step's start SOC (LFP's polarisation rises toward empty)."""
    p = winston.params
    soc_g = p.soc0 + p.dsoc * np.arange(p.ocv_v.shape[1])
    steep = (1.0 + 2.0 * (1.0 - soc_g) ** 2)[None, :] * np.where(np.arange(p.temp_c.size) == 0, 1.3, 1.0)[:, None]
    p = p._replace(rc_soc_factor=np.ascontiguousarray(steep), rc_soc_on=True)
    x = initial_state(1, z)
    x[0, IV1], x[0, IV2] = v1, v2
    dt = 2.0
    model_step(p, x, np.array([i]), np.array([temp_c]), dt, np.empty(1))
    t = np.clip(temp_c, p.temp_c[0], p.temp_c[-1])
    soc = p.soc0 + p.dsoc * np.arange(p.rc_soc_factor.shape[1])
    g = np.interp(t, p.temp_c, [np.interp(z, soc, row) for row in p.rc_soc_factor])
    for idx, v0, r, tau in ((IV1, v1, p.r1_ohm, p.tau1_s), (IV2, v2, p.r2_ohm, p.tau2_s)):
        a = math.exp(-dt / np.interp(t, p.temp_c, tau))
        want = a * v0 + np.interp(t, p.temp_c, r) * g * (1 - a) * i
        assert math.isclose(x[0, idx], want, rel_tol=1e-9, abs_tol=1e-12)
