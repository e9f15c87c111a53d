"""Equivalent-circuit cell model (the estimator's own equations).

Sign convention: current ``i_a`` is positive when charging.

Per cell the state vector is ``x = [z, v1, v2, h, s]``:

* ``z``  state of charge, 0..1
* ``v1``, ``v2``  voltages over the two RC pairs (V)
* ``h``  dynamic hysteresis state, -1..1
* ``s``  instantaneous hysteresis sign, the sign of the last non-negligible current

Terminal voltage::

    v = OCV(z, T) + M(z, T) * h + M0(T) * s + v1 + v2 + R0(T, sign i) * F(z, T) * i

Exact zero-order-hold discretisation over ``dt`` with the current held constant::

    z'  = z + eta(i) * i * dt / (3600 Q)          eta = eta_chg for i > 0, 1 otherwise
    vj' = aj * vj + Rj * G(z, T) * (1 - aj) * i   aj  = exp(-dt / tau_j(T))
    h'  = Ah * h + (1 - Ah) * sign(i)             Ah  = exp(-gamma(T) * |i| * dt / (3600 Q))
    s'  = sign(i) if |i| > i_sign_a else s

(the hysteresis law is dh/dt = -gamma |i| / Q (h - sign i), whose solution for constant i
is the update above; G is taken at the SOC of the step's start). Every parameter is a table
over temperature; OCV, M and the dimensionless resistance factors F (series resistance) and G
(both RC resistances) are tables over (temperature, SOC) on a uniform SOC grid (LFP's
resistance and polarisation rise toward empty; 1 means no SOC dependence), interpolated
bilinearly and clamped at the grid ends.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numba as nb
import numpy as np

# state vector layout
IZ, IV1, IV2, IH, IS = 0, 1, 2, 3, 4
NX = 5


class CellParams(NamedTuple):
    """Numba-friendly cell parameters (built once from a profile TOML)."""

    soc0: float  # first SOC grid point
    dsoc: float  # SOC grid step (uniform grid)
    temp_c: np.ndarray  # (nT,) ascending
    ocv_v: np.ndarray  # (nT, nS)
    hyst_v: np.ndarray  # (nT, nS) asymptotic hysteresis amplitude M
    m0_v: np.ndarray  # (nT,) instantaneous hysteresis
    gamma: np.ndarray  # (nT,) hysteresis rate constant
    r0_chg_ohm: np.ndarray  # (nT,)
    r0_dis_ohm: np.ndarray  # (nT,)
    r0_soc_factor: np.ndarray  # (nT, nS) F(T, z): R0 at SOC z is R0(T, sign i) * F
    rc_soc_factor: np.ndarray  # (nT, nS) G(T, z): Rj at SOC z is Rj(T) * G (j = 1, 2)
    r1_ohm: np.ndarray  # (nT,)
    tau1_s: np.ndarray  # (nT,)
    r2_ohm: np.ndarray  # (nT,)
    tau2_s: np.ndarray  # (nT,)
    capacity_ah: float
    eta_chg: float
    i_sign_a: float  # |i| above which the instantaneous hysteresis sign follows the current
    rc_soc_on: bool  # rc_soc_factor is not all ones (:func:`rc_soc_on`; the EKF skips G's lookup otherwise)


def rc_soc_on(rc_soc_factor: np.ndarray) -> bool:
    """The value of :attr:`CellParams.rc_soc_on` for an RC SOC factor table (set it together
    with ``rc_soc_factor``, e.g. ``p._replace(rc_soc_factor=g, rc_soc_on=rc_soc_on(g))``)."""
    return bool(np.any(np.asarray(rc_soc_factor) != 1.0))


@nb.njit(cache=True, inline="always")
def temp_index(temp_grid, temp_c):
    """Bracket ``temp_c`` in ``temp_grid``: returns (j, w) with value = (1-w) f[j] + w f[j+1],
    clamped at the ends. Grid ascending, at least one point."""
    n = temp_grid.shape[0]
    if n == 1 or temp_c <= temp_grid[0]:
        return 0, 0.0
    if temp_c >= temp_grid[n - 1]:
        return n - 2, 1.0
    j = 0
    while temp_grid[j + 1] < temp_c:
        j += 1
    return j, (temp_c - temp_grid[j]) / (temp_grid[j + 1] - temp_grid[j])


@nb.njit(cache=True, inline="always")
def grid_bracket(u, n):
    """Bracket the grid coordinate ``u`` (in grid steps from the first of ``n`` uniform points):
    (k, w) with value = (1-w) f[k] + w f[k+1], clamped. Scalars only (see :func:`bilinear`)."""
    if u <= 0.0:
        return 0, 0.0
    if u >= n - 1:
        return n - 2, 1.0
    k = int(u)
    return k, u - k


@nb.njit(cache=True, inline="always")
def soc_index(soc0, dsoc, n_soc, soc):
    """Bracket ``soc`` on the uniform grid soc0 + k*dsoc: (k, w), clamped."""
    return grid_bracket((soc - soc0) / dsoc, n_soc)


@nb.njit(cache=True, inline="always")
def interp_t(table, j, w):
    """Linear interpolation of a (nT,) table at the bracket (j, w)."""
    if table.shape[0] == 1:
        return table[0]
    return (1.0 - w) * table[j] + w * table[j + 1]


@nb.njit(cache=True, inline="always")
def bilinear(a0, b0, a1, b1, ws, wt):
    """Bilinear value of a table cell with corners (a0, b0) at T_j and (a1, b1) at T_j+1 (SOC
    grid points k, k+1): v = (1-wt)(a0 + ws (b0-a0)) + wt (a1 + ws (b1-a1)), and its slope per
    SOC grid step (1-wt)(b0-a0) + wt(b1-a1). Scalars only, so kernels can call it per cell
    without numba's per-call array refcounting (bms.soc.ekf)."""
    return ((1.0 - wt) * (a0 + ws * (b0 - a0)) + wt * (a1 + ws * (b1 - a1)),
            (1.0 - wt) * (b0 - a0) + wt * (b1 - a1))


