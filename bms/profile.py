"""Cell profiles: the TOML files in ``bms/profiles/`` that parameterise the cell model.

A profile has three tables:

``[cell]``    identity, nominal capacity, coulombic efficiency and datasheet limits;
``[tables]``  the model parameters on a uniform SOC grid and an ascending temperature grid
              (OCV, hysteresis amplitude and the series-resistance SOC factor per (T, SOC);
              resistances, time constants, hysteresis rate and instantaneous hysteresis per T);
``[fit]``     provenance written by ``bms profile fit`` (command, data, voltage RMSE per file).

Loading validates every key; an error names the file, the key and the allowed range.
``r0_soc_factor`` (dimensionless, R0 at SOC z is ``R0(T, sign i) * r0_soc_factor(T, z)``) and
``rc_soc_factor`` (R1, R2 at SOC z are ``Rj(T) * rc_soc_factor(T, z)``) are optional: a profile
without one loads with that factor 1 everywhere (no SOC dependence, the model of profiles
written before it existed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tomli_w

from bms.config import ConfigError, Section, load_toml
from bms.model import CellParams, rc_soc_on

PROFILE_DIR = Path(__file__).parent / "profiles"

#: per-temperature dynamic tables: key -> (lo, hi) allowed range
DYNAMIC_KEYS: dict[str, tuple[float, float]] = {
    "r0_chg_ohm": (1e-6, 1.0),
    "r0_dis_ohm": (1e-6, 1.0),
    "r1_ohm": (0.0, 1.0),
    "tau1_s": (0.1, 1e5),
    "r2_ohm": (0.0, 1.0),
    "tau2_s": (0.1, 1e6),
    "gamma": (0.0, 1e4),
    "m0_v": (0.0, 0.5),
}
#: per-(T, SOC) series-resistance factor: key and its allowed range (optional, default 1)
R0_SOC_KEY = "r0_soc_factor"
R0_SOC_RANGE = (0.1, 10.0)
#: per-(T, SOC) RC-resistance factor (R1 and R2): optional, default 1, same range
RC_SOC_KEY = "rc_soc_factor"
SOC_FACTOR_KEYS = (R0_SOC_KEY, RC_SOC_KEY)


@dataclass
class CellLimits:
    """Datasheet limits of the cell (used to derive pack thresholds)."""

    v_min_v: float
    v_max_v: float
    v_damage_v: float
    i_max_chg_a: float
    i_max_dis_a: float
    i_peak_dis_a: float
    temp_min_chg_c: float
    temp_max_c: float


@dataclass
class Profile:
    name: str
    path: Path
    chemistry: str
    capacity_ah: float
    eta_chg: float
    limits: CellLimits
    soc: np.ndarray
    temp_c: np.ndarray
    tables: dict[str, np.ndarray]
    fit: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    i_sign_a: float = 0.0

    @property
    def params(self) -> CellParams:
        return to_params(self)


def resolve(name_or_path: str | Path) -> Path:
    """A profile name (shipped) or a path to a TOML file."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no such profile file")
        return p
    shipped = PROFILE_DIR / f"{name_or_path}.toml"
    if not shipped.is_file():
        names = ", ".join(sorted(q.stem for q in PROFILE_DIR.glob("*.toml")))
        raise FileNotFoundError(f"no cell profile named {name_or_path!r} (shipped: {names})")
    return shipped


def read_limits(cell: Section) -> CellLimits:
    """Datasheet limits from a ``[cell]`` table (profile or datasheet TOML), validated."""
    limits = CellLimits(
        v_min_v=cell.number("v_min_v", 1.0, 4.5),
        v_max_v=cell.number("v_max_v", 2.0, 5.0),
        v_damage_v=cell.number("v_damage_v", 1.0, 4.5),
        i_max_chg_a=cell.number("i_max_chg_a", 0.0, 1e5, lo_open=True),
        i_max_dis_a=cell.number("i_max_dis_a", 0.0, 1e5, lo_open=True),
        i_peak_dis_a=cell.number("i_peak_dis_a", 0.0, 1e5, lo_open=True),
        temp_min_chg_c=cell.number("temp_min_chg_c", -40.0, 40.0),
        temp_max_c=cell.number("temp_max_c", 20.0, 120.0),
    )
    if not limits.v_damage_v <= limits.v_min_v < limits.v_max_v:
        raise ConfigError(cell.file, "cell.v_min_v", f"is {limits.v_min_v}",
                          f"v_damage_v <= v_min_v < v_max_v ({limits.v_damage_v}, {limits.v_max_v})")
    return limits


