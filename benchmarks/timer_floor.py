"""The machine's timer floor: how late a process that does nothing but wait for 10 ms deadlines
wakes up. It is the part of any cyclic frame's jitter that no program on that machine can remove
by being faster, so ``bench_realtime`` measures it in the same run, on the host and inside the
user-mode Linux guest, beside the BMS's figures.

The loop waits like the BMS node's (``select`` with a timeout up to the next deadline, again if
woken early) and records ``late = woken - deadline`` for each step; no work between steps.
``python -m benchmarks.timer_floor [--steps N] [--period-ms P] [--rt-priority N]`` prints one JSON
object (p50_ms, p99_ms, max_ms, steps, policy).
"""

from __future__ import annotations

import argparse
import json
import os
import select
import time

import numpy as np


def late_s(steps: int, period_s: float) -> np.ndarray:
    """Wake-up lateness (s) of ``steps`` waits for deadlines ``period_s`` apart."""
    late = np.empty(steps)
    deadline = time.monotonic() + period_s
    for k in range(steps):
        while (rem := deadline - time.monotonic()) > 0:
            select.select([], [], [], rem)
        late[k] = time.monotonic() - deadline
        deadline += period_s
    return late


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.timer_floor", description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--period-ms", type=float, default=10.0)
    ap.add_argument("--rt-priority", type=int, default=0, help="SCHED_FIFO priority (0: normal policy)")
    a = ap.parse_args(argv)
    if a.steps < 1 or a.period_ms <= 0:
        ap.error("--steps must be >= 1 and --period-ms > 0")
    if a.rt_priority:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(a.rt_priority))
    late_ms = 1e3 * late_s(a.steps, a.period_ms / 1e3)
    print(json.dumps({"p50_ms": float(np.percentile(late_ms, 50)), "p99_ms": float(np.percentile(late_ms, 99)),
                      "max_ms": float(late_ms.max()), "steps": a.steps,
                      "policy": f"SCHED_FIFO {a.rt_priority}" if a.rt_priority else "normal"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
