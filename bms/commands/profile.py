"""``bms profile``: cell profiles. ``bms profile fit`` builds a profile TOML from lab data
(slow OCV curves + drive cycles), printing the voltage RMSE per file; ``bms profile check``
loads a profile and scores it on drive records."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path


def add_fit_inputs(f) -> None:
    """The lab-data inputs of a profile fit, shared by ``bms profile fit`` and ``bms tune identify``."""
    f.add_argument("--name", required=True, help="profile name (cell.name)")
    f.add_argument("--ocv", required=True, help="slow-curve table: soc,vdis_<T>,vchg_<T>,...")
    f.add_argument("--ocv-current-a", type=float, required=True, help="slow-test current magnitude (A)")
    f.add_argument("--dynamic", nargs="+", required=True, help="drive-cycle CSV(.gz) files, one per temperature")
    f.add_argument("--capacity-ah", type=float, required=True)
    f.add_argument("--eta", type=float, required=True, help="coulombic efficiency of charge")
    f.add_argument("--datasheet", required=True, help="TOML with a [cell] table of datasheet limits")
    f.add_argument("--soc-step", type=float, default=0.01, help="SOC grid step (default 0.01)")


def register(sub) -> None:
    p = sub.add_parser("profile", help="cell profiles: fit from lab data, check against drive records")
    psub = p.add_subparsers(dest="profile_cmd", metavar="ACTION")
    psub.required = True
    f = psub.add_parser("fit", help="fit a cell profile TOML from slow OCV curves and drive cycles")
    add_fit_inputs(f)
    f.add_argument("--iterations", type=int, default=1, help="passes over the drive files (default 1)")
    f.add_argument("--fit-current-offset", action="store_true",
                   help="also fit each record's constant current-sensor offset (a nuisance, reported in [fit])")
    f.add_argument("--rc-soc-factor", action="store_true",
                   help="also fit the RC resistances' SOC factor G(T, z) (rc_soc_factor), in a second stage with "
                        "the other parameters held, and read the slow curves with the SOC-dependent "
                        "polarisation I R_ss(z) (docs/cell-profiles.md)")
    f.add_argument("-o", "--output", required=True, help="profile TOML to write")
    f.add_argument("--plot", help="PNG: measured vs model voltage and residual per drive file")
    f.set_defaults(func=run_fit)
    c = psub.add_parser("check", help="voltage RMSE of a profile on drive records")
    c.add_argument("profile", help="profile name or TOML path")
    c.add_argument("data", nargs="+", help="drive-cycle CSV(.gz) files")
    c.add_argument("--plot", help="PNG: measured vs model voltage and residual")
    c.set_defaults(func=run_check)


def _table(rows) -> None:
    print(f"  {'file':32s} {'T (C)':>6s} {'RMSE (mV)':>10s} {'<=97% SOC':>10s} {'max (mV)':>9s}")
    for r in rows:
        print(f"  {Path(r.path).name:32s} {r.temp_c:6.1f} {1e3 * r.rmse_v:10.2f} {1e3 * r.rmse_fit_v:10.2f} "
              f"{1e3 * r.max_abs_v:9.1f}")


def run_fit(args: argparse.Namespace) -> int:
    from bms.fit import fit_profile
    from bms.profile import save_profile

    res = fit_profile(args.name, args.ocv, args.ocv_current_a, args.dynamic, args.capacity_ah, args.eta,
                      args.datasheet, dsoc=args.soc_step, iterations=args.iterations,
                      fit_offset=args.fit_current_offset, rc_soc=args.rc_soc_factor)
    res.profile.fit["command"] = "bms profile " + shlex.join(_argv(args))
    save_profile(res.profile, args.output)
    print(f"wrote {args.output}; voltage error of the final profile per drive file:")
    _table(res.drives)
    if args.plot:
        from bms.fit.plot import plot_drives
        plot_drives(res.records, res.drives, args.plot)
        print(f"plot: {args.plot}")
    return 0


def _argv(args: argparse.Namespace) -> list[str]:
    """The fit command line rebuilt from parsed arguments (for the [fit] provenance)."""
    out = ["fit", "--name", args.name, "--ocv", args.ocv, "--ocv-current-a", f"{args.ocv_current_a:g}",
           "--dynamic", *args.dynamic, "--capacity-ah", f"{args.capacity_ah:g}", "--eta", f"{args.eta:g}",
           "--datasheet", args.datasheet, "--soc-step", f"{args.soc_step:g}", "--iterations", str(args.iterations)]
    if args.fit_current_offset:
        out.append("--fit-current-offset")
    if args.rc_soc_factor:
        out.append("--rc-soc-factor")
    out += ["-o", args.output]
    return out


def run_check(args: argparse.Namespace) -> int:
    from bms.fit.dynamic import score
    from bms.labdata import load_csv
    from bms.profile import load_profile

    prof = load_profile(args.profile)
    p = prof.params
    records = [load_csv(d, require_soc_ref=True) for d in args.data]
    rows = [score(p, rec) for rec in records]
    print(f"profile {prof.name} ({prof.path}):")
    _table(rows)
    if args.plot:
        from bms.fit.plot import plot_drives
        plot_drives(records, rows, args.plot)
        print(f"plot: {args.plot}")
    return 0
