"""Lock-step rig for the BMS node on python-can's virtual bus.

- :class:`Feeder` plays the CMU boards and the current sensor: it encodes plausible frames with
  the project codec (IDs, scalings, periods all from the DBC) and a tiny plant: the bus voltage
  follows the contactor commands it reads from ``BMS_State`` (RC charge through the precharge
  resistor, equal to the pack voltage with both mains closed). Not the pack simulator.
- :class:`Vcu` plays the vehicle controller with ``cantools.tester.Tester`` (DUT = BMS): each
  request carries the next alive counter and the E2E CRC computed with :mod:`bms.can.e2e`.
- :class:`Sim` advances a SimClock in steps of the node's period: feeder frames, VCU frames,
  ``node.step_to(t)``, then the feeder reads the commands.
"""

from __future__ import annotations

import itertools
import math

import can
import cantools.tester
import numpy as np

from bms.can.codec import FrameCodec
from bms.can.dbc import cycle_time_s
from bms.can.e2e import E2ESpec
from bms.node import BmsNode, SimClock
from bms.node.rx import counter_signal
from bms.signal_map import load_map

_channels = itertools.count()


def new_channel() -> str:
    return f"bms-node-test-{next(_channels)}"


class Feeder:
    """CMU boards + current sensor (+ optional charger) of the map's pack."""

    def __init__(self, bus: can.BusABC, smap, cell_v: float = 3.30, temp_c: float = 25.0):
        self.bus, self.smap, self.db = bus, smap, smap.db
        names = sorted({m for ms in smap.board_messages for m in ms}
                       | {smap.scalars[k].message for k in ("pack_i_a", "pack_v", "fb_neg") if k in smap.scalars})
        self.codec = FrameCodec(names, self.db)
        self.values = np.zeros(self.codec.n_slots)
        self.msgs = {n: self.db.get_message_by_name(n) for n in names}
        self.period = {n: cycle_time_s(m) for n, m in self.msgs.items()}
        self.next_s = {n: 0.0 for n in names}
        self.counter = {n: 0 for n in names}
        self.cell_v = np.full(smap.pack.n_series, cell_v)
        self.temp_c = np.full(smap.pack.n_temps, temp_c)
        self.i_a = 0.0
        self.bus_v = 0.0
        self.cmd = 0                 # contactor command bits read from BMS_State
        self.weld = 0                # contactor bits welded closed (their auxiliary contacts read closed)
        self.silent_boards: set[int] = set()
        self.isense_silent = False
        self.tau_s = 0.047 * 2.0     # precharge R C of the reference pack (47 ohm, 2 mF)
        st = self.db.get_message_by_name("BMS_State")
        self.state_id = st.frame_id
        self.bms_state: dict = {}
        self.cell_slots = self.codec.slots(r.signal for r in smap.cells)
        self.temp_slots = self.codec.slots(r.signal for r in smap.temps)

    def board_of(self, name: str) -> int | None:
        for b, ms in enumerate(self.smap.board_messages):
            if name in ms:
                return b
        return None

    def _fill(self) -> None:
        c, v = self.codec, self.values
        v[self.cell_slots] = self.cell_v
        v[self.temp_slots] = self.temp_c
        sc = self.smap.scalars
        v[c.slot(sc["pack_i_a"].signal)] = self.i_a
        v[c.slot(sc["pack_v"].signal)] = float(np.sum(self.cell_v))
        v[c.slot(sc["bus_v"].signal)] = self.bus_v
        for bit, key in enumerate(("fb_neg", "fb_pre", "fb_pos")):  # auxiliary contacts follow the command
            if key in sc:
                v[c.slot(sc[key].signal)] = float(((self.cmd | self.weld) >> bit) & 1)

    def frames_due(self, t_s: float) -> list[can.Message]:
        self._fill()
        out = []
        for name, nxt in self.next_s.items():
            if nxt > t_s + 1e-9:
                continue
            self.next_s[name] = nxt + self.period[name]
            b = self.board_of(name)
            if (b is not None and b in self.silent_boards) or (b is None and self.isense_silent):
                continue
            m = self.msgs[name]
            ctr = counter_signal(m)
            if ctr:
                self.values[self.codec.slot(ctr)] = self.counter[name]
                self.counter[name] = (self.counter[name] + 1) % (1 << m.get_signal_by_name(ctr).length)
            rows, mux, _ = self.codec.cycle_plan([name])
            data, _ = self.codec.encode(rows, mux, self.values)
            out += [can.Message(arbitration_id=m.frame_id, data=bytes(d[:m.length]), is_extended_id=False)
                    for d in data]
        return out

    def send_due(self, t_s: float) -> None:
        for f in self.frames_due(t_s):
            self.bus.send(f)

    def read_commands(self, dt_s: float) -> None:
        """Drain the bus, keep the last BMS_State, advance the bus-voltage plant by dt_s."""
        while (msg := self.bus.recv(timeout=0.0)) is not None:
            if msg.arbitration_id == self.state_id:
                self.bms_state = self.db.decode_message(self.state_id, msg.data, decode_choices=False)
        s = self.bms_state
        if s:
            self.cmd = int(s["BMS_ContNegCmd"]) | int(s["BMS_ContPreCmd"]) << 1 | int(s["BMS_ContPosCmd"]) << 2
        pack_v = float(np.sum(self.cell_v))
        if self.cmd & 1 and self.cmd & 4:
            self.bus_v = pack_v
        elif self.cmd & 1 and self.cmd & 2:
            self.bus_v += (pack_v - self.bus_v) * (1.0 - math.exp(-dt_s / self.tau_s))
        else:
            self.bus_v *= math.exp(-dt_s / 1.0)


