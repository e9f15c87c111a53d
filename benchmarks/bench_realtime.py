"""Real-time behaviour on a real vcan: the bench topology (``hil.benchrun``: ``bms run`` and
``bms pack --scenario bench_short`` as separate processes, ``candump -L`` recording, ``cansend``
injections) run through the SocketCAN harness (host vcan, else user-mode Linux), then measured
from candump's time stamps: period and jitter (|period - DBC cycle time|) of the BMS's 10 ms and
100 ms cyclic frames, p50 / p99 / max while the BMS and the pack both ran (``hil.rtfigures.run_window``:
not the BMS's shutdown frames after the pack ended), and the time from the injected fault (board
3 silent, at the pack simulator's injection instant on the same clock) to the first state frame
commanding the contactors open.
Measured: python-can's ``virtual`` bus (the programs as threads of this process, on the host),
SocketCAN at normal priority, and SocketCAN with the BMS and the pack under ``SCHED_FIFO``
(``--rt-priority``, as ``chrt -f`` on a bench; needs root, which the user-mode Linux guest is). ``BMS_BENCH_RUNS`` (default 1) runs each; figures are medians over runs.
Baseline: the DBC cycle time for periods, the 2 ms target for p99 jitter, and, measured first in the
same run, the timer floor (``benchmarks.timer_floor``): how late a bare loop wakes for 10 ms deadlines
on the host, in the guest, and in the guest under SCHED_FIFO; no program there can do better. Also reported: the
BMS steps run late, how late the BMS's loop woke for its steps (the operating system's share
of the jitter), the CPU seconds per second of the BMS, the pack and the recorder while the
scenario runs, how busy the machine was (inside user-mode Linux: the guest's one CPU), and the
host's load average at the start, since the tail of the jitter follows the load."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks._timing import figure
from bms.signal_map import load_map
from hil.rtfigures import cyclic_figures, open_latency_s, read_frames, run_window
from hil.socketcan import run_on_vcan

ROOT = Path(__file__).resolve().parent.parent
JITTER_TARGET_MS = 2.0


def measure(out: Path, smap) -> dict:
    pack = json.loads((out / "pack.json").read_text())
    bench = json.loads((out / "bench.json").read_text())
    frames = read_frames(out / "bus.log")
    fig = cyclic_figures(frames, smap, *run_window(frames, smap))   # while the BMS and the pack both ran
    t_on = pack["fault_wall_time"].get("board_silent(board=3)")
    lat = open_latency_s(frames, smap, t_on) if t_on is not None else None
    bms = json.loads((out / "bms.json").read_text())
    stats = bms["stats"]
    cpu = bench.get("cpu_realtime", {})
    wall = cpu.get("wall_s") or float("nan")
    return {"cyclic": fig, "fault_to_open_s": lat, "passed": pack["passed"], "overruns": stats["overruns"],
            "late_pct": 100.0 * stats["overruns"] / max(stats["steps"], 1), "wake": bms.get("wake_late", {}),
            "busy_pct": 100.0 * cpu["busy_fraction"] if "busy_fraction" in cpu else None,
            **{f"cpu_{k}": cpu[k] / wall for k in ("bms", "pack", "record") if k in cpu}}


RT_PRIORITY = 50   # the SCHED_FIFO variant: the BMS at 50, the pack at 49 (bms run/pack --rt-priority)


def _one(backend: str, smap) -> tuple[dict | None, str]:
    """One run of the topology; a run that fails keeps its directory (recording, programs' output
    and JSON), named on stderr, for the post-mortem."""
    rt = ["--rt-priority", str(RT_PRIORITY)] if backend == "socketcan_fifo" else []
    d = tempfile.mkdtemp(prefix=f"bms-bench-rt-{backend}-")
    keep = True
    try:
        if backend == "virtual":
            from hil.benchrun import run_bench

            run_bench(d, "virtual", f"bench-rt-{os.getpid()}")
            m, where = measure(Path(d), smap), "host"
        else:
            from hil.benchrun import warm_caches

            warm_caches()  # the guest loads numba's cache instead of compiling
            r = run_on_vcan([sys.executable, "-m", "hil.benchrun", d, "--timeout-s", "200", "--fork", *rt],
                            timeout_s=240, cwd=ROOT)
            where = r.backend
            if r.returncode != 0 or not (Path(d) / "pack.json").exists():
                print(r.output[-3000:], file=sys.stderr)
                return None, where
            m = measure(Path(d), smap)
        keep = not m["passed"]
        return m, where
    finally:
        if keep:
            print(f"bench_realtime: the {backend} run's files are kept in {d}", file=sys.stderr)
        else:
            shutil.rmtree(d, ignore_errors=True)


def _floor(where: str, rt_priority: int = 0) -> dict | None:
    """benchmarks.timer_floor on the host or in the SocketCAN harness's guest (as the bench runs)."""
    argv = [sys.executable, "-m", "benchmarks.timer_floor", "--rt-priority", str(rt_priority)]
    if where == "host":
        done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=120)
        code, text = done.returncode, done.stdout + done.stderr
    else:
        r = run_on_vcan(argv, timeout_s=120, cwd=ROOT)
        code, text = r.returncode, r.output
    if code != 0:
        print(f"bench_realtime: timer floor ({where}) failed:\n{text[-2000:]}", file=sys.stderr)
        return None
    return json.loads(text.strip().splitlines()[-1])


