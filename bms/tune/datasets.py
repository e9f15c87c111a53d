"""Datasets for scoring SOC estimators: time, cell current, cell voltage, temperature and a
truth SOC, from one of

* ``PATH.csv[.gz]`` (or ``lab:PATH``): a lab CSV (:func:`bms.labdata.load_csv`); truth from its
  ``soc_ref`` column (option ``ref=COLUMN`` for another, e.g. ``soc_ref_dynQ``).
* ``PATH.log|.asc|.blf`` (or ``can:PATH``): a CAN recording read with python-can's LogReader and
  decoded through the DBC by :class:`bms.can.codec.FrameCodec`; samples every ``period`` s
  (default 1): the mean of the current frames in the period, the last cell voltage and
  temperature. Truth: a coulomb count on the recorded current (a calibrated sensor),
  ``z = soc0 + sum eta(i) i dt / (3600 Q)`` with the current held between its frames, ``soc0``
  given or read from the first voltage through the profile's OCV. Options: ``dbc=``,
  ``current=ISENSE_Current``, ``cell=N`` (voltage ``CellV_NNN``, or ``voltage=SIGNAL``),
  ``temp=Temp_000``, ``n_parallel=1`` (cell current = pack current / n_parallel), ``soc0=``,
  ``capacity_ah=``/``eta=`` (default: the profile's).
* ``model:PATH``: the current and temperature of a lab CSV replayed through the profile's cell
  model (:func:`bms.model.simulate`); truth from the model. Option ``soc0`` (default the file's
  first ``soc_ref``, else 1).
* ``scenario:NAME``: a simulator scenario (a shipped name or a TOML path) run in closed loop
  (:mod:`hil.dataset`); one series element as the BMS sees it -- the current sensor's output /
  n_parallel (mean over each sample period), the element's cell-voltage channel, the reading of
  its temperature sensor (with the sensors' noise, offsets and any injected sensor fault) --
  and the model's true SOC of that element. Options ``cell=N`` (default 0), ``period=S``
  (sample period, default 1), ``max_s=S`` (shorten the scenario to S simulated seconds).

Every kind takes ``start=S``, ``duration=S`` (seconds from the first sample) and ``every=K``
(keep every K-th sample). Options follow the path after commas: ``dyn.csv.gz,start=3600,every=2``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from bms.labdata import DataError, find_data, load_csv
from bms.profile import Profile

CAN_SUFFIXES = (".log", ".asc", ".blf")
COMMON = ("start", "duration", "every")


@dataclass
class Dataset:
    name: str
    kind: str  # "lab", "can", "model", "scenario"
    time_s: np.ndarray
    current_a: np.ndarray  # true cell current, positive in charge
    voltage_v: np.ndarray
    temp_c: np.ndarray
    soc_true: np.ndarray
    truth: str  # where soc_true comes from

    def __len__(self) -> int:
        return self.time_s.size

    def window(self, start_s: float = 0.0, duration_s: float | None = None, every: int = 1) -> "Dataset":
        """Samples with start_s <= t - t0 < start_s + duration_s, every ``every``-th; the current
        of a kept sample is the mean over the samples it stands for (the estimator holds it until
        the next kept sample), so decimation keeps the charge."""
        rel = self.time_s - self.time_s[0]
        if not 0.0 <= start_s <= rel[-1]:
            raise DataError(f"{self.name}: start={start_s} is outside the data (0..{rel[-1]:.0f} s)")
        if every < 1:
            raise DataError(f"{self.name}: every={every} must be >= 1")
        end = np.inf if duration_s is None else start_s + duration_s
        inside = np.flatnonzero((rel >= start_s - 1e-9) & (rel < end))
        sel = inside[::every]
        if sel.size < 2:
            raise DataError(f"{self.name}: fewer than 2 samples in the window start={start_s} duration={duration_s}")
        c = lambda a: np.ascontiguousarray(a[sel], dtype=float)  # noqa: E731
        cur = c(self.current_a)
        if every > 1:  # mean over each kept sample's stretch (NaNs propagate: the estimator holds)
            last = min(int(sel[-1]) + every, int(inside[-1]) + 1)
            cur = np.add.reduceat(self.current_a[sel[0]:last], sel - sel[0]) / np.diff(np.append(sel, last))
        return replace(self, time_s=c(self.time_s), current_a=np.ascontiguousarray(cur, dtype=float),
                       voltage_v=c(self.voltage_v), temp_c=c(self.temp_c), soc_true=c(self.soc_true))


def parse_spec(spec: str) -> tuple[str, str, dict[str, str]]:
    """``[kind:]path[,key=value...]`` -> (kind, path, options)."""
    head, *parts = spec.split(",")
    kind, sep, path = head.partition(":")
    if not sep or kind not in ("lab", "can", "model", "scenario"):
        kind, path = "", head
    opts = {}
    for part in parts:
        k, eq, v = part.partition("=")
        if not eq or not k.strip():
            raise DataError(f"dataset {spec!r}: option {part!r} is not key=value")
        opts[k.strip()] = v.strip()
    if not kind:
        kind = "can" if Path(path).suffix.lower() in CAN_SUFFIXES else "lab"
    return kind, path, opts


def _take(opts: dict, key: str, conv, default, spec: str):
    if key not in opts:
        return default
    try:
        return conv(opts.pop(key))
    except ValueError:
        raise DataError(f"dataset {spec!r}: option {key} must be a {conv.__name__}") from None


def load_dataset(spec: str, profile: Profile | None = None) -> Dataset:
    """A :class:`Dataset` from a spec string (module docstring)."""
    kind, path, opts = parse_spec(spec)
    start = _take(opts, "start", float, 0.0, spec)
    duration = _take(opts, "duration", float, None, spec)
    every = _take(opts, "every", int, 1, spec)
    if kind == "lab":
        ds = _lab(path, opts, spec)
    elif kind == "model":
        ds = _model(path, opts, spec, _need(profile, spec))
    elif kind == "can":
        from bms.tune.canlog import load_can_log

        ds = load_can_log(path, opts, spec, profile)
    else:
        ds = _scenario(path, opts, spec, profile)
    if opts:
        raise DataError(f"dataset {spec!r}: unknown option(s) {', '.join(sorted(opts))} for a {kind} dataset")
    return ds.window(start, duration, every)


def _need(profile: Profile | None, spec: str) -> Profile:
    if profile is None:
        raise DataError(f"dataset {spec!r}: needs a cell profile")
    return profile


def _lab(path: str, opts: dict, spec: str) -> Dataset:
    ref = _take(opts, "ref", str, "soc_ref", spec)
    d = load_csv(path)
    if ref not in d.columns:
        raise DataError(f"{d.path}: missing column {ref} (the truth SOC); found {', '.join(d.columns)}")
    name = Path(d.path).name + ("" if ref == "soc_ref" else f"[{ref}]")
    return Dataset(name, "lab", d.time_s, d.current_a, d.voltage_v, d.temperature_c,
                   np.ascontiguousarray(d.columns[ref]), f"column {ref}")


def _model(path: str, opts: dict, spec: str, profile: Profile) -> Dataset:
    from bms.model import initial_state, simulate

    d = load_csv(path)
    soc0 = _take(opts, "soc0", float, float(d.soc_ref[0]) if d.soc_ref is not None else 1.0, spec)
    if not 0.0 <= soc0 <= 1.0:
        raise DataError(f"dataset {spec!r}: soc0={soc0} must be in [0, 1]")
    dt = np.diff(d.time_s)
    if not np.allclose(dt, dt[0], rtol=1e-6):
        raise DataError(f"{d.path}: model replay needs a uniform time step")
    v, z = simulate(profile.params, initial_state(1, soc0)[0], np.ascontiguousarray(d.current_a),
                    np.ascontiguousarray(d.temperature_c), float(dt[0]))
    return Dataset(f"model:{Path(d.path).name}", "model", d.time_s, d.current_a, v, d.temperature_c, z,
                   f"cell model {profile.name} (bms.model.simulate)")


def _scenario(name: str, opts: dict, spec: str, profile: Profile | None) -> Dataset:
    from bms.config import ConfigError
    from hil.dataset import record_scenario
    from hil.scenario import load_scenario, shorten

    cell = _take(opts, "cell", int, 0, spec)
    period = _take(opts, "period", float, 1.0, spec)
    max_s = _take(opts, "max_s", float, None, spec)
    if opts:  # before a run that may take a while
        raise DataError(f"dataset {spec!r}: unknown option(s) {', '.join(sorted(opts))} for a scenario dataset")
    try:
        scn = load_scenario(name)
    except (FileNotFoundError, ConfigError) as exc:
        raise DataError(f"dataset {spec!r}: {exc}") from None
    if max_s is not None:
        if not max_s > 0:
            raise DataError(f"dataset {spec!r}: max_s={max_s} must be > 0")
        scn = shorten(scn, max_s)
    try:
        rows, _ = record_scenario(scn, cell, period)
    except ValueError as exc:
        raise DataError(f"dataset {spec!r}: {exc}") from None
    if rows.shape[0] < 2:
        raise DataError(f"dataset {spec!r}: the scenario is shorter than two sample periods")
    c = lambda j: np.ascontiguousarray(rows[:, j])  # noqa: E731
    return Dataset(f"scenario:{scn.name}[cell {cell}]", "scenario", c(0), c(1), c(2), c(3), c(4),
                   "pack model (true SOC of the element, hil.pack)")


def data_path(path: str) -> Path:
    """Resolve a data path as the lab loader does (shipped files by relative name)."""
    return find_data(path)
