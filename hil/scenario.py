"""Scenarios: TOML files (``hil/scenarios/*.toml``) with a duty cycle, initial conditions, a cell
spread, a fault timeline and verdicts; validated with :class:`bms.config.Section` (errors name
the file, the key and the allowed range).

Schema (every key but ``scenario.name`` and the segments optional)::

    [scenario]  name, description, map = "bms_fil_heavy_duty_192s", seed = 0,
                record_period_s = 1.0, duration_s (cap; default: the segments' sum),
                time_scale = 1 (k > 1: run on hil.timescale's k-times coarser schedule, for hours)
    [plant]     precharge_ohm = 47, bus_capacitance_f = 0.001, bus_discharge_ohm = 2000
    [initial]   soc = 0.5 (mean, 0..1), soc_spread_sd = 0.005, capacity_spread_sd = 0.01,
                resistance_spread_sd = 0.05, temp_c = 25, ambient_c, coolant_c (default temp_c),
                coolant_flow_kg_s = 0.2, soc_offsets = [[cell, delta_soc], ...]
    [[segment]] mode = "drive" | "charge" | "rest", duration_s,
                drive:  pattern = [[seconds, value], ...] repeated, or csv = "file.csv" (columns
                        time_s and current_a or power_w, repeated), unit = "A" | "W", scale = 1.0
                charge: charger_max_a = 600, charger_max_w = 400e3, stop_a (end in CV below it)
    [[fault]]   kind (hil.faults.KINDS), at_s | when = "soc_min < 0.3", until_s, its target
                (wire / cell / sensor / board / contactor / message), value,
                expect = ["FAULT_NAME", ...], within_s, open_within_s,
                expect_warning = ["FAULT_NAME", ...], warn_within_s (judged on the record)
    [verdicts]  max_soc_error_pct, soc_error_after_s = 0, max_cell_soc_error_pct,
                final_soc_spread_pct_max, final_soc_min, final_soc_max, max_temp_c,
                no_unexpected_fault = true, balancing = false, min_rejected_frames, end_state,
                reached_state

Values are physical with the project's sign convention: current positive in charge.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from bms import layout as L
from bms.config import ConfigError, Section, load_toml
from bms.diag_table import BY_NAME
from hil.faults import CONTACTORS, KINDS, FaultSpec, parse_condition

SCENARIO_DIR = Path(__file__).parent / "scenarios"
MODES = ("drive", "charge", "rest")


@dataclass
class Segment:
    mode: str
    duration_s: float
    times_s: np.ndarray = field(default_factory=lambda: np.zeros(1))   # step starts within one period
    values: np.ndarray = field(default_factory=lambda: np.zeros(1))
    period_s: float = 1.0
    unit: str = "A"
    charger_max_a: float = 600.0
    charger_max_w: float = 400e3
    stop_a: float | None = None

    def demand(self, t_in_s: float) -> float:
        """The duty cycle's demand ``t_in_s`` into the segment (A or W, + = charge)."""
        tau = t_in_s % self.period_s
        ts = self.times_s  # the array's own method: np.searchsorted's wrapper costs as much again
        i = ts.searchsorted(tau, side="right") if isinstance(ts, np.ndarray) else np.searchsorted(ts, tau, side="right")
        return float(self.values[i - 1])


@dataclass
class Initial:
    soc: float = 0.5
    soc_spread_sd: float = 0.005
    capacity_spread_sd: float = 0.01
    resistance_spread_sd: float = 0.05
    temp_c: float = 25.0
    ambient_c: float = 25.0
    coolant_c: float = 25.0
    coolant_flow_kg_s: float = 0.2
    soc_offsets: list[tuple[int, float]] = field(default_factory=list)


@dataclass
class Plant:
    """Vehicle-side circuit around the pack (the inverter's DC link and its active discharge,
    modelled as a resistor, so that the bus falls after the contactors open)."""

    precharge_ohm: float = 47.0
    bus_capacitance_f: float = 0.001
    bus_discharge_ohm: float = 2000.0


