"""A stand-in Winston LFP100AHA profile built from the C/50 OCV table (for tests and benchmarks
until the fitted ``winston_lfp100`` profile is shipped; :func:`reference_profile` prefers the
shipped one). OCV is the mean of the C/50 discharge and charge curves, hysteresis their half
gap; R0 follows the measured apparent 1 s resistance (~6 mOhm at -5 degC, 1.2 mOhm at 25 degC,
~0.8 mOhm at 45 degC) with an Arrhenius law; R1 0.5 mOhm / 30 s, R2 0.5 mOhm / 600 s, gamma 50,
M0 5 mV."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from bms.profile import CellLimits, Profile, load_profile, save_profile

OCV_TABLE = Path(__file__).resolve().parents[2] / "data" / "winston_lfp100" / "ocv_c50_table.csv"


def _temp_tag(t: int) -> str:
    return f"{'N' if t < 0 else 'P'}{abs(t):02d}"


def synthetic_lfp100_profile(directory: str | Path | None = None, table: str | Path = OCV_TABLE) -> Profile:
    """Write the stand-in profile TOML into ``directory`` (a temporary one if None) and load it
    back through the validating loader."""
    raw = np.genfromtxt(table, delimiter=",", names=True)
    soc = np.asarray(raw["soc"], dtype=float)
    temps = [-5, 5, 15, 25, 35, 45, 55]
    ocv = np.empty((len(temps), soc.size))
    hyst = np.empty_like(ocv)
    for j, t in enumerate(temps):
        vd = raw[f"vdis_{_temp_tag(t)}"]
        vc = raw[f"vchg_{_temp_tag(t)}"]
        ocv[j] = np.maximum.accumulate(0.5 * (vd + vc))
        hyst[j] = np.clip(0.5 * (vc - vd), 0.0, 0.5)
    tk = np.asarray(temps, dtype=float) + 273.15
    r0 = 1.2e-3 * np.exp(4500.0 * (1.0 / tk - 1.0 / 298.15))
    nt = len(temps)
    prof = Profile(
        name="winston_lfp100_synthetic", path=Path("."), chemistry="LFP", capacity_ah=109.374, eta_chg=0.99301,
        limits=CellLimits(v_min_v=2.8, v_max_v=4.0, v_damage_v=2.5, i_max_chg_a=300.0, i_max_dis_a=300.0,
                          i_peak_dis_a=1000.0, temp_min_chg_c=0.0, temp_max_c=80.0),
        soc=soc, temp_c=np.asarray(temps, dtype=float),
        tables={
            "ocv_v": ocv, "hyst_v": hyst, "r0_chg_ohm": r0, "r0_dis_ohm": r0,
            "r1_ohm": np.full(nt, 0.5e-3), "tau1_s": np.full(nt, 30.0),
            "r2_ohm": np.full(nt, 0.5e-3), "tau2_s": np.full(nt, 600.0),
            "gamma": np.full(nt, 50.0), "m0_v": np.full(nt, 5e-3),
        },
        source="synthetic stand-in from data/winston_lfp100/ocv_c50_table.csv", i_sign_a=1.0,
    )
    d = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="bms_fil_profile_"))
    return load_profile(save_profile(prof, d / "winston_lfp100_synthetic.toml"))


def reference_profile() -> Profile:
    """The shipped ``winston_lfp100`` profile if present, else the synthetic stand-in."""
    try:
        return load_profile("winston_lfp100")
    except FileNotFoundError:
        return synthetic_lfp100_profile()
