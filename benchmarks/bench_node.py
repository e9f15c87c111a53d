"""BMS node throughput over one 100 ms cycle of the reference pack: every received frame of the
cycle (12 CMU boards x 7 frames, 20 current-sensor frames, 2 VCU requests) handed over as
python-can ``can.Message`` objects (as a bus delivers them), screened and decoded, 10 firmware
steps (10 ms task), and the cyclic frames due sent as ``can.Message`` objects (no bus: collected).

Baseline, timed in the same run: the same frames decoded one by one with cantools
(``Database.decode_message``), the same 10 steps, and cantools encoding of the frames the node
sends in a whole 1 s cycle, each into a ``can.Message`` (more than the node encodes in an
average 100 ms cycle, so the baseline does more transmit work than the node). ratio = baseline
/ node. The figure ``realtime_factor`` is 100 ms / node time per cycle (how much faster than real
time the node runs). ``node_cycle_100ms_arrays`` is the same cycle with the frames already as
arrays (the codec's input), i.e. without python-can's per-frame objects on the receive side.
"""

from __future__ import annotations

import statistics
import time

import can
import numpy as np

from benchmarks._timing import figure, median_seconds
from bms import core
from bms.can import _kernels as K
from bms.can.frames import to_messages
from bms.node import BmsNode, SimClock
from bms.signal_map import load_map


def _cycle_frames(node: BmsNode, cycle: int):
    """keys and payloads of 100 ms cycle number ``cycle`` as the pack and the VCU send it (alive
    counters advancing, E2E CRC on the VCU request)."""
    from bms.can.e2e import protect_batch
    from bms.node.rx import counter_signal

    c = node.rx.codec
    values = np.zeros(c.n_slots)
    values[node.rx.cell_slots] = 3.3
    values[node.rx.temp_slots] = 25.0
    keys, data = [], []
    for m in c.messages:
        if m.name == node.smap.charger_message:
            continue
        n_per = int(round(0.1 / (m.cycle_time / 1000.0)))
        rows, mux, k = c.cycle_plan([m.name])
        ctr = counter_signal(m)
        for i in range(n_per):
            if ctr:
                values[c.slot(ctr)] = (cycle * n_per + i) % (1 << m.get_signal_by_name(ctr).length)
            d, _ = c.encode(rows, mux, values)
            protect_batch(d, node.rx.data_id[rows], node.rx.crc_byte[rows], np.full(rows.shape[0], m.length))
            keys.append(k)
            data.append(d)
    return np.concatenate(keys), np.ascontiguousarray(np.concatenate(data))


def run() -> dict:
    smap = load_map()
    node = BmsNode(None, smap, clock=SimClock())
    cycles = [_cycle_frames(node, k) for k in range(16)]
    keys, data = cycles[0]
    c = node.rx.codec
    dlc = c.msg_i[np.searchsorted(c.msg_keys, keys), K.M_LEN].astype(np.int64)  # each message's DBC length
    db = smap.db
    t = [0.0]
    k_cycle = [0]

    msgs = [to_messages(k, d, dlc, 0.0) for k, d in cycles]

    def node_cycle_arrays():
        t[0] += 0.1
        keys, data = cycles[k_cycle[0] % 16]
        k_cycle[0] += 1
        node.receive_arrays(keys, data, dlc, t[0])
        node.step_to(t[0])
        node.sent.clear()

    def node_cycle():
        t[0] += 0.1
        frames = msgs[k_cycle[0] % 16]
        k_cycle[0] += 1
        node.receive(frames, t[0])
        node.step_to(t[0])
        node.sent.clear()

    node_cycle()
    assert node.stats.rejected_total == 0, node.stats.rejected
    node.step_to(t[0] + 1.0)  # one cycle that sends every message once: the baseline encodes those
    tx = [(m.arbitration_id, db.decode_message(m.arbitration_id, m.data, decode_choices=False)) for m in node.sent]
    node.sent.clear()
    st, inp, prm = core.new_state(node.prm), core.new_inputs(node.prm), node.prm
    core.initialise(st, prm, inp)

    def baseline_cycle():
        for m in msgs[k_cycle[0] % 16]:
            db.decode_message(m.arbitration_id, m.data)
        k_cycle[0] += 1
        for _ in range(10):
            core.step(st, inp, prm, 0.01)
        for i, sig in tx:
            can.Message(arbitration_id=i, is_extended_id=False, data=db.encode_message(i, sig), timestamp=0.0)

    t_node, t_arr, t_base, c_node, c_base = [], [], [], [], []
    for _ in range(3):  # interleaved, so that a change of machine load hits all alike
        t_node.append(median_seconds(node_cycle, repeat=7, number=5))
        t_arr.append(median_seconds(node_cycle_arrays, repeat=7, number=5))
        t_base.append(median_seconds(baseline_cycle, repeat=7, number=5))
        c_node.append(median_seconds(node_cycle, repeat=7, number=10, clock=time.process_time))
        c_base.append(median_seconds(baseline_cycle, repeat=7, number=10, clock=time.process_time))
    t_node, t_arr, t_base, c_node, c_base = (statistics.median(x) for x in (t_node, t_arr, t_base, c_node, c_base))
    n = len(msgs[0])
    return {
        "node_cycle_100ms_cpu": figure(c_node * 1e3, "ms CPU", c_base * 1e3, c_base / c_node,
                                       f"as node_cycle_100ms in CPU time; {0.1 / c_node:.0f}x real time on an unloaded core"),
        "node_cycle_100ms": figure(t_node * 1e3, "ms", t_base * 1e3, t_base / t_node,
                                   f"{n} can.Message in + 10 steps + can.Message out; baseline: cantools per-frame "
                                   "decode + 10 steps + cantools encode into can.Message"),
        "node_cycle_100ms_arrays": figure(t_arr * 1e3, "ms", t_base * 1e3, t_base / t_arr,
                                          "the same cycle with the received frames given as arrays"),
        "node_realtime_factor": figure(0.1 / t_node, "x real time"),
        "node_per_frame_rx": figure(t_node / n * 1e6, "us/frame", note="whole cycle time / frames received"),
    }


if __name__ == "__main__":  # pragma: no cover
    for k, v in run().items():
        print(k, v)
