"""Baseline for bench_step: the same firmware step written with whole-array NumPy operations
(per-cell and per-fault work vectorised; the scalar state machine runs as plain Python via
``.py_func`` of the kernel; the EKF is bench_soc's vectorised NumPy filter, same equations).
Works on the same State / Inputs / PackParams arrays as ``bms.core.step``."""

from __future__ import annotations

import math

import numpy as np

from benchmarks.bench_soc import numpy_ekf_step
from bms import layout as L
from bms.contactors import MAINS, contactor_step
from bms.diag import Q_CAP_ERR, Q_CMU_AGE, Q_CONT_MISMATCH, Q_I2T_CHG, Q_I2T_DIS, Q_I_CHG, Q_I_DIS, Q_ISENSE_AGE
from bms.diag import Q_ISENSE_ERR, Q_PACK_V_DIFF, Q_PRE_FAILS, Q_SENSE_WIRE, Q_SOC_ERR, Q_STUCK, Q_T_MAX_CHG
from bms.diag import Q_T_MAX_DIS, Q_T_MIN_CHG, Q_T_MIN_DIS, Q_T_RAW_MAX, Q_T_RAW_MIN, Q_T_SPREAD, Q_V_SPREAD
from bms.diag import Q_VCU_AGE, Q_WELD, Q_CELL_V_MAX, Q_CELL_V_MIN
from bms.soc.layout import ICAP, IEBAR, IZ

LEVELS = np.array([1, 2, 3])


def _age(valid, age, stale):
    return age if valid else age + stale


