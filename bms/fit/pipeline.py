"""``bms profile fit`` end to end: slow curves -> OCV/hysteresis, drive cycles -> dynamic
parameters, temperature rule -> full tables. The OCV/hysteresis split uses the fitted ``gamma``,
``m0``, resistances and slow-test polarisation (:mod:`bms.fit.ocv`): at drive-cycle temperatures
the rows are rebuilt inside the least squares; at the others from the temperature rule.
``iterations`` > 1 repeats the drive fits from the previous pass (warm start; rarely useful)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bms.config import Section, load_toml
from bms.fit import dynamic, ocv, rsoc, temperature
from bms.labdata import DataError, LabData, load_csv
from bms.profile import CellLimits, Profile, read_limits, to_params

KELVIN = 273.15
#: held in the second (G) stage of ``--rc-soc-factor``: every fitted key but G's log-increments
#: and the record's initial RC voltages
G_STAGE_FIXED = tuple(k for k in dynamic.FIT_KEYS if k not in rsoc.RC_KEYS + ("v1_init_v", "v2_init_v", "i_offset_c"))


def load_datasheet(path: str | Path) -> tuple[dict, CellLimits]:
    """A datasheet TOML ``[cell]`` table: name/chemistry/source strings and the limits."""
    path = Path(path)
    cell = Section(path, load_toml(path)).section("cell")
    limits = read_limits(cell)
    info = {"chemistry": cell.string("chemistry", "LFP"), "source": cell.string("source", "")}
    return info, limits


def initial_guess(temp_c: np.ndarray, capacity_ah: float) -> dict[str, np.ndarray]:
    """Generic LFP starting values: resistances ~ (ohm Ah)/Q with an Arrhenius factor (4000 K)."""
    f = np.exp(4000.0 * (1.0 / (np.asarray(temp_c) + KELVIN) - 1.0 / 298.15))
    n = np.ones_like(f)
    g = {"r0_chg_ohm": 0.08 / capacity_ah * f, "r0_dis_ohm": 0.08 / capacity_ah * f,
         "r1_ohm": 0.03 / capacity_ah * f, "tau1_s": 10.0 * n, "r2_ohm": 0.08 / capacity_ah * f,
         "tau2_s": 300.0 * n, "gamma": 100.0 * n, "m0_v": 0.002 * n, "p_extra_v": 0.002 * n,
         **{k: 0.05 * n for k in rsoc.ALL_KEYS}}
    return {k: np.clip(v, *dynamic.BOUNDS[k]) for k, v in g.items()}


def r_steady(dyn) -> np.ndarray:
    """Steady-state (slow-current) resistance (R0_chg + R0_dis)/2 + R1 + R2."""
    return 0.5 * (dyn["r0_chg_ohm"] + dyn["r0_dis_ohm"]) + dyn["r1_ohm"] + dyn["r2_ohm"]


def p_slow(dyn, i_slow_a: float, f=None, g=None):
    """Polarisation of the slow test: I R_ss plus the fitted extra (diffusion) part; with the SOC
    factors ``f`` (series resistance) and ``g`` (RC resistances), (nS,) rows for scalar ``dyn``
    values or (nT, nS) tables for (nT,) ones, per SOC: I ((R0_chg + R0_dis)/2 F + (R1 + R2) G) + p_extra."""
    if f is None:
        return i_slow_a * r_steady(dyn) + dyn["p_extra_v"]
    col = (lambda a: a) if np.ndim(dyn["r1_ohm"]) == 0 else (lambda a: np.asarray(a)[:, None])  # noqa: E731
    r0 = col(0.5 * (dyn["r0_chg_ohm"] + dyn["r0_dis_ohm"]))
    rc = col(dyn["r1_ohm"] + dyn["r2_ohm"])
    return i_slow_a * (r0 * np.asarray(f) + rc * np.asarray(g)) + col(dyn["p_extra_v"])


def _round_list(a, digits: int) -> list:
    return np.round(np.asarray(a, dtype=float), digits).tolist()


@dataclass
class FitResult:
    profile: Profile
    drives: list[dynamic.DriveFit]
    records: list[LabData]


def fit_profile(name: str, ocv_path: str | Path, i_slow_a: float, drive_paths: list[str | Path],
                capacity_ah: float, eta_chg: float, datasheet: str | Path, dsoc: float = 0.01,
                iterations: int = 1, i_sign_a: float | None = None, fit_offset: bool = False,
                rc_soc: bool = False, log=print) -> FitResult:
    """Fit a whole cell profile (module docstring); ``log`` receives progress lines. Each drive
    record is first fitted with G = 1 (the slow test's polarisation ``I R_ss`` at the reference
    SOC). With ``rc_soc`` a second least squares then fits only the RC resistances' SOC factor G
    (and the record's initial RC voltages), every other parameter held at the first stage, the
    slow curves read with the SOC-dependent polarisation ``I R_ss(z)`` (:func:`p_slow`). Why two
    stages: fitted jointly, G trades against the plateau's R1, R2 (at 25 C R2 -11 %), the
    polarisation the SOC estimator reads the plateau through; the EKF then reads P25 ~1 % low
    (docs/cell-profiles.md, 'RC SOC factor G')."""
    info, limits = load_datasheet(datasheet)
    if not capacity_ah > 0 or not 0.8 <= eta_chg <= 1.0:
        raise ValueError(f"capacity_ah must be > 0 and eta in [0.8, 1], got {capacity_ah}, {eta_chg}")
    i_sign = 0.01 * capacity_ah if i_sign_a is None else float(i_sign_a)
    curves = ocv.resample(ocv.read_slow_table(ocv_path, i_slow_a), dsoc)
    temps = curves.temp_c
    records = [load_csv(p, require_soc_ref=True) for p in drive_paths]
    rows = []
    for rec in records:
        t = dynamic.record_temp_c(rec)
        hit = np.flatnonzero(np.isclose(temps, t))
        if hit.size == 0:
            raise DataError(f"{rec.path}: drive cycle at {t} C but the slow curves are at {temps.tolist()} C only")
        rows.append(int(hit[0]))
    if len(set(rows)) != len(rows):
        raise DataError("two drive records at the same temperature: give one per temperature")
    fit_t = temps[rows]
    half_gap = ocv.mid_half_gap(curves)
    dyn = initial_guess(temps, capacity_ah)
    fits: list[dynamic.DriveFit] = []
    for it in range(max(1, iterations)):
        fits_prev, fits = fits, []
        for rec, j in zip(records, rows):
            guess = {k: float(dyn[k][j]) for k in dynamic.FIT_KEYS if k in dyn}
            if fits_prev:
                guess.update({k: fits_prev[len(fits)].values[k] for k in dynamic.RECORD_KEYS})

            def rows_fn(v, j=j):
                return ocv.ocv_hyst_row(curves, j, v["gamma"], v["m0_v"], p_slow(v, i_slow_a), eta_chg)

            def rows_g(v, j=j):
                f, g = rsoc.factor_row(curves.soc, v), rsoc.factor_row(curves.soc, v, rsoc.RC_KEYS)
                return ocv.ocv_hyst_row(curves, j, v["gamma"], v["m0_v"], p_slow(v, i_slow_a, f, g), eta_chg)

            f = dynamic.fit_drive(rec, curves.soc, rows_fn, guess, capacity_ah, eta_chg, i_sign, fit_offset=fit_offset,
                                  zero=rsoc.RC_KEYS)
            log(f"  pass {it + 1}: {Path(rec.path).name} at {f.temp_c:g} C: RMSE {1e3 * f.rmse_v:.2f} mV "
                f"({f.n_eval} evaluations)")
            if rc_soc:  # second stage: G's shape only, everything else held at the G = 1 fit
                f = dynamic.fit_drive(rec, curves.soc, rows_g, f.values, capacity_ah, eta_chg, i_sign,
                                      fit_offset=fit_offset, fixed=G_STAGE_FIXED)
                log(f"  pass {it + 1}: {Path(rec.path).name} at {f.temp_c:g} C, RC SOC factor G: "
                    f"RMSE {1e3 * f.rmse_v:.2f} mV ({f.n_eval} evaluations)")
            fits.append(f)
        fitted = {k: np.array([f.values[k] for f in fits]) for k in dynamic.FIT_KEYS if k not in dynamic.RECORD_KEYS}
        rsoc.fill_uncovered(fit_t, fitted, [rsoc.covered(rec, capacity_ah) for rec in records])
        dyn = temperature.extend(fit_t, fitted, temps, half_gap)
    f_tab = rsoc.factor_table(curves.soc, dyn)
    g_tab = rsoc.factor_table(curves.soc, dyn, rsoc.RC_KEYS)
    p_tab = p_slow(dyn, i_slow_a, f_tab, g_tab) if rc_soc else p_slow(dyn, i_slow_a)
    ocv_v, hyst_v = ocv.ocv_hyst(curves, dyn["gamma"], dyn["m0_v"], p_tab, eta_chg)
    p_extra = dyn.pop("p_extra_v")
    d_rsoc = {k: dyn.pop(k) for k in rsoc.ALL_KEYS}
    prof = Profile(name=name, path=Path(f"{name}.toml"), chemistry=info["chemistry"], capacity_ah=capacity_ah,
                   eta_chg=eta_chg, limits=limits, soc=curves.soc, temp_c=temps,
                   tables={"ocv_v": ocv_v, "hyst_v": hyst_v, "r0_soc_factor": f_tab,
                           **({"rc_soc_factor": g_tab} if rc_soc else {}),
                           **dyn}, source=info["source"], i_sign_a=i_sign)
    p = to_params(prof)
    scores = [dynamic.score(p, rec, f.values) for rec, f in zip(records, fits)]
    prof.fit = {
        "ocv_data": str(ocv_path), "ocv_current_a": i_slow_a, "drive_data": [str(x) for x in drive_paths],
        "iterations": iterations, "temperature_rule": temperature.RULE_TEXT,
        "ocv_method": "weighted mean of the slow curves corrected for the slow-test polarisation P, m0 and "
                      "the dynamic hysteresis state (bms/fit/ocv.py); branches OCV-M and OCV+M made "
                      f"rising at least {1e3 * ocv.MIN_SLOPE_V / 100:g} mV per % SOC by isotonic regression",
        "hyst_method": "M = (v_chg - v_dis - 2 m0 - 2 P) / (h_chg - h_dis) in SOC "
                       f"{ocv.CORE_SOC[0]}..{ocv.CORE_SOC[1]}, edge values held outside, capped at the "
                       f"SOC {ocv.PLATEAU_SOC[0]}..{ocv.PLATEAU_SOC[1]} median above and {ocv.LOW_CAP} x it below; "
                       "P = I R_ss + p_extra (slow_polarisation_extra_mv), fitted on the drive records",
        "drive_fit": "least squares on v_model - v_measured for soc_ref <= 0.97 (bms/fit/dynamic.py), "
                     "bms.model.simulate driven by the measured current from soc_ref[0], h = s = +1, "
                     "initial RC voltages fitted per record (initial_rc_mv)",
        "initial_rc_mv": {Path(s.path).name: [round(1e3 * f.values[k], 3) for k in ("v1_init_v", "v2_init_v")]
                          for s, f in zip(scores, fits)},
        "current_offset_ma": {Path(s.path).name: round(1e3 * f.values["i_offset_c"] * capacity_ah, 3)
                              for s, f in zip(scores, fits)},
        "soc_ref_gap_max": {Path(s.path).name: round(s.soc_gap_max, 4) for s in scores},
        "rmse_mv": {Path(s.path).name: round(1e3 * s.rmse_v, 3) for s in scores},
        "r0_soc_method": rsoc.METHOD_TEXT,
        "r0_soc_knots": rsoc.KNOTS.tolist(),
        "r0_soc_factor_at_knots": [_round_list(np.exp(rsoc.ln_knots({k: d_rsoc[k][t] for k in rsoc.KEYS})), 4)
                                   for t in range(temps.size)],
        "r0_soc_covered": {Path(rec.path).name: [k for k, c in rsoc.covered(rec, capacity_ah).items()
                                                 if c and k in rsoc.KEYS] for rec in records},
        "slow_polarisation_extra_mv": _round_list(1e3 * p_extra, 2),
        "slow_polarisation_total_mv": _round_list(1e3 * (p_extra + i_slow_a * r_steady(dyn)), 2),
        "rmse_soc_le_0.97_mv": {Path(s.path).name: round(1e3 * s.rmse_fit_v, 3) for s in scores},
        "max_abs_mv": {Path(s.path).name: round(1e3 * s.max_abs_v, 2) for s in scores},
    }
    if rc_soc:
        prof.fit["rc_soc_method"] = rsoc.RC_METHOD_TEXT
        prof.fit["rc_soc_factor_at_knots"] = [
            _round_list(np.exp(rsoc.ln_knots({k: d_rsoc[k][t] for k in rsoc.RC_KEYS}, rsoc.RC_KEYS)), 4)
            for t in range(temps.size)]
    return FitResult(prof, scores, records)
