"""TOML configuration loading and validation shared by cell profiles, packs, signal maps
and scenarios. Every error names the file, the key and the allowed range."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class ConfigError(ValueError):
    """A configuration file is missing a key or holds a value outside its allowed range."""

    def __init__(self, file: str | Path, key: str, problem: str, allowed: str = ""):
        self.file, self.key, self.problem, self.allowed = str(file), key, problem, allowed
        msg = f"{file}: key '{key}' {problem}"
        if allowed:
            msg += f" (allowed: {allowed})"
        super().__init__(msg)


def load_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "<file>", f"is not valid TOML: {exc}") from None


class Section:
    """A view of one TOML table that knows its file and dotted key prefix for error messages."""

    def __init__(self, file: str | Path, data: dict, prefix: str = ""):
        self.file, self.data, self.prefix = file, data, prefix

    def _key(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def has(self, key: str) -> bool:
        return key in self.data

    def section(self, key: str, required: bool = True) -> "Section":
        val = self.data.get(key)
        if val is None:
            if required:
                raise ConfigError(self.file, self._key(key), "is missing", "a table")
            val = {}
        if not isinstance(val, dict):
            raise ConfigError(self.file, self._key(key), "is not a table", "a table")
        return Section(self.file, val, self._key(key))

    def raw(self, key: str, default: Any = ...) -> Any:
        if key not in self.data:
            if default is ...:
                raise ConfigError(self.file, self._key(key), "is missing")
            return default
        return self.data[key]

    def string(self, key: str, default: Any = ..., choices: tuple[str, ...] | None = None) -> str:
        val = self.raw(key, default)
        allowed = "one of " + ", ".join(choices) if choices else "a string"
        if not isinstance(val, str) or (choices and val not in choices):
            raise ConfigError(self.file, self._key(key), f"is {val!r}", allowed)
        return val

    def number(self, key: str, lo: float, hi: float, default: Any = ..., integer: bool = False,
               lo_open: bool = False) -> float:
        val = self.raw(key, default)
        lo_b = "(" if lo_open else "["
        allowed = f"{'an integer' if integer else 'a number'} in {lo_b}{lo}, {hi}]"
        ok_type = isinstance(val, int) if integer else isinstance(val, (int, float))
        if isinstance(val, bool) or not ok_type or not math.isfinite(val) or val > hi or val < lo or (lo_open and val == lo):
            what = "is missing" if val is None else f"is {val!r}"
            raise ConfigError(self.file, self._key(key), what, allowed)
        return int(val) if integer else float(val)

    def integer(self, key: str, lo: int, hi: int, default: Any = ...) -> int:
        return int(self.number(key, lo, hi, default, integer=True))

    def boolean(self, key: str, default: Any = ...) -> bool:
        val = self.raw(key, default)
        if not isinstance(val, bool):
            raise ConfigError(self.file, self._key(key), f"is {val!r}", "true or false")
        return val

    def array(self, key: str, lo: float, hi: float, shape: tuple | None = None, default: Any = ...,
              increasing: bool = False, nondecreasing: bool = False) -> np.ndarray:
        """A numeric array (nested lists for 2-D) with every element in [lo, hi]."""
        val = self.raw(key, default)
        k = self._key(key)
        try:
            arr = np.asarray(val, dtype=float)
        except (TypeError, ValueError):
            raise ConfigError(self.file, k, "is not a numeric array", f"numbers in [{lo}, {hi}]") from None
        if arr.ndim == 0 or arr.size == 0:
            raise ConfigError(self.file, k, "is empty or not an array", f"numbers in [{lo}, {hi}]")
        if shape is not None:
            want = tuple(arr.shape[i] if s is None else s for i, s in enumerate(shape)) if len(shape) == arr.ndim else shape
            if arr.shape != want:
                raise ConfigError(self.file, k, f"has shape {arr.shape}", f"shape {tuple('any' if s is None else s for s in shape)}")
        if not np.all(np.isfinite(arr)) or arr.min() < lo or arr.max() > hi:
            bad = arr[~np.isfinite(arr) | (arr < lo) | (arr > hi)]
            raise ConfigError(self.file, k, f"has value {bad.flat[0]!r} out of range", f"numbers in [{lo}, {hi}]")
        if increasing and arr.ndim == 1 and np.any(np.diff(arr) <= 0):
            raise ConfigError(self.file, k, "is not strictly increasing", "strictly increasing values")
        if nondecreasing and np.any(np.diff(arr, axis=-1) < 0):
            raise ConfigError(self.file, k, "decreases along its last axis", "non-decreasing rows")
        return arr
