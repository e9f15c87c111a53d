"""``bms run``: the BMS node on a real or virtual CAN bus, in real time.

    bms run --pack heavy_duty_192s -i socketcan -c can0 [-b 500000]
    bms run -i virtual -c demo --duration-s 10 --stats-json stats.json

The bus options are python-can's own (``can.cli``: -i/-c/-b, --bus-kwargs, ...); without -i
python-can's configuration (``~/can.ini``, ``$CAN_INTERFACE``, ...) applies, and
``--can-config FILE [--can-context SECTION]`` reads a python-can config file. A one-line live
status goes to stderr. Ctrl-C / SIGTERM first request the contactors open (STANDBY under the
break-current rule), send a final state frame, then shut the bus down.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub) -> None:
    import can.cli

    from bms.commands._realtime import add_rt_argument

    p = sub.add_parser("run", help="run the BMS node on a CAN bus (real time)", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pack", default=None, help="pack name or TOML (default: the map's pack)")
    p.add_argument("--map", default="bms_fil_heavy_duty_192s", help="signal map name or TOML")
    p.add_argument("--duration-s", type=float, default=None, metavar="S", help="stop after S seconds (default: run until Ctrl-C)")
    p.add_argument("--shutdown-s", type=float, default=3.0, metavar="S",
                   help="at most this long waiting for the contactors to open at shutdown (default 3)")
    p.add_argument("--state", type=Path, default=None, metavar="FILE",
                   help="persistent state (.npz): loaded at start if it exists, saved at shutdown")
    p.add_argument("--can-config", type=Path, default=None, metavar="FILE", help="python-can config file")
    p.add_argument("--can-context", default=None, metavar="SECTION", help="section of the config file")
    p.add_argument("--stats-json", type=Path, default=None, metavar="FILE", help="write the node statistics here at exit")
    add_rt_argument(p)
    p.add_argument("--rt-release-ms", type=float, default=2.0, metavar="MS",
                   help="with --rt-priority: wake MS before each step's deadline, run the step, spin to "
                        "the deadline and send its frames then (bms.node.rtloop; up to MS of CPU per "
                        "10 ms step); 0: sleep to the deadline, step and send; default 2")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--status", dest="status", action="store_true", default=True, help="live status line (default)")
    g.add_argument("-q", "--quiet", dest="status", action="store_false", help="no status line")
    can.cli.add_bus_arguments(p, group_title="CAN bus (python-can)")
    p.set_defaults(func=run)


def _bus(args):
    import can.cli
    import can.util

    from bms.can.dbc import bitrate_bps

    extra = {}
    if args.can_config is not None:
        if not args.can_config.is_file():
            raise FileNotFoundError(f"{args.can_config}: no such python-can config file")
        extra = can.util.load_file_config(str(args.can_config), args.can_context)
    if getattr(args, "bitrate", None) is None and "bitrate" not in extra:
        args.bitrate = bitrate_bps()  # the DBC's nominal bit rate
    for k, v in extra.items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)
    return can.cli.create_bus_from_namespace(args)


def run(args: argparse.Namespace) -> int:
    from bms.commands._realtime import apply_rt_priority, freeze_heap, rusage
    from bms.commands._signals import StopOnSignals
    from bms.node import BmsNode, WallClock, status_line
    from bms.node.node import warm_up
    from bms.signal_map import load_map
    from bms.statefile import load_state, save_state

    smap = load_map(args.map, pack=args.pack)
    warm_up(smap)  # numba compile before real time starts
    state = None
    if args.state is not None and args.state.is_file():
        state = load_state(smap.pack.params(), args.state)
    bus = _bus(args)
    stop = StopOnSignals().install()
    tty = sys.stderr.isatty()

    def show(s: dict) -> None:
        line = status_line(s)
        sys.stderr.write(("\r" + line + "\033[K") if tty else (line + "\n"))
        sys.stderr.flush()

    opened = False
    try:
        node = BmsNode(bus, smap, clock=WallClock(), state=state)
        # real time starts here, with the bus open and the node built: under SCHED_FIFO those took
        # the guest's one CPU for ~0.3 s in user-mode Linux, the pack fell silent meanwhile and the
        # BMS latched COMM_ISENSE at power-up
        freeze_heap()   # start-up's objects out of the collector's passes
        sched = apply_rt_priority(args.rt_priority)
        node.run(args.duration_s, stop=stop, on_status=show if args.status else None,
                 status_period_s=0.5 if tty else 1.0,
                 wake_on_frames=args.rt_priority is None,   # SCHED_FIFO: to the deadlines only (BmsNode.run)
                 release_s=0.0 if args.rt_priority is None else args.rt_release_ms * 1e-3)
        opened = node.shutdown(max_s=args.shutdown_s)
        if args.status:
            show(node.status())
            sys.stderr.write("\n")
        if args.state is not None:
            save_state(node.st, args.state, rested=opened)   # rests from now on if the contactors opened
        if args.stats_json is not None:
            args.stats_json.write_text(json.dumps({"stats": node.stats.as_dict(), "status": node.status(), "sched": sched,
                                                  "wake_late": node.wake.summary(), "rusage": rusage()},
                                                  indent=1, default=float))
    finally:
        stop.restore()
        bus.shutdown()
    if not opened:
        print("bms run: contactors still closed at shutdown (break-current rule)", file=sys.stderr)
        return 1
    return 0
