"""The firmware step: estimation, diagnostics, state machine, balancing and limits in one
compiled call per fast-task tick, running the fast / medium / slow tasks on their own periods.

    from bms import core
    prm = load_pack("heavy_duty_192s").params()
    st, inp = core.new_state(prm), core.new_inputs(prm)
    ... fill inp from decoded frames ...
    core.initialise(st, prm, inp)          # once, SOC from the rested voltages (unless restored)
    core.step(st, inp, prm, dt_s)          # every fast-task period; outputs in st.out / st.bleed
    run = core.bind(st, inp, prm); run(dt_s)   # the same without numba's per-call dispatch

Array layouts (Inputs, State, outputs Y_*, parameters P_*): :mod:`bms.layout`.
Persistent state (deep-discharge and other persistent latches, fault memory, SOC, capacity,
the self-discharge check's reference): :mod:`bms.statefile`.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from bms import bound
from bms import layout as L
from bms.balancing import balance_step
from bms.contactors import MAINS, contactor_step
from bms.diag import board_temp_mean, evaluate, isense_fresh, measure_cells, measure_estimator, measure_fast, vcu_fresh
from bms.diag_table import FAULTS, NF, NQ
from bms.layout import Inputs, State
from bms.limits import limits_step
from bms.pack import PackParams
from bms.selfdischarge import bleed_accumulate, rest_point
from bms.soc import estimator
from bms.soc.layout import ICAP, IZ
from bms.soc.pack import pack_soc_step

SOC_DISPLAY_K_RATE = 1.5  # displayed SOC may move 1.5x as fast as the coulomb rate


@nb.njit(cache=True)
def cell_temperatures(inp, st, prm):
    """Temperature of each cell for the estimator: its nearest plausible sensor, else the mean
    of its board's plausible sensors, else the pack mean; NaN (held by the estimator) if none."""
    acc, k = 0.0, 0
    for j in range(inp.temp_c.shape[0]):
        if st.temp_ok[j]:
            acc += inp.temp_c[j]
            k += 1
    pack_mean = acc / k if k > 0 else math.nan
    for c in range(st.cell_t_c.shape[0]):
        j = prm.temp_of_cell[c]
        if st.temp_ok[j]:
            st.cell_t_c[c] = inp.temp_c[j]
            continue
        t = board_temp_mean(inp, st, prm, prm.board_of_cell[c])
        st.cell_t_c[c] = t if not math.isnan(t) else pack_mean


@nb.njit(cache=True)
def _estimate_accumulate(st, inp, dt_s, i_cell):
    """Fast task, fresh current only: accumulate the cell charge and cell voltages of the slow
    task's period (a cell stale at any sample of the period is passed as invalid, i.e. held)."""
    s = st.s
    if s[L.S_EST_T_S] == 0.0:
        st.est_v_acc[:] = 0.0
        st.est_ok[:] = True
    s[L.S_EST_T_S] += dt_s
    s[L.S_EST_Q_AS] += i_cell * dt_s
    for c in range(st.est_v_acc.shape[0]):
        st.est_v_acc[c] += inp.cell_v[c] * dt_s
        st.est_ok[c] = st.est_ok[c] and st.cell_ok[c]


@nb.njit(cache=True)
def _estimate_update(st, prm):
    """Slow task: run the estimator with the period's mean cell current and voltages (skipped if
    the current was stale all period); returns the mean cell current (0 if skipped)."""
    s = st.s
    t = s[L.S_EST_T_S]
    if t <= 0.0:
        return 0.0
    for c in range(st.est_v_acc.shape[0]):
        st.est_v_acc[c] /= t
    i_mean = s[L.S_EST_Q_AS] / t
    estimator.soc_step(prm.est_kind, prm.cell, prm.tune, st.x, st.P, i_mean, st.est_v_acc, st.cell_t_c, st.est_ok, t)
    s[L.S_EST_T_S], s[L.S_EST_Q_AS] = 0.0, 0.0
    return i_mean


@nb.njit(cache=True)
def _due(s, pp, task, period_index, dt_s):
    """Scheduler of a periodic task: the time since its last run grows by ``dt_s``; the task is
    due once that reaches its period (first call: at once, covering ``dt_s``). When due, the
    covered time becomes the task's dt (``S_TASK_DT_S + task``) and the timer restarts."""
    t = s[L.S_TASK_T_S + task]
    t = dt_s if t < 0.0 else t + dt_s
    if s[L.S_TASK_T_S + task] < 0.0 or t >= pp[period_index] - 1e-9:
        s[L.S_TASK_DT_S + task] = t
        s[L.S_TASK_T_S + task] = 0.0
        return True
    s[L.S_TASK_T_S + task] = t
    return False


