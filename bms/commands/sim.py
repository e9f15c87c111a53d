"""``bms sim SCENARIO``: run a scenario (a shipped name or a TOML path) in closed loop -- the
virtual pack, VCU and charger against the BMS node on a simulated clock -- and check its
verdicts. Exit code 1 when a verdict fails (2 on a configuration error)."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def register(sub) -> None:
    ap = sub.add_parser("sim", help="run a closed-loop scenario (TOML) and check its verdicts", description=__doc__)
    ap.add_argument("scenario", help="scenario name (hil/scenarios) or TOML path; 'list' lists the shipped ones")
    ap.add_argument("--json", action="store_true", help="print exactly one JSON object (verdicts and figures)")
    ap.add_argument("--log", metavar="PATH", help="write every frame as a candump .log")
    ap.add_argument("--blf", metavar="PATH", help="also write a Vector .blf")
    ap.add_argument("--png", metavar="PATH", help="write the figure")
    ap.add_argument("--transport", choices=("virtual", "direct"), default="virtual",
                    help="python-can virtual bus (default) or direct frame hand-over (same frames, faster)")
    ap.add_argument("--max-s", type=float, default=None, help="shorten the scenario to this many simulated seconds")
    ap.add_argument("--speedup", action="store_true", help="print the simulated / wall time ratio")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    ap.set_defaults(func=run)


def run(args) -> int:
    from hil.cosim import run_scenario
    from hil.report import figures, plot, summary_table
    from hil.scenario import load_scenario, shipped_names, shorten

    if args.scenario == "list":
        print("\n".join(shipped_names()))
        return 0
    scn = load_scenario(args.scenario)
    if args.max_s is not None:
        if not args.max_s > 0:
            raise ValueError(f"--max-s must be positive, got {args.max_s}")
        scn = shorten(scn, args.max_s)
    bar = None
    progress = None
    if not args.json and not args.no_progress:
        from bms.commands._progress import sim_bar

        bar, progress = sim_bar(scn.duration_s, scn.name)
    res = run_scenario(scn, args.transport, args.log, args.blf, progress)
    if bar is not None:
        bar.close()
    if args.png:
        Path(args.png).parent.mkdir(parents=True, exist_ok=True)
        plot(res, args.png)
    if args.json:
        print(json.dumps(figures(res)))
    else:
        print(summary_table(res))
        if args.speedup:
            print(f"speedup {res.speedup:.1f}x real time")
        for p in [*res.log_paths, *([args.png] if args.png else [])]:
            print(f"  wrote {p}")
    sys.stdout.flush()
    return 0 if res.passed else 1
