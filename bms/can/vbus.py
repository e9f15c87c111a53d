"""python-can's virtual bus for lock-step co-simulation, with batch send and receive.

:class:`LockstepBus` *is* a :class:`can.interfaces.virtual.VirtualBus`: it joins the same channel
registry and queues, so any other python-can virtual bus on the channel (a ``cantools`` Tester, a
logger, ``can.Bus(interface="virtual", channel=...)``) exchanges frames with it as usual. What it
changes is only the cost per frame, which in a closed loop of ~1400 frames per simulated second
dominates everything else:

* :meth:`send` delivers a copy of the frame to every other queue of the channel, as
  ``VirtualBus.send`` does, but copies it by constructing a new :class:`can.Message` of its fields
  (with its own payload bytearray) instead of ``copy.deepcopy`` (several times slower);
* :meth:`send_frames` sends a whole batch of encoded frames given as arrays: one ``Message`` is
  constructed per frame and receiver, and each receiving queue takes the batch under one lock;
* :meth:`recv_all` takes every frame queued now (non-blocking) in one call, through the bus's
  filters (the loop of ``recv(timeout=0)`` it replaces costs a lock round trip per frame);
* :meth:`recv_all_arrays` does the same and also returns the frames as the codec's arrays. When
  the frames taken are exactly batches that a :class:`LockstepBus` of this process sent with
  :meth:`send_frames` (checked frame by frame by identity: the very ``Message`` objects that
  batch put in this queue, in order, nothing else between them), the sender's arrays come along
  with them instead of being rebuilt from the messages (:func:`bms.can.frames.to_arrays`, the
  largest cost per frame after the messages' construction); anything else -- a frame from
  another kind of bus, a filter, frames already taken one by one -- is converted as usual.

The frames are real python-can frames on a python-can channel; nothing is bypassed.
"""

from __future__ import annotations

import queue
import time
from typing import Any

import can
import numpy as np
from can.interfaces.virtual import VirtualBus

from bms.can.codec import EXTENDED_FLAG
from bms.can.frames import CAN_MAX_DLC, FrameArrays, all_data, data_messages, frame_copy, to_arrays

_MAX_BATCHES = 256  # batch records kept on a queue that is read otherwise (recv): beyond, dropped
_NO_FRAMES = FrameArrays(np.zeros(0, np.int64), np.zeros((0, CAN_MAX_DLC), np.uint8), np.zeros(0, np.int64),
                         np.zeros(0, np.bool_))


def _waiting(cond: Any) -> bool:
    """Some thread waits on ``cond`` (a ``threading.Condition`` whose lock the caller holds: a waiter
    registers under that lock, so the answer cannot change before the caller releases it). The
    lock-step loop has no waiting thread: its deliveries and takes skip ``notify`` (a Python-level
    call that probes the lock) unless some other reader of the channel is blocked in ``recv``."""
    w = getattr(cond, "_waiters", None)
    return w is None or len(w) > 0


