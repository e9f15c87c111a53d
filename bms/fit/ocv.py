"""OCV and hysteresis-amplitude tables from slow (C/30..C/50) discharge/charge curves.

The slow curves are read as the model (``bms.model``) would produce them under a small
constant current ``I`` (discharge from full after a charge, then charge from empty)::

    v_dis(z) = OCV(z) + M(z) h_dis(z) - m0 - P        h_dis(z) = -1 + 2 exp(-gamma (1 - z))
    v_chg(z) = OCV(z) + M(z) h_chg(z) + m0 + P        h_chg(z) =  1 - 2 exp(-gamma eta z)

with ``P`` the polarisation of the slow test: at least ``I R_ss(z)``, ``R_ss(z) = (R0_chg +
R0_dis)/2 F(z) + (R1 + R2) G(z)`` the model's steady-state resistance at that SOC (at C/50 the
RC pairs are settled; F, G the SOC factors, :mod:`bms.fit.rsoc`), plus any slower (diffusion)
part the 2RC model does not carry; :mod:`bms.fit.dynamic` fits
that extra part on the drive-cycle rests. Hence, where both hysteresis states are saturated
(``h_chg - h_dis >= 1.5``) in the core SOC range, ``M = (v_chg - v_dis - 2 m0 - 2 P) /
(h_chg - h_dis)``: the half-gap minus the polarisation minus the instantaneous hysteresis
``m0``; outside it ``M`` holds its edge value. Near the ends the half-gap grows with the
curves' end-of-charge/-discharge polarisation, not hysteresis: above the plateau (SOC
0.2..0.8) ``M`` is capped at the plateau median, below it at 1.5 times that median.
OCV is a weighted mean of the two curves' OCV estimates: 1/2 each in the middle, the
discharge curve only near full (the charge curve bends up there from polarisation) and the
charge curve only near empty (the discharge curve collapses there), and never a point
where a curve sits clamped at a voltage cutoff. Finally both branches ``OCV - M`` and
``OCV + M`` are made non-decreasing in SOC by isotonic regression (the least-squares closest
monotone curve) rising at least :data:`MIN_SLOPE_V` per unit SOC, so OCV is strictly increasing
and a rested voltage maps to one SOC on either branch (a flat run, e.g. near full where the
discharge curve sags, would map one voltage to every SOC of the run: a power-up at 95 % SOC
read 92 %, the run's low end).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import isotonic_regression

from bms.labdata import DataError

#: SOC range where the half-gap is read as hysteresis; outside, M holds its edge value
CORE_SOC = (0.10, 0.95)
#: SOC range whose median M caps M above it (the charge curve's end-of-charge polarisation)
#: and, times LOW_CAP, below it (the discharge curve's end-of-discharge polarisation)
PLATEAU_SOC = (0.20, 0.80)
LOW_CAP = 1.5
#: weight of the discharge curve in the OCV: 0 below LO, 1/2 between, 1 above HI (linear ramps)
W_DIS_KNOTS = ((0.0, 0.0), (0.03, 0.0), (0.10, 0.5), (0.90, 0.5), (0.97, 1.0), (1.0, 1.0))
#: least slope (V per unit SOC) of the OCV branches: 0.1 mV per % SOC, a tenth of the plateau's
MIN_SLOPE_V = 0.01


@dataclass
class SlowCurves:
    """Slow discharge/charge voltage curves on a common SOC axis, one row per temperature."""

    path: Path
    soc: np.ndarray  # (nS,)
    temp_c: np.ndarray  # (nT,) ascending
    v_dis: np.ndarray  # (nT, nS)
    v_chg: np.ndarray  # (nT, nS)
    i_slow_a: float  # magnitude of the slow test current


def _tag_temp(tag: str) -> float | None:
    """'N05' -> -5, 'P25' -> 25, 'c30_25C' -> 25, '25C' -> 25; None if no temperature."""
    m = re.search(r"(?:^|_)([NP])(\d+)$", tag)
    if m:
        return (-1.0 if m.group(1) == "N" else 1.0) * float(m.group(2))
    m = re.search(r"(?:^|_)(-?\d+(?:\.\d+)?)C$", tag)
    return float(m.group(1)) if m else None


def read_slow_table(path: str | Path, i_slow_a: float) -> SlowCurves:
    """Read ``soc,vdis_<T>,vchg_<T>,...`` (T like N05, P25 or 25C). ``i_slow_a`` > 0 is the
    magnitude of the slow test current (for the resistive correction)."""
    path = Path(path)
    if not i_slow_a > 0:
        raise DataError(f"{path}: slow-test current must be > 0 A, got {i_slow_a}")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such OCV table")
    with path.open() as fh:
        names = [h.strip() for h in fh.readline().split(",")]
    if "soc" not in names:
        raise DataError(f"{path}: missing column soc; found {', '.join(names)}")
    arr = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    col = {n: arr[:, i] for i, n in enumerate(names)}
    pairs = {}
    for n in names:
        if n.startswith("vdis_"):
            tag = n[5:]
            t = _tag_temp(tag)
            if t is None:
                raise DataError(f"{path}: cannot read a temperature from column {n!r} (use e.g. vdis_P25, vdis_N05, vdis_25C)")
            if f"vchg_{tag}" not in col:
                raise DataError(f"{path}: column {n!r} has no matching vchg_{tag}")
            pairs[t] = (col[n], col[f"vchg_{tag}"])
    if not pairs:
        raise DataError(f"{path}: no vdis_<T>/vchg_<T> column pairs")
    soc = col["soc"]
    if np.any(np.diff(soc) <= 0) or soc[0] < -1e-9 or soc[-1] > 1 + 1e-9:
        raise DataError(f"{path}: soc must increase strictly within [0, 1]")
    temps = np.array(sorted(pairs))
    v_dis = np.array([pairs[t][0] for t in temps])
    v_chg = np.array([pairs[t][1] for t in temps])
    if not (np.all(np.isfinite(v_dis)) and np.all(np.isfinite(v_chg))):
        raise DataError(f"{path}: non-finite voltages")
    return SlowCurves(path, soc, temps, v_dis, v_chg, float(i_slow_a))


def resample(curves: SlowCurves, dsoc: float) -> SlowCurves:
    """The curves on the uniform grid 0, dsoc, ..., 1 (linear interpolation, ends held)."""
    n = int(round(1.0 / dsoc))
    if n < 2 or abs(n * dsoc - 1.0) > 1e-9:
        raise ValueError(f"SOC step {dsoc} must divide 1 into at least 2 intervals")
    soc = np.linspace(0.0, 1.0, n + 1)
    if curves.soc.size == soc.size and np.allclose(curves.soc, soc, atol=1e-9):
        return curves
    f = lambda v: np.array([np.interp(soc, curves.soc, row) for row in v])  # noqa: E731
    return SlowCurves(curves.path, soc, curves.temp_c, f(curves.v_dis), f(curves.v_chg), curves.i_slow_a)


def _clamped(v: np.ndarray, from_end: str) -> np.ndarray:
    """Mask of the run of equal values at one end of a curve (a curve held at a cutoff)."""
    mask = np.zeros(v.size, dtype=bool)
    idx = range(v.size) if from_end == "low" else range(v.size - 1, -1, -1)
    idx = list(idx)
    for a, b in zip(idx, idx[1:]):
        if abs(v[a] - v[b]) < 1e-6:
            mask[a] = True
        else:
            break
    return mask


def monotone(v: np.ndarray, min_step: float = 0.0) -> np.ndarray:
    """The closest sequence in least squares that rises at least ``min_step`` from each sample to
    the next (isotonic regression of ``v - min_step k``, the ramp added back; 0: non-decreasing)."""
    ramp = min_step * np.arange(np.size(v))
    return np.asarray(isotonic_regression(np.asarray(v, dtype=float) - ramp, increasing=True).x) + ramp


def ocv_hyst_row(curves: SlowCurves, j: int, gamma: float, m0_v: float, p_slow_v: float | np.ndarray,
                 eta_chg: float) -> tuple[np.ndarray, np.ndarray]:
    """OCV and hysteresis-amplitude rows (nS,) at temperature row ``j`` of ``curves`` given the
    hysteresis rate ``gamma``, the instantaneous hysteresis ``m0_v`` and the polarisation of the
    slow test ``p_slow_v`` (``I R_ss(z)`` plus any slower diffusion part; module docstring), one
    value or one per SOC grid point."""
    z = curves.soc
    kz, kw = zip(*W_DIS_KNOTS)
    core = (z >= CORE_SOC[0] - 1e-9) & (z <= CORE_SOC[1] + 1e-9)
    vd, vc = curves.v_dis[j], curves.v_chg[j]
    cl_d, cl_c = _clamped(vd, "low"), _clamped(vc, "high")
    h_dis = -1.0 + 2.0 * np.exp(-gamma * (1.0 - z))
    h_chg = 1.0 - 2.0 * np.exp(-gamma * eta_chg * z)
    dh = h_chg - h_dis
    ok = core & (dh >= 1.5) & ~cl_d & ~cl_c
    if ok.sum() < 2:
        raise DataError(f"{curves.path}: at {curves.temp_c[j]} C fewer than 2 usable SOC points for the hysteresis")
    m_raw = np.maximum((vc - vd - 2.0 * m0_v - 2.0 * p_slow_v) / np.where(ok, dh, 1.0), 0.0)
    m = np.interp(z, z[ok], m_raw[ok])  # linear across gaps, edge values held outside
    plateau = ok & (z >= PLATEAU_SOC[0] - 1e-9) & (z <= PLATEAU_SOC[1] + 1e-9)
    if plateau.any():
        m_ref = float(np.median(m_raw[plateau]))
        m = np.where(z > PLATEAU_SOC[1], np.minimum(m, m_ref), m)
        m = np.where(z < PLATEAU_SOC[0], np.minimum(m, LOW_CAP * m_ref), m)
    ocv_d = vd - m * h_dis + m0_v + p_slow_v
    ocv_c = vc - m * h_chg - m0_v - p_slow_v
    w = np.interp(z, kz, kw)
    w[cl_d] = 0.0
    w[cl_c] = 1.0
    return monotone_branches(w * ocv_d + (1.0 - w) * ocv_c, m, MIN_SLOPE_V * (z[1] - z[0]))


def monotone_branches(ocv_v: np.ndarray, hyst_v: np.ndarray, min_step: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Make the discharge (OCV - M) and charge (OCV + M) branches rise at least ``min_step``
    per SOC sample by isotonic regression (:func:`monotone`), then OCV = mean and M =
    half-difference (so OCV rises by ``min_step`` too and a rested voltage maps to one SOC on
    either branch)."""
    lo = monotone(ocv_v - hyst_v, min_step)
    hi = np.maximum(monotone(ocv_v + hyst_v, min_step), lo)
    return 0.5 * (lo + hi), 0.5 * (hi - lo)


