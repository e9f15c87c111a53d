"""``bms replay FILE``: feed a recorded bus log (candump ``.log``, ``.asc``, ``.blf``) into the BMS
node offline and report what it would have estimated and decided: its states, contactor
commands and faults with their times, SOC and limits, and its receive statistics; ``--png``
draws the demo's figure (``hil.report``). As fast as possible by default; ``--realtime`` paces
the frames as recorded. Exit 0 (1 if the log holds no frame; 2 on a bad file or option)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("replay", help="replay a recorded CAN log into the BMS node (offline)", description=__doc__)
    p.add_argument("log", type=Path, help="recorded log (.log / .asc / .blf)")
    p.add_argument("--map", default="bms_fil_heavy_duty_192s", help="signal map name or TOML")
    p.add_argument("--pack", default=None, help="pack name or TOML (default: the map's pack)")
    p.add_argument("--realtime", action="store_true", help="pace the frames on the wall clock as recorded")
    p.add_argument("--record-period-s", type=float, default=1.0, metavar="S", help="sampling of the report (default 1 s)")
    p.add_argument("--json", action="store_true", help="print exactly one JSON object")
    p.add_argument("--png", type=Path, default=None, metavar="FILE", help="write the figure")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hil.replay import replay, summary

    if not args.record_period_s > 0:
        raise ValueError(f"--record-period-s must be positive, got {args.record_period_s}")
    try:
        res = replay(args.log, args.map, args.pack, args.realtime, args.record_period_s)
    except ValueError as exc:
        print(f"bms replay: {exc}", file=sys.stderr)
        return 1
    s = summary(res)
    if args.png is not None:
        from hil.report import plot

        args.png.parent.mkdir(parents=True, exist_ok=True)
        plot(res, str(args.png), title=f"{res.scenario.name}: what the BMS would have estimated and decided")
        s["png"] = str(args.png)
    if args.json:
        print(json.dumps(s))
        return 0
    print(f"replayed {s['frames']} frames ({s['span_s']} s of bus time) in {s['wall_s']} s")
    print(f"  states: {' '.join(s['states'])}")
    for t, kind, text in s["events"]:
        print(f"  {t:10.3f} s  {kind:<10} {text}")
    print("  final: " + "  ".join(f"{k} {v}" for k, v in s["final"].items()))
    print(f"  frames accepted {s['frames_accepted']}, rejected {s['rejected']}, ignored {s['ignored']}")
    return 0