def floors() -> dict:
    """The timer floor (benchmarks.timer_floor) where each variant runs: what no program there can beat."""
    out = {}
    for tag, where, prio in (("host", "host", 0), ("vcan", "vcan", 0), ("vcan_fifo", "vcan", RT_PRIORITY)):
        f = _floor(where, prio)
        for stat in ("p50", "p99", "max"):
            out[f"rt_floor_{tag}_late_{stat}_ms"] = figure(
                float("nan") if f is None else f[f"{stat}_ms"], "ms",
                note=(f"a bare loop waking for 10 ms deadlines, 1000 steps ({where}"
                      f"{', SCHED_FIFO' if prio else ''}): the machine's share of any jitter") if stat == "p99" else "")
    return out


def run() -> dict:
    smap = load_map()
    load0 = os.getloadavg()[0]
    out = floors()
    for backend in ("virtual", "socketcan", "socketcan_fifo"):
        runs, where = [], "?"
        for _ in range(int(os.environ.get("BMS_BENCH_RUNS", "1"))):
            m, where = _one(backend, smap)
            if m is not None:
                runs.append(m)
        if not runs:
            out[f"rt_{backend}_failed"] = figure(float("nan"), "-", note=f"no {backend} run completed")
            continue

        def med(f):
            vals = [f(r) for r in runs if f(r) is not None]
            return statistics.median(vals) if vals else float("nan")

        tag = f"rt_{backend}"
        for ms in (10, 100):
            for stat in ("p50", "p99", "max"):
                out[f"{tag}_{ms}ms_period_{stat}_ms"] = figure(med(lambda r: r["cyclic"][ms]["period_ms"][stat]), "ms",
                                                               baseline=float(ms))
            for stat in ("p50", "p99", "max"):
                v = med(lambda r: r["cyclic"][ms]["jitter_ms"][stat])
                out[f"{tag}_{ms}ms_jitter_{stat}_ms"] = figure(
                    v, "ms", baseline=JITTER_TARGET_MS if stat == "p99" else None,
                    ratio=JITTER_TARGET_MS / v if stat == "p99" and v > 0 else None,
                    note=f"target p99 < {JITTER_TARGET_MS} ms (ratio > 1: met); {backend} on {where}"
                    if stat == "p99" else "")
        out[f"{tag}_fault_to_open_s"] = figure(med(lambda r: r["fault_to_open_s"]), "s",
                                               note="board 3 silent (pack's injection instant) -> first BMS_State "
                                                    "commanding the contactors open")
        out[f"{tag}_bms_overruns"] = figure(med(lambda r: r["overruns"]), "steps",
                                            note=f"BMS steps run late; {len(runs)} run(s), scenario verdicts passed in "
                                                 f"{sum(r['passed'] for r in runs)}")
        out[f"{tag}_bms_late_steps_pct"] = figure(med(lambda r: r["late_pct"]), "%")
        for stat in ("p50", "p99", "max"):
            out[f"{tag}_bms_wake_late_{stat}_ms"] = figure(
                med(lambda r: r["wake"].get(f"{stat}_ms")), "ms",
                note="BMS loop: step deadline -> loop awake (bms.node.wakeup); the OS's share of the jitter"
                if stat == "p99" else "")
        out[f"{tag}_bms_loops_per_step"] = figure(
            med(lambda r: r["wake"].get("loops_per_step")), "",
            note="passes of the BMS loop per step: each a wake-up (a step, or frames to read)")
        if backend.startswith("socketcan"):
            out[f"{tag}_cpu_busy_pct"] = figure(med(lambda r: r["busy_pct"]), "%",
                                                note=f"CPU busy while the scenario ran ({where}: "
                                                     f"{'the guest' if where == 'uml' else 'the host'})")
            for k in ("bms", "pack", "record"):
                out[f"{tag}_cpu_{k}_pct"] = figure(med(lambda r: 100.0 * r.get(f"cpu_{k}", float("nan"))), "%",
                                                   note="of one CPU while the scenario ran" if k == "bms" else "")
    out["rt_host_load_1min"] = figure(load0, "", note=f"host load average (1 min) at the start; {os.cpu_count()} CPUs")
    return out