@dataclass
class Scenario:
    name: str
    path: Path | None
    description: str
    map: str
    seed: int
    record_period_s: float
    duration_s: float
    initial: Initial
    plant: Plant
    segments: list[Segment]
    faults: list[FaultSpec]
    verdicts: dict
    time_scale: int = 1


def resolve(name_or_path: str | Path) -> Path:
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no such scenario file")
        return p
    shipped = SCENARIO_DIR / f"{name_or_path}.toml"
    if not shipped.is_file():
        raise FileNotFoundError(f"no scenario named {name_or_path!r} (shipped: {', '.join(shipped_names())})")
    return shipped


def shipped_names() -> list[str]:
    return sorted(q.stem for q in SCENARIO_DIR.glob("*.toml"))


def _csv_profile(path: Path, sec: Section, key: str) -> tuple[np.ndarray, np.ndarray, str]:
    if not path.is_file():
        raise ConfigError(sec.file, key, f"names {path.name!r}, which does not exist", "a CSV next to the scenario")
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise ConfigError(sec.file, key, f"names {path.name!r}, which has no rows")
    col = "current_a" if "current_a" in rows[0] else "power_w" if "power_w" in rows[0] else None
    if "time_s" not in rows[0] or col is None:
        raise ConfigError(sec.file, key, f"names {path.name!r} without columns time_s and current_a or power_w")
    try:
        t = np.array([float(r["time_s"]) for r in rows])
        v = np.array([float(r[col]) for r in rows])
    except ValueError as exc:
        raise ConfigError(sec.file, key, f"names {path.name!r} with a non-numeric value ({exc})") from None
    if t[0] != 0.0 or np.any(np.diff(t) <= 0) or not np.all(np.isfinite(v)):
        raise ConfigError(sec.file, key, f"names {path.name!r}: time_s must start at 0 and increase, values finite")
    return t, v, "A" if col == "current_a" else "W"


def _segment(sec: Section, base: Path) -> Segment:
    mode = sec.string("mode", choices=MODES)
    dur = sec.number("duration_s", 0.0, 7 * 86400.0, lo_open=True)
    seg = Segment(mode, dur)
    if mode == "drive":
        scale = sec.number("scale", -100.0, 100.0, default=1.0)
        if sec.has("csv"):
            t, v, unit = _csv_profile(base / sec.string("csv"), sec, sec._key("csv"))
            seg.times_s, seg.values, seg.unit = t, v * scale, unit
            seg.period_s = float(t[-1] + (t[-1] - t[-2] if len(t) > 1 else 1.0))
        elif sec.has("pattern"):
            arr = sec.array("pattern", -5e6, 5e6, shape=(None, 2))
            if np.any(arr[:, 0] <= 0):
                raise ConfigError(sec.file, sec._key("pattern"), "has a non-positive duration", "[[seconds > 0, value], ...]")
            seg.times_s = np.concatenate([[0.0], np.cumsum(arr[:-1, 0])])
            seg.values = arr[:, 1] * scale
            seg.period_s = float(arr[:, 0].sum())
            seg.unit = sec.string("unit", default="A", choices=("A", "W"))
    elif mode == "charge":
        seg.charger_max_a = sec.number("charger_max_a", 1.0, 2000.0, default=600.0)
        seg.charger_max_w = sec.number("charger_max_w", 1e3, 2e6, default=400e3)
        seg.stop_a = sec.number("stop_a", 0.0, 2000.0) if sec.has("stop_a") else None
    return seg


def _names(sec: Section, key: str) -> tuple[str, ...]:
    exp = sec.raw(key, default=[])
    exp = [exp] if isinstance(exp, str) else exp
    if not isinstance(exp, list) or any(e not in BY_NAME for e in exp):
        raise ConfigError(sec.file, sec._key(key), f"is {exp!r}", "fault names of the diag table: " + ", ".join(BY_NAME))
    return tuple(exp)