@nb.njit(cache=True)
def check_shapes(st, inp, prm, dt_s):
    """Raise ValueError unless the arrays belong to this pack and dt_s > 0 is finite (the
    kernels index without bounds checks: a wrong size must never reach them)."""
    n, nb_, nt = prm.board_of_cell.shape[0], prm.cell_start.shape[0] - 1, prm.board_of_temp.shape[0]
    if not (dt_s > 0.0 and dt_s < 3600.0):
        raise ValueError("step: dt_s must be a finite time step in (0, 3600) s")
    if (inp.cell_v.shape[0] != n or inp.board_valid.shape[0] != nb_ or inp.board_age_s.shape[0] != nb_
            or inp.temp_c.shape[0] != nt or inp.temp_valid.shape[0] != nt or inp.temp_age_s.shape[0] != nt
            or inp.u.shape[0] != L.NU):
        raise ValueError("step: inputs do not match the pack (see bms.layout.Inputs and core.new_inputs)")
    if (st.s.shape[0] != L.NS or st.out.shape[0] != L.NY or st.x.shape[0] != n or st.bleed.shape[0] != n
            or st.fst.shape[0] != prm.diag.shape[0] or st.board_heat_c.shape[0] != nb_ or st.temp_ok.shape[0] != nt
            or prm.pp.shape[0] != L.NPP or st.q.shape[0] < NQ or st.sd.shape[0] != n):
        raise ValueError("step: state does not match the pack (see core.new_state / core.load_state)")


