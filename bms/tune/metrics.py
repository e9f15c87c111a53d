"""Scoring of a SOC estimate against the truth, one definition for the sweep kernel and for
``bms tune eval``: per-sample accumulators (numba), then a summary dict.

Error ``e_k = z_est,k - z_true,k`` (fraction). Accumulators ``acc`` (NM,):

====================  =====================================================================
 M_SSE, M_N            sum of e^2 and sample count            -> rmse_pct = 100 sqrt(SSE / N)
 M_MAX                 max |e|                                -> max_abs_pct
 M_LAST_BAD            last index with |e| >= band (-1: none) -> converge_s (time of the next
                       sample from the start; 0 if never out of band; None if still out at the end)
 M_SSE_LATE, M_N_LATE  sums from sample ``k_late`` on         -> rmse_after_2h_pct (None if empty)
 M_WORST_WIN           max over sliding windows of ``win_n`` samples of sqrt(mean e^2)
                                                              -> worst_window_pct
 M_BAND_SSE + b        e^2 summed where floor(10 z_true) = b  -> band_rmse_pct[b] (None if empty)
 M_BAND_N + b          sample count in band b
====================  =====================================================================

The conventions (3 % band, 2 h) are those of :func:`bms.evaluate.metrics`; the extra ones are
error by SOC band (tenths of SOC by the true value) and the worst window (default 10 min).
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from bms.evaluate import AFTER_S, CONVERGE_BAND

N_BANDS = 10
M_SSE, M_N, M_MAX, M_LAST_BAD, M_SSE_LATE, M_N_LATE, M_WORST_WIN = range(7)
M_BAND_SSE = 7
M_BAND_N = M_BAND_SSE + N_BANDS
NM = M_BAND_N + N_BANDS
WINDOW_S = 600.0
#: running maxima kept apart while runs are added (:func:`acc_add`): max |e|, last bad index,
#: largest window sum of e^2
X_MAX, X_LAST_BAD, X_WORST = range(3)
N_MX = 3
METRIC_NAMES = ("rmse_pct", "max_abs_pct", "converge_s", "rmse_after_2h_pct", "worst_window_pct")


@nb.njit(cache=True)
def acc_scratch(win_n, nl):
    """The running state of ``nl`` runs besides ``acc``: the window ring buffer (``win_n`` slots),
    the window sums and the running maxima (:func:`acc_add`)."""
    return np.zeros(max(win_n, 1) * nl), np.zeros(nl), np.zeros(2 * N_MX * nl)


@nb.njit(cache=True)
def acc_reset(acc, ring, win, mx, nl):
    """Zero the accumulators of ``nl`` runs (``M_LAST_BAD`` = -1) and their running state.
    Lane layout: ``acc[a * nl + r]`` is accumulator ``a`` of run ``r``, ``ring[s * nl + r]`` slot
    ``s`` of its window (runs fastest, so the sweep kernel adds up many runs in SIMD lanes)."""
    acc[:] = 0.0
    acc[M_LAST_BAD * nl:(M_LAST_BAD + 1) * nl] = -1.0
    ring[:] = 0.0
    win[:] = 0.0
    mx[:] = 0.0
    for half in range(2):
        mx[(half * N_MX + X_LAST_BAD) * nl:(half * N_MX + X_LAST_BAD + 1) * nl] = -1.0


@nb.njit(cache=True, inline="always")
def acc_add(acc, ring, win, mx, z, e0, nl, k, z_ref, z_true, band, k_late):
    """Add sample ``k`` of ``nl`` runs, run r's error ``e = z[e0 + r] - z_ref`` (the estimate
    and ``z_ref = z_true``, or the error and 0), SOC band by ``z_true``: table in the module
    docstring, lane layout in :func:`acc_reset`; ``win[r]`` keeps the sum of e^2 over the run's
    window of ``len(ring) / nl`` samples. Written branch-free over the runs (selects), so the
    loop vectorises. The running maxima (max |e|, last bad index, worst window sum) go back and
    forth between the two halves of ``mx`` (read one, write the other, by the parity of k):
    a running max written in place (``m = e if e > m else m``) is a store LLVM drops when it
    would write back what it read, i.e. a masked store, which AMD cores do not forward to the
    next sample's load (a stall per sample); :func:`acc_finish` moves them into ``acc``."""
    if k & 1:
        _acc_add(acc, ring, win, mx, z, e0, nl, k, z_ref, z_true, band, k_late, N_MX * nl, 0)
    else:
        _acc_add(acc, ring, win, mx, z, e0, nl, k, z_ref, z_true, band, k_late, 0, N_MX * nl)


@nb.njit(cache=True, inline="always")
def _acc_add(acc, ring, win, mx, z, e0, nl, k, z_ref, z_true, band, k_late, src, dst):
    b = min(max(int(z_true * N_BANDS), 0), N_BANDS - 1)
    bs = (M_BAND_SSE + b) * nl
    bn = (M_BAND_N + b) * nl
    wn = ring.shape[0] // nl
    slot = max(k % wn, 0) * nl  # max: provably >= 0, so no negative-index wraparound in the loop
    late = k >= k_late
    full = k >= wn - 1
    for r in range(nl):
        e = z[e0 + r] - z_ref
        e2 = e * e
        acc[M_SSE * nl + r] += e2
        acc[M_N * nl + r] += 1.0
        a = abs(e)
        cur = mx[src + X_MAX * nl + r]
        mx[dst + X_MAX * nl + r] = a if a > cur else cur
        last = mx[src + X_LAST_BAD * nl + r]
        mx[dst + X_LAST_BAD * nl + r] = k if a >= band else last
        acc[M_SSE_LATE * nl + r] += e2 if late else 0.0
        acc[M_N_LATE * nl + r] += 1.0 if late else 0.0
        acc[bs + r] += e2
        acc[bn + r] += 1.0
        s = win[r] + e2 - ring[slot + r]
        win[r] = s
        ring[slot + r] = e2
        cur = mx[src + X_WORST * nl + r]
        mx[dst + X_WORST * nl + r] = s if (s > cur) & full else cur


