"""The closed loop's frame plumbing: python-can frames <-> codec arrays (bms.can.frames), the
lock-step virtual bus (bms.can.vbus) against python-can's own virtual bus, the transmit schedule
kernel (bms.can.schedule)."""

from __future__ import annotations

import itertools

import can
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bms.can.codec import EXTENDED_FLAG, FrameCodec
from bms.can.frames import data_messages, frame_copy, padded_copy, rows_of, to_arrays, to_messages
from bms.can.schedule import due_kernel
from bms.can.vbus import LockstepBus

_ch = itertools.count()


@pytest.fixture
def channel():
    return f"test-vbus-{next(_ch)}"


frame = st.builds(lambda i, ext, d: can.Message(arbitration_id=i if ext else i & 0x7FF, is_extended_id=ext, data=d),
                  st.integers(0, 0x1FFFFFFF), st.booleans(), st.binary(min_size=0, max_size=8))


@settings(max_examples=200, deadline=None)
@given(st.lists(frame, max_size=20))
def test_arrays_round_trip(frames):
    a = to_arrays(frames)
    assert a.data_frame.all() and a.dlc.tolist() == [len(f.data) for f in frames]
    back = to_messages(a.keys, a.data, a.dlc, 1.5)
    assert [(m.arbitration_id, m.is_extended_id, bytes(m.data), m.dlc, m.timestamp) for m in back] == \
        [(f.arbitration_id, f.is_extended_id, bytes(f.data), len(f.data), 1.5) for f in frames]
    assert all(((k >= EXTENDED_FLAG) == f.is_extended_id) for k, f in zip(a.keys.tolist(), frames))


def test_arrays_flag_what_is_not_a_classic_data_frame():
    frames = [can.Message(arbitration_id=1, data=b"\x01" * 8, is_extended_id=False),
              can.Message(arbitration_id=2, is_error_frame=True, is_extended_id=False),
              can.Message(arbitration_id=3, is_remote_frame=True, dlc=8, is_extended_id=False),
              can.Message(arbitration_id=4, is_fd=True, data=bytes(12), is_extended_id=False),
              can.Message(arbitration_id=5, data=bytes(9), is_extended_id=False),  # too long for classic CAN
              can.Message(arbitration_id=6, data=b"\x02\x03", is_extended_id=False)]
    a = to_arrays(frames)
    assert a.data_frame.tolist() == [True, False, False, False, False, True]
    assert a.dlc[[0, 5]].tolist() == [8, 2] and a.data[5, :3].tolist() == [2, 3, 0]


def test_lockstep_bus_talks_to_pythons_can_virtual_bus(channel):
    fast = LockstepBus(channel=channel, preserve_timestamps=True)
    plain = can.Bus(interface="virtual", channel=channel, preserve_timestamps=True)
    try:
        keys = np.array([0x100, 0x7FF, 0x18FF0001 | EXTENDED_FLAG], np.int64)
        data = np.arange(24, dtype=np.uint8).reshape(3, 8)
        dlc = np.array([8, 3, 8], np.int64)
        assert fast.send_frames(keys, data, dlc, 2.5) == 3
        got = [plain.recv(timeout=0.0) for _ in range(3)]
        assert plain.recv(timeout=0.0) is None and fast.recv_all() == []  # not its own frames
        assert [(m.arbitration_id, m.is_extended_id, bytes(m.data), m.timestamp, m.is_rx, m.channel) for m in got] == [
            (0x100, False, bytes(range(8)), 2.5, True, channel), (0x7FF, False, bytes([8, 9, 10]), 2.5, True, channel),
            (0x18FF0001, True, bytes(range(16, 24)), 2.5, True, channel)]
        sent = can.Message(arbitration_id=0x123, data=b"\x01\x02", is_extended_id=False, timestamp=3.0)
        plain.send(sent)
        fast.send(sent)  # a copy: changing the frame afterwards changes nothing received
        sent.data[0] = 0xFF
        assert [bytes(m.data) for m in fast.recv_all()] == [b"\x01\x02"]
        m = plain.recv(timeout=0.0)
        assert bytes(m.data) == b"\x01\x02" and m.timestamp == 3.0
    finally:
        fast.shutdown()
        plain.shutdown()


def test_recv_all_honours_filters_and_bounded_queues(channel):
    rx = LockstepBus(channel=channel, can_filters=[{"can_id": 0x100, "can_mask": 0x7FF}], rx_queue_size=2)
    tx = LockstepBus(channel=channel)
    try:
        tx.send_frames(np.array([0x100, 0x101], np.int64), np.zeros((2, 8), np.uint8), np.full(2, 8))
        assert [m.arbitration_id for m in rx.recv_all()] == [0x100]
        with pytest.raises(can.CanOperationError):  # bounded queue full: python-can's error
            tx.send_frames(np.full(3, 0x100, np.int64), np.zeros((3, 8), np.uint8), np.full(3, 8), timeout=0.0)
    finally:
        rx.shutdown()
        tx.shutdown()


