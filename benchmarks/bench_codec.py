"""Batch CAN codec vs per-frame cantools decode/encode, both timed here on the same frames.

Workloads: a full 100 ms CMU cycle (all 12 boards: cell voltages, temperatures, status = 84 frames)
and one cycle of the BMS's own cyclic frames (every BMS-sent message once per multiplexer value,
diagnostic dump excluded). Figures are per frame; ratio = cantools time / batch codec time.
"""

from __future__ import annotations

import numpy as np

from benchmarks._timing import figure, median_seconds
from bms.can import dbc
from bms.can.codec import FrameCodec


def _workloads(db):
    cmu = [m.name for m in db.messages if m.senders == ["CMU"]]
    bms = [m.name for m in db.messages if m.senders == ["BMS"] and m.name != "BMS_CellDiag"]
    return {"cmu_cycle": sorted(cmu), "bms_cyclic": sorted(bms)}


def _frames(codec: FrameCodec, names, rng):
    """A cycle's rows/mux/keys, random in-range values, their payloads, and cantools dicts per frame."""
    rows, mux, keys = codec.cycle_plan(names)
    values = np.full(codec.n_slots, np.nan)
    for m in codec.messages:
        for s in m.signals:
            lo = int(np.ceil((s.minimum - s.offset) / s.scale - 1e-9))
            hi = int(np.floor((s.maximum - s.offset) / s.scale + 1e-9))
            values[codec.slot(s.name)] = rng.integers(lo, hi + 1) * s.scale + s.offset
    data, sat = codec.encode(rows, mux, values)
    assert sat.sum() == 0
    dicts = []
    for r, mv in zip(rows, mux):
        msg = codec.messages[r]
        d = {}
        for s in msg.signals:
            if s.multiplexer_ids and mv not in s.multiplexer_ids:
                continue
            d[s.name] = int(mv) if s.is_multiplexer else float(values[codec.slot(s.name)])
        dicts.append(d)
    return rows, mux, keys, values, data, dicts


def run() -> dict:
    db = dbc.database()
    codec = FrameCodec(db.messages)
    rng = np.random.default_rng(0)
    results = {}
    for label, names in _workloads(db).items():
        rows, mux, keys, values, data, dicts = _frames(codec, names, rng)
        n = len(rows)
        out = codec.new_buffers()
        status = np.empty(n, np.int8)
        dlc = np.full(n, 8, np.int64)
        t_s = np.zeros(n)
        payloads = [bytes(d) for d in data]
        ids = [int(k) for k in keys]
        msgs = [codec.messages[r] for r in rows]
        enc_out = np.zeros((n, 8), np.uint8)
        sat = np.zeros(n, np.int64)

        def ours_decode():
            codec.decode(keys, data, out, dlc=dlc, t_s=t_s, status=status)

        def cantools_decode():
            for fid, p in zip(ids, payloads):
                db.decode_message(fid, p, decode_choices=False)

        def ours_encode():
            codec.encode(rows, mux, values, out=enc_out, saturated=sat)

        def cantools_encode():
            for m, d in zip(msgs, dicts):
                m.encode(d)

        # same bytes both ways before timing
        ours_encode()
        assert all(bytes(enc_out[j]) == msgs[j].encode(dicts[j]) for j in range(n))
        ours_decode()
        assert (status == 0).all()

        number = 200
        t_dec = median_seconds(ours_decode, repeat=7, number=number) / n
        t_dec_ref = median_seconds(cantools_decode, repeat=5, number=3) / n
        t_enc = median_seconds(ours_encode, repeat=7, number=number) / n
        t_enc_ref = median_seconds(cantools_encode, repeat=5, number=3) / n
        note = f"{n} frames per batch ({', '.join(names[:2])}, ...)"
        results[f"codec.{label}.decode_per_frame"] = figure(t_dec * 1e6, "us/frame", t_dec_ref * 1e6,
                                                            t_dec_ref / t_dec, note)
        results[f"codec.{label}.encode_per_frame"] = figure(t_enc * 1e6, "us/frame", t_enc_ref * 1e6,
                                                            t_enc_ref / t_enc, note)
    return results


if __name__ == "__main__":  # pragma: no cover
    for k, v in run().items():
        print(k, v)
