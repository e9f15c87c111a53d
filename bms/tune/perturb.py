"""Perturbations of a dataset's measurements and of the estimator's starting point.

A perturbation turns the true series ``(i, v, T)`` into what a BMS would measure::

    i_meas = gain * i + offset                    (current sensor; offset in A, or in C-rate)
    v_meas = v + v_offset + N(0, v_noise^2)       (seeded, reproducible noise)
    T_meas = T + t_offset
    capacity used by the estimator = Q / (1 - fade)   (the cell has lost ``fade`` of its
                                                        capacity; the estimator does not know)
    start: soc_error None -> from the first (rested) voltage, as the firmware does;
           otherwise z0 = z_true(0) + soc_error at the profile's initial SOC variance

Specs on the command line: ``nominal``, a preset name (``PRESETS``), or ``key=value,...``
(keys: the fields of :class:`Perturbation`), e.g. ``soc_error=-0.2,current_offset_c=0.01``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np

from bms.model import CellParams
from bms.soc import estimator as est


@dataclass(frozen=True)
class Perturbation:
    name: str = "nominal"
    soc_error: float | None = None
    current_offset_a: float = 0.0
    current_offset_c: float = 0.0
    current_gain: float = 1.0
    voltage_noise_v: float = 0.0
    voltage_offset_v: float = 0.0
    temp_offset_c: float = 0.0
    capacity_fade: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in ("name", "seed") or v is None:
                continue
            if not math.isfinite(v):
                raise ValueError(f"perturbation {self.name}: {f.name}={v} must be finite")
        if self.soc_error is not None and abs(self.soc_error) > 1:
            raise ValueError(f"perturbation {self.name}: soc_error={self.soc_error} must be within [-1, 1]")
        if not self.current_gain > 0:
            raise ValueError(f"perturbation {self.name}: current_gain={self.current_gain} must be > 0")
        if self.voltage_noise_v < 0:
            raise ValueError(f"perturbation {self.name}: voltage_noise_v must be >= 0")
        if not 0 <= self.capacity_fade < 0.9:
            raise ValueError(f"perturbation {self.name}: capacity_fade={self.capacity_fade} must be in [0, 0.9)")

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k == "name" or v != Perturbation.__dataclass_fields__[k].default}


PRESETS = {
    "nominal": Perturbation(),
    "soc+20": Perturbation("soc+20", soc_error=0.2),
    "soc-20": Perturbation("soc-20", soc_error=-0.2),
    "ioff+1%C": Perturbation("ioff+1%C", current_offset_c=0.01),
    "ioff-1%C": Perturbation("ioff-1%C", current_offset_c=-0.01),
    "igain+2%": Perturbation("igain+2%", current_gain=1.02),
    "vnoise5mV": Perturbation("vnoise5mV", voltage_noise_v=0.005, seed=1),
    "voff+5mV": Perturbation("voff+5mV", voltage_offset_v=0.005),
    "temp+5C": Perturbation("temp+5C", temp_offset_c=5.0),
    "fade10%": Perturbation("fade10%", capacity_fade=0.10),
}
#: the robustness set used by default by ``bms tune eval`` and ``bms tune sweep``
STANDARD = ("nominal", "soc-20", "ioff+1%C", "igain+2%", "vnoise5mV", "voff+5mV", "temp+5C", "fade10%")


def parse(spec: str) -> Perturbation:
    """A preset name or ``key=value,...`` (optionally ``name=...``)."""
    spec = spec.strip()
    if spec in PRESETS:
        return PRESETS[spec]
    known = {f.name: f for f in fields(Perturbation)}
    kw: dict = {}
    for part in spec.split(","):
        key, sep, val = part.partition("=")
        key = key.strip()
        if not sep or key not in known:
            raise ValueError(f"perturbation {spec!r}: expected a preset ({', '.join(PRESETS)}) or key=value "
                             f"pairs with keys {', '.join(known)}; bad part {part!r}")
        try:
            kw[key] = val.strip() if key == "name" else (int(val) if key == "seed" else float(val))
        except ValueError:
            raise ValueError(f"perturbation {spec!r}: {key}={val!r} is not a number") from None
    kw.setdefault("name", spec)
    return Perturbation(**kw)


@dataclass
class Perturbed:
    """Measurements of q perturbations of one dataset, stacked for the sweep kernel."""

    names: list[str]
    i_meas: np.ndarray  # (q, n)
    v_meas: np.ndarray  # (q, n)
    temp_c: np.ndarray  # (q, n)
    z0: np.ndarray  # (q,)
    p0z_floor: np.ndarray  # (q,) >= 0: initialised from rest (floor of P_zz); < 0: at an assumed SOC
    cap_ah: np.ndarray  # (q,)


def rest_start(p: CellParams, v0: float, temp0_c: float) -> tuple[float, float]:
    """(z0, P_zz floor) of :func:`bms.soc.estimator.init_from_rest` with h unknown."""
    tune = est.tuning_vector(p, p0_soc=0.0)
    x, P = est.new_state(1, p, tune)
    est.init_from_rest(p, tune, x, P, v0, temp0_c)
    return float(x[0, 0]), float(P[0, 0, 0])


def apply(p: CellParams, ds, perts: list[Perturbation]) -> Perturbed:
    """Perturbed measurements of dataset ``ds`` (a :class:`bms.tune.datasets.Dataset`)."""
    q, n = len(perts), len(ds)
    out = Perturbed([pt.name for pt in perts], np.empty((q, n)), np.empty((q, n)), np.empty((q, n)),
                    np.empty(q), np.empty(q), np.empty(q))
    for j, pt in enumerate(perts):
        out.i_meas[j] = ds.current_a * pt.current_gain + pt.current_offset_a + pt.current_offset_c * p.capacity_ah
        out.v_meas[j] = ds.voltage_v + pt.voltage_offset_v
        if pt.voltage_noise_v > 0:
            out.v_meas[j] += np.random.default_rng(pt.seed).normal(0.0, pt.voltage_noise_v, n)
        out.temp_c[j] = ds.temp_c + pt.temp_offset_c
        out.cap_ah[j] = p.capacity_ah / (1.0 - pt.capacity_fade)
        if pt.soc_error is None:
            out.z0[j], out.p0z_floor[j] = rest_start(p, out.v_meas[j, 0], out.temp_c[j, 0])
        else:
            out.z0[j], out.p0z_floor[j] = ds.soc_true[0] + pt.soc_error, -1.0
    return out
