"""A time-scaled variant of a signal map and its DBC, for long closed-loop runs.

``scaled_map(k, directory)`` writes ``directory/<dbc>_x<k>.dbc`` -- the map's DBC with every
``GenMsgCycleTime`` multiplied by k, nothing else changed --, a copy of the map's pack with its
sample-counting times multiplied by k (below), whose fast task period (the node's tick) is k times
longer (the medium and slow tasks at least as long), and a copy of the map that uses both; it
returns the new map's path. Run with a physics tick ``k x hil.cosim.DT_S`` (``CoSim(...,
dt_s=...)``), the closed loop is the same loop on a k-times coarser schedule: real encoded frames
still cross the bus, every check sees the same number of samples as at full rate, only k-times
fewer frames, steps and physics ticks are spent per simulated second. What it does not resolve is
anything faster than the scaled periods (a 10 ms current burst, a precharge shorter than a few
ticks).

Which firmware times are scaled (:func:`_scale_pack`), and why: a check on bus samples allows for
samples of different ages and for the time between samples in its debounce, because at full rate
a cell frame is 100 ms old at most. On the k-times coarser schedule it is 100 ms x k old: summed
cell voltages held for a whole cell-frame period beside a pack voltage sampled across a current
step differ by R x dI for that long (PACK_V_PLAUSIBILITY tripped after 9 s of driving at k = 20),
and a reading held for a 5 s frame period while the current moves counts as stuck
(SENSOR_STUCK at k = 50). So: (1) the thresholds of quantities measured in seconds of sample age
or time -- the COMM_* ages and the stuck time ``stuck_s``, with their hysteresis -- and (2) the debounce, critical
debounce and heal times of every fault judged on the fast or medium task (quantities from bus
samples) are multiplied by k: each stays the same number of sample periods. Not scaled: the
thresholds in physical units (V, A, degC), the physical time constants (the I^2t filter, the
contactor and precharge timings) and the slow task's rows (SOC estimator plausibility, capacity,
self-discharge: estimator outputs over physical windows, on a slow task that keeps its period).
"""

from __future__ import annotations

import functools
import re
import tempfile
from pathlib import Path

import cantools

from bms import layout as L
from bms.diag_table import FAULTS, QUANTITIES, QUANTITY_TASK
from bms.signal_map import load_map


def scaled_map(k: int, directory: str | Path, name: str | None = None) -> Path:
    """Write the k-times slower DBC and map into ``directory``; return the map's path."""
    if not (isinstance(k, int) and k >= 1):
        raise ValueError(f"time scale must be an integer >= 1, got {k!r}")
    smap = load_map(name) if name is not None else load_map()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    db = cantools.database.load_file(str(smap.dbc_path), database_format="dbc", strict=True)  # own copy
    for m in db.messages:
        if m.cycle_time:
            m.cycle_time = m.cycle_time * k
    dbc = directory / f"{smap.dbc_path.stem}_x{k}.dbc"
    dbc.write_text(db.as_dbc_string())
    pack = directory / f"{smap.pack.path.stem}_x{k}.toml"
    pack.write_text(_scale_pack(smap.pack.path.read_text(), k))
    text = smap.path.read_text()
    text, n1 = re.subn(r'(?m)^dbc\s*=\s*"[^"]*"', f'dbc = "{dbc.resolve()}"', text, count=1)
    text, n2 = re.subn(r'(?m)^pack\s*=\s*"[^"]*"', f'pack = "{pack.resolve()}"', text, count=1)
    text = re.sub(r"(?m)^step_period_s\s*=.*\n", "", text)  # the tick is the pack's fast task period
    if n1 != 1 or n2 != 1:
        raise ValueError(f"{smap.path}: no 'dbc' or 'pack' line to point at the scaled files")
    out = directory / f"{smap.path.stem}_x{k}.toml"
    out.write_text(text)
    return out


@functools.lru_cache(maxsize=None)
def scaled_map_cached(k: int, name: str) -> str:
    """:func:`scaled_map` of map ``name`` written once per process into a temporary directory."""
    return str(scaled_map(k, tempfile.mkdtemp(prefix=f"bms-fil-x{k}-"), name))


_UNIT = {name: unit for name, unit, _ in QUANTITIES}
# faults whose thresholds are seconds of sample age / time (x k), and those judged on bus samples
TIME_THRESHOLD_FAULTS = frozenset(f.name for f in FAULTS if _UNIT[f.quantity] == "s")
SAMPLE_TASK_FAULTS = frozenset(f.name for f in FAULTS if QUANTITY_TASK[f.quantity] in (L.T_FAST, L.T_MEDIUM))


def _scale_pack(text: str, k: int) -> str:
    """The pack TOML with its sample-counting times x k (module docstring): the thresholds of
    :data:`TIME_THRESHOLD_FAULTS`, the debounce / critical debounce / heal times of
    :data:`SAMPLE_TASK_FAULTS`; and each task period raised to at least k x the fast one (the fast
    task and the node's tick k-times coarser; the medium and slow tasks keep their periods where
    those are already longer)."""
    out, section = [], ""
    fast = None
    for line in text.splitlines(keepends=True):
        head = re.match(r"\s*\[([^\]]+)\]", line)
        if head:
            section = head.group(1).strip()
        m = re.match(r"(\s*(\w+)\s*=\s*)([0-9.eE+-]+)(.*)", line, re.S)
        fault = section[len("faults."):] if section.startswith("faults.") else ""
        if m and ((fault in TIME_THRESHOLD_FAULTS and m.group(2) in ("warning", "fault", "critical", "hysteresis"))
                  or (fault in SAMPLE_TASK_FAULTS and m.group(2) in ("debounce_s", "critical_debounce_s", "heal_s"))):
            line = f"{m.group(1)}{float(m.group(3)) * k!r}{m.group(4)}"
        elif m and section == "tasks" and m.group(2) in ("fast_s", "medium_s", "slow_s"):
            v = float(m.group(3))
            fast = v * k if m.group(2) == "fast_s" else fast
            if fast is None:
                raise ValueError("the pack's [tasks] must give fast_s first to be time-scaled")
            line = f"{m.group(1)}{max(v, fast)!r}{m.group(4)}"
        out.append(line)
    if fast is None:
        raise ValueError("the pack has no [tasks] fast_s to scale")
    return "".join(out)