def measure(inp, st, prm, dt):
    pp, d, q, ql, s, out, u = prm.pp, prm.diag, st.q, st.qloc, st.s, st.out, inp.u
    q[:] = np.nan
    ql[:] = -1
    stale = d[L.F_COMM_CMU, L.D_WARN]
    b = prm.board_of_cell
    ok = inp.board_valid[b] & (inp.board_age_s[b] < stale) & np.isfinite(inp.cell_v)
    st.cell_ok[:] = ok
    v = np.where(ok, inp.cell_v, np.nan)
    ages = np.where(inp.board_valid, inp.board_age_s, inp.board_age_s + stale)
    q[Q_CMU_AGE], ql[Q_CMU_AGE] = ages.max(), ages.argmax()
    out[L.Y_CELL_V_SUM] = v.sum() if ok.all() else np.nan
    if ok.any():
        imax, imin = np.nanargmax(v), np.nanargmin(v)
        q[Q_CELL_V_MAX], ql[Q_CELL_V_MAX], q[Q_CELL_V_MIN], ql[Q_CELL_V_MIN] = v[imax], imax, v[imin], imin
        out[[L.Y_CELL_V_MAX, L.Y_CELL_V_MAX_IDX, L.Y_CELL_V_MIN, L.Y_CELL_V_MIN_IDX]] = v[imax], imax, v[imin], imin
    if ok.sum() > 1:
        q[Q_V_SPREAD], ql[Q_V_SPREAD] = v[imax] - v[imin], imax
        dev = v - np.nanmean(v)
        same = (b[:-1] == b[1:]) & ok[:-1] & ok[1:]
        w = np.where(same, np.maximum(np.minimum(dev[:-1], -dev[1:]), np.minimum(-dev[:-1], dev[1:])), 0.0)
        k = int(np.argmax(w))
        q[Q_SENSE_WIRE], ql[Q_SENSE_WIRE] = (w[k], k) if w[k] > 0 else (0.0, -1)
    i_stale = d[L.F_COMM_ISENSE, L.D_WARN]
    i_fresh = u[L.U_ISENSE_VALID] > 0.5 and u[L.U_ISENSE_AGE_S] < i_stale and math.isfinite(u[L.U_PACK_I_A])
    i_a = u[L.U_PACK_I_A] if i_fresh else np.nan
    q[Q_ISENSE_AGE] = _age(u[L.U_ISENSE_VALID] > 0.5, u[L.U_ISENSE_AGE_S], i_stale)
    q[Q_VCU_AGE] = _age(u[L.U_VCU_VALID] > 0.5, u[L.U_VCU_AGE_S], d[L.F_COMM_VCU, L.D_WARN])
    charging = (i_a > pp[L.P_CHG_DETECT_A]) if i_fresh else s[L.S_STATE] == L.ST_CHARGE
    cmd, fb = int(s[L.S_CONTACTORS]), int(u[L.U_CONTACTOR_FB])
    all_open = (cmd & 7) == 0 and (fb & 7) == 0 and s[L.S_CMD_T_S] >= pp[L.P_CONT_SETTLE_S]
    if i_fresh:
        q[Q_I_CHG], q[Q_I_DIS] = max(i_a, 0.0), max(-i_a, 0.0)
        a = 1.0 - math.exp(-dt / pp[L.P_I2T_TAU_S])
        s[L.S_I2_CHG] += a * (max(i_a, 0.0) ** 2 - s[L.S_I2_CHG])
        s[L.S_I2_DIS] += a * (min(i_a, 0.0) ** 2 - s[L.S_I2_DIS])
        q[Q_ISENSE_ERR] = np.inf if abs(i_a) >= pp[L.P_I_RANGE_A] else (abs(i_a) if all_open else 0.0)
    q[Q_I2T_CHG] = math.sqrt(s[L.S_I2_CHG]) / pp[L.P_I2T_CHG_RATED_A]
    q[Q_I2T_DIS] = math.sqrt(s[L.S_I2_DIS]) / pp[L.P_I2T_DIS_RATED_A]
    hv_ok = u[L.U_HV_VALID] > 0.5 and i_fresh
    if hv_ok and ok.all():
        q[Q_PACK_V_DIFF] = abs(v.sum() - u[L.U_PACK_V])
    if i_fresh:
        first = ok & ((np.abs(inp.cell_v - st.stuck_v) > pp[L.P_STUCK_DV_V]) | ~np.isfinite(st.stuck_i))
        moved = ok & ~first & (np.abs(i_a - st.stuck_i) > pp[L.P_STUCK_DI_A])
        back = ok & ~first & ~moved
        st.stuck_v[first], st.stuck_i[first], st.stuck_t[first] = inp.cell_v[first], i_a, 0.0
        st.stuck_t[moved] += dt
        st.stuck_t[back] = 0.0
    k = int(np.argmax(st.stuck_t))
    q[Q_STUCK], ql[Q_STUCK] = (st.stuck_t[k], k) if st.stuck_t[k] > 0 else (0.0, -1)
    t = inp.temp_c
    fresh = inp.temp_valid & (inp.temp_age_s < stale) & ~np.isnan(t)
    tok = fresh & (t >= pp[L.P_T_OPEN_C]) & (t <= pp[L.P_T_SHORT_C])
    st.temp_ok[:] = tok
    if fresh.any():
        tr = np.where(fresh, t, np.nan)
        q[Q_T_RAW_MAX], ql[Q_T_RAW_MAX] = np.nanmax(tr), np.nanargmax(tr)
        q[Q_T_RAW_MIN], ql[Q_T_RAW_MIN] = np.nanmin(tr), np.nanargmin(tr)
    if tok.any():
        tt = np.where(tok, t, np.nan)
        jmax, jmin = np.nanargmax(tt), np.nanargmin(tt)
        qa, qb = (Q_T_MAX_CHG, Q_T_MIN_CHG) if charging else (Q_T_MAX_DIS, Q_T_MIN_DIS)
        q[qa], ql[qa], q[qb], ql[qb] = t[jmax], jmax, t[jmin], jmin
        q[Q_T_SPREAD], ql[Q_T_SPREAD] = t[jmax] - t[jmin], jmax
        out[[L.Y_TEMP_MAX_C, L.Y_TEMP_MAX_IDX, L.Y_TEMP_MIN_C, L.Y_TEMP_MIN_IDX]] = t[jmax], jmax, t[jmin], jmin
    if s[L.S_CMD_T_S] >= pp[L.P_CONT_SETTLE_S]:
        q[Q_CONT_MISMATCH] = bin((cmd ^ fb) & 7).count("1")
    if (cmd & MAINS) == 0 and s[L.S_OPEN_T_S] >= pp[L.P_WELD_CHECK_S] and hv_ok and u[L.U_PACK_V] > 1.0:
        q[Q_WELD] = u[L.U_BUS_V] / u[L.U_PACK_V]
    q[Q_PRE_FAILS] = s[L.S_PRE_ATTEMPTS]
    e = np.where(np.isfinite(st.x[:, IZ]) & np.isfinite(st.x[:, IEBAR]), np.abs(st.x[:, IEBAR]), np.inf)
    q[Q_SOC_ERR], ql[Q_SOC_ERR] = e.max(), e.argmax()
    ce = np.abs(st.x[:, ICAP] / pp[L.P_CELL_CAPACITY_AH] - 1.0)
    q[Q_CAP_ERR], ql[Q_CAP_ERR] = ce.max(), ce.argmax()
    return i_fresh, i_a, hv_ok


