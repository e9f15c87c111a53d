"""Summary of a co-simulation run: a text table, a JSON-able dict and a PNG figure (pack current
and limits, true vs estimated SOC, min/max cell voltage, temperatures, fault markers)."""

from __future__ import annotations

import math

import numpy as np

from bms import layout as L


def _r(x, nd=3):
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else round(float(x), nd)


def figures(res) -> dict:
    """The run's key numbers (all plain Python, JSON-able)."""
    r = res.rec
    err = np.abs(r["soc_bms_mean"] - r["soc_true_mean"]) * 100.0
    err = err[np.isfinite(err)]
    cont = [e for e in res.events if e[1] == "contactors"]
    return {
        "scenario": res.scenario.name, "sim_s": _r(res.sim_s, 2), "wall_s": _r(res.wall_s, 2),
        "speedup": _r(res.speedup, 2), "frames": res.frames,
        "soc_error_max_pct": _r(err.max() if err.size else math.nan), "soc_error_final_pct": _r(err[-1] if err.size else math.nan),
        "cell_soc_error_max_pct": _r(np.nanmax(r["cell_soc_err_max"]) * 100.0 if len(r["t_s"]) else math.nan),
        "soc_true_final": _r(r["soc_true_mean"][-1] if len(r["t_s"]) else math.nan, 4),
        "soc_spread_final_pct": _r((r["soc_true_max"][-1] - r["soc_true_min"][-1]) * 100.0 if len(r["t_s"]) else math.nan),
        "temp_max_c": _r(np.max(r["temp_true_max"]) if len(r["t_s"]) else math.nan, 2),
        "faults_raised": {k: _r(v, 2) for k, v in res.faults_raised.items()},
        "injected": [{"fault": f.label, "t_on_s": _r(f.t_on, 2),
                      "detected": {k: _r(v - f.t_on, 3) for k, v in f.detected.items()} if f.t_on is not None else {},
                      "contactors_open_after_s": _r(None if f.t_on is None or f.t_open is None else f.t_open - f.t_on, 3),
                      "frames_injected": f.injected} for f in res.faults],
        "contactor_events": len(cont), "balancing_s": _r(res.bleed_s, 1), "limited_s": _r(res.limited_s, 1),
        "states": [L.STATE_NAMES[int(s)] for s in res.states_seen],
        "rejected_frames": dict(res.node_stats["rejected"]),
        "verdicts": [v.as_dict() for v in res.verdicts], "passed": res.passed, "logs": res.log_paths,
    }


def summary_table(res) -> str:
    f = figures(res)
    lines = [f"scenario {f['scenario']}: {f['sim_s']:.0f} s simulated in {f['wall_s']:.1f} s "
             f"({f['speedup']:.1f}x real time), {f['frames']} frames",
             f"  SOC error (BMS mean vs true) max {f['soc_error_max_pct']} %  final {f['soc_error_final_pct']} %  "
             f"worst cell {f['cell_soc_error_max_pct']} %",
             f"  true SOC final {f['soc_true_final']}  spread {f['soc_spread_final_pct']} %  hottest cell {f['temp_max_c']} degC",
             f"  contactor commands {f['contactor_events']}  balancing {f['balancing_s']} s  demand limited by BMS {f['limited_s']} s",
             f"  states: {' '.join(f['states'])}"]
    if f["faults_raised"]:
        lines.append("  faults raised: " + ", ".join(f"{k} at {v} s" for k, v in f["faults_raised"].items()))
    for inj in f["injected"]:
        det = ", ".join(f"{k} +{v} s" for k, v in inj["detected"].items()) or "nothing"
        lines.append(f"  injected {inj['fault']} at {inj['t_on_s']} s: detected {det}; contactors open after "
                     f"{inj['contactors_open_after_s']} s")
    lines.append(f"  {'verdict':<48} {'value':>14} {'limit':>12}  result")
    for v in res.verdicts:
        val = v.value if not isinstance(v.value, list) else ",".join(map(str, v.value)) or "-"
        lim = v.limit if not isinstance(v.limit, list) else ",".join(map(str, v.limit)) or "-"
        lines.append(f"  {v.name:<48} {str(val):>14} {str(lim):>12}  {'PASS' if v.ok else 'FAIL'}")
    return "\n".join(lines)


def plot(res, png: str, title: str | None = None) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = res.rec
    t = r["t_s"] / 60.0
    fig, ax = plt.subplots(4, 1, figsize=(11, 11), sharex=True)
    ax[0].plot(t, r["pack_i_a"], lw=0.7, label="pack current (true)")
    ax[0].plot(t, r["i_chg_lim_a"], "g--", lw=0.9, label="charge limit")
    ax[0].plot(t, -r["i_dis_lim_a"], "r--", lw=0.9, label="discharge limit")
    ax[0].set_ylabel("A (+ charge)")
    ax[1].plot(t, 100 * r["soc_true_mean"], "k", lw=1.0, label="true mean")
    ax[1].fill_between(t, 100 * r["soc_true_min"], 100 * r["soc_true_max"], color="0.8", label="true min..max")
    ax[1].plot(t, 100 * r["soc_bms_mean"], "C1", lw=1.0, label="BMS mean")
    ax[1].plot(t, 100 * r["soc_display"], "C2:", lw=1.0, label="BMS displayed")
    ax[1].set_ylabel("SOC %")
    ax[2].plot(t, r["cell_v_min"], lw=0.8, label="min cell")
    ax[2].plot(t, r["cell_v_max"], lw=0.8, label="max cell")
    ax[2].set_ylabel("V")
    ax[3].plot(t, r["temp_true_max"], "r", lw=0.8, label="hottest cell (true)")
    ax[3].plot(t, r["temp_true_min"], "b", lw=0.8, label="coldest cell (true)")
    ax[3].plot(t, r["temp_bms_max"], "r:", lw=0.8, label="BMS max sensor")
    ax[3].set_ylabel("degC")
    ax[3].set_xlabel("time (min)")
    for f in res.faults:
        if f.t_on is None:
            continue
        for a in ax:
            a.axvline(f.t_on / 60.0, color="m", lw=0.8)
        ax[0].annotate(f.label, (f.t_on / 60.0, ax[0].get_ylim()[1]), color="m", fontsize=7, va="top")
        for name, td in f.detected.items():
            for a in ax:
                a.axvline(td / 60.0, color="m", ls="--", lw=0.6)
    for name, td in res.faults_raised.items():
        ax[1].annotate(name, (td / 60.0, ax[1].get_ylim()[0]), color="r", fontsize=7, rotation=90, va="bottom")
    for a in ax:
        a.grid(alpha=0.3)
        a.legend(fontsize=7, loc="best")
    fig.suptitle(title or f"{res.scenario.name}: {res.scenario.description}", fontsize=10)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png
