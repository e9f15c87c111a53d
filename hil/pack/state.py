"""Mutable state of the pack model: a NamedTuple of NumPy arrays (numba takes it as is).

:func:`init_state` builds a rested pack: every cell at ``soc`` plus its seeded initial-SOC
offset, RC voltages zero, hysteresis ``h``, all temperatures at ``temp_c``, contactors open,
bus discharged; the coefficient cache is built for ``dt_s``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from hil.pack.layout import (
    IN_FLOW, IN_TAMB, IN_TCOOL, NACC, NC, NE, NIN, NPK, NX, PK_CACHE_DT, PK_TCOOL_OUT, PK_TPRE, X_H, X_S, X_T, X_Z,
)
from hil.pack.params import PackModelParams
from hil.pack.sensors import seed_rng
from hil.pack.thermal import refresh_cache


class PackState(NamedTuple):
    x: np.ndarray  # (n_cells, NX) cell states (layout X_*)
    cache: np.ndarray  # (n_cells, NC) coefficient cache (layout C_*)
    elem: np.ndarray  # (n_series, NE) series elements (layout E_*)
    pk: np.ndarray  # (NPK,) pack scalars (layout PK_*)
    acc: np.ndarray  # (NACC,) energy / charge accumulators (layout A_*)
    ts_temp: np.ndarray  # (n_ts,) temperature seen by each (lagging) sensor element
    scratch: np.ndarray  # (n_cells,) thermal scratch
    truth: np.ndarray  # (n_ch,) true value per sensor channel at the last sample
    meas: np.ndarray  # (n_ch,) measured value per sensor channel at the last sample
    drift: np.ndarray  # (n_ch,) accumulated drift per channel
    noise: np.ndarray  # (n_ch,) scratch normal numbers
    rng: np.ndarray  # (4,) uint64 xoshiro256** state


def init_state(p: PackModelParams, soc: float | np.ndarray = 0.5, temp_c: float | np.ndarray = 25.0,
               dt_s: float = 0.01, h: float = 0.0, seed: int = 0, bus_v: float = 0.0) -> PackState:
    """A rested pack state (see module docstring); ``soc`` / ``temp_c`` scalar or per cell."""
    n, ns, nts, nch = p.n_cells, p.n_series, p.n_ts, p.n_ch
    for name, val in (("soc", soc), ("temp_c", temp_c)):
        if np.ndim(val) and np.size(val) not in (1, n):
            raise ValueError(f"initial {name} must be a scalar or {n} values (one per cell), got {np.size(val)}")
    soc_arr = np.broadcast_to(np.asarray(soc, dtype=np.float64).reshape(-1), (n,))
    temp_arr = np.broadcast_to(np.asarray(temp_c, dtype=np.float64).reshape(-1), (n,))
    if not (np.all(np.isfinite(soc_arr)) and np.all((soc_arr >= 0.0) & (soc_arr <= 1.0))):
        raise ValueError(f"initial soc must be within [0, 1], got {soc!r}")
    if not (np.all(np.isfinite(temp_arr)) and np.all((temp_arr > -60.0) & (temp_arr < 120.0))):
        raise ValueError(f"initial temp_c must be within (-60, 120) degC, got {temp_c!r}")
    if not (-1.0 <= h <= 1.0):
        raise ValueError(f"initial hysteresis state h must be within [-1, 1], got {h!r}")
    if not (np.isfinite(dt_s) and dt_s > 0.0):
        raise ValueError(f"dt_s must be positive, got {dt_s!r}")
    x = np.zeros((n, NX))
    x[:, X_Z] = np.clip(soc_arr + p.soc0_offset, 0.0, 1.0)
    x[:, X_H] = h
    x[:, X_S] = h
    x[:, X_T] = temp_arr
    cache = np.zeros((n, NC))
    refresh_cache(p, x, cache, float(dt_s))
    pk = np.zeros(NPK)
    pk[PK_CACHE_DT] = dt_s
    pk[PK_TCOOL_OUT] = float(np.mean(temp_arr))
    pk[PK_TPRE] = float(np.mean(temp_arr))
    ts_temp = np.array([temp_arr[p.ts_first[k]:p.ts_first[k] + p.ts_count[k]].mean() for k in range(nts)])
    return PackState(
        x=x, cache=cache, elem=np.zeros((ns, NE)), pk=pk, acc=np.zeros(NACC), ts_temp=ts_temp,
        scratch=np.zeros(n), truth=np.zeros(nch), meas=np.zeros(nch), drift=np.zeros(nch), noise=np.zeros(nch),
        rng=seed_rng(seed),
    )


def new_inputs(flow_kg_s: float = 0.2, coolant_c: float = 25.0, ambient_c: float = 25.0) -> np.ndarray:
    """An (NIN,) input row: no demand, contactor commands open, the given coolant and ambient."""
    inp = np.zeros(NIN)
    inp[IN_FLOW] = flow_kg_s
    inp[IN_TCOOL] = coolant_c
    inp[IN_TAMB] = ambient_c
    return inp


def copy_state(st: PackState) -> PackState:
    """A deep copy (snapshot) of a pack state; assign it back field by field or keep it to restart."""
    return PackState._make(a.copy() for a in st)