def load_profile(name_or_path: str | Path) -> Profile:
    path = resolve(name_or_path)
    root = Section(path, load_toml(path))
    cell = root.section("cell")
    tab = root.section("tables")
    q = cell.number("capacity_ah", 0.0, 1e4, lo_open=True)
    limits = read_limits(cell)
    soc = tab.array("soc", 0.0, 1.0, increasing=True)
    if soc.size < 3 or not np.allclose(np.diff(soc), soc[1] - soc[0], rtol=1e-6, atol=1e-9):
        raise ConfigError(path, "tables.soc", "is not a uniform grid of at least 3 points", "uniformly spaced SOC values in [0, 1]")
    temp = tab.array("temp_c", -60.0, 120.0, increasing=True)
    nt, ns = temp.size, soc.size
    tables = {
        "ocv_v": tab.array("ocv_v", 1.0, 5.0, shape=(nt, ns), nondecreasing=True),
        "hyst_v": tab.array("hyst_v", 0.0, 0.5, shape=(nt, ns)),
        **{key: tab.array(key, *R0_SOC_RANGE, shape=(nt, ns), default=np.ones((nt, ns))) for key in SOC_FACTOR_KEYS},
    }
    for key, (lo, hi) in DYNAMIC_KEYS.items():
        tables[key] = tab.array(key, lo, hi, shape=(nt,))
    fit = root.data.get("fit", {})
    return Profile(
        name=cell.string("name"),
        path=path,
        chemistry=cell.string("chemistry", "LFP"),
        capacity_ah=q,
        eta_chg=cell.number("coulombic_efficiency", 0.8, 1.0),
        limits=limits,
        soc=soc,
        temp_c=temp,
        tables=tables,
        fit=fit if isinstance(fit, dict) else {},
        source=cell.string("source", ""),
        i_sign_a=cell.number("i_sign_a", 0.0, 1e4, default=0.01 * q),
    )


def r0_soc_factor(prof: Profile, key: str = R0_SOC_KEY) -> np.ndarray:
    """The profile's (nT, nS) series-resistance SOC factor (``key=RC_SOC_KEY``: the RC
    resistances'); ones if the profile has none."""
    f = prof.tables.get(key)
    shape = (prof.temp_c.size, prof.soc.size)
    if f is None:
        return np.ones(shape)
    return np.ascontiguousarray(np.broadcast_to(np.asarray(f, dtype=np.float64), shape))


def to_params(prof: Profile) -> CellParams:
    t = {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in prof.tables.items()}
    return CellParams(
        soc0=float(prof.soc[0]),
        dsoc=float(prof.soc[1] - prof.soc[0]),
        temp_c=np.ascontiguousarray(prof.temp_c, dtype=np.float64),
        ocv_v=t["ocv_v"],
        hyst_v=t["hyst_v"],
        m0_v=t["m0_v"],
        gamma=t["gamma"],
        r0_chg_ohm=t["r0_chg_ohm"],
        r0_dis_ohm=t["r0_dis_ohm"],
        r0_soc_factor=r0_soc_factor(prof),
        rc_soc_factor=r0_soc_factor(prof, RC_SOC_KEY),
        r1_ohm=t["r1_ohm"],
        tau1_s=t["tau1_s"],
        r2_ohm=t["r2_ohm"],
        tau2_s=t["tau2_s"],
        capacity_ah=float(prof.capacity_ah),
        eta_chg=float(prof.eta_chg),
        i_sign_a=float(prof.i_sign_a),
        rc_soc_on=rc_soc_on(r0_soc_factor(prof, RC_SOC_KEY)),
    )


def _round(a: np.ndarray, digits: int) -> list:
    return np.round(np.asarray(a, dtype=float), digits).tolist()


def profile_to_toml(prof: Profile) -> str:
    lim = prof.limits
    doc: dict[str, Any] = {
        "cell": {
            "name": prof.name,
            "chemistry": prof.chemistry,
            "source": prof.source,
            "capacity_ah": round(prof.capacity_ah, 4),
            "coulombic_efficiency": round(prof.eta_chg, 5),
            "i_sign_a": round(prof.i_sign_a, 4),
            "v_min_v": lim.v_min_v,
            "v_max_v": lim.v_max_v,
            "v_damage_v": lim.v_damage_v,
            "i_max_chg_a": lim.i_max_chg_a,
            "i_max_dis_a": lim.i_max_dis_a,
            "i_peak_dis_a": lim.i_peak_dis_a,
            "temp_min_chg_c": lim.temp_min_chg_c,
            "temp_max_c": lim.temp_max_c,
        },
        "tables": {
            "soc": _round(prof.soc, 4),
            "temp_c": _round(prof.temp_c, 2),
            "ocv_v": _round(prof.tables["ocv_v"], 5),
            "hyst_v": _round(prof.tables["hyst_v"], 5),
            R0_SOC_KEY: _round(r0_soc_factor(prof), 5),
            # written only when it has one: profiles without it load with G = 1 (the same model)
            **({RC_SOC_KEY: _round(prof.tables[RC_SOC_KEY], 5)}
               if not np.all(np.asarray(prof.tables.get(RC_SOC_KEY, 1.0)) == 1.0) else {}),
            **{k: _round(prof.tables[k], 7) for k in DYNAMIC_KEYS},
        },
    }
    if prof.fit:
        doc["fit"] = prof.fit
    header = (
        f"# Cell profile {prof.name}: equivalent-circuit parameters for bms-fil.\n"
        "# Generated by `bms profile fit`; see [fit] for the command and the per-file voltage RMSE.\n"
        "# Current is positive in charge.\n"
    )
    return header + tomli_w.dumps(doc)


def save_profile(prof: Profile, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(profile_to_toml(prof))
    return path
