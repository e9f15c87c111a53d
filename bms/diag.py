"""Diagnostics: measure the table's quantities, then evaluate every fault entry generically.

``measure_fast`` / ``measure_cells`` / ``measure_estimator`` compute the quantities of
:data:`bms.diag_table.QUANTITIES` that belong to the fast / medium / slow task
(:data:`bms.diag_table.QUANTITY_TASK`; ``measure_cells`` also marks which cells and sensors are
fresh); ``evaluate`` runs the same loop over the rows of the tasks that ran (levels with
hysteresis, debounce, latch, recovery, each with its task's dt) and folds the reactions of all
rows. No fault has its own code branch in ``evaluate``.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from bms import layout as L
from bms.diag_table import QTASK, QTY
from bms.soc.layout import ICAP, IEBAR, IZ

Q_CELL_V_MAX, Q_CELL_V_MIN = QTY["cell_v_max"], QTY["cell_v_min"]
Q_T_MAX_CHG, Q_T_MAX_DIS = QTY["temp_max_chg"], QTY["temp_max_dis"]
Q_T_MIN_CHG, Q_T_MIN_DIS = QTY["temp_min_chg"], QTY["temp_min_dis"]
Q_I_CHG, Q_I_DIS, Q_I2T_CHG, Q_I2T_DIS = QTY["i_chg"], QTY["i_dis"], QTY["i2t_chg"], QTY["i2t_dis"]
Q_V_SPREAD, Q_T_SPREAD, Q_PACK_V_DIFF = QTY["cell_v_spread"], QTY["temp_spread"], QTY["pack_v_diff"]
Q_SENSE_WIRE, Q_T_RAW_MIN, Q_T_RAW_MAX = QTY["sense_wire"], QTY["temp_raw_min"], QTY["temp_raw_max"]
Q_STUCK, Q_ISENSE_ERR = QTY["stuck_s"], QTY["isense_err"]
Q_CMU_AGE, Q_ISENSE_AGE, Q_VCU_AGE = QTY["cmu_age"], QTY["isense_age"], QTY["vcu_age"]
Q_CONT_MISMATCH, Q_WELD, Q_PRE_FAILS = QTY["contactor_mismatch"], QTY["weld_ratio"], QTY["precharge_fails"]
Q_SOC_ERR, Q_CAP_ERR, Q_SELF_DIS = QTY["soc_innovation"], QTY["capacity_err"], QTY["self_discharge"]
NAN = np.nan


@nb.njit(cache=True)
def isense_fresh(u, diag):
    """The current sensor is fresh if its frame is valid, younger than the COMM_ISENSE warning
    age and finite."""
    return (u[L.U_ISENSE_VALID] > 0.5 and u[L.U_ISENSE_AGE_S] < diag[L.F_COMM_ISENSE, L.D_WARN]
            and math.isfinite(u[L.U_PACK_I_A]))


@nb.njit(cache=True)
def vcu_fresh(u, diag):
    """The vehicle request is fresh if valid and younger than the COMM_VCU warning age."""
    return u[L.U_VCU_VALID] > 0.5 and u[L.U_VCU_AGE_S] < diag[L.F_COMM_VCU, L.D_WARN]


@nb.njit(cache=True)
def _age(valid, age_s, stale_s):
    """Age used for the COMM checks: invalid data counts as stale_s older than it is (so it
    is at least stale: warning at once, FAULT after the remaining time)."""
    return age_s if valid else age_s + stale_s


@nb.njit(cache=True)
def board_temp_mean(inp, st, prm, b):
    """Mean of board ``b``'s plausible temperature sensors this step (NaN if none)."""
    acc, k = 0.0, 0
    for j in range(prm.temp_start[b], prm.temp_start[b + 1]):
        if st.temp_ok[j]:
            acc += inp.temp_c[j]
            k += 1
    return acc / k if k > 0 else math.nan


@nb.njit(cache=True)
def _clear(q, ql, task):
    """Mark the quantities of ``task`` absent before it measures them again."""
    for i in range(q.shape[0]):
        if QTASK[i] == task:
            q[i] = NAN
            ql[i] = -1.0


