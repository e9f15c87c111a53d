"""The BMS node: frames in, the firmware step on its task period, frames out.

    node = BmsNode(bus, "bms_fil_heavy_duty_192s", clock=SimClock())
    node.step_to(t_s)     # lock-step: take what the bus holds (stamped t_s), run every step due
                          # up to t_s (inputs assembled at each step time), send the frames due
    node.receive(frames, t_s)   # or hand frames over directly (no bus)
    node.run(duration_s)        # wall-clock loop (bms.node.rtloop): the steps on their deadlines

Tasks: the firmware step is called every tick (the pack's fast task period, ``[tasks] fast_s``);
inside that one compiled call the fast, medium and slow tasks run on their own periods
(docs/firmware-step.md). Per task the node counts runs and overruns (completed after the task's
deadline, its release plus its period, on the node's clock; in real-time loops); each transmitted message on its DBC cycle time; timeouts evaluated at every
step. Nothing here reads the wall clock: time comes from the injected clock or the caller.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable

import can
import numpy as np

from bms import core
from bms import layout as L
from bms.can.frames import frame_copy, to_messages
from bms.can.socketbatch import SocketBatch
from bms.contactors import MAINS
from bms.diag_table import FAULTS
from bms.node.clock import SimClock, WallClock
from bms.node.rtloop import RealTimeLoop
from bms.node.rx import Receiver
from bms.node.stats import NodeStats
from bms.node.tx import Transmitter
from bms.signal_map import DEFAULT_MAP, SignalMap, load_map
from bms.soc.powerup import RestRead

MAX_CATCH_UP = 10  # steps run back to back when late; beyond, one step covers the gap


class BmsNode(RealTimeLoop):
    """BMS firmware behind a python-can bus (or fed directly with :meth:`receive`)."""

    def __init__(self, bus: can.BusABC | None = None, smap: SignalMap | str = DEFAULT_MAP,
                 clock: SimClock | WallClock | None = None, state: core.State | None = None,
                 t0_s: float | None = None):
        self.smap = smap if isinstance(smap, SignalMap) else load_map(smap)
        self.bus = bus
        # a SocketCAN bus: frames in and out in batches, one system call each (bms.can.socketbatch)
        self._sock = SocketBatch.of(bus) if bus is not None else None
        self.clock = clock if clock is not None else SimClock()
        self.prm = self.smap.pack.params()
        self.st = state if state is not None else core.new_state(self.prm)
        self.inp = core.new_inputs(self.prm)
        self.rx = Receiver(self.smap)
        t0 = self.clock.now_s() if t0_s is None else float(t0_s)
        self.tx = Transmitter(self.smap, t0)
        self.stats = NodeStats()
        self.period_s = self.smap.step_period_s   # the tick: the pack's fast task period
        self.task_periods_s = tuple(float(self.prm.pp[i]) for i in (L.P_TASK_FAST_S, L.P_TASK_MEDIUM_S, L.P_TASK_SLOW_S))
        self.t0_s = t0
        self.t_s = t0                      # time of the last step
        self.next_step_s = t0
        self.external_feedback = 0         # contactor feedback bits when the map's source is "external"
        self.service_reset = False         # a service tool asks to clear persistent faults
        self.shutdown_requested = False
        self.sent: list[can.Message] = []  # frames "sent" when the node has no bus (offline use)
        # or, when set to a list: the frames sent without a bus as (t_s, keys, data, dlc) batches
        # (bms.can.frames arrays, as to_arrays of ``sent`` would give them) instead of in ``sent``
        self.sent_arrays: list[tuple] | None = None
        self._initialised = state is not None
        self._rest_read: RestRead | None = None  # the power-up read, refined while the pack rests
        self._heard: set[str] = set()
        self._cmu_names = self.rx.board_sources
        self._mask_of: dict | None = None   # cmu_timeout_mask() is cached for this stats.silent dict
        self._mask = 0
        self._run = None                    # core.step bound to (st, inp, prm): see _bound_step
        self._tx_run = None                 # the transmit kernel bound to them (and to self.tx)
        self._run_of: tuple = ()

    def _bound_step(self):
        """``core.step`` on the node's arrays through :func:`bms.core.bind` (numba's type dispatch
        resolved once, ~9 us per call less), with the transmit kernel bound to the same arrays
        (:meth:`bms.node.tx.Transmitter.bind`); bound again whenever ``st``, ``inp`` or ``prm`` is
        replaced (a restored state, a test swapping arrays)."""
        of = self._run_of
        if not of or of[0] is not self.st or of[1] is not self.inp or of[2] is not self.prm:
            self._run = core.bind(self.st, self.inp, self.prm)
            self._tx_run = self.tx.bind(self.st, self.inp, self.prm)
            self._run_of = (self.st, self.inp, self.prm)
        return self._run

    # ---- receive -------------------------------------------------------------------------
    def receive(self, frames: Iterable[can.Message], t_s: float | None = None) -> np.ndarray:
        """Screen and decode frames received at ``t_s`` (default: the clock's now); returns verdicts
        (a view reused by the next receive: copy to keep)."""
        frames = list(frames)
        if not frames:
            return np.zeros(0, np.int8)
        v = self.rx.receive(frames, self.clock.now_s() if t_s is None else t_s)
        self.stats.add(self.rx.counts, v.shape[0], self.rx.not_ok)
        return v

    def receive_arrays(self, keys: np.ndarray, data: np.ndarray, dlc: np.ndarray, t_s: float | None = None,
                       data_frame: np.ndarray | None = None) -> np.ndarray:
        """As :meth:`receive` for frames given as arrays (:mod:`bms.can.frames`): classic data
        frames, or those where ``data_frame`` is True (the others are counted as not_data)."""
        if keys.shape[0] == 0:
            return np.zeros(0, np.int8)
        v = self.rx.receive_arrays(keys, data, dlc, self.clock.now_s() if t_s is None else t_s, data_frame)
        self.stats.add(self.rx.counts, v.shape[0], self.rx.not_ok)
        return v

    def poll_bus(self, t_s: float | None = None, max_frames: int = 100000) -> int:
        """Take every frame the bus holds now (non-blocking), stamped ``t_s``; returns the count."""
        if self.bus is None:
            return 0
        if self._sock is not None:
            keys, data, dlc, ok, _ = self._sock.recv_arrays(max_frames)
            self.receive_arrays(keys, data, dlc, t_s, ok)
            return int(keys.shape[0])
        recv_all_arrays = getattr(self.bus, "recv_all_arrays", None)  # bms.can.vbus.LockstepBus: the batch at once
        if recv_all_arrays is not None:
            a, frames = recv_all_arrays()
            self.receive_arrays(a.keys, a.data, a.dlc, t_s, a.data_frame)
            return len(frames)
        frames = []
        while len(frames) < max_frames:
            msg = self.bus.recv(timeout=0.0)
            if msg is None:
                break
            frames.append(msg)
        self.receive(frames, t_s)
        return len(frames)

    # ---- tasks ---------------------------------------------------------------------------
    def step_to(self, t_s: float, poll: bool = True, count_overruns: bool = False) -> int:
        """Process everything received up to ``t_s``, run every step due at or before ``t_s`` and
        send the frames due; returns the number of steps run."""
        if poll:
            self.poll_bus(t_s)
        due = int(math.floor((t_s - self.next_step_s) / self.period_s + 1e-9)) + 1
        if due <= 0:
            return 0
        if count_overruns and due > 1:
            self.stats.overruns += due - 1
        if due > MAX_CATCH_UP:  # one step covers the gap (timers stay true to elapsed time)
            t_k = self.next_step_s + (due - 1) * self.period_s
            if count_overruns:  # fast-task releases that never ran
                self.stats.task_overruns[L.TASK_NAMES[L.T_FAST]] += due - 1
            self._step(t_k, t_k - self.t_s if self.stats.steps else self.period_s, count_overruns)
            self._transmit(t_k)
        else:
            for _ in range(due):
                t_k = self.next_step_s
                self._step(t_k, self.period_s, count_overruns)
                self._transmit(t_k)
                self.next_step_s = t_k + self.period_s
        self.next_step_s = self.t_s + self.period_s
        return due

    def _feedback(self) -> int:
        if self.smap.feedback_source == "external":
            return int(self.external_feedback)
        return int(self.st.s[L.S_CONTACTORS])  # no auxiliary contacts: the command is the feedback

    def _step(self, t_s: float, dt_s: float, count_overruns: bool = False) -> None:
        t_begin = self.clock.now_s()
        inp, u = self.inp, self.inp.u
        self.rx.assemble(inp, t_s, self._feedback())
        if self.shutdown_requested:  # internal request: standby, contactors open under the break-current rule
            u[L.U_VCU_REQUEST], u[L.U_VCU_VALID], u[L.U_VCU_AGE_S], u[L.U_VCU_RESET] = L.REQ_STANDBY, 1.0, 0.0, 0.0
        u[L.U_SERVICE_RESET] = 1.0 if self.service_reset else 0.0
        if not self._initialised:
            fresh = bool(np.all(inp.board_valid & (inp.board_age_s < self.prm.diag[L.F_COMM_CMU, L.D_WARN])))
            if fresh or t_s - self.t0_s >= self.prm.pp[L.P_INIT_S]:
                core.initialise(self.st, self.prm, inp)
                self._initialised = True
                self._rest_read = RestRead()
        if self._rest_read is not None and not self._rest_read.update(self.st, self.prm, inp, dt_s):
            self._rest_read = None  # the power-up read is final (bms.soc.powerup)
        self._bound_step()(dt_s)
        self.t_s = t_s
        self.stats.steps += 1
        t_done = self.clock.now_s()
        self.stats.max_step_s = max(self.stats.max_step_s, t_done - t_begin)
        self._count_tasks(t_s, t_done, count_overruns)
        silent = self.rx.silent(t_s)  # the same dict while no source changes: nothing to count then
        if silent is not self.stats.silent:
            for name, s in silent.items():
                if not s:
                    self._heard.add(name)
                elif name in self._heard and not self.stats.silent.get(name, False):
                    self.stats.timeouts[name] = self.stats.timeouts.get(name, 0) + 1
            self.stats.silent = silent

    def _count_tasks(self, t_release_s: float, t_done_s: float, count_overruns: bool) -> None:
        """Per task that ran in this tick: count the run and, when ``count_overruns``, an overrun if
        it completed after its deadline (its release time plus its period)."""
        ran = int(self.st.s[L.S_TASKS_RAN])
        if ran == 1 << L.T_FAST and not count_overruns:  # the usual tick: only the fast task, no deadline counted
            self.stats.task_runs[L.TASK_NAMES[L.T_FAST]] += 1
            return
        for k, name in enumerate(L.TASK_NAMES):
            if ran >> k & 1:
                self.stats.task_runs[name] += 1
                if count_overruns and t_done_s - t_release_s > self.task_periods_s[k] + 1e-9:
                    self.stats.task_overruns[name] += 1

    def cmu_timeout_mask(self) -> int:
        if self._mask_of is not self.stats.silent:
            self._mask_of = self.stats.silent
            self._mask = sum(1 << b for b, n in enumerate(self._cmu_names) if self.stats.silent.get(n, True))
        return self._mask

    def _transmit(self, t_s: float, only: tuple[str, ...] | None = None) -> int:
        if only is None:
            self._bound_step()
            n = self._tx_run(float(self.cmu_timeout_mask()), t_s)
            if n == 0:
                return 0
            pl = self.tx.plan
            keys, data, dlc = pl.keys[:n], pl.data[:n], pl.dlc[:n]
        else:
            self.tx.fill(self.st, self.inp, self.prm, self.cmu_timeout_mask())
            keys, data, dlc = self.tx.due_arrays(t_s, only)
            n = int(keys.shape[0])
        self.stats.tx_saturated = self.tx.saturated
        if n == 0:
            return 0
        if self._held is not None:  # the release loop sends them at the deadline (RealTimeLoop)
            self._held.append(frame_copy(keys, data, dlc))
            return n
        return self._emit(keys, data, dlc, t_s)

    def _emit(self, keys: np.ndarray, data: np.ndarray, dlc: np.ndarray, t_s: float) -> int:
        """Hand a batch of encoded frames to the bus (or keep them, without a bus); returns its size."""
        n = int(keys.shape[0])
        if self.bus is None:
            if self.sent_arrays is not None:
                self.sent_arrays.append((t_s, *frame_copy(keys, data, dlc)))
            else:
                self.sent += to_messages(keys, data, dlc, t_s)
            return n
        if self._sock is not None:  # SocketCAN: the batch in one system call
            try:
                sent = self._sock.send_frames(keys, data, dlc)
            except can.CanError:
                sent = 0
            self.stats.frames_out += sent
            self.stats.tx_errors += n - sent
            return n
        send_frames = getattr(self.bus, "send_frames", None)  # bms.can.vbus.LockstepBus: the batch at once
        if send_frames is not None:
            try:
                send_frames(keys, data, dlc, t_s)
                self.stats.frames_out += n
            except can.CanError:
                self.stats.tx_errors += n
            return n
        for msg in to_messages(keys, data, dlc, t_s):
            try:
                self.bus.send(msg)
            except can.CanError:
                self.stats.tx_errors += 1
                continue
            self.stats.frames_out += 1
        return n

    def send_now(self, *message_names: str) -> int:
        """Send the named messages immediately (outside their schedule), e.g. a final state frame."""
        return self._transmit(self.t_s, tuple(message_names))

    # ---- wall-clock loop, shutdown ---------------------------------------------------------
    def request_shutdown(self) -> None:
        """Ask the state machine for STANDBY (contactors open, subject to the break-current rule)."""
        self.shutdown_requested = True

    def contactors_open(self) -> bool:
        return int(self.st.s[L.S_CONTACTORS]) & (MAINS | L.K_PRE) == 0

    def shutdown(self, max_s: float = 3.0, on_tick: Callable[[float], None] | None = None) -> bool:
        """Request the contactors open, keep stepping until they are (at most ``max_s``), then send
        a final state frame. Returns True if the contactors are open. On a SimClock the node
        advances the clock one step at a time and calls ``on_tick(t_s)`` first (lock-step peers
        feed their frames there); on a WallClock it keeps receiving from the bus."""
        self.request_shutdown()
        t_start = self.clock.now_s()
        while not self.contactors_open():
            now = self.clock.now_s()
            if now - t_start >= max_s:
                break
            if isinstance(self.clock, SimClock):
                t = self.clock.set(max(now, self.next_step_s))
                if on_tick is not None:
                    on_tick(t)
                self.step_to(t)
                if self.next_step_s <= t:  # nothing was due: move on
                    self.clock.advance(self.period_s)
            else:
                self.step_to(now, count_overruns=True)
                if self.bus is not None:
                    self._receive_for(self.next_step_s - self.clock.now_s())
        self.send_now(*self.smap.messages_of("state"))
        return self.contactors_open()

    # ---- status ----------------------------------------------------------------------------
    def status(self) -> dict:
        """A snapshot for a status line or a log: state, SOC, extreme cells, faults, counters."""
        y = self.st.out
        state = y[L.Y_STATE]
        fbits = 0 if math.isnan(y[L.Y_FAULT_BITS]) else int(y[L.Y_FAULT_BITS])
        wbits = 0 if math.isnan(y[L.Y_WARN_BITS]) else int(y[L.Y_WARN_BITS])
        return {
            "t_s": self.t_s,
            "state": L.STATE_NAMES[int(state)] if not math.isnan(state) else "-",
            "contactors": int(self.st.s[L.S_CONTACTORS]),
            "soc_pct": 100.0 * y[L.Y_SOC_DISPLAY],
            "cell_v_min": y[L.Y_CELL_V_MIN], "cell_v_max": y[L.Y_CELL_V_MAX],
            "pack_i_a": self.inp.u[L.U_PACK_I_A],
            "faults": [f.name for f in FAULTS if fbits >> f.id & 1],
            "warnings": [f.name for f in FAULTS if wbits >> f.id & 1],
            "frames_in": self.stats.frames_in, "frames_out": self.stats.frames_out,
            "rejected": self.stats.rejected_total, "overruns": self.stats.overruns,
            "task_overruns": dict(self.stats.task_overruns),
        }


def status_line(s: dict) -> str:
    """One line of :meth:`BmsNode.status`."""
    faults = ",".join(s["faults"]) or "-"
    return (f"t={s['t_s']:8.2f}s {s['state']:<9} SOC {s['soc_pct']:5.1f}% cell {s['cell_v_min']:.3f}..{s['cell_v_max']:.3f} V "
            f"I {s['pack_i_a']:7.1f} A faults {faults} in {s['frames_in']} out {s['frames_out']} rej {s['rejected']}")


def warm_up(smap: SignalMap) -> None:
    """Compile (or load from numba's cache) every kernel of the node on a scratch node, so that
    real time starts with the first step already fast."""
    n = BmsNode(None, smap, clock=SimClock())
    c = n.rx.codec
    rows, mux, _ = c.cycle_plan([c.messages[0].name])
    data, _ = c.encode(rows, mux, np.zeros(c.n_slots))
    n.receive([can.Message(arbitration_id=c.messages[0].frame_id, is_extended_id=c.messages[0].is_extended_frame,
                           data=bytes(data[0, :c.messages[0].length]))], 0.0)
    for k in range(3):
        n.step_to(k * n.period_s)
    # the power-up SOC read, which the first step with fresh boards runs (not reached above):
    # loading its kernels there stalled the first real step by ~0.25 s inside user-mode Linux,
    # and under SCHED_FIFO the pack simulator with it (its current sensor timed out)
    inp = n.inp
    inp.cell_v[:], inp.temp_c[:], inp.board_valid[:], inp.board_age_s[:] = 3.3, 25.0, True, 0.0
    core.initialise(n.st, n.prm, inp)