def _same(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b)) and [x.dtype for x in a] == [y.dtype for y in b]


def test_recv_all_arrays_equal_to_arrays_of_the_frames(channel):
    """The arrays a LockstepBus hands over with its frames are exactly to_arrays of those frames,
    whether they came along from the sending LockstepBus's batches or were rebuilt (a frame from
    python-can's own bus in between, frames already taken one by one, a filter)."""
    rx, tx = LockstepBus(channel=channel), LockstepBus(channel=channel)
    plain = can.Bus(interface="virtual", channel=channel)
    filtered = LockstepBus(channel=channel, can_filters=[{"can_id": 0x100, "can_mask": 0x7FF}])
    rng = np.random.default_rng(1)

    def batch(n):
        keys = np.where(rng.random(n) < 0.5, rng.integers(0, 0x800, n), rng.integers(0, 1 << 29, n) | EXTENDED_FLAG)
        keys[0] = 0x100
        return keys.astype(np.int64), rng.integers(0, 256, (n, 8)).astype(np.uint8), rng.integers(0, 9, n)

    try:
        for case in ("one", "two", "plain_between", "taken_one", "taken_then_plain", "empty"):
            if case != "empty":
                tx.send_frames(*batch(5), 1.0)
            if case == "two":
                tx.send_frames(*batch(3), 1.0)
            if case == "plain_between":
                plain.send(can.Message(arbitration_id=0x55, data=b"\x01", is_extended_id=False))
                tx.send_frames(*batch(2), 1.0)
            if case in ("taken_one", "taken_then_plain"):
                assert rx.recv(timeout=0.0) is not None
            if case == "taken_then_plain":  # as many frames queued as the batch had, not the batch's
                plain.send(can.Message(arbitration_id=0x55, data=b"\x01", is_extended_id=False))
            a, msgs = rx.recv_all_arrays()
            assert len(msgs) == {"one": 5, "two": 8, "plain_between": 8, "taken_one": 4, "taken_then_plain": 5,
                                 "empty": 0}[case]
            assert _same(a, to_arrays(msgs)), case
            # payload bytes past the DLC are zero, as in to_arrays, though the sender's were not
            assert all(not a.data[j, a.dlc[j]:].any() for j in range(len(msgs)))
            fa, fm = filtered.recv_all_arrays()
            assert [m.arbitration_id for m in fm] == [0x100] * len(fm) and _same(fa, to_arrays(fm))
            plain_got = []
            while (m := plain.recv(timeout=0.0)) is not None:
                plain_got.append(m)
            sent_n = {"one": 5, "two": 8, "plain_between": 7, "taken_one": 5, "taken_then_plain": 5,
                      "empty": 0}[case]
            assert len(plain_got) == sent_n  # python-can's own bus got every LockstepBus frame too
            mine = msgs[:-1] if case == "taken_then_plain" else msgs  # without the plain bus's own frame
            assert [bytes(m.data) for m in plain_got[-2:]] == [bytes(m.data) for m in mine[-2:]]
    finally:
        for b in (rx, tx, plain, filtered):
            b.shutdown()


def test_batch_arrays_are_a_copy_of_the_senders(channel):
    """8-byte frames (plain copies, no padding kernel): the receiver's arrays are the sender's
    values at send time, not views of the sender's reused buffers."""
    rx, tx = LockstepBus(channel=channel), LockstepBus(channel=channel)
    try:
        keys, data, dlc = np.array([0x100, 0x200], np.int32), np.arange(16, dtype=np.uint8).reshape(2, 8), np.full(2, 8)
        tx.send_frames(keys, data, dlc, 1.0)
        keys[:], data[:], dlc[:] = 7, 0xFF, 1
        a, msgs = rx.recv_all_arrays()
        assert _same(a, to_arrays(msgs)) and a.keys.tolist() == [0x100, 0x200]
        assert a.data.tolist() == np.arange(16).reshape(2, 8).tolist() and a.dlc.tolist() == [8, 8]
    finally:
        rx.shutdown()
        tx.shutdown()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 0x7FF), st.integers(0, 8), st.binary(min_size=8, max_size=8)), max_size=12),
       st.sampled_from(["codec", "int32", "strided"]))
