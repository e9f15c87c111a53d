"""Measured vs model voltage and the residual, one panel pair per drive record (PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_drives(records, fits, path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(records)
    fig, axes = plt.subplots(2, n, figsize=(6 * n, 6), squeeze=False, sharex="col",
                             gridspec_kw={"height_ratios": [2, 1]})
    for c, (rec, f) in enumerate(zip(records, fits)):
        t_h = (rec.time_s - rec.time_s[0]) / 3600.0
        ax, axr = axes[0, c], axes[1, c]
        ax.plot(t_h, rec.voltage_v, lw=0.5, label="measured")
        ax.plot(t_h, f.v_model, lw=0.5, label="model")
        ax.set_title(f"{Path(rec.path).name} ({f.temp_c:g} C): RMSE {1e3 * f.rmse_v:.1f} mV")
        ax.set_ylabel("cell voltage (V)")
        ax.legend(loc="lower left")
        axr.plot(t_h, 1e3 * (f.v_model - rec.voltage_v), lw=0.4, color="k")
        axr.set_ylabel("model - measured (mV)")
        axr.set_xlabel("time (h)")
        lim = max(20.0, float(np.percentile(np.abs(1e3 * (f.v_model - rec.voltage_v)), 99.5)))
        axr.set_ylim(-lim, lim)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