@nb.njit(cache=True)
def measure_fast(inp, st, prm, dt_s):
    """Fast task: current, I^2 filters y += (1 - exp(-dt/tau)) (I^2 - y), current plausibility,
    ages of the boards, the current sensor (with the contactor feedback) and the vehicle request,
    contactor feedback mismatch, weld ratio, precharge attempts."""
    pp, diag, q, ql, s, u = prm.pp, prm.diag, st.q, st.qloc, st.s, inp.u
    _clear(q, ql, L.T_FAST)
    i_fresh = isense_fresh(u, diag)
    i_a = u[L.U_PACK_I_A] if i_fresh else NAN
    isense_stale = diag[L.F_COMM_ISENSE, L.D_WARN]
    fb_ok = u[L.U_CONTACTOR_FB_VALID] > 0.5 and u[L.U_CONTACTOR_FB_AGE_S] < isense_stale
    q[Q_ISENSE_AGE] = max(_age(u[L.U_ISENSE_VALID] > 0.5, u[L.U_ISENSE_AGE_S], isense_stale),
                          _age(u[L.U_CONTACTOR_FB_VALID] > 0.5, u[L.U_CONTACTOR_FB_AGE_S], isense_stale))
    vcu_stale = diag[L.F_COMM_VCU, L.D_WARN]
    q[Q_VCU_AGE] = _age(u[L.U_VCU_VALID] > 0.5, u[L.U_VCU_AGE_S], vcu_stale)
    cmu_stale = diag[L.F_COMM_CMU, L.D_WARN]
    age = 0.0
    for b in range(inp.board_age_s.shape[0]):
        a = _age(inp.board_valid[b], inp.board_age_s[b], cmu_stale)
        if a > age or b == 0:
            age = a
            ql[Q_CMU_AGE] = b
    q[Q_CMU_AGE] = age
    cmd = int(s[L.S_CONTACTORS])
    fb = int(u[L.U_CONTACTOR_FB]) if fb_ok else cmd  # stale feedback: COMM_ISENSE acts, no mismatch is read
    all_open = (cmd & 7) == 0 and (fb & 7) == 0 and s[L.S_CMD_T_S] >= pp[L.P_CONT_SETTLE_S]
    if i_fresh:
        q[Q_I_CHG] = max(i_a, 0.0)
        q[Q_I_DIS] = max(-i_a, 0.0)
        a = 1.0 - math.exp(-dt_s / pp[L.P_I2T_TAU_S])
        s[L.S_I2_CHG] += a * (max(i_a, 0.0) ** 2 - s[L.S_I2_CHG])
        s[L.S_I2_DIS] += a * (min(i_a, 0.0) ** 2 - s[L.S_I2_DIS])
        err = abs(i_a) if all_open else 0.0
        if abs(i_a) >= pp[L.P_I_RANGE_A]:
            err = np.inf
        q[Q_ISENSE_ERR] = err
    elif u[L.U_ISENSE_VALID] > 0.5 and u[L.U_ISENSE_AGE_S] < isense_stale:
        q[Q_ISENSE_ERR] = np.inf  # a valid frame carrying a non-finite current
    q[Q_I2T_CHG] = math.sqrt(s[L.S_I2_CHG]) / pp[L.P_I2T_CHG_RATED_A]
    q[Q_I2T_DIS] = math.sqrt(s[L.S_I2_DIS]) / pp[L.P_I2T_DIS_RATED_A]
    hv_ok = u[L.U_HV_VALID] > 0.5 and i_fresh
    # --- contactors
    if fb_ok and s[L.S_CMD_T_S] >= pp[L.P_CONT_SETTLE_S]:
        x = (cmd ^ fb) & 7
        q[Q_CONT_MISMATCH] = (x & 1) + ((x >> 1) & 1) + ((x >> 2) & 1)
    mains_open = (cmd & (L.K_NEG | L.K_POS)) == 0
    if mains_open and s[L.S_OPEN_T_S] >= pp[L.P_WELD_CHECK_S] and hv_ok and u[L.U_PACK_V] > 1.0:
        q[Q_WELD] = u[L.U_BUS_V] / u[L.U_PACK_V]
    q[Q_PRE_FAILS] = s[L.S_PRE_ATTEMPTS]