@nb.njit(cache=True, nogil=True)
def step(st, inp, prm, dt_s):
    """One tick of the firmware, called every fast-task period (no allocation, no I/O). Three
    tasks, each on its own period (pack ``[tasks]``; ``S_TASKS_RAN`` tells which ran):

    * fast, every call (dt_s): reset-request edge, current / contactor / communication
      quantities (bms.diag.measure_fast), coulomb count and the estimator's period sums;
    * medium (its period): cell voltages and temperatures (bms.diag.measure_cells);
    * slow (its period): SOC estimator (bms.soc) on the period's mean cell current I_pack /
      n_parallel and mean voltages, pack SOC min / mean / max / display, capacity, the
      self-discharge check's rest points (bms.selfdischarge), estimator plausibility
      (bms.diag.measure_estimator);
    * then every call: the fault table rows of the tasks that ran (bms.diag.evaluate, each with
      its task's dt), the state machine and contactors (fast); balancing (and the bled charge),
      limits (medium).
    Outputs are written to ``st.out`` (Y_*) and ``st.bleed``. Arrays of another pack or a
    non-finite dt_s raise ValueError (:func:`check_shapes`)."""
    check_shapes(st, inp, prm, dt_s)
    s, u, pp, out = st.s, inp.u, prm.pp, st.out
    s[L.S_TIME_S] += dt_s
    medium = _due(s, pp, L.T_MEDIUM, L.P_TASK_MEDIUM_S, dt_s)
    slow = _due(s, pp, L.T_SLOW, L.P_TASK_SLOW_S, dt_s)
    s[L.S_TASK_DT_S + L.T_FAST] = dt_s
    ran = (1 << L.T_FAST) | ((1 << L.T_MEDIUM) if medium else 0) | ((1 << L.T_SLOW) if slow else 0)
    s[L.S_TASKS_RAN] = ran
    dt_med, dt_slow = s[L.S_TASK_DT_S + L.T_MEDIUM], s[L.S_TASK_DT_S + L.T_SLOW]
    # ---- fast task: inputs
    vcu_ok = vcu_fresh(u, prm.diag)
    reset = vcu_ok and u[L.U_VCU_RESET] > 0.5
    s[L.S_RESET_EDGE] = 1.0 if (reset and s[L.S_RESET_PREV] == 0.0) else 0.0
    s[L.S_RESET_PREV] = 1.0 if reset else 0.0
    measure_fast(inp, st, prm, dt_s)
    i_ok = isense_fresh(u, prm.diag)
    i_a = u[L.U_PACK_I_A] if i_ok else math.nan
    hv_ok = i_ok and u[L.U_HV_VALID] > 0.5
    n_par = pp[L.P_N_PARALLEL]
    # ---- medium task: cells
    if medium:
        measure_cells(inp, st, prm, dt_med)
    if i_ok:
        s[L.S_SOC_COUNT] += i_a * dt_s / 3600.0
        _estimate_accumulate(st, inp, dt_s, i_a / n_par)
    # ---- slow task: SOC, SOH
    if slow:
        cell_temperatures(inp, st, prm)
        fresh_means = s[L.S_EST_T_S] > 0.0
        i_mean = _estimate_update(st, prm)
        pack_soc_step(st.x[:, IZ], i_mean, pp[L.P_CELL_CAPACITY_AH], dt_slow, pp[L.P_SOC_RATE_PER_S],
                      SOC_DISPLAY_K_RATE, pp[L.P_BAL_REST_A] / n_par, s[L.S_SOC_DISPLAY:L.S_SOC_DISPLAY + 1],
                      out[L.Y_SOC_MIN:L.Y_SOC_DISPLAY + 1])
        cap = np.inf
        for c in range(st.x.shape[0]):
            cap = min(cap, st.x[c, ICAP])
        s[L.S_CAPACITY_AH] = cap
        out[L.Y_CAPACITY_AH] = cap * n_par
        if fresh_means:
            t_sum, t_n = 0.0, 0
            for c in range(st.cell_t_c.shape[0]):
                if math.isfinite(st.cell_t_c[c]):
                    t_sum += st.cell_t_c[c]
                    t_n += 1
            rest_point(st.sd, s, st.est_v_acc, st.est_ok, out[L.Y_SOC_MEAN], t_sum / t_n if t_n else math.nan,
                       prm.cell, pp)
        measure_estimator(st, prm)
    # ---- decisions: fault rows of the tasks that ran; state machine (fast)
    mains_open = (int(s[L.S_CONTACTORS]) & MAINS) == 0
    sev, react, der_c, der_d, fbits, wbits = evaluate(st, prm.diag, s[L.S_TASK_DT_S:L.S_TASK_DT_S + L.NT], ran,
                                                      s[L.S_RESET_EDGE] > 0.0, u[L.U_SERVICE_RESET] > 0.5, mains_open)
    s[L.S_REACT], s[L.S_DERATE_CHG], s[L.S_DERATE_DIS] = react, der_c, der_d
    any_held = False
    for f in range(st.fst.shape[0]):
        if st.fst[f, L.FS_LATCHED] > 0.0:
            any_held = True
    i_abs = abs(i_a) if i_ok else np.inf
    contactor_step(st, inp, prm, dt_s, sev, react, i_abs, vcu_ok, hv_ok, any_held)
    state = int(s[L.S_STATE])
    cmd = int(s[L.S_CONTACTORS])
    # ---- medium task: balancing, limits
    if medium:
        out[L.Y_N_BLEEDING] = balance_step(st, inp, prm, dt_med, i_a, state, sev, st.x[:, IZ])
        bleed_accumulate(st.sd, st.bleed, inp.cell_v, st.cell_ok, pp, dt_med)
        pack_v = u[L.U_PACK_V] if hv_ok else out[L.Y_CELL_V_SUM]
        limits_step(st, prm, dt_med, state, (cmd & MAINS) == MAINS, der_c, der_d, out[L.Y_SOC_MIN], out[L.Y_SOC_MAX],
                    pack_v)
    out[L.Y_STATE] = state
    out[L.Y_CONTACTORS] = cmd
    out[L.Y_FAULT_BITS] = fbits
    out[L.Y_WARN_BITS] = wbits
    out[L.Y_SEVERITY] = sev


# ---- Python helpers (setup, persistence) -------------------------------------------------------
def bind(st: State, inp: Inputs, prm: PackParams):
    """``f(dt_s)`` running :func:`step` on these arrays through the compiled overload resolved
    once here, skipping numba's per-call type dispatch (about 9 us of CPU per call on the
    192-cell pack). The arrays are updated in place by the caller, as usual."""
    return bound.bind(step, st, inp, prm, free=(nb.float64,))