@nb.njit(cache=True, inline="always")
def interp_ts(table, j, wt, k, ws):
    """Bilinear interpolation of a (nT, nS) table, and its slope d/dsoc per unit SOC
    (the slope of the SOC segment, blended over temperature); ``dsoc`` is applied by the caller."""
    if table.shape[0] == 1:
        a = table[0, k]
        b = table[0, k + 1]
        return a + ws * (b - a), b - a
    return bilinear(table[j, k], table[j, k + 1], table[j + 1, k], table[j + 1, k + 1], ws, wt)


@nb.njit(cache=True)
def ocv_and_slope(p, soc, temp_c):
    """OCV(z, T) and dOCV/dz (V per unit SOC), by bilinear interpolation."""
    j, wt = temp_index(p.temp_c, temp_c)
    k, ws = soc_index(p.soc0, p.dsoc, p.ocv_v.shape[1], soc)
    v, dv = interp_ts(p.ocv_v, j, wt, k, ws)
    return v, dv / p.dsoc


@nb.njit(cache=True)
def cell_voltage(p, x, i_a, temp_c):
    """Terminal voltage v = OCV(z,T) + M(z,T) h + M0(T) s + v1 + v2 + R0(T, sign i) F(z,T) i."""
    j, wt = temp_index(p.temp_c, temp_c)
    k, ws = soc_index(p.soc0, p.dsoc, p.ocv_v.shape[1], x[IZ])
    ocv, _ = interp_ts(p.ocv_v, j, wt, k, ws)
    m, _ = interp_ts(p.hyst_v, j, wt, k, ws)
    f, _ = interp_ts(p.r0_soc_factor, j, wt, k, ws)
    r0 = interp_t(p.r0_chg_ohm, j, wt) if i_a > 0.0 else interp_t(p.r0_dis_ohm, j, wt)
    return ocv + m * x[IH] + interp_t(p.m0_v, j, wt) * x[IS] + x[IV1] + x[IV2] + r0 * f * i_a


@nb.njit(cache=True)
def advance_cell(p, x, i_a, temp_c, dt_s):
    """Advance one cell's state ``x`` in place by ``dt_s`` with constant current ``i_a``
    (exact zero-order hold, equations in the module docstring)."""
    j, wt = temp_index(p.temp_c, temp_c)
    k, ws = soc_index(p.soc0, p.dsoc, p.rc_soc_factor.shape[1], x[IZ])
    g, _ = interp_ts(p.rc_soc_factor, j, wt, k, ws)
    q_as = 3600.0 * p.capacity_ah
    eta = p.eta_chg if i_a > 0.0 else 1.0
    a1 = math.exp(-dt_s / interp_t(p.tau1_s, j, wt))
    a2 = math.exp(-dt_s / interp_t(p.tau2_s, j, wt))
    sgn = 1.0 if i_a > 0.0 else (-1.0 if i_a < 0.0 else 0.0)
    ah = math.exp(-interp_t(p.gamma, j, wt) * abs(i_a) * dt_s / q_as)
    x[IZ] = x[IZ] + eta * i_a * dt_s / q_as
    x[IV1] = a1 * x[IV1] + interp_t(p.r1_ohm, j, wt) * g * (1.0 - a1) * i_a
    x[IV2] = a2 * x[IV2] + interp_t(p.r2_ohm, j, wt) * g * (1.0 - a2) * i_a
    x[IH] = ah * x[IH] + (1.0 - ah) * sgn
    if abs(i_a) > p.i_sign_a:
        x[IS] = sgn


@nb.njit(cache=True)
def model_step(p, x, i_a, temp_c, dt_s, v_out):
    """Advance an array of cells by one step.

    ``x`` is (n, 5) state, ``i_a`` and ``temp_c`` are (n,) cell currents and temperatures
    held over the step, ``v_out`` (n,) receives the terminal voltage at the start of the
    step, v[k] = g(x[k], i[k]); then x[k+1] = f(x[k], i[k]) (module docstring). No allocation.
    """
    for c in range(x.shape[0]):
        v_out[c] = cell_voltage(p, x[c], i_a[c], temp_c[c])
        advance_cell(p, x[c], i_a[c], temp_c[c], dt_s)


@nb.njit(cache=True)
def simulate(p, x0, i_a, temp_c, dt_s):
    """Simulate one cell over a current/temperature sequence; returns (v, soc) arrays.
    Convenience for fitting and tests (allocates its outputs once)."""
    n = i_a.shape[0]
    v = np.empty(n)
    z = np.empty(n)
    x = x0.copy()
    for k in range(n):
        v[k] = cell_voltage(p, x, i_a[k], temp_c[k])
        z[k] = x[IZ]
        advance_cell(p, x, i_a[k], temp_c[k], dt_s)
    return v, z


def initial_state(n_cells: int, soc: float | np.ndarray, h: float = 0.0) -> np.ndarray:
    """A rested state array (n, 5): given SOC, RC voltages zero, hysteresis ``h``."""
    x = np.zeros((n_cells, NX))
    x[:, IZ] = soc
    x[:, IH] = h
    x[:, IS] = np.sign(h)
    return x