def _fault(sec: Section) -> FaultSpec:
    kind = sec.string("kind", choices=tuple(KINDS))
    s = FaultSpec(kind)
    if not (sec.has("at_s") or sec.has("when")):
        raise ConfigError(sec.file, sec._key("at_s"), "is missing (and no 'when' condition)", "at_s or when")
    if sec.has("at_s"):
        s.at_s = sec.number("at_s", 0.0, 1e7)
    if sec.has("when"):
        s.when = sec.string("when")
        try:
            parse_condition(s.when)
        except ValueError as exc:
            raise ConfigError(sec.file, sec._key("when"), str(exc)) from None
    if sec.has("until_s"):
        s.until_s = sec.number("until_s", 0.0, 1e7)
    for key in KINDS[kind]:
        if key == "contactor":
            s.contactor = sec.string("contactor", choices=tuple(CONTACTORS))
        elif key == "message":
            s.message = sec.string("message")
        elif key == "value":
            s.value = sec.number("value", -1e6, 1e6)
        else:
            setattr(s, key, sec.integer(key, 0, 10000))
    if "value" not in KINDS[kind] and sec.has("value"):
        s.value = sec.number("value", -1e6, 1e6)
    s.expect = _names(sec, "expect")
    s.expect_warning = _names(sec, "expect_warning")
    if sec.has("warn_within_s"):
        s.warn_within_s = sec.number("warn_within_s", 0.0, 1e6)
    if sec.has("within_s"):
        s.within_s = sec.number("within_s", 0.0, 1e6)
    if sec.has("open_within_s"):
        s.open_within_s = sec.number("open_within_s", 0.0, 1e6)
    return s


VERDICT_KEYS = {
    "max_soc_error_pct": (0.0, 100.0), "soc_error_after_s": (0.0, 1e7), "max_cell_soc_error_pct": (0.0, 100.0),
    "final_soc_spread_pct_max": (0.0, 100.0), "final_soc_min": (0.0, 1.0), "final_soc_max": (0.0, 1.0),
    "max_temp_c": (-50.0, 200.0), "min_rejected_frames": (0, 1e9),
}


def load_scenario(name_or_path: str | Path) -> Scenario:
    path = resolve(name_or_path)
    root = Section(path, load_toml(path))
    sc = root.section("scenario")
    ini = root.section("initial", required=False)
    temp = ini.number("temp_c", -40.0, 70.0, default=25.0)
    offs = ini.raw("soc_offsets", default=[])
    initial = Initial(
        soc=ini.number("soc", 0.0, 1.0, default=0.5), soc_spread_sd=ini.number("soc_spread_sd", 0.0, 0.2, default=0.005),
        capacity_spread_sd=ini.number("capacity_spread_sd", 0.0, 0.3, default=0.01),
        resistance_spread_sd=ini.number("resistance_spread_sd", 0.0, 0.5, default=0.05), temp_c=temp,
        ambient_c=ini.number("ambient_c", -40.0, 70.0, default=temp), coolant_c=ini.number("coolant_c", -40.0, 70.0, default=temp),
        coolant_flow_kg_s=ini.number("coolant_flow_kg_s", 0.0, 10.0, default=0.2))
    if offs:
        arr = ini.array("soc_offsets", -1.0, 10000.0, shape=(None, 2))
        initial.soc_offsets = [(int(c), float(d)) for c, d in arr]
    pl = root.section("plant", required=False)
    plant = Plant(pl.number("precharge_ohm", 1.0, 1e4, default=47.0), pl.number("bus_capacitance_f", 1e-5, 1.0, default=0.001),
                  pl.number("bus_discharge_ohm", 1.0, 1e7, default=2000.0))
    segs = root.raw("segment", default=None)
    if not isinstance(segs, list) or not segs:
        raise ConfigError(path, "segment", "is missing", "one or more [[segment]] tables")
    segments = [_segment(Section(path, s, f"segment[{i}]"), path.parent) for i, s in enumerate(segs)]
    faults = [_fault(Section(path, s, f"fault[{i}]")) for i, s in enumerate(root.raw("fault", default=[]))]
    ver = root.section("verdicts", required=False)
    verdicts: dict = {}
    for key, (lo, hi) in VERDICT_KEYS.items():
        if ver.has(key):
            verdicts[key] = ver.number(key, lo, hi)
    verdicts["no_unexpected_fault"] = ver.boolean("no_unexpected_fault", default=True)
    verdicts["balancing"] = ver.boolean("balancing", default=False)
    for key in ("end_state", "reached_state"):
        if ver.has(key):
            verdicts[key] = ver.string(key, choices=L.STATE_NAMES)
    unknown = set(ver.data) - set(VERDICT_KEYS) - {"no_unexpected_fault", "balancing", "end_state", "reached_state"}
    if unknown:
        raise ConfigError(path, f"verdicts.{sorted(unknown)[0]}", "is not a verdict",
                          ", ".join(list(VERDICT_KEYS) + ["no_unexpected_fault", "balancing", "end_state", "reached_state"]))
    total = sum(s.duration_s for s in segments)
    return Scenario(
        name=sc.string("name"), path=path, description=sc.string("description", default=""),
        map=sc.string("map", default="bms_fil_heavy_duty_192s"), seed=sc.integer("seed", 0, 2**31 - 1, default=0),
        record_period_s=sc.number("record_period_s", 0.01, 60.0, default=1.0),
        duration_s=sc.number("duration_s", 0.0, 7 * 86400.0, default=total, lo_open=True),
        initial=initial, plant=plant, segments=segments, faults=faults, verdicts=verdicts,
        time_scale=sc.integer("time_scale", 1, 1000, default=1))


