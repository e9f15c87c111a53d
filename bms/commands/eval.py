"""``bms eval``: run a SOC estimator over a lab CSV and score it against soc_ref."""

from __future__ import annotations

import json
import sys

from bms.soc.estimator import ESTIMATORS


def register(sub) -> None:
    ap = sub.add_parser("eval", help="score a SOC estimator on a lab CSV (time_s,current_a,voltage_v,temperature_c,soc_ref)",
                        description=__doc__)
    ap.add_argument("--profile", required=True, help="cell profile name (shipped) or TOML path")
    ap.add_argument("--data", required=True, help="lab CSV (.csv or .csv.gz); shipped files by relative name")
    ap.add_argument("--estimator", default="ekf", choices=sorted(ESTIMATORS), help="default: ekf")
    ap.add_argument("--start-s", type=float, default=0.0, help="start time T in s from the file start (default 0)")
    ap.add_argument("--soc-error", type=float, default=None,
                    help="initialise at soc_ref(T) + D (fraction, e.g. -0.2); default: from the rest voltage")
    ap.add_argument("--current-offset-a", type=float, default=0.0, help="added to the measured current (A)")
    ap.add_argument("--current-gain", type=float, default=1.0, help="multiplies the measured current")
    ap.add_argument("--plot", metavar="PNG", help="write estimate vs reference, error, current and voltage")
    ap.add_argument("--json", action="store_true", help="print exactly one JSON object with the metrics")
    ap.set_defaults(func=run)


def run(args) -> int:
    from bms.evaluate import evaluate, plot

    res = evaluate(args.profile, args.data, args.estimator, args.start_s, args.soc_error,
                   args.current_offset_a, args.current_gain)
    if args.plot:
        plot(res, args.plot, title=f"{args.estimator} on {args.data}")
    if args.json:
        print(json.dumps(res.metrics))
    else:
        m = res.metrics
        conv = "never" if m["converge_s"] is None else f"{m['converge_s']:.0f} s"
        after = "n/a" if m["rmse_after_2h_pct"] is None else f"{m['rmse_after_2h_pct']:.2f} %"
        print(f"{args.estimator} on {args.data} ({len(res.time_s)} samples)")
        print(f"  RMSE {m['rmse_pct']:.2f} %   max |error| {m['max_abs_pct']:.2f} %   "
              f"converged (<3 %) after {conv}   RMSE after 2 h {after}")
        if args.plot:
            print(f"  plot: {args.plot}")
    sys.stdout.flush()
    return 0