def test_padded_and_plain_copies_are_to_arrays_of_the_frames(rows, layout):
    """padded_copy (the bound overload for a codec's C-contiguous int64 / uint8 arrays, the
    dispatcher otherwise) and frame_copy (plain copies when every frame has 8 bytes) give what
    to_arrays gives for the same frames."""
    n = len(rows)
    keys = np.array([k for k, _, _ in rows], np.int64).reshape(n)
    dlc = np.array([d for _, d, _ in rows], np.int64).reshape(n)
    data = np.frombuffer(b"".join(p for _, _, p in rows), np.uint8).reshape(n, 8).copy()
    if layout == "int32":
        keys, dlc = keys.astype(np.int32), dlc.astype(np.int32)
    elif layout == "strided":
        wide = np.zeros((n, 16), np.uint8)
        wide[:, ::2] = data
        data = wide[:, ::2]
    ref = to_arrays(to_messages(keys, data, dlc, 0.0))[:3]
    assert _same(padded_copy(keys, data, dlc), ref)
    assert _same(frame_copy(keys, data, dlc), ref)
    if n and dlc.min() == 8:
        assert _same(frame_copy(keys, data, dlc, 8), ref)


def test_a_reader_blocked_in_recv_is_woken_by_a_batch(channel):
    """Deliveries skip the condition's notify only when nobody waits: a thread blocked in
    ``recv`` (python-can's bus or a LockstepBus) still gets the batch at once."""
    import threading
    import time

    waiting = [can.Bus(interface="virtual", channel=channel), LockstepBus(channel=channel)]
    tx = LockstepBus(channel=channel)
    got = {}

    def reader(k, bus):
        t0 = time.monotonic()
        m = bus.recv(timeout=30.0)
        got[k] = (m.arbitration_id if m is not None else None, time.monotonic() - t0)

    threads = [threading.Thread(target=reader, args=(k, b)) for k, b in enumerate(waiting)]
    try:
        for th in threads:
            th.start()
        deadline = time.monotonic() + 10.0
        while any(len(b.queue.not_empty._waiters) == 0 for b in waiting) and time.monotonic() < deadline:
            time.sleep(0.001)
        tx.send_frames(np.array([0x123], np.int64), np.zeros((1, 8), np.uint8), np.full(1, 8), 1.0)
        for th in threads:
            th.join(20.0)
        assert [got[k][0] for k in range(2)] == [0x123, 0x123] and max(got[k][1] for k in range(2)) < 20.0
    finally:
        for b in (*waiting, tx):
            b.shutdown()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 0x1FFFFFFF), st.booleans(), st.integers(0, 8)), max_size=10),
       st.sampled_from([None, "ch-1", 3]), st.booleans())
def test_data_messages_are_what_the_constructor_gives(frames, channel, is_rx):
    keys = [(i | EXTENDED_FLAG) if ext else i & 0x7FF for i, ext, _ in frames]
    dlc = [d for _, _, d in frames]
    raw = bytes(range(256))[:8 * len(frames)]
    got = data_messages(keys, dlc, raw, 8, 2.5, channel, is_rx)
    want = [can.Message(timestamp=2.5, arbitration_id=k & ~EXTENDED_FLAG, is_extended_id=k >= EXTENDED_FLAG,
                        channel=channel, dlc=d, data=raw[8 * j:8 * j + d], is_rx=is_rx)
            for j, (k, d) in enumerate(zip(keys, dlc))]
    fields = [f for f in can.Message.__slots__ if f != "__weakref__"]
    assert [[getattr(m, f) for f in fields] for m in got] == [[getattr(m, f) for f in fields] for m in want]
    assert all(type(m.data) is bytearray for m in got)


def test_rows_of():
    c = FrameCodec(["BMS_State", "BMS_Pack", "VCU_Request"])
    keys = np.array([c.msg_keys[2], 0x7FF, c.msg_keys[0], c.msg_keys[2]], np.int64)
    rows = np.empty(4, np.int64)
    assert rows_of(keys, c.msg_keys, rows) == 3 and rows.tolist() == [2, -1, 0, 2]


def test_due_kernel_schedule_and_counters():
    period = np.array([0.01, 0.1, 1.0])
    nxt = np.zeros(3)
    ctr_slot, ctr_mod, counter = np.array([0, -1, 1]), np.array([16, 1, 4]), np.zeros(3, np.int64)
    values, due = np.full(2, np.nan), np.zeros(3, np.bool_)
    sent = np.zeros(3, np.int64)
    for k in range(0, 200):  # 2 s in 10 ms ticks
        n = due_kernel(nxt, period, k * 0.01, ctr_slot, ctr_mod, counter, values, due)
        assert n == due.sum()
        sent += due
    assert sent.tolist() == [200, 20, 2] and counter.tolist() == [200 % 16, 0, 2] and values[1] == 1.0
    # late by 3.5 periods: sent once, then back on the period grid
    nxt[:] = 2.0
    due_kernel(nxt, period, 2.035, ctr_slot, ctr_mod, counter, values, due)
    assert due.tolist() == [True, True, True] and nxt == pytest.approx([2.04, 2.1, 3.0])