class Vcu:
    """Vehicle controller played by cantools' Tester (DUT = BMS); E2E counter + CRC per request."""

    def __init__(self, bus: can.BusABC, db):
        self.db = db
        self.tester = cantools.tester.Tester("BMS", db, bus, db.buses[0].name if db.buses else None)
        self.msg = db.get_message_by_name("VCU_Request")
        self.spec = E2ESpec.from_message(self.msg)
        self.counter = 0
        self.request = "STANDBY"
        self.reset = 0
        self.silent = False
        self.period_s = cycle_time_s(self.msg)
        self.next_s = 0.0
        self.last_frame: bytes | None = None

    def signals(self, request: str, reset: int, counter: int) -> dict:
        sig = {"VCU_OpRequest": request, "VCU_FaultReset": reset, "VCU_Request_Counter": counter, "VCU_Request_CRC": 0}
        payload = self.msg.encode(sig)
        sig["VCU_Request_CRC"] = self.spec.crc(payload)
        return sig

    def send(self, request: str | None = None, reset: int | None = None) -> dict:
        sig = self.signals(self.request if request is None else request, self.reset if reset is None else reset,
                           self.counter)
        self.counter = (self.counter + 1) % self.spec.counter_modulus
        self.tester.send("VCU_Request", sig)
        self.last_frame = self.msg.encode(sig)
        return sig

    def send_due(self, t_s: float) -> None:
        if self.next_s <= t_s + 1e-9:
            self.next_s += self.period_s
            if not self.silent:
                self.send()


class Sim:
    """Node + feeder + VCU on one virtual channel, advanced in lock-step on a SimClock."""

    def __init__(self, **feeder_kw):
        ch = new_channel()
        self.smap = load_map()
        # the VCU only listens to what the BMS sends (as its own CAN controller would filter)
        vcu_filters = [{"can_id": self.smap.db.get_message_by_name(n).frame_id, "can_mask": 0x7FF}
                       for n in self.smap.tx_messages]
        self.buses = [can.Bus(interface="virtual", channel=ch) for _ in range(2)]
        self.buses.append(can.Bus(interface="virtual", channel=ch, can_filters=vcu_filters))
        self.clock = SimClock()
        self.node = BmsNode(self.buses[0], self.smap, clock=self.clock)
        self.feeder = Feeder(self.buses[1], self.smap, **feeder_kw)
        self.vcu = Vcu(self.buses[2], self.smap.db)
        self.dt_s = self.node.period_s
        self.states: list[str] = []

    def run(self, seconds: float) -> None:
        for _ in range(int(round(seconds / self.dt_s))):
            t = self.clock.advance(self.dt_s)
            self.feeder.send_due(t)
            self.vcu.send_due(t)
            self.node.step_to(t)
            self.feeder.read_commands(self.dt_s)
            self.states.append(self.node.status()["state"])

    def run_until(self, state: str, max_s: float) -> bool:
        for _ in range(int(round(max_s / self.dt_s))):
            self.run(self.dt_s)
            if self.states[-1] == state:
                return True
        return False

    def close(self) -> None:
        self.vcu.tester.stop()
        self.vcu.tester._notifier.stop()
        for b in self.buses:
            b.shutdown()