@nb.njit(cache=True)
def acc_finish(acc, ring, mx, nl):
    """Move the running maxima of the last sample's half of ``mx`` into ``acc``; the worst window
    ``sqrt(max(s, 0) / win_n)`` of the largest window sum s (sqrt is monotone: the same value as
    the largest root), or for a run shorter than one window its whole length."""
    n = int(acc[M_N * nl])  # every run has the same count
    wn = ring.shape[0] // nl
    h = 0 if (n - 1) & 1 else N_MX * nl
    for r in range(nl):
        acc[M_MAX * nl + r] = mx[h + X_MAX * nl + r]
        acc[M_LAST_BAD * nl + r] = mx[h + X_LAST_BAD * nl + r]
        if n < wn:
            acc[M_WORST_WIN * nl + r] = math.sqrt(acc[M_SSE * nl + r] / max(acc[M_N * nl + r], 1.0))
        else:
            acc[M_WORST_WIN * nl + r] = math.sqrt(max(mx[h + X_WORST * nl + r], 0.0) / wn)


@nb.njit(cache=True)
def accumulate(err, z_true, band, k_late, win_n, acc):
    """Accumulators (NM,) of a whole error series (what the kernel adds up while it runs)."""
    ring, win, mx = acc_scratch(win_n, 1)
    acc_reset(acc, ring, win, mx, 1)
    for k in range(err.shape[0]):
        acc_add(acc, ring, win, mx, err, k, 1, k, 0.0, z_true[k], band, k_late)
    acc_finish(acc, ring, mx, 1)


def window_samples(time_s: np.ndarray, window_s: float = WINDOW_S) -> int:
    """Samples in a window of ``window_s`` at the series' median sampling interval."""
    if not window_s > 0:
        raise ValueError(f"window must be > 0 s, got {window_s}")
    dt = float(np.median(np.diff(time_s))) if time_s.size > 1 else 1.0
    return max(1, int(round(window_s / dt)))


def late_index(time_s: np.ndarray, after_s: float = AFTER_S) -> int:
    return int(np.searchsorted(time_s - time_s[0], after_s - 1e-9))


def summarise_many(acc: np.ndarray, time_s: np.ndarray) -> dict[str, np.ndarray]:
    """The metrics of many runs' accumulators ``acc`` (..., NM) over one time column, as arrays
    (``band_rmse_pct`` with a trailing axis of N_BANDS); NaN where :func:`summarise` gives None:
    ``converge_s`` still out of the band at the end, ``rmse_after_2h_pct`` no late sample,
    a band without samples."""
    n = acc[..., M_N]
    last_bad = acc[..., M_LAST_BAD].astype(np.int64)
    rel = time_s - time_s[0]
    conv = np.where(last_bad < 0, 0.0, rel[np.clip(last_bad + 1, 0, rel.size - 1)])
    conv = np.where((last_bad >= 0) & (last_bad >= n - 1), np.nan, conv)
    n_late = acc[..., M_N_LATE]
    band_n = acc[..., M_BAND_N:M_BAND_N + N_BANDS]
    with np.errstate(invalid="ignore", divide="ignore"):
        late = np.where(n_late > 0, 100 * np.sqrt(acc[..., M_SSE_LATE] / n_late), np.nan)
        bands = np.where(band_n > 0, 100 * np.sqrt(acc[..., M_BAND_SSE:M_BAND_SSE + N_BANDS] / band_n), np.nan)
    return {"rmse_pct": 100 * np.sqrt(acc[..., M_SSE] / np.maximum(n, 1.0)), "max_abs_pct": 100 * acc[..., M_MAX],
            "converge_s": conv, "rmse_after_2h_pct": late, "worst_window_pct": 100 * acc[..., M_WORST_WIN],
            "band_rmse_pct": bands}


def _opt(v) -> float | None:
    return None if math.isnan(v) else float(v)


def summarise(acc: np.ndarray, time_s: np.ndarray, many: dict[str, np.ndarray] | None = None,
              index: tuple = ()) -> dict:
    """Metric dict of one run's accumulators (``time_s``: the run's time column); or of run
    ``index`` of a :func:`summarise_many` result ``many`` (then ``acc`` is not read)."""
    s = summarise_many(acc, time_s) if many is None else many
    return {"rmse_pct": float(s["rmse_pct"][index]), "max_abs_pct": float(s["max_abs_pct"][index]),
            "converge_s": _opt(s["converge_s"][index]), "rmse_after_2h_pct": _opt(s["rmse_after_2h_pct"][index]),
            "worst_window_pct": float(s["worst_window_pct"][index]),
            "band_rmse_pct": [_opt(v) for v in s["band_rmse_pct"][index]]}


def series_metrics(time_s: np.ndarray, soc_est: np.ndarray, soc_true: np.ndarray,
                   window_s: float = WINDOW_S, band: float = CONVERGE_BAND) -> dict:
    """Metric dict of an estimate series (same definitions as the sweep kernel)."""
    acc = np.zeros(NM)
    err = np.ascontiguousarray(soc_est - soc_true, dtype=float)
    accumulate(err, np.ascontiguousarray(soc_true, dtype=float), band, late_index(time_s),
               window_samples(time_s, window_s), acc)
    return summarise(acc, time_s)
