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
  filters (the loop of ``recv(timeout=0)`` it replaces costs a lock round trip per frame).

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


class LockstepBus(VirtualBus):
    """A :class:`VirtualBus` with cheap copies, :meth:`send_frames` and :meth:`recv_all`."""

    def _stamp(self, t_s: float | None) -> float:
        return t_s if (self.preserve_timestamps and t_s is not None) else time.time()

    def _deliver(self, frames_for: Any, n: int, timeout: float | None) -> None:
        """Put ``frames_for(is_rx)`` (a list of n fresh messages) into every receiving queue."""
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
                q.not_empty.notify(n)
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

        def make(is_rx: bool) -> list[can.Message]:
            Msg, ext = can.Message, EXTENDED_FLAG
            return [Msg(timestamp=ts, arbitration_id=k & ~ext, is_extended_id=k >= ext, channel=ch, dlc=d,
                        data=raw[j * w:j * w + d], is_rx=is_rx) for j, (k, d) in enumerate(zip(keys_l, dlc_l))]

        self._deliver(make, n, timeout)
        return n

    def recv_all(self) -> list[can.Message]:
        """Every frame queued now, in order, that passes the bus's filters (non-blocking)."""
        self._check_if_open()
        q = self.queue
        with q.mutex:
            msgs = list(q.queue)
            q.queue.clear()
            q.not_full.notify_all()
        if self._filters is None:
            return msgs
        return [m for m in msgs if self._matches_filters(m)]
