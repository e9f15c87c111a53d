"""``bms eval-all``: the SOC evaluation of the default
estimator with the shipped profiles on the shipped lab data: four runs (three Winston
LFP100AHA drive tests at 25, 5 and -5 C and the A123 dynamic test), a summary table and one
PNG per run in ``out/eval/``.
"""

from __future__ import annotations

from pathlib import Path

RUNS = (
    ("winston_lfp100", "winston_lfp100/udds_P25.csv.gz", "Winston LFP100AHA, UDDS blocks, 25 C"),
    ("winston_lfp100", "winston_lfp100/udds_P05_approx.csv.gz", "Winston LFP100AHA, UDDS blocks, 5 C"),
    ("winston_lfp100", "winston_lfp100/udds_N05_approx.csv.gz", "Winston LFP100AHA, UDDS blocks, -5 C"),
    ("a123_26650", "a123_26650/dyn_25C_script1.csv.gz", "A123 ANR26650M1B, dynamic script, 25 C"),
)


def register(sub) -> None:
    ap = sub.add_parser("eval-all", help="SOC evaluation on the shipped lab data (table + PNGs)", description=__doc__)
    ap.add_argument("--out", default="out/eval", help="folder for the figures (default out/eval)")
    ap.add_argument("--estimator", default="ekf", help="estimator (default ekf)")
    ap.set_defaults(func=run)


def run(args) -> int:
    from tqdm import tqdm

    from bms.evaluate import evaluate, plot

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for profile, data, title in tqdm(RUNS, desc="SOC evaluation", unit="run"):
        res = evaluate(profile, data, args.estimator)
        png = out / (Path(data).name.split(".")[0] + ".png")
        plot(res, str(png), title=f"{args.estimator}: {title}")
        rows.append((title, res.metrics, png))
    print(f"\nSOC estimator '{args.estimator}', initialised from the rest voltage as the firmware does")
    print(f"{'run':<42} {'RMSE %':>7} {'max %':>7} {'RMSE>2h %':>10}  figure")
    for title, m, png in rows:
        after = m["rmse_after_2h_pct"]
        print(f"{title:<42} {m['rmse_pct']:>7.2f} {m['max_abs_pct']:>7.2f} "
              f"{'' if after is None else format(after, '.2f'):>10}  {png}")
    return 0
