"""Lab CSV loading: ``time_s,current_a,voltage_v,temperature_c[,soc_ref,...]`` (plain or .gz).

Current is positive in charge. Errors are specific: the file, the missing columns, the row
where time stops increasing.
"""

from __future__ import annotations

import gzip
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REQUIRED = ("time_s", "current_a", "voltage_v", "temperature_c")
DATA_DIR = Path(__file__).resolve().parent.parent / "data"


class DataError(ValueError):
    """A lab data file cannot be used as given."""


@dataclass
class LabData:
    path: Path
    time_s: np.ndarray
    current_a: np.ndarray
    voltage_v: np.ndarray
    temperature_c: np.ndarray
    soc_ref: np.ndarray | None
    columns: dict[str, np.ndarray]

    def __len__(self) -> int:
        return self.time_s.size

    def slice(self, start: int, stop: int | None = None) -> "LabData":
        sl = slice(start, stop)
        return LabData(self.path, self.time_s[sl], self.current_a[sl], self.voltage_v[sl],
                       self.temperature_c[sl], None if self.soc_ref is None else self.soc_ref[sl],
                       {k: v[sl] for k, v in self.columns.items()})


def find_data(name: str | Path) -> Path:
    """A path as given, else a file under the shipped ``data/`` folder (``.csv`` or ``.csv.gz``)."""
    p = Path(name)
    if p.is_file():
        return p
    for cand in (DATA_DIR / p, DATA_DIR / f"{p}.gz", Path(f"{p}.gz")):
        if cand.is_file():
            return cand
    raise FileNotFoundError(f"{name}: no such data file (also looked in {DATA_DIR})")


def _open_text(path: Path):
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return io.StringIO(raw.decode("utf-8"))


def load_csv(path: str | Path, require_soc_ref: bool = False) -> LabData:
    path = find_data(path)
    fh = _open_text(path)
    header = fh.readline().strip()
    if not header:
        raise DataError(f"{path}: empty file (expected a header with columns {', '.join(REQUIRED)})")
    names = [h.strip() for h in header.split(",")]
    need = list(REQUIRED) + (["soc_ref"] if require_soc_ref else [])
    missing = [c for c in need if c not in names]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(names)}")
    try:
        arr = np.loadtxt(fh, delimiter=",", dtype=float, ndmin=2)
    except ValueError as exc:
        raise DataError(f"{path}: unreadable row: {exc}") from None
    if arr.shape[0] < 2:
        raise DataError(f"{path}: fewer than 2 data rows")
    if arr.shape[1] != len(names):
        raise DataError(f"{path}: rows have {arr.shape[1]} fields, header has {len(names)}")
    cols = {n: np.ascontiguousarray(arr[:, i]) for i, n in enumerate(names)}
    t = cols["time_s"]
    if not np.all(np.isfinite(t)):
        raise DataError(f"{path}: time_s has non-finite values (row {int(np.flatnonzero(~np.isfinite(t))[0]) + 2})")
    bad = np.flatnonzero(np.diff(t) <= 0)
    if bad.size:
        r = int(bad[0])
        raise DataError(f"{path}: time_s is not strictly increasing at row {r + 3} ({t[r]} then {t[r + 1]})")
    return LabData(path, t, cols["current_a"], cols["voltage_v"], cols["temperature_c"],
                   cols.get("soc_ref"), cols)
