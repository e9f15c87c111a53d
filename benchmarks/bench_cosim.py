"""Closed loop speed: the 192-cell reference pack (10 ms physics, CMU frames every 100 ms, the
current sensor every 10 ms, all on their DBC periods through the batch codec) against the BMS
node (10 ms firmware step), lock-step, over python-can's virtual bus and over direct frame
hand-over. Reported: wall time for one simulated hour (extrapolated from a 60 s run after a
warm-up) and the ratio simulated / wall time (target in the issue: >= 100x real time).
The baseline is real time itself (3600 s per simulated hour)."""

from __future__ import annotations

from benchmarks._timing import figure
from hil.cosim import run_scenario
from hil.scenario import load_scenario, shorten

SIM_S = 60.0


def _run(transport: str) -> float:
    scn = shorten(load_scenario("yard_tractor_shift"), SIM_S)
    res = run_scenario(scn, transport)
    return res.wall_s / res.sim_s


def run() -> dict:
    _run("direct")  # warm-up: numba caches, DBC
    out = {}
    for transport in ("virtual", "direct"):
        per_s = _run(transport)
        hour = per_s * 3600.0
        out[f"cosim_{transport}_hour_wall_s"] = figure(hour, "s", baseline=3600.0, ratio=3600.0 / hour,
                                                       note=f"ratio = x real time over {transport} transport (target 100)")
    return out
