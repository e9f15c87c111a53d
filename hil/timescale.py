"""A time-scaled variant of a signal map and its DBC, for long closed-loop runs.

``scaled_map(k, directory)`` writes ``directory/<dbc>_x<k>.dbc`` -- the map's DBC with every
``GenMsgCycleTime`` multiplied by k, nothing else changed --, a copy of the map's pack whose
communication-timeout faults (``[faults.COMM_*]``: ages in seconds written for the DBC's cycle
times) are multiplied by k and whose fast task period (the node's tick) is k times longer (the
medium and slow tasks at least as long), and a copy of the map that uses both; it returns the new
map's path. Run with a physics tick
``k x hil.cosim.DT_S`` (``CoSim(..., dt_s=...)``), the closed loop is the same loop on a k-times
coarser schedule: real encoded frames still cross the bus, every timeout stays the same number of
cycles (``timeout_cycles`` x the scaled cycle time), only k-times fewer frames, steps and physics
ticks are spent per simulated second. What it does not resolve is anything faster than the
scaled periods (a 10 ms current burst, a precharge shorter than a few ticks).
"""

from __future__ import annotations

import functools
import re
import tempfile
from pathlib import Path

import cantools

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


def _scale_pack(text: str, k: int) -> str:
    """The pack TOML with the thresholds and heal times of its [faults.COMM_*] sections times k and
    each task period raised to at least k x the fast one (the fast task and the node's tick k-times
    coarser; the medium and slow tasks keep their periods where those are already longer)."""
    out, section = [], ""
    fast = None
    for line in text.splitlines(keepends=True):
        head = re.match(r"\s*\[([^\]]+)\]", line)
        if head:
            section = head.group(1).strip()
        m = re.match(r"(\s*(\w+)\s*=\s*)([0-9.eE+-]+)(.*)", line, re.S)
        if m and section.startswith("faults.COMM_") and m.group(2) in ("warning", "fault", "critical", "heal_s"):
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
