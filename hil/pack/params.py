"""Pack model parameters: built once from a cell profile, a pack geometry and a seeded spread.

``build_params(profile, geometry, spread, sensors, seed)`` returns a :class:`PackModelParams`
(a NamedTuple of NumPy arrays and scalars that numba kernels take as is). Per-cell spread
(capacity, resistance, hysteresis rate, self-discharge, initial SOC) and per-channel sensor
calibration errors are drawn from ``numpy.random.default_rng(seed)``: the same seed gives the
same pack. Faults live apart, in :class:`PackFaults` (see :func:`new_faults`), so that a fault
injection layer can set and clear them in place between steps.

Temperature dependence is richer than the estimator's table interpolation: resistances are
interpolated as ``ln R`` linear in ``1/T`` (Arrhenius between the profile's grid points, and
extrapolated with the edge segment's activation energy up to ``t_extrap_k`` beyond the grid);
R0 follows the profile's SOC factor ``F(T, z)`` (``r0_soc_factor``, the estimator's own) times an
edge factor that grows near empty and full, beyond the drive data the profile was fitted on
(``1 + lo e(z, w_lo, z_lo) + hi e(1 - z, w_hi, 1 - z_hi)``, :func:`_edge_rise`: 1 inside the
knots ``[z_lo, z_hi]`` of the profile's fitted factor, rising to ``1 + lo`` at SOC 0 and
``1 + hi`` at SOC 1) (``rsoc`` (nT, nS) holds the product); R1 and R2
follow the profile's RC SOC factor ``G(T, z)`` (``rc_soc_factor``, table ``rcsoc``); beyond the SOC table the OCV goes on
with the slope ``ocv_edge_slope_v`` (over-discharge collapses, over-charge rises); self-discharge follows Arrhenius
with activation energy ``self_discharge_ea_j_mol``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from bms.profile import RC_SOC_KEY, Profile, r0_soc_factor
from hil.pack.layout import NS, S_GAIN, S_HI, S_LO, S_NOISE, S_OFFSET, S_QUANT
from hil.pack.thermal import T0_K

R_GAS = 8.314462618  # J/(mol K)


@dataclass(frozen=True)
class PackGeometry:
    """Electrical, thermal and layout constants of a pack (defaults: heavy_duty_192s, 192s2p)."""

    n_series: int = 192
    n_parallel: int = 2
    cells_per_board: int = 16
    temp_sensors_per_board: int = 8
    bleed_ohm: float = 33.0  # per series element
    bleed_heat_to_cell: float = 0.3  # share of bleed heat that goes into the element's cells
    r_precharge_ohm: float = 47.0  # as bms/packs/heavy_duty_192s.toml
    r_contact_ohm: float = 0.5e-3  # main path: both contactors, busbars, fuse
    bus_cap_f: float = 2e-3  # inverter DC-link capacitance (tau ~ 94 ms)
    bus_dis_ohm: float = 100e3  # passive discharge resistor across the DC link
    pre_heat_cap_j_k: float = 60.0  # precharge resistor heat capacity
    pre_g_w_k: float = 0.5  # precharge resistor to ambient
    pre_fuse_c: float = 250.0  # its thermal fuse opens above this temperature
    contactor_close_s: float = 0.03
    contactor_open_s: float = 0.015
    cell_heat_cap_j_k: float = 3.2 * 1000.0  # LFP100: 3.2 kg x 1000 J/(kg K)
    g_neighbour_w_k: float = 2.0  # conduction between adjacent cells
    board_gap_factor: float = 0.2  # neighbour conduction across a board boundary, relative
    g_coolant_w_k: float = 1.5  # cell to coolant (cold plate) conductance
    g_ambient_w_k: float = 0.1  # cell to ambient
    coolant_cp_j_kgk: float = 3500.0  # water-glycol
    thermal_every: int = 100  # thermal update (and coefficient refresh) every N electrical steps
    sensor_tau_s: float = 5.0  # temperature sensor lag
    self_discharge_ea_j_mol: float = 50e3
    hysteresis_fast_ratio: float = 20.0  # fast hysteresis rate / slow rate
    r_soc_lo_gain: float = 1.0  # R0 x (1 + gain) at SOC 0
    r_soc_lo_width: float = 0.05
    r_soc_hi_gain: float = 0.3  # R0 x (1 + gain) at SOC 1
    r_soc_hi_width: float = 0.03
    t_extrap_k: float = 20.0  # Arrhenius extrapolation beyond the profile's temperature grid
    ocv_edge_slope_v: float = 10.0  # OCV slope beyond the SOC table (V per unit SOC): over-(dis)charge


@dataclass(frozen=True)
class PackSpread:
    """Cell-to-cell manufacturing spread (relative standard deviations unless noted)."""

    capacity_rel_sd: float = 0.01
    resistance_rel_sd: float = 0.05
    gamma_rel_sd: float = 0.05
    self_discharge_pct_month: float = 3.0  # median at 25 degC
    self_discharge_log_sd: float = 0.3  # lognormal spread
    soc0_sd: float = 0.005  # initial SOC spread (absolute)


@dataclass(frozen=True)
class SensorSpec:
    """Nominal sensor characteristics; offsets and gains are drawn per channel."""

    cell_v_noise_v: float = 0.5e-3
    cell_v_offset_sd_v: float = 1e-3
    cell_v_gain_sd: float = 2e-4
    cell_v_quant_v: float = 1e-3
    cell_v_range_v: tuple[float, float] = (0.0, 5.0)
    temp_noise_c: float = 0.1
    temp_offset_sd_c: float = 0.3
    temp_gain_sd: float = 0.002
    temp_quant_c: float = 0.1
    temp_range_c: tuple[float, float] = (-55.0, 150.0)  # an open NTC reads the low end, a short the high end
    current_noise_a: float = 0.1
    current_offset_sd_a: float = 0.2
    current_gain_sd: float = 2e-3
    current_quant_a: float = 1e-3
    current_range_a: tuple[float, float] = (-2500.0, 2500.0)
    pack_v_noise_v: float = 0.1
    pack_v_offset_sd_v: float = 0.3
    pack_v_gain_sd: float = 1e-3
    pack_v_quant_v: float = 0.1
    pack_v_range_v: tuple[float, float] = (0.0, 1000.0)


class PackModelParams(NamedTuple):
    """Numba-friendly pack parameters (arrays and scalars only)."""

    # cell profile, prepared for the pack's own interpolation
    soc0: float
    dsoc: float
    temp_c: np.ndarray  # (nT,)
    inv_temp_k: np.ndarray  # (nT,) 1 / T in 1/K
    ocv_v: np.ndarray  # (nT, nS)
    hyst_v: np.ndarray  # (nT, nS)
    ln_r0c: np.ndarray  # (nT,) ln R0 charge
    ln_r0d: np.ndarray
    ln_r1: np.ndarray  # ln R1 (-inf where R1 = 0)
    ln_r2: np.ndarray
    tau1_s: np.ndarray
    tau2_s: np.ndarray
    gamma: np.ndarray
    m0_v: np.ndarray
    rsoc: np.ndarray  # (nT, nS) R0 factor over (T, SOC): profile F(T, z) x edge factor
    rcsoc: np.ndarray  # (nT, nS) R1, R2 factor over (T, SOC): profile G(T, z)
    ocv_edge_slope_v: float  # OCV continues with this slope beyond the SOC grid (V per unit SOC)
    eta_chg: float
    # geometry
    n_series: int
    n_parallel: int
    # per cell (n,)
    cap_as: np.ndarray
    inv_cap_as: np.ndarray
    r_scale: np.ndarray
    gam_scale: np.ndarray
    sd_a25: np.ndarray
    soc0_offset: np.ndarray
    heat_cap_j_k: np.ndarray
    g_cool_w_k: np.ndarray
    g_amb_w_k: np.ndarray
    g_nbr_w_k: np.ndarray  # (n - 1,) between cell c and c + 1
    # per series element (ns,)
    bleed_ohm: np.ndarray
    # scalars
    bleed_to_cell: float
    sd_ea_k: float  # Ea / R (K)
    gamma_fast: float
    r_contact_ohm: float
    r_pre_ohm: float
    bus_cap_f: float
    bus_dis_ohm: float
    pre_heat_cap_j_k: float
    pre_g_w_k: float
    pre_fuse_c: float
    k_close_s: float
    k_open_s: float
    coolant_cp: float
    thermal_every: int
    t_extrap_k: float
    th_rate_max: float  # max over cells of (sum of conductances) / heat capacity (1/s)
    # temperature sensors (nts,)
    ts_first: np.ndarray
    ts_count: np.ndarray
    ts_tau_s: float
    # sensor channels (n_ch, NS)
    sens: np.ndarray

    @property
    def n_cells(self) -> int:
        return self.n_series * self.n_parallel

    @property
    def n_ts(self) -> int:
        return int(self.ts_first.shape[0])

    @property
    def n_ch(self) -> int:
        return int(self.sens.shape[0])

    # channel numbers (see hil.pack.layout)
    def ch_cell_v(self, s: int) -> int:
        return s

    def ch_temp(self, k: int) -> int:
        return self.n_series + k

    @property
    def ch_current(self) -> int:
        return self.n_series + self.n_ts

    @property
    def ch_pack_v(self) -> int:
        return self.n_series + self.n_ts + 1

    @property
    def ch_bus_v(self) -> int:
        return self.n_series + self.n_ts + 2


class PackFaults(NamedTuple):
    """Injectable faults, all arrays (set in place between steps; zeros = healthy pack).

    Sensor channel faults apply after the nominal calibration: reading =
    (gain * (1 + gain_err) * true + offset + extra_offset + drift(t) + noise), or the stuck value.
    """

    k_welded: np.ndarray  # (3,) uint8: contactor stays closed whatever the command
    k_stuck_open: np.ndarray  # (3,) uint8: contactor never closes
    k_fb_stuck: np.ndarray  # (3,) uint8: auxiliary feedback contact stuck ...
    k_fb_stuck_val: np.ndarray  # (3,) uint8: ... at this reading (0 open / 1 closed)
    precharge_open: np.ndarray  # (1,) uint8: precharge resistor open circuit
    short_s: np.ndarray  # (n,) internal short conductance per cell (S): extra self-discharge
    coolant_flow_scale: np.ndarray  # (1,) 1 = nominal, 0 = coolant loss
    wire_open: np.ndarray  # (ns + 1,) uint8 open sense wire w (between element w-1 and w)
    wire_shift_v: np.ndarray  # (ns + 1,) float potential of an open wire relative to its node
    sens_stuck: np.ndarray  # (n_ch,) uint8: reading frozen at sens_stuck_val
    sens_stuck_val: np.ndarray  # (n_ch,) e.g. temp sensor open -> range low, short -> range high
    sens_gain_err: np.ndarray  # (n_ch,) relative gain error
    sens_offset: np.ndarray  # (n_ch,) extra offset
    sens_noise: np.ndarray  # (n_ch,) extra noise sd
    sens_drift_per_s: np.ndarray  # (n_ch,) offset drift rate (unit/s)


def new_faults(p: PackModelParams) -> PackFaults:
    """A healthy pack's fault arrays (open wires shift by 0.2 V once flagged)."""
    n, ns, nch = p.n_cells, p.n_series, p.n_ch
    return PackFaults(
        k_welded=np.zeros(3, np.uint8), k_stuck_open=np.zeros(3, np.uint8), k_fb_stuck=np.zeros(3, np.uint8),
        k_fb_stuck_val=np.zeros(3, np.uint8), precharge_open=np.zeros(1, np.uint8),
        short_s=np.zeros(n), coolant_flow_scale=np.ones(1),
        wire_open=np.zeros(ns + 1, np.uint8), wire_shift_v=np.full(ns + 1, 0.2),
        sens_stuck=np.zeros(nch, np.uint8), sens_stuck_val=np.zeros(nch), sens_gain_err=np.zeros(nch),
        sens_offset=np.zeros(nch), sens_noise=np.zeros(nch), sens_drift_per_s=np.zeros(nch),
    )


