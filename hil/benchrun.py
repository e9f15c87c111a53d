"""The bench topology, run once: the BMS node (``bms run``), the pack simulator (``bms pack``)
and a recorder as separate programs on one bus, in real time, plus an outside VCU that injects
fault-reset requests: one with a bad CRC, a valid one, and the valid one replayed.

    python -m hil.benchrun OUT_DIR [-i socketcan -c vcan0] [--scenario bench_short]

On ``socketcan`` (a real vcan: run it through ``bms vcan``), every part is its own process and
the tools are can-utils: ``candump -L`` records, ``cansend`` injects. On python-can's
``virtual`` bus (in-process only) the same commands run in threads of this process, ``bms
record`` records and the injections go through python-can. ``OUT_DIR`` receives ``bus.log``
(the recording), ``bms.json`` (the BMS's statistics), ``pack.json`` (the scenario's verdicts,
figures and events) and ``bench.json`` (the injections and the BMS state seen after each).

The injections wait until the scenario's VCU has gone silent with the BMS in ERROR (the safe
state after the injected fault): the outside VCU then owns the request. Its alive counter
follows the last genuine VCU frame seen on the bus, so the valid frame is accepted
deterministically; the replay repeats its bytes (same counter).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import can

from bms import layout as L
from bms.can.e2e import E2ESpec
from bms.commands._signals import stop_in_process
from bms.node.rx import counter_signal
from bms.signal_map import load_map
from hil.bmsview import BmsView
from hil.scenario import load_scenario

SETTLE_S = 0.5         # time given to the BMS to react to each injection
VCU_GONE_S = 0.4       # the scenario's VCU counts as silent after this long without a frame
START_TIMEOUT_S = 120  # for the BMS's first frame (numba cache load, slower under user-mode Linux)


def vcu_request(smap, counter: int, request: int = L.REQ_STANDBY, reset: bool = True,
                crc_ok: bool = True) -> tuple[int, bytes]:
    """An E2E-protected VCU request frame (id, payload); ``crc_ok=False`` flips the CRC's bits."""
    msg = smap.db.get_message_by_name(smap.scalars["vcu_request"].message)
    spec = E2ESpec.from_message(msg)
    values = {s.name: 0 for s in msg.signals}
    values[smap.scalars["vcu_request"].signal] = request
    if "vcu_reset" in smap.scalars:
        values[smap.scalars["vcu_reset"].signal] = int(reset)
    values[counter_signal(msg)] = counter
    data = bytearray(spec.protect(msg.encode(values, strict=False)))
    if not crc_ok:
        data[spec.crc_byte] ^= 0xFF
    return msg.frame_id, bytes(data)


class _Side:
    """The programs of one run: subprocesses on socketcan, threads of this process on virtual."""

    def __init__(self, interface: str, channel: str, out: Path):
        self.interface, self.channel, self.out = interface, channel, out
        self.procs: dict[str, subprocess.Popen] = {}
        self.threads: dict[str, threading.Thread] = {}
        self.rc: dict[str, int | None] = {}
        self.cpu_s: dict[str, float] = {}   # CPU seconds per program (socketcan: separate processes)
        self._cpu_seen = 0.0

    def start(self, name: str, argv: list[str], stdout=None) -> None:
        if self.interface == "socketcan":
            out = open(stdout, "wb") if stdout else open(self.out / f"{name}.out", "wb")
            err = open(self.out / f"{name}.err", "wb")
            self.procs[name] = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
            out.close()
            err.close()
        else:
            from bms import cli

            def target():
                self.rc[name] = cli.main(argv[3:])  # drop "python -m bms.cli"

            th = threading.Thread(target=target, name=name, daemon=True)
            th.start()
            self.threads[name] = th

    def running(self, name: str) -> bool:
        if name in self.procs:
            return self.procs[name].poll() is None
        return self.threads[name].is_alive()

    def stop(self, name: str, timeout_s: float = 30.0) -> int | None:
        if name in self.procs:
            p = self.procs[name]
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
            try:
                rc = p.wait(timeout_s)
            except subprocess.TimeoutExpired:
                p.kill()
                rc = p.wait()
            ru = resource.getrusage(resource.RUSAGE_CHILDREN)  # cumulative over reaped children
            cpu = ru.ru_utime + ru.ru_stime
            self.cpu_s[name] = round(cpu - self._cpu_seen, 3)
            self._cpu_seen = cpu
            return rc
        if self.threads[name].is_alive():
            stop_in_process()  # every command thread of this run stops (no signals between threads)
        self.threads[name].join(timeout_s)
        return self.rc.get(name)

    def inject(self, bus: can.BusABC, fid: int, data: bytes) -> float:
        t = time.time()
        if self.interface == "socketcan":
            subprocess.run(["cansend", self.channel, f"{fid:03X}#{data.hex().upper()}"], check=True, timeout=30)
        else:
            bus.send(can.Message(arbitration_id=fid, is_extended_id=False, data=data))
        return t