@nb.njit(cache=True)
def measure_cells(inp, st, prm, dt_s):
    """Medium task: freshness masks ``st.cell_ok`` / ``st.temp_ok``, min / max / spread of cell
    voltages and temperatures (temperatures split by charging), open sense wires, stuck-reading
    timers; min/max cell voltage and temperature and the cell sum go to ``st.out``."""
    pp, diag, q, ql, s, out, u = prm.pp, prm.diag, st.q, st.qloc, st.s, st.out, inp.u
    _clear(q, ql, L.T_MEDIUM)
    cmu_stale = diag[L.F_COMM_CMU, L.D_WARN]
    i_fresh = isense_fresh(u, diag)
    i_a = u[L.U_PACK_I_A] if i_fresh else NAN
    charging = (i_a > pp[L.P_CHG_DETECT_A]) if i_fresh else (s[L.S_STATE] == L.ST_CHARGE)
    # --- cell voltages
    n = inp.cell_v.shape[0]
    vmax, vmin, vsum, n_ok, imax, imin = -np.inf, np.inf, 0.0, 0, -1, -1
    all_fresh = True
    for c in range(n):
        b = prm.board_of_cell[c]
        ok = inp.board_valid[b] and inp.board_age_s[b] < cmu_stale and math.isfinite(inp.cell_v[c])
        st.cell_ok[c] = ok
        if not ok:
            all_fresh = False
            continue
        v = inp.cell_v[c]
        vsum += v
        n_ok += 1
        if v > vmax:
            vmax, imax = v, c
        if v < vmin:
            vmin, imin = v, c
    out[L.Y_CELL_V_SUM] = vsum if all_fresh else NAN
    if n_ok > 0:
        q[Q_CELL_V_MAX], ql[Q_CELL_V_MAX] = vmax, imax
        q[Q_CELL_V_MIN], ql[Q_CELL_V_MIN] = vmin, imin
        out[L.Y_CELL_V_MAX], out[L.Y_CELL_V_MAX_IDX] = vmax, imax
        out[L.Y_CELL_V_MIN], out[L.Y_CELL_V_MIN_IDX] = vmin, imin
    else:
        out[L.Y_CELL_V_MAX], out[L.Y_CELL_V_MIN] = NAN, NAN
        out[L.Y_CELL_V_MAX_IDX], out[L.Y_CELL_V_MIN_IDX] = -1.0, -1.0
    if n_ok > 1:
        q[Q_V_SPREAD], ql[Q_V_SPREAD] = vmax - vmin, imax
        vmean = vsum / n_ok
        best, loc = 0.0, -1
        for c in range(n - 1):
            if st.cell_ok[c] and st.cell_ok[c + 1] and prm.board_of_cell[c] == prm.board_of_cell[c + 1]:
                d0 = inp.cell_v[c] - vmean
                d1 = inp.cell_v[c + 1] - vmean
                w = max(min(d0, -d1), min(-d0, d1))
                if w > best:
                    best, loc = w, c
        q[Q_SENSE_WIRE], ql[Q_SENSE_WIRE] = best, loc
    if u[L.U_HV_VALID] > 0.5 and i_fresh and all_fresh:
        q[Q_PACK_V_DIFF] = abs(vsum - u[L.U_PACK_V])
    # --- stuck readings: the current moved by stuck_di_a but the reading stayed within stuck_dv_v
    smax, sloc = 0.0, -1
    for c in range(n):
        if not (st.cell_ok[c] and i_fresh):
            continue
        if abs(inp.cell_v[c] - st.stuck_v[c]) > pp[L.P_STUCK_DV_V] or not math.isfinite(st.stuck_i[c]):
            st.stuck_v[c], st.stuck_i[c], st.stuck_t[c] = inp.cell_v[c], i_a, 0.0
        elif abs(i_a - st.stuck_i[c]) > pp[L.P_STUCK_DI_A]:
            st.stuck_t[c] += dt_s
        else:
            st.stuck_t[c] = 0.0  # the current came back: nothing to compare against
        if st.stuck_t[c] > smax:
            smax, sloc = st.stuck_t[c], c
    q[Q_STUCK], ql[Q_STUCK] = smax, sloc
    # --- temperatures
    tmax, tmin, rmax, rmin = -np.inf, np.inf, -np.inf, np.inf
    jmax, jmin, kmax, kmin = -1, -1, -1, -1
    for j in range(inp.temp_c.shape[0]):
        t = inp.temp_c[j]
        fresh = inp.temp_valid[j] and inp.temp_age_s[j] < cmu_stale and not math.isnan(t)
        ok = fresh and pp[L.P_T_OPEN_C] <= t <= pp[L.P_T_SHORT_C]  # beyond: the sensor fault's condition
        st.temp_ok[j] = ok
        if fresh:
            if t > rmax:
                rmax, kmax = t, j
            if t < rmin:
                rmin, kmin = t, j
        if ok:
            if t > tmax:
                tmax, jmax = t, j
            if t < tmin:
                tmin, jmin = t, j
    if kmax >= 0:
        q[Q_T_RAW_MAX], ql[Q_T_RAW_MAX] = rmax, kmax
        q[Q_T_RAW_MIN], ql[Q_T_RAW_MIN] = rmin, kmin
    if jmax >= 0:
        qa, qb = (Q_T_MAX_CHG, Q_T_MIN_CHG) if charging else (Q_T_MAX_DIS, Q_T_MIN_DIS)
        q[qa], ql[qa] = tmax, jmax
        q[qb], ql[qb] = tmin, jmin
        q[Q_T_SPREAD], ql[Q_T_SPREAD] = tmax - tmin, jmax
        out[L.Y_TEMP_MAX_C], out[L.Y_TEMP_MAX_IDX] = tmax, jmax
        out[L.Y_TEMP_MIN_C], out[L.Y_TEMP_MIN_IDX] = tmin, jmin
    else:
        out[L.Y_TEMP_MAX_C], out[L.Y_TEMP_MIN_C] = NAN, NAN
        out[L.Y_TEMP_MAX_IDX], out[L.Y_TEMP_MIN_IDX] = -1.0, -1.0