def shorten(scn: Scenario, max_s: float, keep_s: float = 60.0) -> Scenario:
    """The scenario cut to at most ``max_s`` seconds: segments longer than ``keep_s`` are scaled
    down together (patterns keep their own period), shorter ones are kept (scaled too if they
    alone exceed ``max_s``); fault times move with the segment they fall in, so every segment and
    fault still happens. The verdicts about the end of the full run (final SOC, final spread,
    balancing, end state) are dropped; the others (SOC error, faults and their latencies, no
    unexpected fault) are kept."""
    if scn.duration_s <= max_s:
        return scn
    old = [sg.duration_s for sg in scn.segments]
    short = sum(d for d in old if d <= keep_s)
    long_ = sum(d for d in old if d > keep_s)
    if long_ > 0 and short < max_s:
        k = (max_s - short) / long_
        new = [d * k if d > keep_s else d for d in old]
    else:
        new = [d * max_s / sum(old) for d in old]
    b_old = np.concatenate([[0.0], np.cumsum(old)])
    b_new = np.concatenate([[0.0], np.cumsum(new)])

    def move(t):
        return None if t is None else float(np.interp(t, b_old, b_new))

    segs = [replace(sg, duration_s=d) for sg, d in zip(scn.segments, new)]
    faults = [replace(f, at_s=move(f.at_s), until_s=move(f.until_s)) for f in scn.faults]
    ver = {k: v for k, v in scn.verdicts.items() if k not in END_VERDICTS}
    return replace(scn, duration_s=float(b_new[-1]), segments=segs, faults=faults, verdicts=ver)


END_VERDICTS = ("final_soc_spread_pct_max", "final_soc_min", "final_soc_max", "balancing", "end_state")


# ---- verdicts ---------------------------------------------------------------------------------
@dataclass
class Verdict:
    name: str
    ok: bool
    value: object
    limit: object
    text: str = ""

    def as_dict(self) -> dict:
        return {"name": self.name, "ok": bool(self.ok), "value": self.value, "limit": self.limit, "text": self.text}


def _num(x) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 6)


