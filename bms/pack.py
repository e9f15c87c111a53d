"""Pack definitions: the TOML files in ``bms/packs/`` (schema in ``heavy_duty_192s.toml``).

``load_pack(name_or_path)`` validates every key (errors name the file, the key and the allowed
range), checks the thresholds against the cell profile's datasheet limits, and builds the
numba parameter arrays (:class:`PackParams`) that ``bms.core.step`` takes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from bms import diag_table as T
from bms import layout as L
from bms.config import ConfigError, Section, load_toml
from bms.model import CellParams
from bms.profile import Profile, load_profile
from bms.soc import estimator

PACK_DIR = Path(__file__).parent / "packs"
EST_NAMES = tuple(estimator.ESTIMATORS)


class PackParams(NamedTuple):
    """Everything a step needs, as numba-friendly arrays (built once)."""

    cell: CellParams
    est_kind: int            # estimator kind (bms.soc.estimator.EST_*)
    tune: np.ndarray         # estimator tuning vector
    pp: np.ndarray           # (NPP,) scalar parameters, indices P_*
    diag: np.ndarray         # (NF, ND) fault table, columns D_*
    board_of_cell: np.ndarray    # (n_series,) int64
    board_of_temp: np.ndarray    # (n_temps,) int64
    temp_of_cell: np.ndarray     # (n_series,) int64 nearest sensor
    cell_start: np.ndarray   # (n_boards + 1,) int64: cells of board b are cell_start[b]:cell_start[b+1]
    temp_start: np.ndarray   # (n_boards + 1,) int64: sensors of board b likewise
    der_temp_c: np.ndarray   # temperature derating grid and factors
    der_temp_chg: np.ndarray
    der_temp_dis: np.ndarray
    der_soc: np.ndarray      # SOC derating grid and factors
    der_soc_chg: np.ndarray
    der_soc_dis: np.ndarray


@dataclass
class Pack:
    name: str
    path: Path
    profile: Profile
    n_series: int
    n_parallel: int
    n_boards: int
    cells_per_board: int
    temps_per_board: int
    estimator: str
    pp: np.ndarray
    faults: dict[str, T.FaultNumbers]
    derating: dict[str, np.ndarray]
    balancing_states: tuple[str, ...]

    @property
    def n_temps(self) -> int:
        return self.n_boards * self.temps_per_board

    @property
    def diag(self) -> np.ndarray:
        return T.diag_array(self.faults)

    def params(self, est_kind: int | None = None, tune: np.ndarray | None = None) -> PackParams:
        cell = self.profile.params
        kind = estimator.ESTIMATORS[self.estimator].kind if est_kind is None else est_kind
        default_tune = estimator.default_tuning(kind, cell)
        cpb, tpb = self.cells_per_board, self.temps_per_board
        cells = np.arange(self.n_series)
        board_of_cell = cells // cpb
        temp_of_cell = board_of_cell * tpb + ((cells % cpb) * tpb) // cpb
        f = np.ascontiguousarray
        return PackParams(
            cell=cell,
            est_kind=int(kind),
            tune=f(default_tune if tune is None else tune, dtype=np.float64),
            pp=f(self.pp, dtype=np.float64),
            diag=f(self.diag),
            board_of_cell=f(board_of_cell, dtype=np.int64),
            board_of_temp=f(np.arange(self.n_temps) // tpb, dtype=np.int64),
            temp_of_cell=f(temp_of_cell, dtype=np.int64),
            cell_start=f(np.arange(self.n_boards + 1) * cpb, dtype=np.int64),
            temp_start=f(np.arange(self.n_boards + 1) * tpb, dtype=np.int64),
            **{k: f(v, dtype=np.float64) for k, v in self.derating.items()},
        )


def resolve(name_or_path: str | Path) -> Path:
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no such pack file")
        return p
    shipped = PACK_DIR / f"{name_or_path}.toml"
    if not shipped.is_file():
        names = ", ".join(sorted(q.stem for q in PACK_DIR.glob("*.toml")))
        raise FileNotFoundError(f"no pack named {name_or_path!r} (shipped: {names})")
    return shipped


def _fault_numbers(path: Path, root: Section) -> dict[str, T.FaultNumbers]:
    sec = root.section("faults")
    unknown = set(sec.data) - set(T.BY_NAME)
    if unknown:
        raise ConfigError(path, f"faults.{sorted(unknown)[0]}", "is not a known fault", ", ".join(T.BY_NAME))
    out = {}
    for f in T.FAULTS:
        s = sec.section(f.name)
        n = T.FaultNumbers()
        used = {"warning": "w" in f.levels, "fault": "f" in f.levels, "critical": "c" in f.levels}
        for key, needed in used.items():
            if needed:
                setattr(n, key, s.number(key, -1e6, 1e6))
            elif s.has(key):
                raise ConfigError(path, f"faults.{f.name}.{key}", "is given but this fault has no such level",
                                  f"only {', '.join(k for k, u in used.items() if u)}")
        n.hysteresis = s.number("hysteresis", 0.0, 1e6, default=0.0)
        n.debounce_s = s.number("debounce_s", 0.0, 3600.0, default=0.0)
        n.critical_debounce_s = s.number("critical_debounce_s", 0.0, 3600.0, default=0.0)
        n.heal_s = s.number("heal_s", 0.0, 3600.0, default=0.0)
        levels = [getattr(n, k) for k in ("warning", "fault", "critical") if used[k]]
        ordered = np.all(np.diff(levels) * f.direction > 0)
        if not ordered:
            raise ConfigError(path, f"faults.{f.name}", f"has levels {levels}",
                              "warning, fault, critical " + ("increasing" if f.direction > 0 else "decreasing"))
        unknown = set(s.data) - set(used) - set(T.TIMING_KEYS)
        if unknown:
            raise ConfigError(path, f"faults.{f.name}.{sorted(unknown)[0]}", "is not a known key",
                              ", ".join(T.THRESHOLD_KEYS + T.TIMING_KEYS))
        out[f.name] = n
    return out


def _check_sensor_thresholds(path: Path, faults: dict[str, T.FaultNumbers]) -> None:
    """An open (shorted) sensor must read colder (hotter) than every cell temperature level, or
    a real temperature would be taken for a sensor fault and a sensor fault for a real one."""
    for sensor, cells, cmp, word in (("TEMP_SENSOR_OPEN", ("CELL_UT_CHG", "CELL_UT_DIS"), min, "below"),
                                     ("TEMP_SENSOR_SHORT", ("CELL_OT_CHG", "CELL_OT_DIS"), max, "above")):
        thr = faults[sensor].fault
        levels = [x for c in cells for x in (faults[c].warning, faults[c].fault, faults[c].critical) if not np.isnan(x)]
        bound = cmp(levels)
        if not (thr < bound if word == "below" else thr > bound):
            raise ConfigError(path, f"faults.{sensor}.fault", f"is {thr:g} degC",
                              f"{word} every cell temperature level of {' / '.join(cells)} ({bound:g} degC)")


def _check_datasheet(path: Path, prof: Profile, faults: dict[str, T.FaultNumbers], n_par: int, pp: np.ndarray) -> None:
    """Thresholds must respect the cell's datasheet limits."""
    lim = prof.limits
    checks = (
        ("faults.CELL_OV.fault", faults["CELL_OV"].fault, lim.v_min_v, lim.v_max_v),
        ("faults.CELL_UV.fault", faults["CELL_UV"].fault, lim.v_min_v, lim.v_max_v),
        ("faults.CELL_DEEP_DISCHARGE.fault", faults["CELL_DEEP_DISCHARGE"].fault, lim.v_damage_v, lim.v_min_v),
        ("faults.CELL_UT_CHG.fault", faults["CELL_UT_CHG"].fault, lim.temp_min_chg_c, lim.temp_max_c),
        ("faults.CELL_OT_DIS.critical", faults["CELL_OT_DIS"].critical, -40.0, lim.temp_max_c),
        ("faults.CELL_OT_CHG.critical", faults["CELL_OT_CHG"].critical, -40.0, lim.temp_max_c),
        ("limits.i_chg_max_a", pp[L.P_I_CHG_MAX_A], 0.0, lim.i_max_chg_a * n_par),
        ("limits.i_dis_max_a", pp[L.P_I_DIS_MAX_A], 0.0, lim.i_max_dis_a * n_par),
        ("limits.v_chg_cell_v", pp[L.P_V_CHG_CELL_V], lim.v_min_v, lim.v_max_v),
        ("limits.v_dis_cell_v", pp[L.P_V_DIS_CELL_V], lim.v_min_v, lim.v_max_v),
    )
    for key, val, lo, hi in checks:
        if not lo <= val <= hi:
            raise ConfigError(path, key, f"is {val} outside the datasheet limits of {prof.name}", f"[{lo}, {hi}]")


