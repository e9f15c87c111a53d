"""The BMS node's real-time loop (BmsNode.run) with ``wake_on_frames=False`` (``bms run
--rt-priority``) wakes once per step, not once per received frame: under SCHED_FIFO a loop that
waits for frames preempts the sender at each frame it queues (8.6 passes per step measured in
the bench topology), so it sleeps to its deadlines and takes the frames queued meanwhile."""

from __future__ import annotations

import threading
import time

import can
import pytest

from bms.node import BmsNode, WallClock
from bms.node.node import warm_up
from bms.signal_map import load_map

from node_rig import new_channel


def _run_with_a_chatty_peer(smap, wake_on_frames: bool):
    ch = new_channel()
    vcu = smap.db.get_message_by_name("VCU_Request")
    bus = can.Bus(interface="virtual", channel=ch)
    peer = can.Bus(interface="virtual", channel=ch)
    done = threading.Event()
    sent = [0]

    def spam():   # a frame every ~1 ms: about ten per BMS step
        while not done.is_set():
            peer.send(can.Message(arbitration_id=vcu.frame_id, is_extended_id=False, data=bytes(vcu.length)))
            sent[0] += 1
            time.sleep(0.001)

    node = BmsNode(bus, smap, clock=WallClock())
    th = threading.Thread(target=spam, daemon=True)
    th.start()
    try:
        node.run(1.0, wake_on_frames=wake_on_frames)
    finally:
        done.set()
        th.join(5)
        peer.shutdown()
        bus.shutdown()
    return node, sent[0]


def test_run_sleeps_to_its_step_deadlines_and_takes_the_frames_received_meanwhile():
    smap = load_map()
    warm_up(smap)   # kernels loaded before real time starts (as bms run does)
    node, sent = _run_with_a_chatty_peer(smap, wake_on_frames=False)
    assert node.stats.steps >= 20 and node.wake.n >= 20
    # one pass per step (plus the rare one that woke a hair before its deadline)
    assert node.wake.summary()["loops_per_step"] <= 1.5, node.wake.summary()
    # the frames were taken all the same (stamped at the step that read them)
    assert node.stats.frames_in >= 0.5 * sent > 0, (node.stats.frames_in, sent)
    # the default loop wakes for the frames too
    node_f, _ = _run_with_a_chatty_peer(smap, wake_on_frames=True)
    assert node_f.wake.summary()["loops_per_step"] > node.wake.summary()["loops_per_step"]


def test_release_mode_computes_ahead_and_sends_at_the_deadline():
    """``release_s``: the step runs before its deadline and its frames leave at the deadline, never
    before it (bms.node.rtloop); every frame the steps produced is sent."""
    smap = load_map()
    warm_up(smap)
    ch = new_channel()
    bus, listener = can.Bus(interface="virtual", channel=ch), can.Bus(interface="virtual", channel=ch)
    node = BmsNode(bus, smap, clock=WallClock())
    emits, steps = [], []
    emit, step = node._emit, node._step

    def emit_at(keys, data, dlc, t_s):
        emits.append((node.clock.now_s(), t_s))
        return emit(keys, data, dlc, t_s)

    def step_at(t_s, dt_s, count_overruns=False):
        steps.append((node.clock.now_s(), t_s))
        return step(t_s, dt_s, count_overruns)

    node._emit, node._step = emit_at, step_at
    try:
        node.run(1.0, wake_on_frames=False, release_s=0.004)
        received = 0
        while listener.recv(timeout=0.0) is not None:
            received += 1
    finally:
        listener.shutdown()
        bus.shutdown()
    assert len(steps) >= 20 and len(emits) >= 20
    assert all(t_sent >= t_due for t_sent, t_due in emits), "a frame left before its deadline"
    ahead = sum(t_run < t_due for t_run, t_due in steps)
    assert ahead >= 0.5 * len(steps), f"only {ahead} of {len(steps)} steps ran ahead of their deadline"
    assert node.stats.frames_out == received > 0, (node.stats.frames_out, received)
    assert 0 < node.wake.n <= len(steps)   # one release per pass; a late pass may catch up steps


def test_release_mode_arguments_are_checked():
    smap = load_map()
    node = BmsNode(can.Bus(interface="virtual", channel=new_channel()), smap, clock=WallClock())
    try:
        for kw in ({"release_s": 0.002}, {"release_s": -0.001, "wake_on_frames": False},
                   {"release_s": node.period_s, "wake_on_frames": False}):
            with pytest.raises(ValueError, match="release_s"):
                node.run(0.1, **kw)
    finally:
        node.bus.shutdown()
