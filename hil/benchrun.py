"""The bench topology, run once: the BMS node (``bms run``), the pack simulator (``bms pack``)
and a recorder as separate programs on one bus, in real time, plus an outside VCU that injects
fault-reset requests: one with a bad CRC, a valid one, and the valid one replayed.

    python -m hil.benchrun OUT_DIR [-i socketcan -c vcan0] [--scenario bench_short]

On ``socketcan`` (a real vcan: run it through ``bms vcan``), every part is its own process and
the tools are can-utils: ``candump -l`` records (the ``-L`` log format, into a file), ``cansend``
injects. On python-can's ``virtual`` bus (in-process only) the same commands run in threads of
this process, ``bms record`` records and the injections go through python-can. ``OUT_DIR`` receives ``bus.log``
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
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import can

from bms import layout as L
from bms.can.e2e import E2ESpec
from bms.can.socketbatch import SocketBatch
from bms.commands._signals import stop_in_process
from bms.node.rx import counter_signal
from bms.signal_map import load_map
from hil.bmsview import BmsView
from hil.forkrun import ForkedCommand
from hil.scenario import load_scenario

SETTLE_S = 0.3         # time given to the BMS to react to an injection (15-30 of its steps)
SETTLE_BAD_S = 0.15    # ... to the bad-CRC one, which the valid one must follow quickly (below)
RCVBUF_BYTES = 1 << 22  # candump's socket receive buffer (-r): ~5000 frames of room
VCU_GONE_S = 0.15      # the scenario's VCU (50 ms cycle) counts as silent after this long without a frame
# The fault reset must reach the BMS before its VCU timeout becomes a fault (COMM_VCU, 1.0 s after
# the last genuine frame: a fault present at the reset edge keeps ERROR): silence is judged on
# the frames' bus time stamps, not on when this process got to read them, and the valid request
# follows the bad-CRC one after SETTLE_BAD_S: about 0.4 s after the last genuine frame.
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

    def __init__(self, interface: str, channel: str, out: Path, fork: bool = False):
        self.interface, self.channel, self.out, self.fork = interface, channel, out, fork
        self.procs: dict[str, subprocess.Popen | ForkedCommand] = {}
        self.threads: dict[str, threading.Thread] = {}
        self.rc: dict[str, int | None] = {}
        self.cpu_s: dict[str, float] = {}   # CPU seconds per program (socketcan: separate processes)
        self._cpu_seen = 0.0
        self._armed: list[subprocess.Popen] = []   # cansend shells started ahead (arm)

    def start(self, name: str, argv: list[str], cwd=None) -> None:
        if self.interface == "socketcan" and self.fork and argv[1:3] == ["-m", "bms.cli"]:
            self.procs[name] = ForkedCommand(argv[3:], self.out / f"{name}.out", self.out / f"{name}.err", cwd)
        elif self.interface == "socketcan":
            out = open(self.out / f"{name}.out", "wb")
            err = open(self.out / f"{name}.err", "wb")
            self.procs[name] = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=cwd)
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

    def cpu_sample(self) -> dict:
        """CPU seconds used so far by each running program (socketcan: from /proc; the threads of
        the virtual backend are not told apart) and the machine's busy and total CPU time."""
        tick = os.sysconf("SC_CLK_TCK")
        out = {}
        for name, p in self.procs.items():
            try:
                f = Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()
                out[name] = (int(f[11]) + int(f[12])) / tick   # utime + stime
            except (OSError, IndexError, ValueError):
                pass
        try:
            cpu = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
            out["_busy"], out["_total"] = (sum(cpu) - cpu[3] - cpu[4]) / tick, sum(cpu) / tick
        except (OSError, ValueError, IndexError):
            pass
        out["_wall"] = time.monotonic()
        return out

    def arm(self, n: int) -> None:
        """socketcan: start ``n`` ``cansend`` processes ahead, each a shell waiting for its frame on stdin, so
        that an injection costs one exec, not a fork of this (large) process plus an exec: 0.035 s
        instead of 0.17-0.24 s from the call to the frame on the bus under user-mode Linux."""
        if self.interface == "socketcan":
            while len(self._armed) < n:
                self._armed.append(subprocess.Popen(
                    ["/bin/sh", "-c", f'read -r f && exec cansend {self.channel} "$f"'],
                    stdin=subprocess.PIPE, stdout=subprocess.DEVNULL))

    def disarm(self) -> None:
        while self._armed:
            p = self._armed.pop()
            p.stdin.close()   # read fails: the shell ends without sending
            p.wait(10)

    def inject(self, bus: can.BusABC, fid: int, data: bytes) -> float:
        """Send one frame from outside (``cansend`` on socketcan); returns time.time() before it."""
        t = time.time()
        if self.interface == "socketcan":
            self.arm(1)
            p = self._armed.pop(0)
            p.stdin.write(f"{fid:03X}#{data.hex().upper()}\n".encode())
            p.stdin.close()
            if p.wait(30) != 0:
                raise RuntimeError(f"cansend failed with exit code {p.returncode}")
        else:
            bus.send(can.Message(arbitration_id=fid, is_extended_id=False, data=data))
        return t