def _check(name: str, value: float, lo: float, hi: float, lo_open: bool = False) -> None:
    ok = (value > lo if lo_open else value >= lo) and value <= hi and np.isfinite(value)
    if not ok:
        lb = "(" if lo_open else "["
        raise ValueError(f"pack parameter {name} = {value!r} is out of range {lb}{lo}, {hi}]")


def _validate(g: PackGeometry, s: PackSpread) -> None:
    for name in ("n_series", "n_parallel", "cells_per_board", "temp_sensors_per_board", "thermal_every"):
        v = getattr(g, name)
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"pack parameter {name} = {v!r} must be a positive integer")
    if g.n_series % g.cells_per_board:
        raise ValueError(f"n_series = {g.n_series} is not a multiple of cells_per_board = {g.cells_per_board}")
    if g.cells_per_board % g.temp_sensors_per_board:
        raise ValueError(f"cells_per_board = {g.cells_per_board} is not a multiple of "
                         f"temp_sensors_per_board = {g.temp_sensors_per_board}")
    positive = ("bleed_ohm", "r_precharge_ohm", "r_contact_ohm", "bus_cap_f", "bus_dis_ohm", "pre_heat_cap_j_k",
                "pre_fuse_c", "cell_heat_cap_j_k", "coolant_cp_j_kgk", "sensor_tau_s", "r_soc_lo_width",
                "r_soc_hi_width")
    for name in positive:
        _check(name, getattr(g, name), 0.0, 1e12, lo_open=True)
    for name in ("pre_g_w_k", "g_neighbour_w_k", "g_coolant_w_k", "g_ambient_w_k", "contactor_close_s",
                 "contactor_open_s", "self_discharge_ea_j_mol", "hysteresis_fast_ratio", "r_soc_lo_gain",
                 "r_soc_hi_gain", "t_extrap_k", "ocv_edge_slope_v"):
        _check(name, getattr(g, name), 0.0, 1e9)
    _check("bleed_heat_to_cell", g.bleed_heat_to_cell, 0.0, 1.0)
    _check("board_gap_factor", g.board_gap_factor, 0.0, 1.0)
    for name in ("capacity_rel_sd", "resistance_rel_sd", "gamma_rel_sd"):  # 3 sd truncation keeps > 0.1
        _check(name, getattr(s, name), 0.0, 0.3)
    for name in ("self_discharge_log_sd", "soc0_sd"):
        _check(name, getattr(s, name), 0.0, 0.5)
    _check("self_discharge_pct_month", s.self_discharge_pct_month, 0.0, 100.0)