def new_inputs(prm: PackParams) -> Inputs:
    """Input arrays of the pack, all marked invalid (nothing is fresh until the node fills it)."""
    n, nb_, nt = int(prm.pp[L.P_N_SERIES]), int(prm.pp[L.P_N_BOARDS]), int(prm.pp[L.P_N_TEMPS])
    u = np.zeros(L.NU)
    u[[L.U_ISENSE_AGE_S, L.U_VCU_AGE_S, L.U_CONTACTOR_FB_AGE_S]] = np.inf
    u[[L.U_PACK_V, L.U_BUS_V]] = 0.0
    return Inputs(cell_v=np.full(n, np.nan), board_valid=np.zeros(nb_, dtype=np.bool_),
                  board_age_s=np.full(nb_, np.inf), temp_c=np.full(nt, np.nan),
                  temp_valid=np.zeros(nt, dtype=np.bool_), temp_age_s=np.full(nt, np.inf), u=u)


def new_state(prm: PackParams) -> State:
    """A fresh power-up state: INIT, contactors open, estimator at 50 % (call :func:`initialise`)."""
    n, nb_, nt = int(prm.pp[L.P_N_SERIES]), int(prm.pp[L.P_N_BOARDS]), int(prm.pp[L.P_N_TEMPS])
    x, P = estimator.new_state(n, prm.cell, prm.tune)
    s = np.zeros(L.NS)
    s[L.S_STATE] = L.ST_INIT
    s[L.S_SOC_DISPLAY] = -1.0
    s[L.S_CRIT_T_S] = -1.0
    s[L.S_CAPACITY_AH] = prm.cell.capacity_ah
    s[L.S_TASK_T_S:L.S_TASK_T_S + L.NT] = -1.0  # every task is released at the first tick
    s[[L.S_SD_REF_T_S, L.S_SD_RATE, L.S_SD_REF_SLOPE, L.S_SD_REF_SOC]] = np.nan  # no rest point yet
    s[L.S_SD_LOC] = -1.0
    out = np.full(L.NY, np.nan)
    out[[L.Y_STATE, L.Y_CONTACTORS, L.Y_FAULT_BITS, L.Y_WARN_BITS, L.Y_SEVERITY, L.Y_N_BLEEDING]] = 0.0
    out[[L.Y_I_CHG_LIM_A, L.Y_I_DIS_LIM_A, L.Y_P_CHG_LIM_W, L.Y_P_DIS_LIM_W]] = 0.0
    return State(s=s, out=out, bleed=np.zeros(n, dtype=np.bool_), x=x, P=P, fst=np.zeros((NF, L.NFS)),
                 fcnt=np.zeros((NF, 3)), q=np.full(NQ, np.nan), qloc=np.full(NQ, -1.0),
                 cell_ok=np.zeros(n, dtype=np.bool_), temp_ok=np.zeros(nt, dtype=np.bool_),
                 cell_t_c=np.full(n, np.nan), stuck_v=np.full(n, np.nan), stuck_i=np.full(n, np.nan),
                 stuck_t=np.zeros(n), bal_d=np.zeros(n), board_heat_c=np.full(nb_, np.nan),
                 bal_sel=np.zeros(n, dtype=np.bool_), board_hot=np.zeros(nb_, dtype=np.bool_),
                 est_v_acc=np.zeros(n), est_ok=np.zeros(n, dtype=np.bool_), sd=np.zeros((n, L.NSD)))


def initialise(st: State, prm: PackParams, inp: Inputs) -> None:
    """Power-up SOC from the rested cell voltages (fresh boards only; others stay at 50 % with
    the full variance), as the firmware does before its first step."""
    v = np.where(fresh_cells(inp, prm), inp.cell_v, np.nan)
    t = inp.temp_c[prm.temp_of_cell]
    estimator.init_from_rest(prm.cell, prm.tune, st.x, st.P, v, t)
    st.s[L.S_SOC_DISPLAY] = -1.0


def fresh_cells(inp: Inputs, prm: PackParams) -> np.ndarray:
    stale = prm.diag[L.F_COMM_CMU, L.D_WARN]
    b = prm.board_of_cell
    return inp.board_valid[b] & (inp.board_age_s[b] < stale) & np.isfinite(inp.cell_v)


def outputs(st: State) -> dict:
    """The outputs as a dict (names of the Y_* constants, lower case), plus the bleed mask."""
    d = {name[2:].lower(): float(st.out[val]) for name, val in vars(L).items()
         if name.startswith("Y_") and isinstance(val, int)}
    d["state_name"] = L.STATE_NAMES[int(st.out[L.Y_STATE])]
    d["faults"] = [f.name for f in FAULTS if int(st.out[L.Y_FAULT_BITS]) >> f.id & 1]
    d["warnings"] = [f.name for f in FAULTS if int(st.out[L.Y_WARN_BITS]) >> f.id & 1]
    d["bleed"] = st.bleed.copy()
    return d
