"""Self-contained HTML report of ``bms tune eval``: the metric table, a heat map of RMSE per
estimator x perturbation, and per dataset the estimate vs truth, the error of every run and
the error by SOC band. Plots are PNGs embedded as base64: one file, no external assets."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np

from bms.tune.evalrun import Run
from bms.tune.metrics import N_BANDS


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    _plt().close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _uniq(seq):
    return list(dict.fromkeys(seq))


def heatmap(runs: list[Run], metric: str = "rmse_pct") -> str:
    """Metric per (estimator, dataset) row x perturbation column, annotated."""
    plt = _plt()
    rows = _uniq((r.estimator, r.dataset) for r in runs)
    cols = _uniq(r.perturbation for r in runs)
    val = np.full((len(rows), len(cols)), np.nan)
    for r in runs:
        val[rows.index((r.estimator, r.dataset)), cols.index(r.perturbation)] = r.metrics[metric]
    fig, ax = plt.subplots(figsize=(1.2 * len(cols) + 4, 0.5 * len(rows) + 1.8))
    im = ax.imshow(val, cmap="viridis_r", aspect="auto")
    ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), [f"{e} / {d}" for e, d in rows])
    for i in range(len(rows)):
        for j in range(len(cols)):
            if np.isfinite(val[i, j]):
                ax.text(j, i, f"{val[i, j]:.2f}", ha="center", va="center", color="w" if val[i, j] > np.nanmean(val) else "k",
                        fontsize=8)
    fig.colorbar(im, ax=ax, label=f"{metric} (% SOC)")
    ax.set_title(f"{metric} per estimator x perturbation")
    fig.tight_layout()
    return _png(fig)


def dataset_figure(runs: list[Run], nominal: str) -> str:
    """Estimate vs truth (nominal runs), error of every run, error by SOC band (nominal)."""
    plt = _plt()
    fig, ax = plt.subplots(3, 1, figsize=(10, 10))
    r0 = runs[0]
    th = (r0.time_s - r0.time_s[0]) / 3600.0
    ax[0].plot(th, 100 * r0.soc_true, "k", lw=1.4, label="truth")
    ests = _uniq(r.estimator for r in runs)
    width = 0.8 / max(len(ests), 1)
    for n, e in enumerate(ests):
        for r in runs:
            if r.estimator != e:
                continue
            if r.perturbation == nominal:
                ax[0].plot(th, 100 * r.soc_est, lw=0.9, color=f"C{n}", label=e)
                bands = [np.nan if v is None else v for v in r.metrics["band_rmse_pct"]]
                ax[2].bar(np.arange(N_BANDS) * 10 + 5 + 10 * (n * width - 0.4 + width / 2), bands, width=10 * width,
                          color=f"C{n}", label=e)
            ax[1].plot(th, 100 * (r.soc_est - r.soc_true), lw=0.6, color=f"C{n}",
                       alpha=1.0 if r.perturbation == nominal else 0.35)
    ax[0].set_ylabel("SOC (%)")
    ax[0].set_xlabel("time (h)")
    ax[0].legend(loc="best", fontsize=8)
    ax[0].set_title(f"estimate vs truth ({nominal})")
    for y in (3, -3):
        ax[1].axhline(y, color="grey", ls=":")
    ax[1].set_ylabel("error (% SOC)")
    ax[1].set_xlabel("time (h)")
    ax[1].set_title("error, every perturbation (nominal opaque)")
    ax[2].set_xlabel("true SOC band (%)")
    ax[2].set_ylabel("RMSE in band (% SOC)")
    ax[2].set_xticks(np.arange(0, 101, 10))
    ax[2].legend(loc="best", fontsize=8)
    ax[2].set_title(f"error by SOC band ({nominal})")
    fig.tight_layout()
    return _png(fig)


def _cell(v, fmt=".2f") -> str:
    return "&ndash;" if v is None else format(v, fmt)


def write_report(runs: list[Run], path: str | Path, title: str, notes: list[str] | None = None) -> Path:
    """The HTML report (module docstring) at ``path``."""
    if not runs:
        raise ValueError("no runs to report")
    esc = html.escape
    nominal = runs[0].perturbation
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(title)}</title><style>"
             "body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;font-size:90%}"
             "td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}th{background:#eee}"
             "td.l{text-align:left}img{max-width:100%}</style></head><body>",
             f"<h1>{esc(title)}</h1>"]
    for n in notes or []:
        parts.append(f"<p>{esc(n)}</p>")
    parts.append("<h2>Summary</h2><table><tr><th>estimator</th><th>dataset</th><th>perturbation</th><th>RMSE %</th>"
                 "<th>max %</th><th>converged after s (&lt;3 %)</th><th>RMSE after 2 h %</th><th>worst 10 min %</th>"
                 + "".join(f"<th>{10 * b}-{10 * b + 10} %</th>" for b in range(N_BANDS)) + "</tr>")
    for r in runs:
        m = r.metrics
        parts.append(f"<tr><td class=l>{esc(r.estimator)}</td><td class=l>{esc(r.dataset)}</td>"
                     f"<td class=l>{esc(r.perturbation)}</td><td>{m['rmse_pct']:.2f}</td><td>{m['max_abs_pct']:.2f}</td>"
                     f"<td>{_cell(m['converge_s'], '.0f')}</td><td>{_cell(m['rmse_after_2h_pct'])}</td>"
                     f"<td>{m['worst_window_pct']:.2f}</td>" + "".join(f"<td>{_cell(v)}</td>" for v in m["band_rmse_pct"])
                     + "</tr>")
    parts.append("</table><p>Band columns: RMSE (% SOC) while the true SOC is in that band.</p>")
    parts.append(f"<h2>Heat map</h2><img alt='heat map' src='{heatmap(runs)}'>")
    for ds in _uniq(r.dataset for r in runs):
        sub = [r for r in runs if r.dataset == ds]
        parts.append(f"<h2>{esc(ds)}</h2><img alt='{esc(ds)}' src='{dataset_figure(sub, nominal)}'>")
    parts.append("</body></html>")
    path = Path(path)
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
