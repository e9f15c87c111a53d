"""The BMS's persistent state file (.npz): what survives a power cycle.

    st = load_state(prm, "bms_state.npz")    # a power-up state (INIT) carrying the saved part
    save_state(st, "bms_state.npz", rested=contactors_open)

Saved: the latches of persistent faults (e.g. deep discharge), the fault memory (occurrence
counts), the estimator state (SOC, capacity, ...) and the displayed SOC; since format 2 also the
self-discharge check's reference rest point and the pack's rest time, with the wall-clock time
of the save. A pack that is switched off with its contactors open rests while the BMS sleeps:
on load the off time is added to the rest time, and the reference rest point keeps its age plus
the off time, so the first rest point after a night parked is compared with the last one before
it (an internal short leaking overnight is found at the first rest after power-up instead of a
rest window into the next day's rest). Without a trustworthy off time (the saved time is in
the future, or the pack was not shut down at rest) the reference and the rest time are dropped:
the check starts over, as on a first power-up. Format-1 files load as before (no reference).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from bms import layout as L
from bms.diag_table import FAULTS
from bms.layout import State
from bms.pack import PackParams
from bms.soc.layout import IZ, IZG, NXE

STATE_FORMAT = 2
READS = (1, 2)   # formats this firmware loads
SD_COLS = [L.SD_BLEED, L.SD_REF_DV, L.SD_REF_BLEED]


def save_state(st: State, path: str | Path, rested: bool = False, wall_s: float | None = None) -> Path:
    """Write the persistent part of ``st``. ``rested``: the contactors are open (the pack rests
    from now until the next power-up); ``wall_s``: the wall-clock time of the save
    (default ``time.time()``)."""
    path = Path(path)
    s = st.s
    persist = np.array([f.persistent for f in FAULTS])
    with path.open("wb") as fh:
        np.savez(fh, format=STATE_FORMAT, fault_names=np.array([f.name for f in FAULTS]),
                 latched=np.where(persist, st.fst[:, L.FS_LATCHED], 0.0),
                 latched_crit=np.where(persist, st.fst[:, L.FS_LATCHED_CRIT], 0.0),
                 count=st.fst[:, L.FS_COUNT], x=st.x[:, :NXE], P=st.P, soc_display=s[L.S_SOC_DISPLAY],
                 saved_wall_s=time.time() if wall_s is None else float(wall_s), rested=bool(rested),
                 rest_s=s[L.S_REST_T_S], sd=st.sd[:, SD_COLS],
                 sd_ref=np.array([s[L.S_TIME_S] - s[L.S_SD_REF_T_S], s[L.S_SD_REF_SLOPE], s[L.S_SD_REF_SOC]]))
    return path


def load_state(prm: PackParams, path: str | Path, wall_s: float | None = None) -> State:
    """A power-up state (INIT) carrying the saved persistent part; raises ValueError naming the
    file if it does not belong to this pack or firmware. ``wall_s``: now, wall clock (default
    ``time.time()``), for the off time."""
    from bms.core import new_state

    path = Path(path)
    st = new_state(prm)
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a saved BMS state ({exc})") from None
    fmt = int(data.get("format", -1))
    if fmt not in READS:
        raise ValueError(f"{path}: state format {data.get('format')} (this firmware reads {READS})")
    names = [str(n) for n in data["fault_names"]]
    if names != [f.name for f in FAULTS]:
        raise ValueError(f"{path}: saved fault table does not match this firmware's")
    # files saved before the G-SOC column existed (ZG, the last one) hold the columns before it
    ncol = data["x"].shape[1] if data["x"].ndim == 2 else -1
    if data["x"].shape[0] != st.x.shape[0] or ncol not in (NXE, IZG) or data["P"].shape != st.P.shape:
        raise ValueError(f"{path}: saved estimator state has shape {data['x'].shape}, this pack needs "
                         f"{st.x[:, :NXE].shape}")
    st.fst[:, L.FS_LATCHED] = data["latched"]
    st.fst[:, L.FS_LATCHED_CRIT] = data["latched_crit"]
    st.fst[:, L.FS_COUNT] = data["count"]
    st.x[:, :ncol] = data["x"]  # the state columns (the rest is the EKF's P and scratch)
    if ncol == IZG:
        st.x[:, IZG] = st.x[:, IZ]  # G is read at the SOC, as after a rest
    st.P[:] = data["P"]
    st.s[L.S_SOC_DISPLAY] = float(data["soc_display"])
    if fmt >= 2:
        if data["sd"].shape != (st.sd.shape[0], len(SD_COLS)):
            raise ValueError(f"{path}: self-discharge record for {data['sd'].shape[0]} cells, this pack has {st.sd.shape[0]}")
        _restore_rest(st, data, time.time() if wall_s is None else float(wall_s))
    return st


def _restore_rest(st: State, data: dict, wall_s: float) -> None:
    """The pack's rest time and the self-discharge reference, aged by the off time (module
    docstring); nothing when the off time cannot be trusted."""
    off_s = wall_s - float(data["saved_wall_s"])
    if not (bool(data["rested"]) and math.isfinite(off_s) and off_s >= 0.0):
        return
    s = st.s
    s[L.S_REST_T_S] = float(data["rest_s"]) + off_s
    age_s, slope, soc = (float(v) for v in data["sd_ref"])
    if math.isfinite(age_s):   # a reference rest point was taken before the power-down
        st.sd[:, SD_COLS] = data["sd"]
        s[L.S_SD_REF_T_S] = s[L.S_TIME_S] - (age_s + off_s)
        s[L.S_SD_REF_SLOPE], s[L.S_SD_REF_SOC] = slope, soc