def evaluate(st, d, dt, reset_edge, service, mains_open):
    fst, fcnt = st.fst, st.fcnt
    qv = st.q[d[:, L.D_QTY].astype(np.int64)]
    fst[:, L.FS_Q] = qv
    fst[:, L.FS_LOC] = st.qloc[d[:, L.D_QTY].astype(np.int64)]
    thr = d[:, L.D_WARN:L.D_CRIT + 1]
    dr = d[:, L.D_DIR][:, None]
    was = fst[:, L.FS_LEVEL][:, None] >= LEVELS
    with np.errstate(invalid="ignore"):
        present = np.where(was, dr * (qv[:, None] - (thr - dr * d[:, L.D_HYST][:, None])) > 0, dr * (qv[:, None] - thr) > 0)
    present &= ~np.isnan(thr) & ~np.isnan(qv)[:, None]
    deb = np.stack([d[:, L.D_DEB_S], d[:, L.D_DEB_S], d[:, L.D_CRIT_DEB_S]], axis=1)
    counter = (d[:, L.D_DEB_KIND] == L.DEB_COUNTER)[:, None]
    down = np.where(counter, np.maximum(fcnt - d[:, L.D_DOWN_RATIO][:, None] * dt, 0.0), 0.0)
    fcnt[:] = np.where(present, np.minimum(fcnt + dt, deb + dt), down)
    on = present & (was | (fcnt >= deb - 1e-9))
    level = (on * LEVELS).max(axis=1)
    fst[:, L.FS_LEVEL] = level
    hit = level >= L.SEV_FAULT
    fst[hit & (fst[:, L.FS_LATCHED] == 0), L.FS_COUNT] += 1.0
    fst[hit, L.FS_LATCHED] = 1.0
    fst[level == L.SEV_CRITICAL, L.FS_LATCHED_CRIT] = 1.0
    fst[:, L.FS_HEAL_S] = np.where(hit, 0.0, fst[:, L.FS_HEAL_S] + dt)
    rule = d[:, L.D_RECOVER].astype(np.int64)
    ok_rule = np.select([(d[:, L.D_LATCH] == 0) | (rule == L.RC_AUTO), rule == L.RC_RESET, rule == L.RC_RESET_STANDBY],
                        [True, reset_edge, reset_edge and mains_open], service)
    rel = (fst[:, L.FS_LATCHED] > 0) & ~hit & (fst[:, L.FS_HEAL_S] >= d[:, L.D_HEAL_S] - 1e-9) & ok_rule
    fst[rel, L.FS_LATCHED] = 0.0
    fst[rel, L.FS_LATCHED_CRIT] = 0.0
    sev = np.where(fst[:, L.FS_LATCHED_CRIT] > 0, 3, np.where(fst[:, L.FS_LATCHED] > 0, np.maximum(level, 2), level))
    fst[:, L.FS_SEV] = sev
    ids = np.arange(sev.shape[0])
    wbits = int(np.sum(1 << ids[sev >= 1]))
    fault = sev >= 2
    fbits = int(np.sum(1 << ids[fault]))
    r = np.where(sev == 3, d[:, L.D_REACT].astype(np.int64) | L.RE_OPEN | L.RE_NO_CLOSE, d[:, L.D_REACT].astype(np.int64))
    react = int(np.bitwise_or.reduce(r[fault])) if fault.any() else 0
    use = fault & ((r & L.RE_DERATE) > 0)
    der_c = min(1.0, d[use, L.D_DERATE_CHG].min(initial=1.0))
    der_d = min(1.0, d[use, L.D_DERATE_DIS].min(initial=1.0))
    if (sev == 3).any():
        der_c = der_d = 0.0
    return int(sev.max()), react, der_c, der_d, fbits, wbits