def warm_caches(scenario: str = "bench_short") -> None:
    """Compile (or load) every kernel the programs of a run use, here: run it on the host before
    booting a user-mode Linux guest, so that the guest finds numba's on-disk cache filled and
    only loads it (compiling there takes minutes)."""
    from bms.node.node import warm_up
    from hil.rtplant import warm_up as warm_plant

    scn = load_scenario(scenario)
    smap = load_map(scn.map)
    warm_up(smap)
    warm_plant(scn)
    _warm(smap)


def _warm(smap) -> None:
    """Load the bus view's compiled kernels now, not at the BMS's first frame (seconds under
    user-mode Linux, while the frames queue up)."""
    msg = smap.db.get_message_by_name(smap.messages_of("state")[0])
    BmsView(smap).feed([can.Message(arbitration_id=msg.frame_id, data=bytes(msg.length), is_extended_id=False)], 0.0)


def _cpu_use(a: dict, b: dict) -> dict:
    """Between two :meth:`_Side.cpu_sample`: wall seconds, CPU seconds per program, and the
    machine's busy fraction (every CPU; inside user-mode Linux: the guest's one CPU)."""
    wall = b["_wall"] - a["_wall"]
    out = {"wall_s": round(wall, 3)}
    out.update({k: round(b[k] - a[k], 3) for k in a if not k.startswith("_") and k in b})
    if "_total" in a and "_total" in b and b["_total"] > a["_total"]:
        out["busy_fraction"] = round((b["_busy"] - a["_busy"]) / (b["_total"] - a["_total"]), 3)
    return out