def _derating(path: Path, sec: Section, grid_key: str, lo: float, hi: float) -> tuple[np.ndarray, ...]:
    grid = sec.array(grid_key, lo, hi, increasing=True)
    chg = sec.array("charge", 0.0, 1.0, shape=(grid.size,))
    dis = sec.array("discharge", 0.0, 1.0, shape=(grid.size,))
    return grid, chg, dis


def load_pack(name_or_path: str | Path, profile: Profile | None = None) -> Pack:
    """Load and validate a pack; ``profile`` overrides the one named in ``pack.cell_profile``."""
    path = resolve(name_or_path)
    root = Section(path, load_toml(path))
    pk = root.section("pack")
    prof = profile if profile is not None else load_profile(pk.string("cell_profile"))
    ns = pk.integer("n_series", 1, 1000)
    npar = pk.integer("n_parallel", 1, 100)
    est = pk.string("estimator", "ekf", choices=EST_NAMES)
    tk = root.section("tasks")
    fast_s = tk.number("fast_s", 1e-4, 1.0)
    medium_s = tk.number("medium_s", fast_s, 10.0)
    slow_s = tk.number("slow_s", medium_s, 60.0)
    for key, val in (("medium_s", medium_s), ("slow_s", slow_s)):
        if abs(val / fast_s - round(val / fast_s)) > 1e-6:
            raise ConfigError(path, f"tasks.{key}", f"is {val} s", f"a whole multiple of tasks.fast_s ({fast_s} s)")
    bd = root.section("boards")
    nb = bd.integer("count", 1, 100)
    cpb = bd.integer("cells_per_board", 1, 64)
    tpb = bd.integer("temps_per_board", 1, 64)
    if nb * cpb != ns:
        raise ConfigError(path, "boards.cells_per_board", f"is {cpb} with {nb} boards for {ns} cells",
                          f"count * cells_per_board == pack.n_series ({ns})")
    pp = np.zeros(L.NPP)
    pp[L.P_N_SERIES], pp[L.P_N_PARALLEL], pp[L.P_N_BOARDS], pp[L.P_N_TEMPS] = ns, npar, nb, nb * tpb
    pp[L.P_CELL_CAPACITY_AH] = prof.capacity_ah
    pp[L.P_TASK_FAST_S], pp[L.P_TASK_MEDIUM_S], pp[L.P_TASK_SLOW_S] = fast_s, medium_s, slow_s
    cs = root.section("current_sensor")
    pp[L.P_I_RANGE_A] = cs.number("range_a", 1.0, 1e5)
    ct = root.section("contactors")
    pp[L.P_BREAK_A] = ct.number("break_current_a", 0.0, 1e4)
    pp[L.P_CRIT_OPEN_S] = ct.number("critical_open_s", 0.0, 60.0)
    pp[L.P_CONT_SETTLE_S] = ct.number("feedback_settle_s", 0.0, 5.0)
    pp[L.P_WELD_CHECK_S] = ct.number("weld_check_s", 0.0, 60.0)
    pp[L.P_INIT_S] = ct.number("init_s", 0.0, 60.0)
    pc = root.section("precharge")
    r_ohm = pc.number("resistor_ohm", 0.1, 1e5)
    c_f = pc.number("bus_capacitance_f", 1e-6, 10.0)
    pp[L.P_PRE_FRAC] = pc.number("fraction", 0.5, 0.999)
    pp[L.P_PRE_TIMEOUT_S] = pc.number("timeout_s", 0.01, 60.0)
    t_needed = -r_ohm * c_f * np.log(1.0 - pp[L.P_PRE_FRAC])
    if pp[L.P_PRE_TIMEOUT_S] < 1.5 * t_needed:
        raise ConfigError(path, "precharge.timeout_s", f"is {pp[L.P_PRE_TIMEOUT_S]}",
                          f">= 1.5 x the RC time to the fraction ({1.5 * t_needed:.3g} s)")
    pp[L.P_PRE_MIN_S] = pc.number("min_s", 0.0, 10.0)
    pp[L.P_PRE_OVERLAP_S] = pc.number("overlap_s", 0.0, 5.0)
    pp[L.P_PRE_ATTEMPTS] = pc.integer("attempts", 1, 10)
    pp[L.P_PRE_RETRY_S] = pc.number("retry_delay_s", 0.0, 600.0)
    lm = root.section("limits")
    for idx, key, lo, hi in (
        (L.P_I_CHG_MAX_A, "i_chg_max_a", 0.0, 1e5), (L.P_I_DIS_MAX_A, "i_dis_max_a", 0.0, 1e5),
        (L.P_P_CHG_MAX_W, "p_chg_max_w", 0.0, 1e8), (L.P_P_DIS_MAX_W, "p_dis_max_w", 0.0, 1e8),
        (L.P_V_CHG_CELL_V, "v_chg_cell_v", 1.0, 5.0), (L.P_V_DIS_CELL_V, "v_dis_cell_v", 1.0, 5.0),
        (L.P_RAMP_UP_A_S, "ramp_up_a_per_s", 1e-3, 1e6), (L.P_RAMP_DOWN_A_S, "ramp_down_a_per_s", 1e-3, 1e6),
        (L.P_SOC_RATE_PER_S, "soc_display_rate_per_s", 1e-6, 1.0), (L.P_CHG_DETECT_A, "charge_detect_a", 0.0, 1e3),
        (L.P_I2T_TAU_S, "i2t_tau_s", 0.1, 3600.0), (L.P_I2T_CHG_RATED_A, "i2t_chg_rated_a", 1.0, 1e5),
        (L.P_I2T_DIS_RATED_A, "i2t_dis_rated_a", 1.0, 1e5),
    ):
        pp[idx] = lm.number(key, lo, hi)
    t_grid, t_chg, t_dis = _derating(path, lm.section("temperature"), "temp_c", -80.0, 150.0)
    s_grid, s_chg, s_dis = _derating(path, lm.section("soc"), "soc", 0.0, 1.0)
    pl = root.section("plausibility")
    pp[L.P_STUCK_DV_V] = pl.number("stuck_dv_v", 0.0, 0.1)
    pp[L.P_STUCK_DI_A] = pl.number("stuck_di_a", 0.0, 1e4, lo_open=True)
    bl = root.section("balancing")
    pp[L.P_BAL_MODE] = ("voltage", "soc", "both").index(bl.string("mode", choices=("voltage", "soc", "both")))
    states = bl.raw("states")
    if not isinstance(states, list) or any(s not in L.STATE_NAMES for s in states):
        raise ConfigError(path, "balancing.states", f"is {states!r}", "a list of " + ", ".join(L.STATE_NAMES))
    pp[L.P_BAL_STATES] = sum(1 << L.STATE_NAMES.index(s) for s in set(states))
    pp[L.P_BAL_MAX_PER_BOARD] = bl.integer("max_per_board", 0, cpb)
    for idx, key, lo, hi in (
        (L.P_BAL_START_SOC, "start_soc", 0.0, 0.5), (L.P_BAL_STOP_SOC, "stop_soc", 0.0, 0.5),
        (L.P_BAL_START_V, "start_v", 0.0, 0.5), (L.P_BAL_STOP_V, "stop_v", 0.0, 0.5),
        (L.P_BAL_V_MIN_V, "v_min_v", 0.0, 5.0), (L.P_BAL_SOC_TOP, "soc_top", 0.0, 1.0),
        (L.P_BAL_REST_A, "rest_current_a", 0.0, 1e3), (L.P_BAL_REST_S, "rest_s", 0.0, 1e5),
        (L.P_BAL_R_OHM, "bleed_resistor_ohm", 0.1, 1e5),
        (L.P_BAL_C_J_K, "board_heat_capacity_j_per_k", 1e-3, 1e6),
        (L.P_BAL_G_W_K, "board_conductance_w_per_k", 1e-6, 1e3),
        (L.P_BAL_T_MAX_C, "board_temp_max_c", 0.0, 200.0), (L.P_BAL_T_HYST_K, "board_temp_hysteresis_k", 0.0, 100.0),
        (L.P_MEAS_PERIOD_S, "measurement_period_s", 1e-3, 3600.0), (L.P_MEAS_WINDOW_S, "measurement_window_s", 0.0, 3600.0),
    ):
        pp[idx] = bl.number(key, lo, hi)
    for start, stop, name in ((L.P_BAL_START_SOC, L.P_BAL_STOP_SOC, "stop_soc"), (L.P_BAL_START_V, L.P_BAL_STOP_V, "stop_v")):
        if not 0.0 < pp[stop] < pp[start]:
            raise ConfigError(path, f"balancing.{name}", f"is {pp[stop]}", f"(0, start) = (0, {pp[start]}) (hysteresis)")
    if pp[L.P_MEAS_WINDOW_S] >= pp[L.P_MEAS_PERIOD_S]:
        raise ConfigError(path, "balancing.measurement_window_s", f"is {pp[L.P_MEAS_WINDOW_S]}",
                          f"< measurement_period_s ({pp[L.P_MEAS_PERIOD_S]})")
    sdc = root.section("self_discharge")
    pp[L.P_SD_REST_S] = sdc.number("rest_s", 0.0, 1e6)
    pp[L.P_SD_WINDOW_S] = sdc.number("window_s", 1.0, 1e7)
    pp[L.P_SD_SLOPE_MIN_V] = sdc.number("ocv_slope_min_v", 1e-4, 10.0)
    pp[L.P_SD_SLOPE_RATIO] = sdc.number("slope_ratio_max", 1.0, 100.0)
    pp[L.P_SD_SOC_STEP] = sdc.number("soc_step_max", 0.0, 1.0)
    pp[L.P_SD_DV_DEADBAND_V] = sdc.number("dv_deadband_v", 0.0, 0.1)
    pp[L.P_SD_SOC_LO] = sdc.number("soc_min", 0.0, 1.0)
    pp[L.P_SD_SOC_HI] = sdc.number("soc_max", 0.0, 1.0)
    if pp[L.P_SD_SOC_LO] >= pp[L.P_SD_SOC_HI]:
        raise ConfigError(path, "self_discharge.soc_max", f"is {pp[L.P_SD_SOC_HI]}", f"> soc_min ({pp[L.P_SD_SOC_LO]})")
    faults = _fault_numbers(path, root)
    if faults["PRECHARGE_FAIL"].fault > pp[L.P_PRE_ATTEMPTS]:
        raise ConfigError(path, "faults.PRECHARGE_FAIL.fault", f"is {faults['PRECHARGE_FAIL'].fault}",
                          f"<= precharge.attempts ({int(pp[L.P_PRE_ATTEMPTS])}) or it can never trip")
    _check_datasheet(path, prof, faults, npar, pp)
    _check_sensor_thresholds(path, faults)
    # readings beyond the sensor-fault thresholds are never used (and trip the sensor fault)
    pp[L.P_T_OPEN_C] = faults["TEMP_SENSOR_OPEN"].fault
    pp[L.P_T_SHORT_C] = faults["TEMP_SENSOR_SHORT"].fault
    return Pack(
        name=pk.string("name"), path=path, profile=prof, n_series=ns, n_parallel=npar, n_boards=nb,
        cells_per_board=cpb, temps_per_board=tpb, estimator=est, pp=pp, faults=faults,
        derating=dict(der_temp_c=t_grid, der_temp_chg=t_chg, der_temp_dis=t_dis,
                      der_soc=s_grid, der_soc_chg=s_chg, der_soc_dis=s_dis),
        balancing_states=tuple(states),
    )
