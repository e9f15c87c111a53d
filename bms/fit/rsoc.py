"""The SOC dependence of the resistances: ``R0(T, z, sign i) = R0(T, sign i) F(T, z)`` for the
series resistance and ``Rj(T, z) = Rj(T) G(T, z)`` (j = 1, 2) for the RC polarisation.

Each factor (``F``: keys :data:`KEYS`, ``G``: keys :data:`RC_KEYS`, the same shape rule; ``G``
only with ``bms profile fit --rc-soc-factor``) is fitted on the drive cycles as a coarse,
monotone shape, so that it generalises rather
than follows one file (``G`` in a second stage, with every other parameter held at the
``G = 1`` fit, :func:`bms.fit.pipeline.fit_profile`): ``ln F`` is piecewise linear in SOC between the knots :data:`KNOTS`
(0.1, 0.3, 0.5, 0.7, 0.9), held flat below the first and above the last, with ``F = 1`` at
the reference knot 0.7 (a SOC every drive record covers; ``R0(T)`` is the resistance there).
It is parameterised by non-negative log-increments (shown for :data:`KEYS`; ``rc_soc_d..`` for ``G``)::

    ln F(0.1) = d10 + d30 + d50,  ln F(0.3) = d30 + d50,  ln F(0.5) = d50,  ln F(0.7) = 0,
    ln F(0.9) = -d90

so ``F`` never increases with SOC (LFP's resistance rises toward empty). Each increment is
fitted by the drive least squares together with the other parameters, with a weak ridge
penalty (:data:`RIDGE_V` per unit of ``d``) that pulls a poorly determined one toward 0.

A knot is *covered* by a record when the record has at least :data:`MIN_SAMPLES` samples
within 0.1 SOC of it with ``|i| > 0.05 C``. Increments of knots a record does not cover are
not fitted at its temperature (held at 0 in its fit) and are then taken from the nearest
(in 1/T) drive temperature that covers them, 0 if none does: the shape the data shows
elsewhere, not an extrapolation. Temperatures without drive data follow the temperature rule
(:mod:`bms.fit.temperature`): ``ln F`` linear in 1/T between drive temperatures, held outside.
"""

from __future__ import annotations

import numpy as np

from bms.labdata import LabData

KNOTS = np.array([0.1, 0.3, 0.5, 0.7, 0.9])
REF_KNOT = 0.7
_KNOT_NAMES = ("10", "30", "50", "90")
#: log-increments of the series-resistance factor F (see module docstring), each the one of the knot in its name
KEYS = tuple(f"r0_soc_d{n}" for n in _KNOT_NAMES)
#: log-increments of the RC-resistance factor G (R1 and R2 share it)
RC_KEYS = tuple(f"rc_soc_d{n}" for n in _KNOT_NAMES)
ALL_KEYS = KEYS + RC_KEYS
KEY_KNOT = {k: int(k[-2:]) / 100 for k in ALL_KEYS}
BOUND = (0.0, 1.0)
MIN_SAMPLES = 300
RIDGE_V = 1e-3

METHOD_TEXT = (
    "R0(T, z, sign i) = R0(T, sign i) F(T, z); ln F piecewise linear between SOC knots 0.1, 0.3, 0.5, "
    "0.7, 0.9 (flat outside), F(0.7) = 1, non-increasing in SOC (non-negative log-increments, fitted "
    "with the drive least squares, ridge 1 mV per unit); knots a record does not cover (< 300 samples "
    "within 0.1 SOC with |i| > 0.05 C) take the increment of the nearest drive temperature covering them"
)
RC_METHOD_TEXT = (
    "R1,2(T, z) = R1,2(T) G(T, z), G with the same rule as F (log-increments rc_soc_d10..d90, ln G linear in "
    "1/T between drive temperatures, held outside); slow curves read with P(z) = I ((R0_chg + R0_dis)/2 F(z) "
    "+ (R1 + R2) G(z)) + p_extra (bms profile fit --rc-soc-factor); fitted in a second least squares per drive "
    "record with every other parameter held at the G = 1 fit (only G's increments and the record's initial RC "
    "voltages free)"
)


def ln_knots(d: dict[str, float], keys: tuple[str, ...] = KEYS) -> np.ndarray:
    """ln F (or ln G with ``keys=RC_KEYS``) at :data:`KNOTS` from the log-increments ``d``
    (missing keys: 0)."""
    d10, d30, d50, d90 = (float(d.get(k, 0.0)) for k in keys)
    return np.array([d10 + d30 + d50, d30 + d50, d50, 0.0, -d90])


def factor_row(soc: np.ndarray, d: dict[str, float], keys: tuple[str, ...] = KEYS) -> np.ndarray:
    """F (or G) on the SOC grid ``soc`` for one temperature."""
    return np.exp(np.interp(soc, KNOTS, ln_knots(d, keys)))


def factor_table(soc: np.ndarray, d: dict[str, np.ndarray], keys: tuple[str, ...] = KEYS) -> np.ndarray:
    """F (or G) (nT, nS) from per-temperature increments ``d[key]`` (nT,)."""
    n_t = len(next(iter(d.values())))
    return np.vstack([factor_row(soc, {k: d[k][t] for k in keys if k in d}, keys) for t in range(n_t)])


def covered(data: LabData, capacity_ah: float) -> dict[str, bool]:
    """For each increment key: does the record cover its knot (module docstring)?"""
    loaded = np.abs(data.current_a) > 0.05 * capacity_ah
    return {k: int((loaded & (np.abs(data.soc_ref - z) < 0.1)).sum()) >= MIN_SAMPLES for k, z in KEY_KNOT.items()}


def fill_uncovered(fit_temp_c: np.ndarray, values: dict[str, np.ndarray], cover: list[dict[str, bool]]) -> None:
    """In place: each increment a record does not cover takes the value of the nearest drive
    temperature (in 1/T) that covers it, 0 if none does."""
    inv = 1.0 / (np.asarray(fit_temp_c, dtype=float) + 273.15)
    for k in ALL_KEYS:
        if k not in values:
            continue
        ok = np.array([c[k] for c in cover])
        for t in np.flatnonzero(~ok):
            src = np.flatnonzero(ok)
            values[k][t] = values[k][src[np.argmin(np.abs(inv[src] - inv[t]))]] if src.size else 0.0


def increments(soc: np.ndarray, row: np.ndarray, keys: tuple[str, ...] = KEYS) -> dict[str, float]:
    """The log-increments back from one temperature's F (or G) row on the SOC grid (the inverse
    of :func:`factor_row` at the knots)."""
    ln = np.log(np.interp(KNOTS, soc, row))
    return dict(zip(keys, (ln[0] - ln[1], ln[1] - ln[2], ln[2] - ln[3], ln[3] - ln[4])))
