"""The BMS node's wall-clock loop (:meth:`RealTimeLoop.run`, mixed into :class:`bms.node.BmsNode`):
``bms run`` on a live bus.

Three ways to meet the step deadlines (period ``T``, the pack's fast task):

* ``wake_on_frames=True`` (``bms run`` at normal priority): receive (frames stamped on arrival) while waiting for the
  next deadline; at the deadline run the step and send its frames. Frame timing = the wake-up
  lateness plus the step's compute time before the send.
* ``wake_on_frames=False`` (``bms run --rt-priority P --rt-release-ms 0``): sleep to each deadline,
  take what the bus received meanwhile, step, send. Under ``SCHED_FIFO`` a loop waiting for
  frames would preempt the sender at every frame it queues (8.6 passes per step measured).
* ``release_s > 0`` with ``wake_on_frames=False`` (``bms run --rt-priority P``, default 2 ms): compute ahead, release at the
  deadline. Sleep to ``release_s`` before the deadline, take what was received, run the step,
  then spin on the clock to the deadline and only then send the step's frames. What a
  microcontroller does with an output-compare timer: the frames leave at the deadline, not after
  a compute time that varies from step to step, and a loop already awake is not subject to the
  operating system's wake-up tail (timer slack; the host of a virtual machine). The step sees the
  inputs received up to ``release_s`` before its deadline (their ages in the step account for it).
  Costs up to ``release_s`` of CPU per period, during which (under ``SCHED_FIFO``) no
  lower-priority task runs on that CPU; a step that is not done by its deadline sends late.

``self.wake`` (:class:`bms.node.wakeup.WakeLateness`) collects per step how late the loop woke
(released, with ``release_s``) after the deadline, and how many passes the loop made.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from bms.node.clock import SimClock
from bms.node.wakeup import WakeLateness


class RealTimeLoop:
    """Wall-clock loop of :class:`bms.node.BmsNode` (uses its bus, clock, step and transmit)."""

    _held: list | None = None   # frames of the steps run ahead of their deadline, not yet sent

    def run(self, duration_s: float | None = None, stop: Callable[[], bool] = lambda: False,
            on_status: Callable[[dict], None] | None = None, status_period_s: float = 0.5,
            wake_on_frames: bool = True, release_s: float = 0.0) -> None:
        """Run the node in real time until ``stop()`` or ``duration_s`` elapsed (module docstring:
        ``wake_on_frames``, ``release_s``)."""
        if self.bus is None:
            raise ValueError("BmsNode.run needs a bus")
        if not 0.0 <= release_s < self.period_s:
            raise ValueError(f"release_s={release_s}: must be >= 0 and shorter than the step period {self.period_s} s")
        if release_s > 0 and (wake_on_frames or isinstance(self.clock, SimClock)):
            raise ValueError("release_s > 0 needs wake_on_frames=False and a wall clock")
        self.wake = WakeLateness()
        if self.stats.steps == 0:
            self._listen(stop)
        t_start = self.clock.now_s()
        next_status = t_start
        while not stop():
            now = self.clock.now_s()
            if duration_s is not None and now - t_start >= duration_s:
                break
            if release_s > 0:
                if (left := self.next_step_s - release_s - now) > 0:
                    time.sleep(min(left, self.period_s))   # re-read the clock at least once a period
                    continue
                self._release_step(now, stop)
            else:
                self.wake.loops += 1
                if now >= self.next_step_s:
                    self.wake.add(now - self.next_step_s)
                self.step_to(now, poll=not wake_on_frames, count_overruns=True)
                left = self.next_step_s - self.clock.now_s()
                if wake_on_frames:
                    self._receive_for(left)
                elif left > 0:
                    time.sleep(left)
            if on_status is not None and now >= next_status:
                on_status(self.status())
                next_status = now + status_period_s

    def _release_step(self, now: float, stop: Callable[[], bool]) -> None:
        """Take what the bus holds (stamped now), run the step due at the next deadline (and any
        missed ones), spin to that deadline, then send the frames the steps produced."""
        due_s = self.next_step_s
        self.wake.loops += 1
        self.poll_bus(now)
        self._held = []
        try:
            self.step_to(max(now, due_s), poll=False, count_overruns=True)
        finally:
            held, self._held = self._held, None
        clock = self.clock.now_s
        while (t := clock()) < due_s and not stop():
            pass
        self.wake.add(t - due_s)
        for keys, data, dlc in held:
            self._emit(keys, data, dlc, due_s)

    def _receive_for(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for a frame, then take it with whatever else is queued (one
        screen / decode call per batch), stamped on arrival."""
        if self._sock is not None:
            if self._sock.wait(timeout_s):
                keys, data, dlc, ok, _ = self._sock.recv_arrays()
                self.receive_arrays(keys, data, dlc, self.clock.now_s(), ok)
            return
        msg = self.bus.recv(timeout=max(0.0, timeout_s))
        if msg is not None:
            frames = [msg]
            while len(frames) < 512 and (m := self.bus.recv(timeout=0.0)) is not None:
                frames.append(m)
            self.receive(frames, self.clock.now_s())

    def _listen(self, stop: Callable[[], bool]) -> None:
        """Before the first step on a live bus: receive for one cycle of the slowest receive
        message (DBC cycle times), so that the first step sees every node that is talking
        instead of timing out the ones whose frames are still to come (boards report at their
        own phase; a step on empty inputs would latch COMM_* faults at power-up)."""
        t_end = self.clock.now_s() + float(np.max(self.rx.timeout_s)) / self.smap.timeout_cycles
        while not stop() and (left := t_end - self.clock.now_s()) > 0:
            self._receive_for(left)
        self.next_step_s = max(self.next_step_s, self.clock.now_s())
