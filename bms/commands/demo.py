"""``bms demo``: the main job on its built-in default -- the reference pack heavy_duty_192s in
closed loop (virtual pack, VCU and charger against the BMS node over python-can's virtual bus,
lock-step on a simulated clock) through a yard tractor shift, a 20-minute fast charge and an
injected fault (a cell-monitoring board going silent). Prints the summary table and writes the
figure, the candump log and the JSON summary to ``out/demo/``. Exit code 1 if a verdict fails.
(The SOC evaluation on the lab data that the demo used to be is ``bms eval-all``.)"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def register(sub) -> None:
    ap = sub.add_parser("demo", help="run the main job on its built-in default", description=__doc__)
    ap.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    ap.add_argument("--scenario", default="demo", help="scenario name or TOML (default: the shipped 'demo')")
    ap.add_argument("--blf", action="store_true", help="also write a .blf log")
    ap.add_argument("--max-s", type=float, default=None, help="shorten to this many simulated seconds")
    ap.set_defaults(func=run)


def run(args) -> int:
    from bms.commands._progress import sim_bar
    from hil.cosim import run_scenario
    from hil.report import figures, plot, summary_table
    from hil.scenario import load_scenario, shorten
    from hil.warm import DEMO, warm

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scn = load_scenario(args.scenario)
    if args.max_s is not None:
        scn = shorten(scn, args.max_s)
    # the BMS node's and the pack's kernels, compiled side by side into numba's cache (minutes on
    # a fresh install, a few seconds after), so the progress bar below measures the simulation
    print("loading the numba kernels (BMS node and pack side by side; a fresh install compiles "
          "them once, ~1-2 min)...", file=sys.stderr, flush=True)
    print(f"  ready in {warm(DEMO):.1f} s", file=sys.stderr)
    bar, progress = sim_bar(scn.duration_s, f"{scn.name} (heavy_duty_192s)")
    res = run_scenario(scn, "virtual", out / f"{scn.name}.log", out / f"{scn.name}.blf" if args.blf else None, progress)
    bar.close()
    png = plot(res, str(out / f"{scn.name}.png"))
    (out / f"{scn.name}.json").write_text(json.dumps(figures(res), indent=1))
    print(summary_table(res))
    for p in [*res.log_paths, png, str(out / f"{scn.name}.json")]:
        print(f"  wrote {p}")
    return 0 if res.passed else 1