class LockstepBus(VirtualBus):
    """A :class:`VirtualBus` with cheap copies, :meth:`send_frames`, :meth:`recv_all` and
    :meth:`recv_all_arrays`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # (messages, arrays) of each batch send_frames put in this bus's queue (under its mutex)
        self.queue.lockstep_batches = []  # type: ignore[attr-defined]

    def _stamp(self, t_s: float | None) -> float:
        return t_s if (self.preserve_timestamps and t_s is not None) else time.time()

    def _deliver(self, frames_for: Any, n: int, timeout: float | None, arrays: FrameArrays | None = None) -> None:
        """Put ``frames_for(is_rx)`` (a list of n fresh messages) into every receiving queue (a
        LockstepBus's queue also records the batch with its ``arrays``, if given)."""
        all_sent = True
        for q in self.channel:
            if q is self.queue and not self.receive_own_messages:
                continue
            msgs = frames_for(q is not self.queue)
            if q.maxsize > 0:  # bounded queue: one at a time, python-can's semantics
                for m in msgs:
                    try:
                        q.put(m, block=True, timeout=timeout)
                    except queue.Full:
                        all_sent = False
                continue
            with q.mutex:
                q.queue.extend(msgs)
                q.unfinished_tasks += n
                if _waiting(q.not_empty):
                    q.not_empty.notify(n)
                batches = getattr(q, "lockstep_batches", None)
                if batches is not None and arrays is not None:
                    if len(batches) >= _MAX_BATCHES:
                        batches.clear()
                    batches.append((msgs, arrays))
        if not all_sent:
            raise can.CanOperationError("Could not send message to one or more recipients")

    def send(self, msg: can.Message, timeout: float | None = None) -> None:
        self._check_if_open()
        ts = self._stamp(msg.timestamp)
        ch = self.channel_id

        def copy(is_rx: bool) -> list[can.Message]:
            return [can.Message(timestamp=ts, arbitration_id=msg.arbitration_id, is_extended_id=msg.is_extended_id,
                                is_remote_frame=msg.is_remote_frame, is_error_frame=msg.is_error_frame, channel=ch,
                                dlc=msg.dlc, data=bytearray(msg.data), is_fd=msg.is_fd, is_rx=is_rx,
                                bitrate_switch=msg.bitrate_switch, error_state_indicator=msg.error_state_indicator)]

        self._deliver(copy, 1, timeout)

    def send_frames(self, keys: np.ndarray, data: np.ndarray, dlc: np.ndarray, t_s: float | None = None,
                    timeout: float | None = None) -> int:
        """Send n classic data frames: ``keys`` (frame keys, bit 31 = extended), ``data`` (n, 8) uint8,
        ``dlc`` (n,), all stamped ``t_s`` (with ``preserve_timestamps``; else the wall clock).
        Returns n."""
        self._check_if_open()
        n = int(keys.shape[0])
        if n == 0:
            return 0
        ts, ch = self._stamp(t_s), self.channel_id
        raw = np.ascontiguousarray(data, np.uint8).tobytes()
        w = data.shape[1]
        keys_l, dlc_l = keys.tolist(), dlc.tolist()
        # the batch's arrays for a receiving LockstepBus (as to_arrays of the messages would give them)
        arrays = None
        lo = min(dlc_l)
        if w == CAN_MAX_DLC and 0 <= lo and max(dlc_l) <= CAN_MAX_DLC:
            arrays = FrameArrays(*frame_copy(keys, data, dlc, lo), all_data(n))

        def make(is_rx: bool) -> list[can.Message]:
            return data_messages(keys_l, dlc_l, raw, w, ts, ch, is_rx)

        self._deliver(make, n, timeout, arrays)
        return n

    def _take(self) -> tuple[list[can.Message], list]:
        self._check_if_open()
        q = self.queue
        with q.mutex:
            if not q.queue:
                q.lockstep_batches.clear()
                return [], []
            msgs = list(q.queue)
            q.queue.clear()
            batches = q.lockstep_batches
            q.lockstep_batches = []
            if _waiting(q.not_full):
                q.not_full.notify_all()
        return msgs, batches

    def recv_all(self) -> list[can.Message]:
        """Every frame queued now, in order, that passes the bus's filters (non-blocking)."""
        msgs, _ = self._take()
        if self._filters is None:
            return msgs
        return [m for m in msgs if self._matches_filters(m)]

    def recv_all_arrays(self) -> tuple[FrameArrays, list[can.Message]]:
        """As :meth:`recv_all`, with the frames also as arrays (:class:`bms.can.frames.FrameArrays`,
        the same as ``to_arrays`` of the messages; see the module docstring). The arrays may be
        shared with other receivers of the same batch: read them, do not modify them."""
        msgs, batches = self._take()
        if not msgs:
            return _NO_FRAMES, msgs
        if self._filters is not None:
            msgs = [m for m in msgs if self._matches_filters(m)]
            return to_arrays(msgs), msgs
        a = _batched_arrays(msgs, batches)
        return (to_arrays(msgs) if a is None else a), msgs


def _batched_arrays(msgs: list[can.Message], batches: list) -> FrameArrays | None:
    """The arrays of ``msgs`` if they are exactly the recorded batches' messages, in order.

    Checked by identity at the ends only: the queue is FIFO (appended at the tail, taken from the
    head), so what it held is a contiguous run of everything appended to it, and each batch went
    in as one contiguous run (under the queue's lock); every message object is fresh, so it occurs
    in that sequence once. A run that starts with the first batch's first message, ends with the
    last batch's last message and is as long as the batches together holds exactly those batches
    and nothing between them."""
    if not batches:
        return None
    n = 0
    for sent, _ in batches:
        if not sent:
            return None
        n += len(sent)
    if n != len(msgs) or msgs[0] is not batches[0][0][0] or msgs[-1] is not batches[-1][0][-1]:
        return None
    if len(batches) == 1:
        return batches[0][1]
    return FrameArrays(*(np.concatenate(x) for x in zip(*(a for _, a in batches))))