def _ln(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.where(a > 0.0, np.log(np.maximum(a, 1e-300)), -np.inf)


def _positive_spread(rng: np.random.Generator, n: int, rel_sd: float) -> np.ndarray:
    """1 + N(0, rel_sd), truncated at 3 sd (physical quantities stay positive)."""
    return 1.0 + rel_sd * np.clip(rng.standard_normal(n), -3.0, 3.0)


def _sensor_table(g: PackGeometry, sp: SensorSpec, n_ts: int, rng: np.random.Generator) -> np.ndarray:
    groups = [
        (g.n_series, sp.cell_v_gain_sd, sp.cell_v_offset_sd_v, sp.cell_v_noise_v, sp.cell_v_quant_v, sp.cell_v_range_v),
        (n_ts, sp.temp_gain_sd, sp.temp_offset_sd_c, sp.temp_noise_c, sp.temp_quant_c, sp.temp_range_c),
        (1, sp.current_gain_sd, sp.current_offset_sd_a, sp.current_noise_a, sp.current_quant_a, sp.current_range_a),
        (2, sp.pack_v_gain_sd, sp.pack_v_offset_sd_v, sp.pack_v_noise_v, sp.pack_v_quant_v, sp.pack_v_range_v),
    ]
    rows = []
    for n, gain_sd, off_sd, noise, quant, (lo, hi) in groups:
        if not (noise >= 0 and quant >= 0 and gain_sd >= 0 and off_sd >= 0 and lo < hi):
            raise ValueError(f"sensor spec out of range: noise={noise}, quant={quant}, range=({lo}, {hi})")
        t = np.zeros((n, NS))
        t[:, S_GAIN] = 1.0 + gain_sd * np.clip(rng.standard_normal(n), -3, 3)
        t[:, S_OFFSET] = off_sd * np.clip(rng.standard_normal(n), -3, 3)
        t[:, S_NOISE] = noise
        t[:, S_QUANT] = quant
        t[:, S_LO] = lo
        t[:, S_HI] = hi
        rows.append(t)
    return np.ascontiguousarray(np.vstack(rows))


def _edge_rise(d, gain, width, d_data):
    """Edge term of the R0 SOC factor at distance ``d`` from an SOC end (z or 1 - z):
    ``gain (e^(-d/w) - e^(-d0/w)) / (1 - e^(-d0/w))`` for d < d0, 0 beyond, where d0 is where the
    profile's fitted SOC factor ends (its outermost knot; F is held flat outside it): ``gain`` at
    the end, 0 where the fitted data begins, so the pack adds resistance only beyond the data and
    never double-counts the rise that F already measured. ``gain e^(-d/w)`` when d0 = 0."""
    e = np.exp(-np.asarray(d, dtype=np.float64) / width)
    if d_data > 0.0:
        e0 = math.exp(-d_data / width)
        e = np.clip((e - e0) / (1.0 - e0), 0.0, None)
    return gain * e


def build_params(profile: Profile, geometry: PackGeometry | None = None, spread: PackSpread | None = None,
                 sensors: SensorSpec | None = None, seed: int = 0) -> PackModelParams:
    """Pack parameters for ``geometry`` built of ``profile`` cells with a seeded ``spread``."""
    g = geometry or PackGeometry()
    s = spread or PackSpread()
    sp = sensors or SensorSpec()
    _validate(g, s)
    rng = np.random.default_rng(seed)
    n = g.n_series * g.n_parallel
    tab = profile.tables
    f64 = lambda a: np.ascontiguousarray(a, dtype=np.float64)  # noqa: E731

    soc = f64(profile.soc)
    knots = profile.fit.get("r0_soc_knots") or [0.0, 1.0]  # SOC range the profile's F was fitted on
    edge = 1.0 + _edge_rise(soc, g.r_soc_lo_gain, g.r_soc_lo_width, float(knots[0])) \
        + _edge_rise(1.0 - soc, g.r_soc_hi_gain, g.r_soc_hi_width, 1.0 - float(knots[-1]))
    rsoc = r0_soc_factor(profile) * edge[None, :]

    cap_as = 3600.0 * profile.capacity_ah * _positive_spread(rng, n, s.capacity_rel_sd)
    r_scale = _positive_spread(rng, n, s.resistance_rel_sd)
    gam_scale = _positive_spread(rng, n, s.gamma_rel_sd)
    sd_frac_s = s.self_discharge_pct_month / 100.0 / (30.0 * 86400.0)
    sd_a25 = sd_frac_s * cap_as * np.exp(s.self_discharge_log_sd * np.clip(rng.standard_normal(n), -3, 3))
    soc0_offset = s.soc0_sd * np.clip(rng.standard_normal(n), -3, 3)

    # thermal network: a chain along the cell order, weaker across board boundaries
    g_nbr = np.full(max(n - 1, 0), g.g_neighbour_w_k)
    cells_per_board = g.cells_per_board * g.n_parallel
    for b in range(1, g.n_series // g.cells_per_board):
        g_nbr[b * cells_per_board - 1] *= g.board_gap_factor
    heat_cap = np.full(n, g.cell_heat_cap_j_k)
    g_cool = np.full(n, g.g_coolant_w_k)
    g_amb = np.full(n, g.g_ambient_w_k)
    g_sum = g_cool + g_amb
    if n > 1:
        g_sum[:-1] += g_nbr
        g_sum[1:] += g_nbr

    n_boards = g.n_series // g.cells_per_board
    n_ts = n_boards * g.temp_sensors_per_board
    per_ts = (g.cells_per_board // g.temp_sensors_per_board) * g.n_parallel
    ts_first = np.arange(n_ts, dtype=np.int64) * per_ts
    ts_count = np.full(n_ts, per_ts, dtype=np.int64)

    return PackModelParams(
        soc0=float(soc[0]), dsoc=float(soc[1] - soc[0]),
        temp_c=f64(profile.temp_c), inv_temp_k=f64(1.0 / (profile.temp_c + T0_K)),
        ocv_v=f64(tab["ocv_v"]), hyst_v=f64(tab["hyst_v"]),
        ln_r0c=_ln(tab["r0_chg_ohm"]), ln_r0d=_ln(tab["r0_dis_ohm"]),
        ln_r1=_ln(tab["r1_ohm"]), ln_r2=_ln(tab["r2_ohm"]),
        tau1_s=f64(tab["tau1_s"]), tau2_s=f64(tab["tau2_s"]), gamma=f64(tab["gamma"]), m0_v=f64(tab["m0_v"]),
        rsoc=f64(rsoc), rcsoc=f64(r0_soc_factor(profile, RC_SOC_KEY)), ocv_edge_slope_v=float(g.ocv_edge_slope_v), eta_chg=float(profile.eta_chg),
        n_series=int(g.n_series), n_parallel=int(g.n_parallel),
        cap_as=f64(cap_as), inv_cap_as=f64(1.0 / cap_as), r_scale=f64(r_scale), gam_scale=f64(gam_scale),
        sd_a25=f64(sd_a25),
        soc0_offset=f64(soc0_offset), heat_cap_j_k=heat_cap, g_cool_w_k=g_cool, g_amb_w_k=g_amb, g_nbr_w_k=g_nbr,
        bleed_ohm=np.full(g.n_series, float(g.bleed_ohm)),
        bleed_to_cell=float(g.bleed_heat_to_cell), sd_ea_k=float(g.self_discharge_ea_j_mol / R_GAS),
        gamma_fast=float(g.hysteresis_fast_ratio),
        r_contact_ohm=float(g.r_contact_ohm), r_pre_ohm=float(g.r_precharge_ohm), bus_cap_f=float(g.bus_cap_f),
        bus_dis_ohm=float(g.bus_dis_ohm), pre_heat_cap_j_k=float(g.pre_heat_cap_j_k), pre_g_w_k=float(g.pre_g_w_k),
        pre_fuse_c=float(g.pre_fuse_c), k_close_s=float(g.contactor_close_s), k_open_s=float(g.contactor_open_s),
        coolant_cp=float(g.coolant_cp_j_kgk), thermal_every=int(g.thermal_every), t_extrap_k=float(g.t_extrap_k),
        th_rate_max=float(np.max(g_sum / heat_cap)),
        ts_first=ts_first, ts_count=ts_count, ts_tau_s=float(g.sensor_tau_s),
        sens=_sensor_table(g, sp, n_ts, rng),
    )
