"""Invariants of the SOC estimators (hypothesis) and their reaction to bad samples."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bms.model import initial_state, simulate
from bms.soc import estimator as E
from bms.soc.layout import FLAG_I_HELD, FLAG_T_HELD, FLAG_V_HELD, IBIAS, IFLAGS, IH, INHELD, IZ
from bms.soc.pack import PS_DISPLAY, PS_MAX, PS_MEAN, PS_MIN, pack_soc_step

samples = st.lists(
    st.tuples(st.floats(-400, 300), st.floats(2.5, 3.8), st.floats(-30, 60)), min_size=1, max_size=120)


def _with_rc_soc_factor(p, read_only=False):
    """The params with a steep RC SOC factor G = 1 + 2 (1 - z)^2 (x 1.3 at the coldest grid T);
    ``read_only`` as the loaded profile's table, so that the firmware's compiled signature of
    soc_step serves (a writable one is another signature: ~25 CPU s to compile cold)."""
    from bms.model import rc_soc_on

    z = p.soc0 + p.dsoc * np.arange(p.ocv_v.shape[1])
    g = (1.0 + 2.0 * (1.0 - z) ** 2)[None, :] * np.where(np.arange(p.temp_c.size) == 0, 1.3, 1.0)[:, None]
    g = np.ascontiguousarray(g)
    g.setflags(write=not read_only)
    return p._replace(rc_soc_factor=g, rc_soc_on=rc_soc_on(g))


@pytest.mark.parametrize("kind", [E.EST_EKF, E.EST_CC])
@pytest.mark.parametrize("with_g", [False, True])
@given(seq=samples, z0=st.floats(0, 1), dt=st.floats(0.01, 10))
def test_covariance_spd_and_soc_bounded(winston, kind, seq, z0, dt, with_g):
    """Also with an RC SOC factor G (the EKF's RC update and its dG/dz Jacobian term)."""
    p = _with_rc_soc_factor(winston.params, read_only=True) if with_g else winston.params
    tune = E.default_tuning(kind, p)
    x, P = E.new_state(3, p, tune)
    E.init_at_soc(p, tune, x, P, z0, 25.0)
    ok = np.ones(3, dtype=np.bool_)
    for i_a, v, t in seq:
        E.soc_step(kind, p, tune, x, P, i_a, np.array([v, v + 0.01, v - 0.01]), np.full(3, t), ok, dt)
        assert np.all((x[:, IZ] >= 0) & (x[:, IZ] <= 1))
        assert np.all(np.abs(x[:, IH]) <= 1)
        if kind == E.EST_EKF:
            assert np.allclose(P, np.transpose(P, (0, 2, 1)), rtol=0, atol=0)
            for c in range(3):
                np.linalg.cholesky(P[c])  # raises if not positive definite


@given(bad=st.sampled_from([math.nan, math.inf, -math.inf]), which=st.sampled_from(["v", "i", "t", "valid"]))
def test_non_finite_samples_never_reach_the_state(winston, bad, which):
    p = winston.params
    tune = E.default_tuning(E.EST_EKF, p)
    x, P = E.new_state(1, p, tune)
    E.init_at_soc(p, tune, x, P, 0.6, 25.0)
    ok = np.ones(1, dtype=np.bool_)
    E.soc_step(E.EST_EKF, p, tune, x, P, -20.0, np.array([3.28]), np.array([25.0]), ok, 1.0)
    v, i, t = np.array([3.27]), -20.0, np.array([25.0])
    if which == "v":
        v[0] = bad
    elif which == "i":
        i = bad
    elif which == "t":
        t[0] = bad
    else:
        ok[0] = False
    E.soc_step(E.EST_EKF, p, tune, x, P, i, v, t, ok, 1.0)
    assert np.all(np.isfinite(x)) and np.all(np.isfinite(P))
    flag = {"v": FLAG_V_HELD, "valid": FLAG_V_HELD, "i": FLAG_I_HELD, "t": FLAG_T_HELD}[which]
    assert int(x[0, IFLAGS]) & flag
    assert x[0, INHELD] == 1


def test_coulomb_counting_conserves_charge(winston):
    """Without rests (no recalibration) the CC estimate is exactly the charge balance."""
    p = winston.params
    tune = E.tuning_vector(p, rest_s=1e12)
    rng = np.random.default_rng(1)
    i = rng.uniform(-150, 60, 5000)
    x, P = E.new_state(1, p, tune)
    E.init_at_soc(p, tune, x, P, 0.7, 25.0)
    ok = np.ones(1, dtype=np.bool_)
    for ik in i:
        E.soc_step(E.EST_CC, p, tune, x, P, ik, np.array([3.3]), np.array([25.0]), ok, 1.0)
    # sample k's current acts over the following interval: the last one is not integrated yet
    used = i[:-1]
    expect = 0.7 + np.sum(np.where(used > 0, p.eta_chg * used, used)) / (3600 * p.capacity_ah)
    assert x[0, IZ] == pytest.approx(expect, abs=1e-12)


def _model_data(p, z0, n, seed, offset_a=0.0, noise_v=0.002):
    rng = np.random.default_rng(seed)
    blocks = rng.choice([-120.0, -40.0, 0.0, 40.0, 60.0], size=n // 60 + 1)  # mean -12 A: stays in range
    i = np.repeat(blocks, 60)[:n] + rng.normal(0, 3, n)
    v, z = simulate(p, initial_state(1, z0, h=-1.0)[0], i, np.full(n, 25.0), 1.0)
    return i + offset_a, v + rng.normal(0, noise_v, n), z


@pytest.mark.parametrize("seed", [0, 1])
def test_ekf_converges_from_wrong_start_on_model_data(winston, seed):
    p = winston.params
    n = 4 * 3600
    i, v, z = _model_data(p, 0.75, n, seed)  # truth on the upper OCV plateau
    tune = E.default_tuning(E.EST_EKF, p)
    x, P = E.new_state(1, p, tune)
    E.init_at_soc(p, tune, x, P, z[0] - 0.2, 25.0)  # estimate on the lower plateau
    ok = np.ones(1, dtype=np.bool_)
    err = np.empty(n)
    for k in range(n):
        E.soc_step(E.EST_EKF, p, tune, x, P, i[k], v[k:k + 1], np.array([25.0]), ok, 1.0 if k else 0.0)
        err[k] = x[0, IZ] - z[k]
    assert np.max(np.abs(err[:60])) > 0.05  # the wrong start is visible at first
    assert np.max(np.abs(err[-3600:])) < 0.02


def test_ekf_estimates_current_offset_on_model_data(winston):
    p = winston.params
    n = 6 * 3600
    i, v, z = _model_data(p, 0.95, n, 3, offset_a=1.0)
    tune = E.default_tuning(E.EST_EKF, p)
    x, P = E.new_state(1, p, tune)
    E.init_at_soc(p, tune, x, P, z[0], 25.0)
    ok = np.ones(1, dtype=np.bool_)
    for k in range(n):
        E.soc_step(E.EST_EKF, p, tune, x, P, i[k], v[k:k + 1], np.array([25.0]), ok, 1.0 if k else 0.0)
    # coulomb counting alone would be off by 1 A * 6 h = 5.5 % of capacity
    assert abs(x[0, IZ] - z[-1]) < 0.02
    assert x[0, IBIAS] == pytest.approx(1.0, abs=0.5)


@given(st.lists(st.floats(0, 1), min_size=2, max_size=16), st.floats(0, 1), st.floats(0, 1))
def test_pack_display_never_jumps(cells, shift, frac):
    z = np.asarray(cells)
    disp = np.array([-1.0])
    out = np.empty(4)
    pack_soc_step(z, 0.0, 100.0, 1.0, 1e-4, 2.0, 0.2, disp, out)
    assert out[PS_MIN] <= out[PS_MEAN] <= out[PS_MAX]
    first = out[PS_DISPLAY]
    z2 = np.clip(z + shift * frac - 0.5 * shift, 0, 1)  # a filter correction moves every cell
    pack_soc_step(z2, -50.0, 100.0, 1.0, 1e-4, 2.0, 0.2, disp, out)
    assert abs(out[PS_DISPLAY] - first) <= 1e-4 + 2.0 * 50.0 / 360000.0 + 1e-12
    assert out[PS_DISPLAY] <= first + 1e-12  # never rises while discharging


def test_pack_display_reaches_limits():
    disp = np.array([-1.0])
    out = np.empty(4)
    z = np.array([0.2, 0.25, 0.3])
    pack_soc_step(z, 0.0, 100.0, 1.0, 1e-4, 2.0, 0.2, disp, out)
    for _ in range(20000):  # discharge at 1C until the weakest cell is empty
        z = np.maximum(z - 100.0 / 360000.0, 0.0)
        pack_soc_step(z, -100.0, 100.0, 1.0, 1e-4, 2.0, 0.2, disp, out)
        if z.min() == 0.0:
            break
    assert out[PS_DISPLAY] == pytest.approx(0.0, abs=1e-3)


@given(u=st.one_of(st.floats(0, 0.0625), st.floats(0, 50)))
def test_exp_neg_matches_libm(u):
    """The EKF's polynomial exp(-u) (used for the hysteresis decay) is exact to double-precision
    noise on both sides of its switch to libm."""
    from bms.soc.ekf import exp_neg

    assert abs(exp_neg(u) - math.exp(-u)) <= 1e-12 * math.exp(-u)


@pytest.mark.parametrize("temp_c", [-5.0, 12.0, 25.0])
def test_ekf_rc_update_follows_the_rc_soc_factor(winston, temp_c):
    """Time update without a voltage sample: vj' = aj vj + Rj(T) G(T, z) (1 - aj) i, G taken at
    the SOC before the step, exactly as the cell model (bms.model.advance_cell)."""
    from bms.model import IV1 as MV1, IV2 as MV2, advance_cell
    from bms.soc.layout import IV1, IV2

    p = _with_rc_soc_factor(winston.params, read_only=True)
    tune = E.default_tuning(E.EST_EKF, p)
    x, P = E.new_state(1, p, tune)
    E.init_at_soc(p, tune, x, P, 0.23, temp_c)
    no = np.zeros(1, dtype=np.bool_)
    E.soc_step(E.EST_EKF, p, tune, x, P, -80.0, np.array([3.2]), np.array([temp_c]), no, 2.0)  # holds i
    xm = initial_state(1, x[0, IZ])[0]
    xm[MV1], xm[MV2] = x[0, IV1], x[0, IV2]
    E.soc_step(E.EST_EKF, p, tune, x, P, -80.0, np.array([3.2]), np.array([temp_c]), no, 2.0)
    advance_cell(p, xm, -80.0 - x[0, IBIAS], temp_c, 2.0)
    assert x[0, IV1] == pytest.approx(xm[MV1], rel=1e-12) and x[0, IV2] == pytest.approx(xm[MV2], rel=1e-12)
    g_mid = np.interp(0.23, p.soc0 + p.dsoc * np.arange(p.ocv_v.shape[1]), p.rc_soc_factor[-1])
    assert g_mid > 2.0  # the factor is really in play


def test_ekf_state_layouts_give_the_same_filter(winston):
    """new_state's x and P are views of one array (the kernel runs on it in place, cells in SIMD
    lanes); arrays of any other layout (copies, x with only the state columns, a deep-copied
    firmware state) run through the kernel's scratch copy: the same numbers either way."""
    import copy

    from bms.layout import State
    from bms.soc.layout import IP, NXE, NXW

    p = _with_rc_soc_factor(winston.params)
    tune = E.default_tuning(E.EST_EKF, p)
    n = 5
    x, P = E.new_state(n, p, tune)
    E.init_at_soc(p, tune, x, P, np.linspace(0.1, 0.9, n), 20.0)
    assert x.shape == (n, NXW) and np.shares_memory(x, P)
    P[2, 1, 3] = 7.0
    assert x[2, IP + 5 * 1 + 3] == 7.0
    P[2, 1, 3] = P[2, 3, 1]
    xc, Pc = np.ascontiguousarray(x[:, :NXE]), np.ascontiguousarray(P)
    st = State(*([np.zeros(1)] * 3 + [x, P] + [np.zeros(1)] * (len(State._fields) - 5)))
    st2 = copy.deepcopy(st)
    assert np.shares_memory(st2.x, st2.P) and not np.shares_memory(st2.x, x)
    rng = np.random.default_rng(3)
    ok = rng.random((40, n)) > 0.1
    for k in range(40):
        v = rng.uniform(3.1, 3.4, n)
        i_a = float(rng.uniform(-150, 100))
        for xx, PP in ((x, P), (xc, Pc), (st2.x, st2.P)):
            E.soc_step(E.EST_EKF, p, tune, xx, PP, i_a, v, np.full(n, 20.0 + k / 4), ok[k], 1.0)
    np.testing.assert_array_equal(xc, x[:, :NXE])
    np.testing.assert_array_equal(Pc, P)
    np.testing.assert_array_equal(st2.x[:, :NXE], x[:, :NXE])


def test_string_power_up_reads_the_mean_and_weighs_each_cells_difference(winston):
    """init_from_rest on a string: the mean cell from the mean voltage with the hysteresis
    ambiguity's variance; on the flat plateau a cell's 1 mV offset (4 % SOC when read alone) moves
    it only a little from the mean, on the steep low end each cell keeps its own reading."""
    from bms.soc.layout import PZ

    p = winston.params
    tune = E.default_tuning(E.EST_EKF, p)
    off = np.array([0.0, 1e-3, -1e-3, 0.5e-3, -0.5e-3, 0.0])
    for z_true, near in ((0.85, 0.005), (0.1, None)):
        v0 = float(_rest_v(p, z_true))
        x, P = E.new_state(off.size, p, tune)
        E.init_from_rest(p, tune, x, P, v0 + off, 20.0)
        alone, _ = E.new_state(1, p, tune)
        assert E.has_mean_lane(x) and not E.has_mean_lane(alone)
        z_alone = []
        for v in v0 + off:
            xa, Pa = E.new_state(1, p, tune)
            E.init_from_rest(p, tune, xa, Pa, v, 20.0)
            z_alone.append(xa[0, IZ])
        z_alone = np.array(z_alone)
        zm = E.mean_lane(x)[IZ]
        assert np.all(P[:, PZ, PZ] <= 0.02**2 + 1e-12)
        if near is not None:  # plateau: cells stay at the mean reading
            assert np.ptp(z_alone) > 0.03 and np.all(np.abs(x[:, IZ] - zm) < near)
        else:  # slope: own reading
            np.testing.assert_allclose(x[:, IZ] - zm, z_alone - z_alone.mean(), atol=2e-3)


def test_string_cells_mean_follows_the_mean_cell_and_copies_keep_it(winston):
    p = winston.params
    tune = E.default_tuning(E.EST_EKF, p)
    n = 8
    rng = np.random.default_rng(5)
    x, P = E.new_state(n, p, tune)
    E.init_from_rest(p, tune, x, P, _rest_v(p, 0.8) + rng.normal(0, 1e-3, n), 20.0)
    ok = np.ones(n, dtype=np.bool_)
    for k in range(50):
        v = _rest_v(p, 0.8) - 0.02 + rng.normal(0, 1e-3, n)
        E.soc_step(E.EST_EKF, p, tune, x, P, -100.0, v, np.full(n, 20.0), ok, 1.0)
    assert x[:, IZ].mean() == pytest.approx(E.mean_lane(x)[IZ], abs=1e-12)
    x2, P2 = E.copy_state(x, P)
    assert E.has_mean_lane(x2) and E.mean_lane(x2)[IZ] == E.mean_lane(x)[IZ]
    E.init_at_soc(p, tune, x, P, 0.5, 20.0)  # a restored SOC: per-cell filters only
    assert not E.has_mean_lane(x)


def _rest_v(p, z):
    from bms.soc.ocv import rest_voltage_and_slope

    return rest_voltage_and_slope(p, z, 20.0, 0.0, 0.0)[0]


@given(cold=st.floats(0.01, 40.0), warm=st.booleans(), i_a=st.floats(-300.0, 300.0).filter(lambda i: abs(i) > 1.0),
       dv=st.floats(-0.5, 0.5), steps=st.integers(1, 5))
def test_loaded_voltage_outside_the_profiles_temperatures_corrects_nothing(winston, cold, warm, i_a, dv, steps):
    """Beyond the profile's grid widened by load_t_margin_k, a loaded sample leaves the filter as
    predicted (the state and P equal those of the same steps with the voltage marked invalid),
    whatever the voltage says."""
    p = winston.params
    tune = E.default_tuning(E.EST_EKF, p)
    margin = E.TUNING_DEFAULTS["load_t_margin_k"]
    t = p.temp_c[-1] + margin + cold if warm else p.temp_c[0] - margin - cold
    runs = []
    for usable in (True, False):
        x, P = E.new_state(2, p, tune)
        E.init_at_soc(p, tune, x, P, 0.6, float(t))
        for _ in range(steps):
            E.soc_step(E.EST_EKF, p, tune, x, P, i_a, np.array([3.25 + dv, 3.3 + dv]), np.full(2, t),
                       np.full(2, usable), 1.0)
        runs.append((x[:, :IFLAGS].copy(), P.copy()))
    (x_used, p_used), (x_held, p_held) = runs
    assert np.array_equal(x_used, x_held) and np.array_equal(p_used, p_held)


@pytest.mark.parametrize("rested", [False, True])
def test_voltage_corrects_inside_the_temperatures_and_at_rest_outside(winston, rested):
    """The same 50 mV disagreement moves the SOC at a temperature of the grid, and outside the
    grid only once rested (the OCV recalibration: rest_s of |i| below the rest current)."""
    p = winston.params
    tune = E.default_tuning(E.EST_EKF, p)
    i_a = 0.0 if rested else -50.0
    steps = int(E.TUNING_DEFAULTS["rest_s"]) + 5 if rested else 5
    moved = {}
    for t in (float(p.temp_c[0]) + 1.0, float(p.temp_c[0]) - E.TUNING_DEFAULTS["load_t_margin_k"] - 5.0):
        out = []
        for dv in (0.0, -0.05):
            x, P = E.new_state(1, p, tune)
            E.init_at_soc(p, tune, x, P, 0.6, t)
            for _ in range(steps):
                E.soc_step(E.EST_EKF, p, tune, x, P, i_a, np.array([3.29 + dv]), np.array([t]), np.ones(1, np.bool_), 1.0)
            out.append(x[0, IZ])
        moved[t] = out[0] - out[1]
    inside, outside = moved.values()
    assert inside > 0.005
    assert (outside > 0.005) if rested else (outside == 0.0)
