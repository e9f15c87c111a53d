"""``bms pack``: the pack simulator as the "real pack" on a CAN bus, in real time.

    bms pack -i socketcan -c vcan0 --scenario bench_short
    bms pack -i socketcan -c can0 -b 500000 --scenario demo --no-vcu --result-json out.json

The scenario's pack answers on the bus as its cell-monitoring boards, current sensor and
contactor / bleed drivers do; its vehicle controller and charger send as the scenario says
(``--no-vcu``: the vehicle's request comes from elsewhere, e.g. a real VCU or ``cansend``;
the load still follows the scenario while the BMS is in DRIVE). The BMS is another process or
a real ECU: it is seen only through its frames. Bus options are python-can's (``can.cli``:
-i/-c/-b, --bus-kwargs, ...; without -i python-can's own configuration applies;
``--can-config FILE [--can-context SECTION]`` reads a python-can config file).

At the end of the scenario, after ``--duration-s`` or on SIGINT/SIGTERM, the loop stops,
the bus shuts down and the scenario's verdicts are checked on what ran (exit 1 if one fails;
printed, and written with ``--result-json``). ``--rate R`` runs simulated time R times faster
than the wall clock (every frame R times as often: a load test).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import warnings
import sys
import time
from pathlib import Path


def register(sub) -> None:
    import can.cli

    from bms.commands._realtime import add_rt_argument

    p = sub.add_parser("pack", help="run the pack simulator (with VCU / charger) on a CAN bus (real time)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", required=True, help="scenario name (hil/scenarios) or TOML path")
    p.add_argument("--map", default=None, help="signal map name or TOML (default: the scenario's); "
                   "a real BMS ECU with its own DBC gets its own map")
    p.add_argument("--no-vcu", dest="vcu", action="store_false",
                   help="do not send the scenario's VCU request (an outside VCU does)")
    p.add_argument("--wait-for-bms", action="store_true",
                   help="send the resting pack's frames but start the scenario at the BMS's first state frame")
    p.add_argument("--rate", type=float, default=1.0, metavar="R",
                   help="simulated seconds per wall-clock second (default 1: real time)")
    p.add_argument("--duration-s", type=float, default=None, metavar="S",
                   help="stop after S wall-clock seconds (default: the scenario's end)")
    p.add_argument("--max-s", type=float, default=None, metavar="S", help="shorten the scenario to S simulated seconds")
    p.add_argument("--result-json", type=Path, default=None, metavar="FILE",
                   help="write verdicts, figures, events and loop statistics here")
    p.add_argument("--png", type=Path, default=None, metavar="FILE", help="write the figure (as bms sim)")
    p.add_argument("--can-config", type=Path, default=None, metavar="FILE", help="python-can config file")
    p.add_argument("--can-context", default=None, metavar="SECTION", help="section of the config file")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary table")
    add_rt_argument(p)
    can.cli.add_bus_arguments(p, group_title="CAN bus (python-can)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bms.commands._realtime import apply_rt_priority, freeze_heap, rusage
    from bms.commands._signals import StopOnSignals
    from bms.commands.run import _bus
    from bms.node import WallClock
    from hil.report import figures, plot, summary_table
    from hil.rtplant import Plant, run_realtime, warm_up
    from hil.scenario import load_scenario, shorten

    scn = load_scenario(args.scenario)
    if args.max_s is not None:
        if not args.max_s > 0:
            raise ValueError(f"--max-s must be positive, got {args.max_s}")
        scn = shorten(scn, args.max_s)
    if not args.rate > 0:
        raise ValueError(f"--rate must be positive, got {args.rate}")
    if args.map is not None:
        scn = dataclasses.replace(scn, map=args.map)
    warm_up(scn)  # numba compile / cache load before real time starts
    plant = Plant(scn, vcu=args.vcu, wait_for_bms=args.wait_for_bms)
    bus = _bus(args)
    freeze_heap()   # start-up's objects out of the collector's passes
    try:
        sched = apply_rt_priority(args.rt_priority)   # after compiling and opening the bus: real time starts here
        wall0 = time.perf_counter()
        with StopOnSignals() as stop:
            loop = run_realtime(bus, plant, WallClock(), rate=args.rate, duration_s=args.duration_s,
                                stop=stop)
    finally:
        bus.shutdown()
    res = plant.result(time.perf_counter() - wall0)
    if args.png is not None:
        args.png.parent.mkdir(parents=True, exist_ok=True)
        plot(res, str(args.png))
    if args.result_json is not None:
        with warnings.catch_warnings():  # per-cell estimates are not on the bus: an all-NaN column
            warnings.simplefilter("ignore", RuntimeWarning)
            d = figures(res)
        d.update(loop=loop, frames_sent=plant.frames_out, frames_received=plant.frames_in,
                 stopped_by_signal=stop.flag, fault_wall_time=plant.fault_wall, sched=sched, rusage=rusage(),
                 events=[list(e) for e in res.events])
        args.result_json.write_text(json.dumps(d, indent=1, default=float))
    if not args.quiet:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            print(summary_table(res))
        print(f"  sent {plant.frames_out} frames, received {plant.frames_in}; loop {loop}")
    sys.stdout.flush()
    return 0 if res.passed else 1