def balance(st, inp, prm, dt, i_a, state, sev, soc):
    pp, s = prm.pp, st.s
    nb_, cpb = st.board_heat_c.shape[0], st.bleed.shape[0] // st.board_heat_c.shape[0]
    tpb = inp.temp_c.shape[0] // nb_
    tb = np.where(st.temp_ok, inp.temp_c, np.nan).reshape(nb_, tpb)
    cnt = st.temp_ok.reshape(nb_, tpb).sum(1)
    amb = np.where(cnt > 0, np.nansum(tb, 1) / np.maximum(cnt, 1), np.nan)
    st.board_heat_c[:] = np.where(np.isnan(st.board_heat_c), np.where(np.isnan(amb), 25.0, amb), st.board_heat_c)
    amb = np.where(np.isnan(amb), st.board_heat_c, amb)
    v = np.where(np.isfinite(inp.cell_v), inp.cell_v, 3.3)
    p_w = (st.bleed * v * v / pp[L.P_BAL_R_OHM]).reshape(nb_, cpb).sum(1)
    t_ss = amb + p_w / pp[L.P_BAL_G_W_K]
    st.board_heat_c[:] = t_ss + (st.board_heat_c - t_ss) * math.exp(-pp[L.P_BAL_G_W_K] * dt / pp[L.P_BAL_C_J_K])
    st.board_hot[:] = np.where(st.board_heat_c > pp[L.P_BAL_T_MAX_C], True,
                               np.where(st.board_heat_c < pp[L.P_BAL_T_MAX_C] - pp[L.P_BAL_T_HYST_K], False, st.board_hot))
    s[L.S_REST_T_S] = s[L.S_REST_T_S] + dt if (not math.isnan(i_a) and abs(i_a) < pp[L.P_BAL_REST_A]) else 0.0
    phase = s[L.S_MEAS_PHASE_S] + dt
    if phase >= pp[L.P_MEAS_PERIOD_S]:
        phase -= pp[L.P_MEAS_PERIOD_S] * math.floor(phase / pp[L.P_MEAS_PERIOD_S])
    s[L.S_MEAS_PHASE_S] = phase
    in_window = phase < pp[L.P_MEAS_WINDOW_S] or inp.u[L.U_MEAS_WINDOW] > 0.5
    ok = st.cell_ok
    zmin, zmax = (soc[ok].min(), soc[ok].max()) if ok.any() else (np.inf, -np.inf)
    vmin = inp.cell_v[ok].min() if ok.any() else np.inf
    allowed = ((int(pp[L.P_BAL_STATES]) >> state) & 1) == 1 and sev < L.SEV_FAULT and vmin < np.inf
    top = state == L.ST_CHARGE and zmax >= pp[L.P_BAL_SOC_TOP]
    mode = int(pp[L.P_BAL_MODE])
    v_ok = vmin >= pp[L.P_BAL_V_MIN_V]
    use_v = (mode == L.BAL_VOLTAGE and v_ok) or (mode == L.BAL_BOTH and top and v_ok)
    use_soc = mode == L.BAL_SOC or (mode == L.BAL_BOTH and not use_v)
    active = allowed and (s[L.S_REST_T_S] >= pp[L.P_BAL_REST_S] or top) and (use_v or use_soc)
    start, stop, ref = ((pp[L.P_BAL_START_V], pp[L.P_BAL_STOP_V], vmin) if use_v
                        else (pp[L.P_BAL_START_SOC], pp[L.P_BAL_STOP_SOC], zmin))
    dd = np.where(active & ok, (inp.cell_v if use_v else soc) - ref, -1.0)
    cand = dd > np.where(st.bal_sel, stop, start)
    st.bal_d[:] = np.where(cand, dd, -1.0)
    nmax = int(pp[L.P_BAL_MAX_PER_BOARD])
    db = st.bal_d.reshape(nb_, cpb)
    order = np.argsort(-db, axis=1, kind="stable")[:, :nmax]
    sel = np.zeros_like(db, dtype=bool)
    np.put_along_axis(sel, order, np.take_along_axis(db, order, 1) > 0, 1)
    st.bal_sel[:] = sel.ravel()
    st.bleed[:] = st.bal_sel & ~in_window & ~np.repeat(st.board_hot, cpb)
    return int(st.bleed.sum())