def evaluate(scn: Scenario, res) -> list[Verdict]:
    """Check the scenario's verdicts on a run result (:class:`hil.cosim.RunResult`)."""
    v, out, rec = scn.verdicts, [], res.rec
    t = rec["t_s"]
    if "max_soc_error_pct" in v:
        sel = t >= v.get("soc_error_after_s", 0.0)
        err = np.abs(rec["soc_bms_mean"][sel] - rec["soc_true_mean"][sel]) * 100.0
        err = err[np.isfinite(err)]
        m = float(err.max()) if err.size else math.inf
        out.append(Verdict("max_soc_error_pct", m <= v["max_soc_error_pct"], _num(m), v["max_soc_error_pct"],
                           "BMS mean SOC (BMS_SOCMean) vs true mean SOC"))
    if "max_cell_soc_error_pct" in v:
        sel = t >= v.get("soc_error_after_s", 0.0)
        e = rec["cell_soc_err_max"][sel] * 100.0
        m = float(np.nanmax(e)) if e.size else math.inf
        out.append(Verdict("max_cell_soc_error_pct", m <= v["max_cell_soc_error_pct"], _num(m), v["max_cell_soc_error_pct"],
                           "largest per-cell |estimated - true| SOC"))
    if "final_soc_spread_pct_max" in v:
        m = float(rec["soc_true_max"][-1] - rec["soc_true_min"][-1]) * 100.0
        out.append(Verdict("final_soc_spread_pct_max", m <= v["final_soc_spread_pct_max"], _num(m),
                           v["final_soc_spread_pct_max"], "true max - min cell SOC at the end"))
    if "final_soc_min" in v:
        m = float(rec["soc_true_mean"][-1])
        out.append(Verdict("final_soc_min", m >= v["final_soc_min"], _num(m), v["final_soc_min"], "true mean SOC at the end"))
    if "final_soc_max" in v:
        m = float(rec["soc_true_mean"][-1])
        out.append(Verdict("final_soc_max", m <= v["final_soc_max"], _num(m), v["final_soc_max"], "true mean SOC at the end"))
    if "max_temp_c" in v:
        m = float(np.max(rec["temp_true_max"]))
        out.append(Verdict("max_temp_c", m <= v["max_temp_c"], _num(m), v["max_temp_c"], "hottest true cell temperature"))
    if "min_rejected_frames" in v:
        n = res.node_stats["frames_in"] - res.node_stats["frames_accepted"] - sum(res.node_stats["ignored"].values())
        out.append(Verdict("min_rejected_frames", n >= v["min_rejected_frames"], n, v["min_rejected_frames"],
                           "frames the BMS rejected (E2E, counter, range)"))
    if v.get("balancing"):
        s = float(np.sum(rec["n_bleeding"] > 0) * scn.record_period_s)
        out.append(Verdict("balancing", s > 0, _num(s), "> 0 s", "time with at least one cell bleeding"))
    if "end_state" in v:
        s = L.STATE_NAMES[int(rec["state"][-1])]
        out.append(Verdict("end_state", s == v["end_state"], s, v["end_state"]))
    if "reached_state" in v:
        seen = {L.STATE_NAMES[int(x)] for x in np.unique(res.states_seen)}
        out.append(Verdict("reached_state", v["reached_state"] in seen, sorted(seen), v["reached_state"]))
    expected = set()
    for f in scn_faults(res):
        expected |= set(f.expect)
        for name in f.expect:
            lat = None if f.t_on is None or name not in f.detected else f.detected[name] - f.t_on
            ok = lat is not None and (f.within_s is None or lat <= f.within_s + 1e-9)
            out.append(Verdict(f"{f.label} -> {name}", ok, _num(lat), f.within_s, "detection latency, s"))
        for name in f.expect_warning:  # at record resolution: the first record at or after the injection
            hit = np.flatnonzero((t >= (f.t_on if f.t_on is not None else np.inf) - 1e-9)
                                 & ((rec["warn_bits"].astype(np.int64) >> BY_NAME[name].id) & 1 == 1))
            lat = float(t[hit[0]] - f.t_on) if hit.size else None
            ok = lat is not None and (f.warn_within_s is None or lat <= f.warn_within_s + 1e-9)
            out.append(Verdict(f"{f.label} -> {name} warning", ok, _num(lat), f.warn_within_s,
                               f"warning latency, s (record resolution {scn.record_period_s:g} s)"))
        if f.open_within_s is not None:
            lat = None if f.t_on is None or f.t_open is None else f.t_open - f.t_on
            ok = lat is not None and lat <= f.open_within_s + 1e-9
            out.append(Verdict(f"{f.label} -> contactors open", ok, _num(lat), f.open_within_s, "s after injection"))
    if v.get("no_unexpected_fault", True):
        bad = sorted(set(res.faults_raised) - expected)
        out.append(Verdict("no_unexpected_fault", not bad, bad, sorted(expected), "faults raised beyond the expected"))
    return out


def scn_faults(res) -> list[FaultSpec]:
    return res.faults
