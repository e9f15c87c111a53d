"""``bms tune identify``: a cell profile from lab data through the same pipeline as the shipped
profiles (:func:`bms.fit.fit_profile`, ``bms profile fit``), with the evidence a reviewer needs:
the voltage RMSE / max per drive file, the residual over time (:func:`bms.fit.plot.plot_drives`)
and the residual's distribution and dependence on SOC (:func:`plot_residuals`).

Temperature tables: fitted at every drive-cycle temperature, the slow curves give OCV and
hysteresis at each of their temperatures, and the documented rule of
:mod:`bms.fit.temperature` fills the rest (``[fit] temperature_rule`` in the written TOML)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bms.fit import FitResult, fit_profile
from bms.profile import save_profile


def identify(name: str, ocv: str, ocv_current_a: float, dynamic: list[str], capacity_ah: float, eta: float,
             datasheet: str, output: str | Path, soc_step: float = 0.01, iterations: int = 3,
             command: str | None = None, log=print) -> FitResult:
    """Fit and write the profile TOML (``command`` recorded as its provenance)."""
    res = fit_profile(name, ocv, ocv_current_a, dynamic, capacity_ah, eta, datasheet, dsoc=soc_step,
                      iterations=iterations, log=log)
    if command:
        res.profile.fit["command"] = command
    save_profile(res.profile, output)
    return res


def fit_table(res: FitResult) -> list[dict]:
    """Per drive file: temperature, voltage RMSE and max |error| (mV), residual percentiles."""
    rows = []
    for rec, f in zip(res.records, res.drives):
        resid = 1e3 * (f.v_model - rec.voltage_v)
        rows.append({"file": Path(rec.path).name, "temp_c": float(f.temp_c), "rmse_mv": float(1e3 * f.rmse_v),
                     "max_abs_mv": float(1e3 * f.max_abs_v), "p95_abs_mv": float(np.percentile(np.abs(resid), 95)),
                     "mean_mv": float(np.mean(resid))})
    return rows


def format_table(rows: list[dict]) -> str:
    w = max([20] + [len(r["file"]) for r in rows])
    out = [f"  {'file':{w}s} {'T (C)':>6s} {'RMSE (mV)':>10s} {'max (mV)':>9s} {'p95 (mV)':>9s} {'mean (mV)':>10s}"]
    for r in rows:
        out.append(f"  {r['file']:{w}s} {r['temp_c']:6.1f} {r['rmse_mv']:10.2f} {r['max_abs_mv']:9.1f} "
                   f"{r['p95_abs_mv']:9.1f} {r['mean_mv']:10.2f}")
    return "\n".join(out)


def plot_residuals(res: FitResult, path: str | Path) -> Path:
    """Per drive file: histogram of model - measured voltage, and the residual against the
    reference SOC (binned mean and 5-95 % band), where a wrong OCV or hysteresis shows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(res.drives)
    fig, axes = plt.subplots(2, n, figsize=(6 * n, 6.5), squeeze=False)
    for c, (rec, f) in enumerate(zip(res.records, res.drives)):
        resid = 1e3 * (f.v_model - rec.voltage_v)
        lim = max(5.0, float(np.percentile(np.abs(resid), 99.5)))
        ax = axes[0, c]
        ax.hist(np.clip(resid, -lim, lim), bins=80, color="C0")
        ax.set_xlabel("model - measured (mV)")
        ax.set_ylabel("samples")
        ax.set_title(f"{Path(rec.path).name} ({f.temp_c:g} C): RMSE {1e3 * f.rmse_v:.1f} mV, "
                     f"max {1e3 * f.max_abs_v:.0f} mV")
        ax = axes[1, c]
        soc = rec.soc_ref
        edges = np.linspace(0, 1, 21)
        mid, mean, lo, hi = [], [], [], []
        for a, b in zip(edges[:-1], edges[1:]):
            sel = resid[(soc >= a) & (soc < b)]
            if sel.size >= 10:
                mid.append(50 * (a + b))
                mean.append(sel.mean())
                lo.append(np.percentile(sel, 5))
                hi.append(np.percentile(sel, 95))
        ax.fill_between(mid, lo, hi, color="C1", alpha=0.3, label="5-95 %")
        ax.plot(mid, mean, "C1o-", ms=3, label="mean")
        ax.axhline(0, color="k", lw=0.5)
        ax.set_xlabel("reference SOC (%)")
        ax.set_ylabel("residual (mV)")
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