def ocv_hyst(curves: SlowCurves, gamma: np.ndarray, m0_v: np.ndarray, p_slow_v: np.ndarray,
             eta_chg: float) -> tuple[np.ndarray, np.ndarray]:
    """OCV and hysteresis-amplitude tables (nT, nS): :func:`ocv_hyst_row` at every temperature
    of ``curves`` (per-temperature arrays, or scalars for all; ``p_slow_v`` may also be (nT, nS))."""
    nt = curves.temp_c.size
    g, m0 = (np.broadcast_to(np.asarray(a, float), (nt,)) for a in (gamma, m0_v))
    ps = np.asarray(p_slow_v, float)
    ps = np.broadcast_to(ps.reshape(-1, 1) if ps.ndim == 1 else ps, (nt, curves.soc.size))
    rows = [ocv_hyst_row(curves, j, g[j], m0[j], ps[j], eta_chg) for j in range(nt)]
    return np.array([r[0] for r in rows]), np.array([r[1] for r in rows])


def mid_half_gap(curves: SlowCurves, lo: float = 0.2, hi: float = 0.8) -> np.ndarray:
    """Median half-gap (V) between the curves over ``lo..hi`` SOC, per temperature."""
    sel = (curves.soc >= lo) & (curves.soc <= hi)
    return np.median(0.5 * (curves.v_chg - curves.v_dis)[:, sel], axis=1)