def run_bench(out_dir: str | Path, interface: str = "socketcan", channel: str = "vcan0",
              scenario: str = "bench_short", timeout_s: float = 240.0) -> dict:
    """Run the topology once (see module docstring); returns what ``bench.json`` holds."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    scn = load_scenario(scenario)
    smap = load_map(scn.map)
    py = [sys.executable, "-m", "bms.cli"]
    bus_args = ["-i", interface, "-c", channel]
    side = _Side(interface, channel, out)
    watch = can.Bus(interface=interface, channel=channel)
    t_deadline = time.monotonic() + timeout_s
    log = out / "bus.log"
    if interface == "socketcan":
        side.start("record", ["candump", "-L", channel], stdout=log)
    else:
        stop_in_process(False)
        side.start("record", py + ["record", *bus_args, "-o", str(log)])
    view = BmsView(smap)
    vcu_msg = smap.db.get_message_by_name(smap.scalars["vcu_request"].message)
    state_msg = smap.db.get_message_by_name(smap.messages_of("state")[0])
    watch.set_filters([{"can_id": m.frame_id, "can_mask": 0x7FF, "extended": False} for m in (vcu_msg, state_msg)])
    ctr_name = counter_signal(vcu_msg)
    states: list[tuple[float, int]] = []   # (time.time(), BMS state) on every change
    last_vcu = {"t": None, "ctr": None}

    def pump(until: float) -> None:
        while (left := until - time.monotonic()) > 0:
            m = watch.recv(timeout=min(left, 0.05))
            if m is None:
                continue
            if m.arbitration_id == vcu_msg.frame_id:
                last_vcu["t"] = time.monotonic()
                try:
                    last_vcu["ctr"] = int(vcu_msg.decode(bytes(m.data), decode_choices=False)[ctr_name])
                except Exception:  # noqa: BLE001 -- a malformed frame is not the genuine VCU
                    pass
                continue
            view.feed([m], 0.0)
            s = view.q("state")
            if s == s and (not states or states[-1][1] != int(s)):
                states.append((time.time(), int(s)))

    result: dict = {"interface": interface, "channel": channel, "scenario": scn.name, "injections": []}
    try:
        # the pack first (as in a vehicle: the BMS wakes up to a pack that talks); it holds the
        # scenario at its start until the BMS's first state frame
        side.start("pack", py + ["pack", *bus_args, "--scenario", scenario, "--wait-for-bms", "-q",
                                 "--result-json", str(out / "pack.json")])
        while last_vcu["t"] is None and time.monotonic() < t_deadline:
            pump(time.monotonic() + 0.2)
            if not side.running("pack"):
                raise RuntimeError(f"bms pack ended before sending anything (see {out}/pack.err)")
        side.start("bms", py + ["run", *bus_args, "--pack", "heavy_duty_192s", "-q", "--stats-json", str(out / "bms.json")])
        while not states and time.monotonic() < t_deadline:  # the BMS is up
            pump(time.monotonic() + 0.2)
            if not side.running("bms"):
                raise RuntimeError(f"bms run ended before sending anything (see {out}/bms.err)")
        if not states:
            raise RuntimeError("bms run sent no state frame in time")
        # wait: the scenario's VCU spoke, went silent, and the BMS is in ERROR
        while time.monotonic() < t_deadline and side.running("pack"):
            pump(time.monotonic() + 0.1)
            gone = last_vcu["t"] is not None and time.monotonic() - last_vcu["t"] > VCU_GONE_S
            if gone and states[-1][1] == L.ST_ERROR:
                break
        else:
            raise RuntimeError("the scenario's VCU did not fall silent with the BMS in ERROR")
        ctr = (last_vcu["ctr"] + 1) % 16
        fid, bad = vcu_request(smap, ctr, crc_ok=False)
        _, good = vcu_request(smap, ctr)
        for name, data, expect in (("bad_crc", bad, "rejected"), ("valid", good, "obeyed"), ("replayed", good, "rejected")):
            t = side.inject(watch, fid, data)
            pump(time.monotonic() + SETTLE_S)
            after = [L.STATE_NAMES[s] for tt, s in states if tt >= t]
            result["injections"].append({"name": name, "t_wall": t, "data": data.hex(), "expect": expect,
                                         "states_after": after})
        while side.running("pack") and time.monotonic() < t_deadline:
            pump(time.monotonic() + 0.2)
        result["rc"] = {"pack": side.stop("pack", 5.0)}
        pump(time.monotonic() + 0.3)
    finally:
        result.setdefault("rc", {})
        result["rc"]["bms"] = side.stop("bms", 30.0)
        result["rc"]["record"] = side.stop("record", 10.0)
        result["cpu_s"] = side.cpu_s
        watch.shutdown()
    result["states"] = [(t, L.STATE_NAMES[s]) for t, s in states]
    (out / "bench.json").write_text(json.dumps(result, indent=1))
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hil.benchrun", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir")
    ap.add_argument("-i", "--interface", default="socketcan", choices=("socketcan", "virtual"))
    ap.add_argument("-c", "--channel", default="vcan0")
    ap.add_argument("--scenario", default="bench_short")
    ap.add_argument("--timeout-s", type=float, default=240.0)
    a = ap.parse_args(argv)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    r = run_bench(a.out_dir, a.interface, a.channel, a.scenario, a.timeout_s)
    print(json.dumps({k: r[k] for k in ("rc", "injections")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
