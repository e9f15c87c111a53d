"""The equivalent-circuit cell model kernel against analytic solutions and its invariants."""

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from bms.model import IH, IV1, IV2, IZ, initial_state, model_step, simulate


def test_rc_step_response_matches_analytic(winston):
    """A current step through RC pair j gives v_j(t) = R_j i (1 - exp(-t / tau_j)), exactly
    at every sample, whatever the step size (zero-order hold is exact for constant current)."""
    p = winston.params
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