def limits(st, prm, dt, state, closed, der_c, der_d, z_min, z_max, pack_v):
    s, out, pp, d = st.s, st.out, prm.pp, prm.diag
    i_c = i_d = 0.0
    vmin, vmax, tmin, tmax = out[L.Y_CELL_V_MIN], out[L.Y_CELL_V_MAX], out[L.Y_TEMP_MIN_C], out[L.Y_TEMP_MAX_C]
    if closed and state in (L.ST_DRIVE, L.ST_CHARGE) and s[L.S_OPENING] == 0 and np.isfinite([vmin, vmax, tmin, tmax]).all():
        ti = np.interp([tmin, tmax], prm.der_temp_c, prm.der_temp_chg).min(), np.interp([tmin, tmax], prm.der_temp_c, prm.der_temp_dis).min()
        fz_c, fz_d = np.interp(z_max, prm.der_soc, prm.der_soc_chg), np.interp(z_min, prm.der_soc, prm.der_soc_dis)
        fv_c = np.clip((d[L.F_CELL_OV, L.D_FAULT] - vmax) / (d[L.F_CELL_OV, L.D_FAULT] - d[L.F_CELL_OV, L.D_WARN]), 0, 1)
        fv_d = np.clip((vmin - d[L.F_CELL_UV, L.D_FAULT]) / (d[L.F_CELL_UV, L.D_WARN] - d[L.F_CELL_UV, L.D_FAULT]), 0, 1)
        i_c = pp[L.P_I_CHG_MAX_A] * ti[0] * fz_c * fv_c * der_c
        i_d = pp[L.P_I_DIS_MAX_A] * ti[1] * fz_d * fv_d * der_d
    for idx, tgt in ((L.S_I_CHG_LIM_A, i_c), (L.S_I_DIS_LIM_A, i_d)):
        prev = s[idx] if np.isfinite(s[idx]) else 0.0
        s[idx] = np.clip(tgt, prev - pp[L.P_RAMP_DOWN_A_S] * dt, prev + pp[L.P_RAMP_UP_A_S] * dt)
    v = pack_v if np.isfinite(pack_v) and pack_v > 0 else pp[L.P_N_SERIES] * pp[L.P_V_DIS_CELL_V]
    out[[L.Y_I_CHG_LIM_A, L.Y_I_DIS_LIM_A]] = s[L.S_I_CHG_LIM_A], s[L.S_I_DIS_LIM_A]
    out[L.Y_P_CHG_LIM_W] = min(s[L.S_I_CHG_LIM_A] * v, pp[L.P_P_CHG_MAX_W])
    out[L.Y_P_DIS_LIM_W] = min(s[L.S_I_DIS_LIM_A] * v, pp[L.P_P_DIS_MAX_W])
    out[L.Y_V_CHG_MAX_V] = pp[L.P_N_SERIES] * pp[L.P_V_CHG_CELL_V]
    out[L.Y_V_DIS_MIN_V] = pp[L.P_N_SERIES] * pp[L.P_V_DIS_CELL_V]