def run_bench(out_dir: str | Path, interface: str = "socketcan", channel: str = "vcan0",
              scenario: str = "bench_short", timeout_s: float = 240.0, rt_priority: int | None = None,
              fork: bool = False) -> dict:
    """Run the topology once (see module docstring); returns what ``bench.json`` holds.
    ``rt_priority``: the BMS runs under ``SCHED_FIFO`` at it and the pack one below
    (``--rt-priority``; separate processes only), as on a bench with ``chrt``.
    ``fork`` (socketcan): ``bms pack`` and ``bms run`` are forked from this process after it has
    loaded every kernel they use (:mod:`hil.forkrun`), not started as new interpreters: ~70 s
    less under user-mode Linux, the same programs once running."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    scn = load_scenario(scenario)
    smap = load_map(scn.map)
    py = [sys.executable, "-m", "bms.cli"]
    bus_args = ["-i", interface, "-c", channel]
    rt_bms, rt_pack = ([], []) if rt_priority is None or interface != "socketcan" else (
        ["--rt-priority", str(rt_priority)], ["--rt-priority", str(rt_priority - 1)])
    fork = fork and interface == "socketcan"
    if fork:
        warm_caches(scenario)   # the children inherit it all
    side = _Side(interface, channel, out, fork)
    watch = can.Bus(interface=interface, channel=channel)
    t_deadline = time.monotonic() + timeout_s
    log = out / "bus.log"
    if interface == "socketcan":
        # candump -l: the -L log format into candump-<date>.log in its directory, buffered (one
        # system call per frame, against three for -L to stdout, which flushes every line; each is
        # a host round trip under user-mode Linux), in memory (tmpfs) and moved to OUT_DIR at the end
        shm = Path("/dev/shm")
        rec_dir = Path(tempfile.mkdtemp(prefix="bms-bench-", dir=shm if shm.is_dir() and os.access(shm, os.W_OK) else out))
        side.start("record", ["candump", "-l", "-r", str(RCVBUF_BYTES), channel], cwd=rec_dir)
    else:
        stop_in_process(False)
        side.start("record", py + ["record", *bus_args, "-o", str(log)])
    view = BmsView(smap)
    _warm(smap)
    vcu_msg = smap.db.get_message_by_name(smap.scalars["vcu_request"].message)
    state_msg = smap.db.get_message_by_name(smap.messages_of("state")[0])
    watch.set_filters([{"can_id": m.frame_id, "can_mask": 0x7FF, "extended": False} for m in (vcu_msg, state_msg)])
    ctr_name = counter_signal(vcu_msg)
    states: list[tuple[float, int]] = []   # (time.time(), BMS state) on every change
    vcu_seen: list[tuple[float, bytes]] = []   # every VCU request frame on the bus (time, payload)
    last_vcu = {"t": None, "ctr": None}

    sock = SocketBatch.of(watch)

    def frames_for(timeout: float) -> list[can.Message]:
        if sock is None:
            m = watch.recv(timeout=timeout)
            return [] if m is None else [m]
        return sock.recv_messages(channel) if sock.wait(timeout) else []

    def pending() -> bool:
        """Frames wait to be read (this process is behind the bus)."""
        if sock is not None:
            return sock.wait(0.0)
        q = getattr(watch, "queue", None)   # python-can's virtual bus
        return q is not None and not q.empty()

    def pump(until: float) -> None:
        while (left := until - time.monotonic()) > 0:
            for m in frames_for(min(left, 0.05)):
                see(m)

    def see(m: can.Message) -> None:
        if m.arbitration_id == vcu_msg.frame_id:
            last_vcu["t"] = m.timestamp   # time.time() clock: the kernel's (socketcan) or the sender's
            vcu_seen.append((m.timestamp, bytes(m.data)))
            try:
                last_vcu["ctr"] = int(vcu_msg.decode(bytes(m.data), decode_choices=False)[ctr_name])
            except Exception:  # noqa: BLE001 -- a malformed frame is not the genuine VCU
                pass
            return
        view.feed([m], 0.0)
        s = view.q("state")
        if s == s and (not states or states[-1][1] != int(s)):
            states.append((m.timestamp, int(s)))   # bus time (time.time() clock), however late read

    result: dict = {"interface": interface, "channel": channel, "scenario": scn.name, "injections": []}
    try:
        # the cansend shells for the three injections below, forked now, before real time: a fork
        # of this (large) process takes 0.17-0.24 s inside user-mode Linux, in the guest kernel,
        # where nothing else runs meanwhile (not even a SCHED_FIFO BMS): forked after the BMS's
        # first state frame, they made its first 0.3 s the worst of the run's jitter
        side.arm(3)
        # the pack first (as in a vehicle: the BMS wakes up to a pack that talks); it holds the
        # scenario at its start until the BMS's first state frame
        side.start("pack", py + ["pack", *bus_args, "--scenario", scenario, "--wait-for-bms", "-q", *rt_pack,
                                 "--result-json", str(out / "pack.json")])
        while last_vcu["t"] is None and time.monotonic() < t_deadline:
            pump(time.monotonic() + 0.2)
            if not side.running("pack"):
                raise RuntimeError(f"bms pack ended before sending anything (see {out}/pack.err)")
        side.start("bms", py + ["run", *bus_args, "--pack", "heavy_duty_192s", "-q", *rt_bms, "--stats-json", str(out / "bms.json")])
        while not states and time.monotonic() < t_deadline:  # the BMS is up
            pump(time.monotonic() + 0.2)
            if not side.running("bms"):
                raise RuntimeError(f"bms run ended before sending anything (see {out}/bms.err)")
        if not states:
            raise RuntimeError("bms run sent no state frame in time")
        # every counter's frames encoded ahead: at the injection only a look-up (the first cantools
        # encode in a process is slow, and under user-mode Linux the window is tight: see VCU_GONE_S)
        modulus = E2ESpec.from_message(vcu_msg).counter_modulus
        requests = {c: (vcu_request(smap, c, crc_ok=False), vcu_request(smap, c)) for c in range(modulus)}
        cpu0 = side.cpu_sample()   # real time from here: the scenario runs
        # wait: the scenario's VCU spoke, went silent, and the BMS is in ERROR
        def vcu_gone_in_error() -> bool:
            gone = last_vcu["t"] is not None and time.time() - last_vcu["t"] > VCU_GONE_S
            return gone and states[-1][1] == L.ST_ERROR

        while time.monotonic() < t_deadline and side.running("pack"):
            pump(time.monotonic() + 0.02)
            if vcu_gone_in_error():
                # what is queued now is read before deciding (a genuine VCU frame among it would
                # restart the wait): not "nothing queued", which the BMS's 10 ms state frames
                # rarely allow when this process runs late (it then waited up to 0.6 s more)
                while pending():
                    for m in frames_for(0.0):
                        see(m)
                if vcu_gone_in_error():
                    break
        else:
            raise RuntimeError("the scenario's VCU did not fall silent with the BMS in ERROR")
        ctr = (last_vcu["ctr"] + 1) % modulus
        t_last_vcu = last_vcu["t"]
        (fid, bad), (_, good) = requests[ctr]
        for name, data, expect in (("bad_crc", bad, "rejected"), ("valid", good, "obeyed"), ("replayed", good, "rejected")):
            t = side.inject(watch, fid, data)
            pump(time.monotonic() + (SETTLE_BAD_S if name == "bad_crc" else SETTLE_S))
            after = [L.STATE_NAMES[s] for tt, s in states if tt >= t]
            # when the frame was on the bus (its own copy as the kernel time-stamped it), after the
            # call: the injection's delivery latency (cansend's start; a stalled guest shows here)
            on_bus = next((tt for tt, d in vcu_seen if d == data and tt >= t - 0.01
                           and not any(i["on_bus_t"] == tt for i in result["injections"])), None)
            result["injections"].append({"name": name, "t_wall": t, "data": data.hex(), "expect": expect,
                                         "after_last_vcu_s": round(t - t_last_vcu, 3), "states_after": after,
                                         "on_bus_t": on_bus,
                                         "latency_s": None if on_bus is None else round(on_bus - t, 3)})
        cpu1 = side.cpu_sample()
        while side.running("pack") and time.monotonic() < t_deadline:
            cpu1 = side.cpu_sample()
            pump(time.monotonic() + 0.2)
        result["cpu_realtime"] = _cpu_use(cpu0, cpu1)
        result["rc"] = {"pack": side.stop("pack", 5.0)}
        pump(time.monotonic() + 0.3)
    finally:
        result.setdefault("rc", {})
        result["rc"]["bms"] = side.stop("bms", 30.0)
        result["rc"]["record"] = side.stop("record", 10.0)
        if interface == "socketcan":
            logs = sorted(rec_dir.glob("candump-*.log"))   # one (none: candump failed, see record.err)
            if logs:
                shutil.move(logs[-1], log)
            shutil.rmtree(rec_dir, ignore_errors=True)
        result["cpu_s"] = side.cpu_s
        side.disarm()
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
    ap.add_argument("--rt-priority", type=int, default=None, metavar="PRIO",
                    help="SCHED_FIFO: the BMS at PRIO, the pack at PRIO-1 (socketcan only)")
    ap.add_argument("--fork", action="store_true",
                    help="socketcan: fork bms pack and bms run from this process, kernels loaded "
                         "(user-mode Linux: saves their ~70 s of interpreter start-up)")
    a = ap.parse_args(argv)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    r = run_bench(a.out_dir, a.interface, a.channel, a.scenario, a.timeout_s, a.rt_priority, a.fork)
    print(json.dumps({k: r[k] for k in ("rc", "injections")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