@nb.njit(cache=True)
def measure_estimator(st, prm):
    """Slow task: estimator plausibility (largest mean voltage innovation, capacity error) and the
    self-discharge rate held by bms.selfdischarge.rest_point (NaN before its first rate)."""
    pp, q, ql = prm.pp, st.q, st.qloc
    _clear(q, ql, L.T_SLOW)
    err, loc, cerr, cloc = 0.0, -1, 0.0, -1
    for c in range(st.x.shape[0]):
        e = abs(st.x[c, IEBAR]) if math.isfinite(st.x[c, IZ]) and math.isfinite(st.x[c, IEBAR]) else np.inf
        if not e <= err:
            err, loc = e, c
        ce = abs(st.x[c, ICAP] / pp[L.P_CELL_CAPACITY_AH] - 1.0)
        if not ce <= cerr:
            cerr, cloc = ce, c
    q[Q_SOC_ERR], ql[Q_SOC_ERR] = err, loc
    q[Q_CAP_ERR], ql[Q_CAP_ERR] = (cerr if math.isfinite(cerr) else np.inf), cloc
    q[Q_SELF_DIS], ql[Q_SELF_DIS] = st.s[L.S_SD_RATE], st.s[L.S_SD_LOC]


@nb.njit(cache=True)
def evaluate(st, diag, task_dt, ran, reset_edge, service_reset, mains_open):
    """Evaluate the table rows of the tasks that ran (bit 1 << T_* of ``ran``; the row's task is
    D_TASK, its time step ``task_dt[task]``) on their quantity q = st.q[D_QTY]:

    level k (1 warning, 2 fault, 3 critical) is present while dir*(q - thr_k) > 0, and, once on,
    until dir*(q - (thr_k - dir*hyst)) <= 0; a present level counts up its debounce counter
    (c += dt), an absent one resets it (DEB_TIME) or counts down (DEB_COUNTER, c -= ratio*dt);
    the level turns on when c >= debounce. Reaching FAULT holds the entry (FS_LATCHED); the hold
    is released after the condition has been gone for heal_s and the recovery rule holds
    (entries without latch: heal_s alone); releases are checked at every call (a reset request
    is seen by every row). Returns (highest severity, reaction bits, derate_chg, derate_dis,
    fault bits, warning bits) over all rows."""
    fst, fcnt, q = st.fst, st.fcnt, st.q
    sev_max, react, der_c, der_d, fbits, wbits = 0, 0, 1.0, 1.0, 0, 0
    for f in range(diag.shape[0]):
        task = int(diag[f, L.D_TASK])
        if (ran >> task) & 1:
            _update_row(fst, fcnt, q, st.qloc, diag, f, task_dt[task])
        if fst[f, L.FS_LATCHED] > 0.0 and fst[f, L.FS_LEVEL] < L.SEV_FAULT and fst[f, L.FS_HEAL_S] >= diag[f, L.D_HEAL_S] - 1e-9:
            rule = int(diag[f, L.D_RECOVER])
            if diag[f, L.D_LATCH] == 0.0 or rule == L.RC_AUTO:
                release = True
            elif rule == L.RC_RESET:
                release = reset_edge
            elif rule == L.RC_RESET_STANDBY:
                release = reset_edge and mains_open
            else:
                release = service_reset
            if release:
                fst[f, L.FS_LATCHED] = 0.0
                fst[f, L.FS_LATCHED_CRIT] = 0.0
        sev = int(fst[f, L.FS_LEVEL])
        if fst[f, L.FS_LATCHED_CRIT] > 0.0:
            sev = L.SEV_CRITICAL
        elif fst[f, L.FS_LATCHED] > 0.0:
            sev = max(sev, L.SEV_FAULT)
        fst[f, L.FS_SEV] = sev
        if sev >= L.SEV_WARNING:
            wbits |= 1 << f
        if sev >= L.SEV_FAULT:
            fbits |= 1 << f
            r = int(diag[f, L.D_REACT])
            if sev == L.SEV_CRITICAL:
                r |= L.RE_OPEN | L.RE_NO_CLOSE
                der_c, der_d = 0.0, 0.0
            react |= r
            if r & L.RE_DERATE:
                der_c = min(der_c, diag[f, L.D_DERATE_CHG])
                der_d = min(der_d, diag[f, L.D_DERATE_DIS])
        sev_max = max(sev_max, sev)
    return sev_max, react, der_c, der_d, fbits, wbits