def numpy_step(st, inp, prm, dt):
    """bms.core.step, NumPy edition (same order of operations)."""
    s, u, pp, out, d = st.s, inp.u, prm.pp, st.out, prm.diag
    s[L.S_TIME_S] += dt
    vcu_ok = u[L.U_VCU_VALID] > 0.5 and u[L.U_VCU_AGE_S] < d[L.F_COMM_VCU, L.D_WARN]
    reset = vcu_ok and u[L.U_VCU_RESET] > 0.5
    s[L.S_RESET_EDGE] = 1.0 if reset and s[L.S_RESET_PREV] == 0 else 0.0
    s[L.S_RESET_PREV] = float(reset)
    i_ok, i_a, hv_ok = measure(inp, st, prm, dt)
    t = np.where(st.temp_ok, inp.temp_c, np.nan)
    st.cell_t_c[:] = np.where(st.temp_ok[prm.temp_of_cell], inp.temp_c[prm.temp_of_cell], np.nanmean(t))
    n_par = pp[L.P_N_PARALLEL]
    i_cell = i_a / n_par if i_ok else 0.0
    if i_ok:
        if s[L.S_EST_T_S] == 0.0:
            st.est_v_acc[:] = 0.0
            st.est_ok[:] = True
        s[L.S_EST_T_S] += dt
        s[L.S_EST_Q_AS] += i_cell * dt
        st.est_v_acc[:] += inp.cell_v * dt
        st.est_ok[:] &= st.cell_ok
        if s[L.S_EST_T_S] >= pp[L.P_TASK_SLOW_S] - 1e-9:
            tt = s[L.S_EST_T_S]
            numpy_ekf_step(prm.cell, prm.tune, st.x, st.P, s[L.S_EST_Q_AS] / tt, st.est_v_acc / tt, st.cell_t_c, tt)
            s[L.S_EST_T_S] = s[L.S_EST_Q_AS] = 0.0
    z = st.x[:, IZ]
    lo, hi = z.min(), z.max()
    target = lo / (lo + 1.0 - hi)
    disp = s[L.S_SOC_DISPLAY]
    rate = pp[L.P_SOC_RATE_PER_S] + 1.5 * abs(i_cell) / (3600.0 * pp[L.P_CELL_CAPACITY_AH])
    disp = target if disp < 0 else float(np.clip(disp + np.clip(target - disp, -rate * dt, rate * dt), 0, 1))
    s[L.S_SOC_DISPLAY] = disp
    out[[L.Y_SOC_MIN, L.Y_SOC_MEAN, L.Y_SOC_MAX, L.Y_SOC_DISPLAY]] = lo, z.mean(), hi, disp
    s[L.S_CAPACITY_AH] = st.x[:, ICAP].min()
    out[L.Y_CAPACITY_AH] = s[L.S_CAPACITY_AH] * n_par
    mains_open = (int(s[L.S_CONTACTORS]) & MAINS) == 0
    sev, react, der_c, der_d, fbits, wbits = evaluate(st, d, dt, s[L.S_RESET_EDGE] > 0, u[L.U_SERVICE_RESET] > 0.5, mains_open)
    s[L.S_REACT], s[L.S_DERATE_CHG], s[L.S_DERATE_DIS] = react, der_c, der_d
    any_held = bool((st.fst[:, L.FS_LATCHED] > 0).any())
    contactor_step.py_func(st, inp, prm, dt, sev, react, abs(i_a) if i_ok else np.inf, vcu_ok, hv_ok, any_held)
    state = int(s[L.S_STATE])
    out[L.Y_N_BLEEDING] = balance(st, inp, prm, dt, i_a, state, sev, z)
    cmd = int(s[L.S_CONTACTORS])
    pack_v = u[L.U_PACK_V] if hv_ok else out[L.Y_CELL_V_SUM]
    limits(st, prm, dt, state, (cmd & MAINS) == MAINS, der_c, der_d, out[L.Y_SOC_MIN], out[L.Y_SOC_MAX], pack_v)
    out[[L.Y_STATE, L.Y_CONTACTORS, L.Y_FAULT_BITS, L.Y_WARN_BITS, L.Y_SEVERITY]] = state, cmd, fbits, wbits, sev
