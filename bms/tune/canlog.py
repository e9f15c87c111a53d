"""CAN recordings (candump .log, .asc, .blf) as SOC-scoring datasets (see
:mod:`bms.tune.datasets` for the options). Frames are read with ``can.LogReader`` and decoded
with :class:`bms.can.codec.FrameCodec` built from the DBC, so scaling, multiplexing and the
``INVALID`` markers come from the DBC only. A value the codec marks invalid becomes NaN, which
the estimator holds over (flagged), and never reaches the truth: the coulomb count skips
invalid current frames (current held)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bms.can.codec import FrameCodec, frame_key
from bms.can.dbc import database
from bms.labdata import DataError
from bms.profile import Profile


def read_frames(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(keys, data (n, 8) uint8, dlc, t_s) of the data frames of a recording, in file order."""
    import can

    keys, data, dlc, t = [], [], [], []
    try:
        reader = can.LogReader(str(path))
        for msg in reader:
            if msg.is_error_frame or msg.is_remote_frame or msg.is_fd and msg.dlc > 8:
                continue
            keys.append(frame_key(msg.arbitration_id, msg.is_extended_id))
            row = bytes(msg.data[:8]).ljust(8, b"\0")
            data.append(np.frombuffer(row, np.uint8))
            dlc.append(len(msg.data))
            t.append(msg.timestamp)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable CAN log: {exc}") from None
    if not keys:
        raise DataError(f"{path}: no data frames in the recording")
    return (np.array(keys, np.int64), np.array(data, np.uint8).reshape(-1, 8), np.array(dlc, np.int64),
            np.array(t, float))


def _message_of(db, signal: str, spec: str):
    for m in db.messages:
        if any(s.name == signal for s in m.signals):
            return m
    raise DataError(f"dataset {spec!r}: signal {signal!r} is not in the DBC")


def load_can_log(path: str, opts: dict, spec: str, profile: Profile | None):
    from bms.tune.datasets import Dataset, _need, _take

    dbc = _take(opts, "dbc", str, None, spec)
    cur_sig = _take(opts, "current", str, "ISENSE_Current", spec)
    cell = _take(opts, "cell", int, 0, spec)
    v_sig = _take(opts, "voltage", str, f"CellV_{cell:03d}", spec)
    t_sig = _take(opts, "temp", str, "Temp_000", spec)
    n_par = _take(opts, "n_parallel", int, 1, spec)
    period = _take(opts, "period", float, 1.0, spec)
    soc0 = _take(opts, "soc0", float, None, spec)
    prof = profile
    cap = _take(opts, "capacity_ah", float, None, spec)
    eta = _take(opts, "eta", float, None, spec)
    if cap is None or eta is None or soc0 is None:
        prof = _need(profile, spec)
    cap = prof.capacity_ah if cap is None else cap
    eta = prof.eta_chg if eta is None else eta
    if not (period > 0 and n_par >= 1 and cap > 0 and 0.5 <= eta <= 1.0):
        raise DataError(f"dataset {spec!r}: need period > 0, n_parallel >= 1, capacity_ah > 0, 0.5 <= eta <= 1")
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{path}: no such CAN log")
    db = database(dbc) if dbc else database()
    msgs = {m.name: m for m in (_message_of(db, s, spec) for s in (cur_sig, v_sig, t_sig))}
    codec = FrameCodec(list(msgs.values()), db)
    icodec = FrameCodec([_message_of(db, cur_sig, spec)], db)
    keys, data, dlc, t = read_frames(p)
    for m in msgs.values():
        if not np.any(keys == frame_key(m.frame_id, m.is_extended_frame)):
            raise DataError(f"{path}: no frames of message {m.name} (signal of the dataset) in the recording")
    order = np.argsort(t, kind="stable")
    keys, data, dlc, t = keys[order], data[order], dlc[order], t[order]
    t = t - t[0]

    # current: every frame (for the coulomb count and the per-period mean)
    ci = np.flatnonzero(keys == icodec.msg_keys[0])
    ibuf = icodec.new_buffers()
    islot = icodec.slot(cur_sig)
    i_frame = np.full(ci.size, np.nan)
    for n, k in enumerate(ci):
        icodec.decode(keys[k:k + 1], data[k:k + 1], ibuf, dlc[k:k + 1], t[k:k + 1])
        if ibuf.valid[islot] and ibuf.time_s[islot] == t[k]:
            i_frame[n] = ibuf.value[islot] / n_par
    ti = t[ci]

    # samples: frames of period b decoded as one batch, values read at its end
    b_of = np.floor(t / period + 1e-9).astype(np.int64)
    n_s = int(b_of[-1]) + 1
    buf = codec.new_buffers()
    sv, st = codec.slot(v_sig), codec.slot(t_sig)
    volt, temp, cur = np.full(n_s, np.nan), np.full(n_s, np.nan), np.full(n_s, np.nan)
    edges = np.searchsorted(b_of, np.arange(n_s + 1))
    ib = np.floor(ti / period + 1e-9).astype(np.int64)
    for b in range(n_s):
        lo, hi = edges[b], edges[b + 1]
        if hi > lo:
            codec.decode(keys[lo:hi], data[lo:hi], buf, dlc[lo:hi], t[lo:hi])
        volt[b] = buf.value[sv] if buf.valid[sv] else np.nan
        temp[b] = buf.value[st] if buf.valid[st] else np.nan
        sel = i_frame[ib == b]
        sel = sel[np.isfinite(sel)]
        cur[b] = sel.mean() if sel.size else np.nan
    time_s = (np.arange(n_s) + 1.0) * period  # a sample describes its period, stamped at the end

    # truth: coulomb count with the current held between frames (invalid frames hold the last)
    i_held = _hold(i_frame)
    w_i = np.where(i_held > 0, eta, 1.0) * i_held  # charge rate counted (A)
    q_start = np.concatenate(([0.0], np.cumsum(w_i[:-1] * np.diff(ti))))  # charge at each current frame
    k = np.searchsorted(ti, time_s, side="right") - 1  # last current frame at or before each sample
    kk = np.clip(k, 0, None)
    q_t = np.where(k >= 0, q_start[kk] + w_i[kk] * (time_s - ti[kk]), 0.0)
    if soc0 is None:
        from bms.tune.perturb import rest_start

        first = np.flatnonzero(np.isfinite(volt) & np.isfinite(temp))
        if first.size == 0:
            raise DataError(f"{path}: no valid cell voltage and temperature to read the initial SOC from")
        soc0 = rest_start(prof.params, float(volt[first[0]]), float(temp[first[0]]))[0]
    soc = soc0 + q_t / (3600.0 * cap)
    ok = np.isfinite(cur) | np.isfinite(volt)
    if not ok.any():
        raise DataError(f"{path}: no usable samples")
    return Dataset(f"{p.name}[{v_sig}]", "can", time_s, _hold(cur), volt, _hold(temp), soc,
                   f"coulomb count of {cur_sig} (Q {cap:g} Ah, eta {eta:g}, soc0 {soc0:.4f})")


def _hold(a: np.ndarray) -> np.ndarray:
    """NaNs replaced by the previous finite value (leading NaNs by the first finite one)."""
    a = a.copy()
    good = np.isfinite(a)
    if not good.any():
        return a
    idx = np.where(good, np.arange(a.size), 0)
    np.maximum.accumulate(idx, out=idx)
    first = int(np.flatnonzero(good)[0])
    idx[:first] = first
    return a[idx]
