"""Passive balancing: which cells bleed through their resistor.

Per cell the metric is its distance above the lowest fresh cell, in SOC (d = z - z_min) or in
voltage (d = v - v_min). A cell is selected when d > start and stays selected while d > stop
(hysteresis, stop > 0: a bled cell always stays above the lowest cell). At most
``max_per_board`` cells per board bleed, the ones with the largest d.

When: only in the configured operating states, without any fault at FAULT level or above,
and either at rest (|I| < rest_current_a for rest_s) or at the top of charge (CHARGE and the
highest cell SOC >= soc_top). Mode "soc" uses the SOC metric; "voltage" the voltage metric,
only while the lowest cell is above v_min_v (where LFP's OCV is steep enough); "both" uses
voltage at the top of charge (when above v_min_v) and SOC otherwise.

Bleeding pauses during measurement windows (the first window_s of every measurement period,
or while the CMUs flag a measurement) and on boards whose resistor temperature, from the
lumped thermal model C dT/dt = P - G (T - T_board_sensors), P = sum v^2 / R of the bleeding
cells, exceeds board_temp_max_c, until it cooled by the hysteresis.
"""

from __future__ import annotations

import math

import numba as nb

from bms import layout as L
from bms.diag import board_temp_mean


@nb.njit(cache=True)
def balance_step(st, inp, prm, dt_s, i_a, state, sev_max, soc):
    """Update ``st.bleed`` (command) and ``st.bal_sel`` for this step; ``i_a`` is the fresh pack
    current (NaN if stale), ``soc`` (n,) the cell SOC estimates. Returns the number of bleeding
    cells. Thermal model advanced exactly: T' = T_ss + (T - T_ss) exp(-G dt / C)."""
    pp, s = prm.pp, st.s
    n = st.bleed.shape[0]
    nb_ = st.board_heat_c.shape[0]
    # board resistor temperatures, with the bleeding of the step that just ended
    for b in range(nb_):
        amb = board_temp_mean(inp, st, prm, b)
        if math.isnan(st.board_heat_c[b]):
            st.board_heat_c[b] = amb if not math.isnan(amb) else 25.0
        if math.isnan(amb):
            amb = st.board_heat_c[b]
        p_w = 0.0
        for c in range(prm.cell_start[b], prm.cell_start[b + 1]):
            if st.bleed[c]:
                v = inp.cell_v[c] if math.isfinite(inp.cell_v[c]) else 3.3
                p_w += v * v / pp[L.P_BAL_R_OHM]
        t_ss = amb + p_w / pp[L.P_BAL_G_W_K]
        st.board_heat_c[b] = t_ss + (st.board_heat_c[b] - t_ss) * math.exp(-pp[L.P_BAL_G_W_K] * dt_s / pp[L.P_BAL_C_J_K])
        if st.board_heat_c[b] > pp[L.P_BAL_T_MAX_C]:
            st.board_hot[b] = True
        elif st.board_heat_c[b] < pp[L.P_BAL_T_MAX_C] - pp[L.P_BAL_T_HYST_K]:
            st.board_hot[b] = False
    # rest timer and measurement windows
    if not math.isnan(i_a) and abs(i_a) < pp[L.P_BAL_REST_A]:
        s[L.S_REST_T_S] += dt_s
    else:
        s[L.S_REST_T_S] = 0.0
    phase = s[L.S_MEAS_PHASE_S] + dt_s
    if phase >= pp[L.P_MEAS_PERIOD_S]:
        phase -= pp[L.P_MEAS_PERIOD_S] * math.floor(phase / pp[L.P_MEAS_PERIOD_S])
    s[L.S_MEAS_PHASE_S] = phase
    in_window = phase < pp[L.P_MEAS_WINDOW_S] or inp.u[L.U_MEAS_WINDOW] > 0.5
    # is balancing allowed, and on which metric?
    zmin, zmax, vmin = math.inf, -math.inf, math.inf
    for c in range(n):
        if st.cell_ok[c]:
            zmin = min(zmin, soc[c])
            zmax = max(zmax, soc[c])
            vmin = min(vmin, inp.cell_v[c])
    allowed = ((int(pp[L.P_BAL_STATES]) >> state) & 1) == 1 and sev_max < L.SEV_FAULT and vmin < math.inf
    at_rest = s[L.S_REST_T_S] >= pp[L.P_BAL_REST_S]
    top = state == L.ST_CHARGE and zmax >= pp[L.P_BAL_SOC_TOP]
    mode = int(pp[L.P_BAL_MODE])
    v_ok = vmin >= pp[L.P_BAL_V_MIN_V]
    use_v = (mode == L.BAL_VOLTAGE and v_ok) or (mode == L.BAL_BOTH and top and v_ok)
    use_soc = mode == L.BAL_SOC or (mode == L.BAL_BOTH and not use_v)
    active = allowed and (at_rest or top) and (use_v or use_soc)
    if use_v:
        start, stop, ref = pp[L.P_BAL_START_V], pp[L.P_BAL_STOP_V], vmin
    else:
        start, stop, ref = pp[L.P_BAL_START_SOC], pp[L.P_BAL_STOP_SOC], zmin
    for c in range(n):
        d = -1.0
        if active and st.cell_ok[c]:
            d = (inp.cell_v[c] if use_v else soc[c]) - ref
        cand = d > (stop if st.bal_sel[c] else start)
        st.bal_d[c] = d if cand else -1.0
        st.bal_sel[c] = False
        st.bleed[c] = False
    # at most N per board: the largest metrics
    nmax = int(pp[L.P_BAL_MAX_PER_BOARD])
    count = 0
    for b in range(nb_):
        for _ in range(nmax):
            best, pick = 0.0, -1
            for c in range(prm.cell_start[b], prm.cell_start[b + 1]):
                if st.bal_d[c] > best and not st.bal_sel[c]:
                    best, pick = st.bal_d[c], c
            if pick < 0:
                break
            st.bal_sel[pick] = True
            if not in_window and not st.board_hot[b]:
                st.bleed[pick] = True
                count += 1
    return count