@nb.njit(cache=True)
def _update_row(fst, fcnt, q, qloc, diag, f, dt_s):
    """Levels, debounce counters, latch and heal timer of row ``f`` over ``dt_s`` (see evaluate)."""
    qi = int(diag[f, L.D_QTY])
    v = q[qi]
    fst[f, L.FS_Q] = v
    fst[f, L.FS_LOC] = qloc[qi]
    d = diag[f, L.D_DIR]
    hyst = diag[f, L.D_HYST]
    prev_level = fst[f, L.FS_LEVEL]
    level = 0
    for k in range(1, 4):
        thr = diag[f, L.D_WARN + k - 1]
        if math.isnan(thr):
            continue
        was = prev_level >= k
        if math.isnan(v):
            present = False
        elif was:
            present = d * (v - (thr - d * hyst)) > 0.0
        else:
            present = d * (v - thr) > 0.0
        deb = diag[f, L.D_CRIT_DEB_S] if k == 3 else diag[f, L.D_DEB_S]
        c = fcnt[f, k - 1]
        if present:
            c = min(c + dt_s, deb + dt_s)
        elif diag[f, L.D_DEB_KIND] == L.DEB_COUNTER:
            c = max(c - diag[f, L.D_DOWN_RATIO] * dt_s, 0.0)
        else:
            c = 0.0
        fcnt[f, k - 1] = c
        if present and (was or c >= deb - 1e-9):
            level = k
    fst[f, L.FS_LEVEL] = level
    if level >= L.SEV_FAULT:
        if fst[f, L.FS_LATCHED] == 0.0:
            fst[f, L.FS_COUNT] += 1.0
        fst[f, L.FS_LATCHED] = 1.0
        if level == L.SEV_CRITICAL:
            fst[f, L.FS_LATCHED_CRIT] = 1.0
        fst[f, L.FS_HEAL_S] = 0.0
    else:
        fst[f, L.FS_HEAL_S] += dt_s
