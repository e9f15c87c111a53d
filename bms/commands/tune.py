"""``bms tune``: the SOC tuning workbench (docs/soc-tuning.md).

* ``identify``  fit a cell profile TOML from slow OCV curves and drive cycles (the pipeline of
  ``bms profile fit``), print and plot the voltage fit
* ``eval``      estimators x datasets x perturbations: table, ``--json``, ``--html`` report
* ``sweep``     grid / random search of estimator tuning in one compiled kernel per chunk, over
  all cores or a Dask cluster (``--scheduler``), resumable, with a Pareto plot
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from bms.commands.profile import add_fit_inputs

DATA_HELP = ("dataset spec: PATH.csv[.gz] (lab, truth soc_ref), PATH.log/.asc/.blf (CAN, truth: coulomb count), "
             "model:PATH (lab current through the cell model), scenario:NAME; options after commas, e.g. "
             "dyn.csv.gz,start=3600,duration=7200,every=2 (see bms/tune/datasets.py)")
PERT_HELP = "perturbation preset or key=value,... (see bms/tune/perturb.py); default: the standard set"


def register(sub) -> None:
    p = sub.add_parser("tune", help="SOC tuning workbench: identify a profile, evaluate and sweep estimators",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ts = p.add_subparsers(dest="tune_cmd", metavar="ACTION")
    ts.required = True

    f = ts.add_parser("identify", help="fit a cell profile TOML from lab data and show the fit")
    add_fit_inputs(f)
    f.add_argument("--iterations", type=int, default=3, help="OCV/dynamic alternations (default 3)")
    f.add_argument("-o", "--output", required=True, help="profile TOML to write")
    f.add_argument("--plot", help="PNG: measured vs model voltage and residual over time per drive file")
    f.add_argument("--residuals", help="PNG: residual histogram and residual vs SOC per drive file")
    f.add_argument("--json", action="store_true", help="print the per-file fit table as one JSON object")
    f.set_defaults(func=run_identify)

    e = ts.add_parser("eval", help="estimators x datasets x perturbations, scored against the truth")
    _common(e)
    e.add_argument("--estimator", action="append", help="ekf, cc or NAME:key=value,... (repeatable; default ekf and cc)")
    e.add_argument("--html", help="write a self-contained HTML report with plots")
    e.add_argument("--json", action="store_true", help="print one JSON object {runs: [...]} instead of the table")
    e.set_defaults(func=run_eval)

    s = ts.add_parser("sweep", help="search estimator tuning (grid or random) over datasets x perturbations")
    _common(s)
    s.add_argument("--estimator", default="ekf", help="estimator to tune (default ekf)")
    s.add_argument("--base", default="", help="fixed tuning overrides key=value,... applied to every set")
    s.add_argument("--param", action="append", required=True,
                   help="search axis KEY=v1,v2,... or KEY=log:LO:HI:N or KEY=lin:LO:HI:N (repeatable)")
    s.add_argument("--random", type=int, metavar="N", help="random search: N sets sampled from the axes' ranges "
                   "(default: the full grid)")
    s.add_argument("--seed", type=int, default=0, help="random search seed (default 0)")
    s.add_argument("--metric", default="rmse_pct", help="rmse_pct (default), max_abs_pct, worst_window_pct, "
                   "converge_s, rmse_after_2h_pct")
    s.add_argument("--objective", default="mean", choices=("mean", "worst"), help="aggregate over runs (default mean)")
    s.add_argument("-o", "--output", required=True, help="result file (JSON lines); an existing one is resumed")
    s.add_argument("--chunk", type=int, help="parameter sets per kernel call (default 16 x cores: one block "
                   "of SIMD lanes per core)")
    s.add_argument("--scheduler", metavar="ADDRESS", help="Dask scheduler address: split the chunks over its workers")
    s.add_argument("--pareto", help="PNG: nominal RMSE vs worst max error of every set, Pareto front")
    s.add_argument("--top", type=int, default=5, help="sets listed at the end (default 5)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.set_defaults(func=run_sweep)


def _common(ap) -> None:
    ap.add_argument("--profile", required=True, help="cell profile name (shipped) or TOML path")
    ap.add_argument("--data", action="append", required=True, help=DATA_HELP + " (repeatable)")
    ap.add_argument("--perturb", action="append", help=PERT_HELP + " (repeatable)")
    ap.add_argument("--window-s", type=float, default=600.0, help="worst-window length (default 600 s)")


def _inputs(args):
    from bms.profile import load_profile
    from bms.tune.datasets import load_dataset
    from bms.tune.perturb import STANDARD, parse

    prof = load_profile(args.profile)
    datasets = [load_dataset(d, prof) for d in args.data]
    perts = [parse(x) for x in (args.perturb or STANDARD)]
    if len({d.name for d in datasets}) != len(datasets):
        raise ValueError("two datasets share a name (the same file twice?): results would be merged")
    if len({pt.name for pt in perts}) != len(perts):
        raise ValueError("two perturbations share a name; give name=... to tell them apart")
    return prof, datasets, perts


def run_identify(args: argparse.Namespace) -> int:
    from bms.fit.plot import plot_drives
    from bms.tune.identify import fit_table, format_table, identify, plot_residuals

    cmd = "bms tune identify " + shlex.join([
        "--name", args.name, "--ocv", args.ocv, "--ocv-current-a", f"{args.ocv_current_a:g}", "--dynamic", *args.dynamic,
        "--capacity-ah", f"{args.capacity_ah:g}", "--eta", f"{args.eta:g}", "--datasheet", args.datasheet,
        "--soc-step", f"{args.soc_step:g}", "--iterations", str(args.iterations), "-o", str(args.output)])
    res = identify(args.name, args.ocv, args.ocv_current_a, args.dynamic, args.capacity_ah, args.eta, args.datasheet,
                   args.output, args.soc_step, args.iterations, command=cmd,
                   log=(lambda s: print(s, file=sys.stderr)) if args.json else print)
    rows = fit_table(res)
    if args.plot:
        plot_drives(res.records, res.drives, args.plot)
    if args.residuals:
        plot_residuals(res, args.residuals)
    if args.json:
        print(json.dumps({"profile": str(args.output), "files": rows}))
        return 0
    print(f"wrote {args.output}; voltage fit of the final profile per drive file (model - measured):")
    print(format_table(rows))
    for what, path in (("plot", args.plot), ("residuals", args.residuals)):
        if path:
            print(f"{what}: {path}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from bms.tune.evalrun import evaluate_matrix, parse_estimator, table

    prof, datasets, perts = _inputs(args)
    ests = [parse_estimator(s) for s in (args.estimator or ["ekf", "cc"])]
    runs = evaluate_matrix(prof, datasets, ests, perts, args.window_s)
    if args.html:
        from bms.tune.report import write_report

        notes = [f"profile {prof.name} ({prof.path})"] + [f"dataset {d.name}: {len(d)} samples, truth: {d.truth}"
                                                          for d in datasets]
        write_report(runs, args.html, f"SOC estimators on {', '.join(d.name for d in datasets)}", notes)
    if args.json:
        print(json.dumps({"profile": prof.name, "runs": [r.row() for r in runs]}))
    else:
        print(table(runs))
        if args.html:
            print(f"report: {args.html}")
    return 0


def run_sweep(args: argparse.Namespace) -> int:
    from bms.tune.evalrun import parse_estimator
    from bms.tune.sweep import best_spec, grid, parse_axis, plot_pareto, random_sets, run_sweep as sweep, set_key

    base = parse_estimator(f"{args.estimator}:{args.base}").tuning
    prof, datasets, perts = _inputs(args)
    axes = [parse_axis(a) for a in args.param]
    if args.random is not None and args.random < 1:
        raise ValueError("--random N needs N >= 1")
    sets = random_sets(axes, args.random, args.seed) if args.random else grid(axes)
    recs = sweep(prof, datasets, perts, sets, args.output, args.estimator, base, args.metric, args.objective,
                 args.chunk, args.scheduler, progress=not args.no_progress, window_s=args.window_s)
    wanted = {set_key(s) for s in sets}
    ranked = sorted((r for r in recs if r["key"] in wanted), key=lambda r: r["score"])
    if args.pareto:
        plot_pareto(ranked, args.pareto, f"{args.estimator} on {len(datasets)} dataset(s) x {len(perts)} perturbations")
    print(f"{len(ranked)} parameter sets in {args.output} ({args.metric}, {args.objective} over "
          f"{len(datasets)} dataset(s) x {len(perts)} perturbations); best first:")
    print(f"  {'score':>8s} {'nominal RMSE %':>15s} {'worst max %':>12s}  parameters")
    for r in ranked[: args.top]:
        print(f"  {r['score']:8.3f} {r['accuracy']:15.3f} {r['robustness']:12.3f}  {r['key']}")
    if ranked:
        print(f"best: {best_spec(args.estimator, base, ranked[0])}")
    if args.pareto:
        print(f"pareto: {args.pareto}")
    return 0
