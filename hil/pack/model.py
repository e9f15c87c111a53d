"""The pack model's electrical kernels: cells, parallel current split, hysteresis, circuit.

Sign convention: current is positive in charge. Per cell c (state columns in
:mod:`hil.pack.layout`), with the cell current i held over a step of length dt:

    OCV part      E_c = OCV(z, T) + M(z, T) h + M0(T) s + b1 v1 + b2 v2
    resistance    R_c = f(T, z) R0(T, sign) + R1 (1 - b1) + R2 (1 - b2)
                  (R1, R2 from the coefficient cache: Arrhenius in T times the profile's RC SOC
                   factor G(T, z) at the last refresh, hil.pack.thermal.refresh_cache)
    terminal      v_c = E_c + R_c i        (the exact step-mean voltage of the 2RC circuit:
                                            b_k = tau_k (1 - a_k) / dt, a_k = exp(-dt / tau_k))
    SOC           z'  = z + (eta(i) i - I_sd(T) - G_short OCV) dt / Q_c
    RC pairs      v_k' = a_k v_k + R_k (1 - a_k) i
    hysteresis    h'  = A h + (1 - A) sign(i),        A   = exp(-gamma_c |i| dt)
                  s'  = A_s s + (1 - A_s) sign(i),    A_s = A ** gamma_fast
    heat          Q_c = v_c i dt - OCV (eta i - I_sd - G_short OCV) dt - d(C1 v1^2 / 2 + C2 v2^2 / 2)

Like the estimator's model the resistance depends on the SOC (the profile's factor F(T, z));
unlike it, it also grows further near empty and full (f = F times an edge factor, hil.pack.params), on each cell's own temperature by Arrhenius, the OCV continues with a steep slope
beyond the SOC table (over-discharge / over-charge), on the cell's spread, and the voltage is
the step mean including the RC response within the step. The n_parallel cells of a series
element share one terminal voltage V_s; with the element's bleed resistor (conductance G_bl
while commanded) the element is a Thevenin source

    V_s = E_s + R_s I,   R_s = 1 / (sum 1/R_c + G_bl),   E_s = R_s sum E_c / R_c,
    i_c = (V_s - E_c) / R_c,   sum_c i_c = I - G_bl V_s      (exactly)

and the pack is E_th = sum E_s, R_th = sum R_s. The circuit (contactors, precharge resistor,
bus capacitance C with discharge conductance G_d, load current I_d into the bus) is solved
exactly over the step with E_th, R_th held:

    C dV/dt = g (E_th - V) + I_d - G_d V,   g = 1 / (R_th + R_path)  (0 when the path is open)
    V' = V_ss + (V - V_ss) e,  e = exp(-(g + G_d) dt / C),  V_ss = (g E_th + I_d) / (g + G_d)
    I_pack = g (mean(V) - E_th)            (step mean, so the bus charge balance is exact)

The pack's kernels compile with hil.pack.jit.pack_jit (numba's numpy error model: no zero
test at every per-cell division).
"""

from __future__ import annotations

import math

from hil.pack.jit import pack_jit
from hil.pack.layout import (
    A_E_BLEED, A_E_BLEED_BOARD, A_E_DIS, A_E_LOAD, A_E_PATH, A_E_PRE, A_E_TERM, A_Q_PACK, C_A1, C_A2, C_B1,
    C_B2, C_C1, C_C2, C_GAM, C_J, C_M0, C_R0C, C_R0D, C_R1, C_R2, C_SD, C_WT, E_E, E_IBL, E_R, E_V, IN_I_A,
    IN_K0, IN_KIND, IN_P_W, IN_TAMB, K_NEG, K_POS, K_PRE, NIN, PK_BADIN, PK_CACHE_DT, PK_ETH, PK_IDEM, PK_IPACK,
    PK_IPEAK, PK_K0, PK_KBREAK0, PK_KFB0, PK_KT0, PK_NSTEP, PK_PLIM, PK_PRE_FUSED, PK_RTH, PK_TH_DT, PK_TIME,
    PK_TPRE, PK_VBUS, PK_VPACK, X_E, X_F, X_G, X_H, X_I, X_OCV, X_QGEN, X_QTOT, X_S, X_V1, X_V2, X_Z,
)
from hil.pack.thermal import refresh_cache, thermal_update


@pack_jit(inline="always")
def exp_neg(y):
    """exp(-y) for y >= 0; a 4th-order series below 0.02 (error < y^5 / 120 < 3e-11), which covers
    the hysteresis decay of a step at any normal current and saves the exp call."""
    if y < 0.02:
        return 1.0 - y * (1.0 - y * (0.5 - y * (1.0 / 6.0 - y * (1.0 / 24.0))))
    return math.exp(-y)


@pack_jit
def cells_thevenin(p, x, cache, elem, bleed_cmd):
    """Per cell E_c, R_c (module docstring) into scratch columns; per series element the
    Thevenin (E_s, R_s) including its bleed resistor; returns the pack's (E_th, R_th)."""
    n_soc = p.ocv_v.shape[1]
    inv_dsoc = 1.0 / p.dsoc
    npar = p.n_parallel
    eth = 0.0
    rth = 0.0
    for s in range(p.n_series):
        gsum = 1.0 / p.bleed_ohm[s] if bleed_cmd[s] != 0 else 0.0
        jsum = 0.0
        for q in range(npar):
            c = s * npar + q
            u = (x[c, X_Z] - p.soc0) * inv_dsoc
            beyond = 0.0
            if u <= 0.0:
                k, ws = 0, 0.0
                beyond = u * p.dsoc
            elif u >= n_soc - 1:
                k, ws = n_soc - 2, 1.0
                beyond = (u - (n_soc - 1)) * p.dsoc
            else:
                k = int(u)
                ws = u - k
            j = int(cache[c, C_J])
            wt = cache[c, C_WT]
            j1 = j + 1 if p.ocv_v.shape[0] > 1 else j
            o0 = p.ocv_v[j, k] + ws * (p.ocv_v[j, k + 1] - p.ocv_v[j, k])
            o1 = p.ocv_v[j1, k] + ws * (p.ocv_v[j1, k + 1] - p.ocv_v[j1, k])
            m0 = p.hyst_v[j, k] + ws * (p.hyst_v[j, k + 1] - p.hyst_v[j, k])
            m1 = p.hyst_v[j1, k] + ws * (p.hyst_v[j1, k + 1] - p.hyst_v[j1, k])
            ocv = o0 + wt * (o1 - o0) + p.ocv_edge_slope_v * beyond
            m = m0 + wt * (m1 - m0)
            f0 = p.rsoc[j, k] + ws * (p.rsoc[j, k + 1] - p.rsoc[j, k])
            fz = f0 + wt * (p.rsoc[j1, k] + ws * (p.rsoc[j1, k + 1] - p.rsoc[j1, k]) - f0)
            r0 = cache[c, C_R0C] if x[c, X_I] > 0.0 else cache[c, C_R0D]
            b1 = cache[c, C_B1]
            b2 = cache[c, C_B2]
            r = fz * r0 + cache[c, C_R1] * (1.0 - b1) + cache[c, C_R2] * (1.0 - b2)
            e = ocv + m * x[c, X_H] + cache[c, C_M0] * x[c, X_S] + b1 * x[c, X_V1] + b2 * x[c, X_V2]
            gc = 1.0 / r
            x[c, X_E] = e
            x[c, X_G] = gc
            x[c, X_OCV] = ocv
            x[c, X_F] = fz
            gsum += gc
            jsum += e * gc
        rs = 1.0 / gsum
        es = jsum * rs
        elem[s, E_E] = es
        elem[s, E_R] = rs
        eth += es
        rth += rs
    return eth, rth


@pack_jit
def cells_advance(p, f, x, cache, elem, bleed_cmd, i_pack, dt_s, acc):
    """Split the pack current over the parallel cells and advance every cell by one step
    (module docstring); bleed heat goes ``bleed_to_cell`` into the element's cells, the rest to
    the board. Accumulates heat per cell (X_QGEN, X_QTOT) and the bleed energies."""
    npar = p.n_parallel
    gf = p.gamma_fast
    e_bleed = 0.0
    for s in range(p.n_series):
        v = elem[s, E_E] + elem[s, E_R] * i_pack
        ibl = v / p.bleed_ohm[s] if bleed_cmd[s] != 0 else 0.0
        elem[s, E_V] = v
        elem[s, E_IBL] = ibl
        pbl = v * ibl * dt_s
        e_bleed += pbl
        q_bl = p.bleed_to_cell * pbl / npar
        for q in range(npar):
            c = s * npar + q
            i = (v - x[c, X_E]) * x[c, X_G]
            ocv = x[c, X_OCV]
            i_int = cache[c, C_SD] + f.short_s[c] * ocv
            eta = p.eta_chg if i > 0.0 else 1.0
            dq = (eta * i - i_int) * dt_s
            x[c, X_Z] += dq * p.inv_cap_as[c]
            v1 = x[c, X_V1]
            v2 = x[c, X_V2]
            a1 = cache[c, C_A1]
            a2 = cache[c, C_A2]
            v1n = a1 * v1 + cache[c, C_R1] * (1.0 - a1) * i
            v2n = a2 * v2 + cache[c, C_R2] * (1.0 - a2) * i
            x[c, X_V1] = v1n
            x[c, X_V2] = v2n
            d_rc = 0.5 * (cache[c, C_C1] * (v1n * v1n - v1 * v1) + cache[c, C_C2] * (v2n * v2n - v2 * v2))
            heat = v * i * dt_s - ocv * dq - d_rc + q_bl
            x[c, X_QGEN] += heat
            x[c, X_QTOT] += heat
            if i != 0.0:
                sgn = 1.0 if i > 0.0 else -1.0
                y = cache[c, C_GAM] * abs(i) * dt_s
                ah = exp_neg(y)
                x[c, X_H] = ah * x[c, X_H] + (1.0 - ah) * sgn
                ash = exp_neg(gf * y)
                x[c, X_S] = ash * x[c, X_S] + (1.0 - ash) * sgn
            x[c, X_I] = i
    acc[A_E_BLEED] += e_bleed
    acc[A_E_BLEED_BOARD] += (1.0 - p.bleed_to_cell) * e_bleed


@pack_jit
def contactors_update(p, f, pk, inp, dt_s):
    """Move each contactor (negative, precharge, positive) toward its target after its close /
    open delay; target = command, forced closed when welded, forced open when stuck open.
    The pack current at an opening is recorded (break current); the feedback PK_KFB0 + k follows
    the position unless its auxiliary contact is stuck (fault)."""
    for k in range(3):
        if f.k_welded[k] != 0:
            target = 1.0
        elif f.k_stuck_open[k] != 0:
            target = 0.0
        else:
            target = 1.0 if inp[IN_K0 + k] > 0.5 else 0.0
        if target != pk[PK_K0 + k]:
            pk[PK_KT0 + k] += dt_s
            delay = p.k_close_s if target > 0.5 else p.k_open_s
            if pk[PK_KT0 + k] >= delay - 1e-12:
                if target < 0.5:
                    pk[PK_KBREAK0 + k] = abs(pk[PK_IPACK])
                pk[PK_K0 + k] = target
                pk[PK_KT0 + k] = 0.0
        else:
            pk[PK_KT0 + k] = 0.0
        pk[PK_KFB0 + k] = f.k_fb_stuck_val[k] if f.k_fb_stuck[k] != 0 else pk[PK_K0 + k]


@pack_jit
def precharge_resistor_heat(p, pk, q_j, t_amb, dt_s):
    """Precharge resistor temperature: T' = T_amb + (T - T_amb) exp(-G dt / C) + Q / C (exact for
    the cooling, heat Q of the step added at once); above ``pre_fuse_c`` its thermal fuse opens
    for good (PK_PRE_FUSED), e.g. after repeated precharges or precharging into a short."""
    t = pk[PK_TPRE]
    if math.isfinite(t_amb):
        t = t_amb + (t - t_amb) * math.exp(-p.pre_g_w_k * dt_s / p.pre_heat_cap_j_k)
    t += q_j / p.pre_heat_cap_j_k
    pk[PK_TPRE] = t
    if t > p.pre_fuse_c:
        pk[PK_PRE_FUSED] = 1.0


@pack_jit
def circuit_step(p, f, pk, acc, inp, eth, rth, dt_s):
    """Solve the contactor / precharge / bus circuit over the step (module docstring); returns the
    step-mean pack current. A power demand P is turned into a load current by
    R_tot I^2 + E_th I - P = 0 (the root near P / E_th; beyond the maximum power E_th^2 / 4 R_tot
    the current of maximum power is used and PK_PLIM set). Energy bookkeeping: terminal,
    load, discharge resistor, capacitor; the path heat closes the balance."""
    pre_ok = pk[PK_K0 + K_PRE] > 0.5 and f.precharge_open[0] == 0 and pk[PK_PRE_FUSED] == 0.0
    g_path = 0.0
    if pk[PK_K0 + K_NEG] > 0.5:
        if pk[PK_K0 + K_POS] > 0.5:
            g_path += 1.0 / p.r_contact_ohm
        if pre_ok:
            g_path += 1.0 / (p.r_pre_ohm + p.r_contact_ohm)
    g = 0.0
    i_dem = 0.0
    pk[PK_PLIM] = 0.0
    if g_path > 0.0:
        r_tot = rth + 1.0 / g_path
        g = 1.0 / r_tot
        if inp[IN_KIND] > 0.5:
            pw = inp[IN_P_W]
            if not math.isfinite(pw):
                pw = 0.0
                pk[PK_BADIN] += 1.0
            disc = eth * eth + 4.0 * r_tot * pw
            if disc < 0.0:
                i_dem = -eth / (2.0 * r_tot)
                pk[PK_PLIM] = 1.0
            else:
                i_dem = 2.0 * pw / (eth + math.sqrt(disc)) if eth > 0.0 else 0.0
        else:
            i_dem = inp[IN_I_A]
            if not math.isfinite(i_dem):
                i_dem = 0.0
                pk[PK_BADIN] += 1.0
    cap = p.bus_cap_f
    gd = 1.0 / p.bus_dis_ohm
    vb = pk[PK_VBUS]
    rate = (g + gd) / cap
    v_ss = (g * eth + i_dem) / (g + gd)
    ad = rate * dt_s
    e = math.exp(-ad)
    mean_w = (1.0 - e) / ad if ad > 1e-9 else 1.0 - 0.5 * ad
    a0 = vb - v_ss
    vb1 = v_ss + a0 * e
    v_mean = v_ss + a0 * mean_w
    i_pack = g * (v_mean - eth)
    pk[PK_IPEAK] = max(pk[PK_IPEAK], abs(g * (vb - eth)))
    v_pack = eth + rth * i_pack
    tau = 1.0 / rate
    e_term = v_pack * i_pack * dt_s
    e_load = -i_dem * v_mean * dt_s
    e_dis = gd * (v_ss * v_ss * dt_s + 2.0 * v_ss * a0 * tau * (1.0 - e) + 0.5 * a0 * a0 * tau * (1.0 - e * e))
    d_cap = 0.5 * cap * (vb1 * vb1 - vb * vb)
    e_path = -e_term - e_load - e_dis - d_cap
    acc[A_E_TERM] += e_term
    acc[A_E_LOAD] += e_load
    acc[A_E_DIS] += e_dis
    acc[A_E_PATH] += e_path
    q_pre = 0.0
    if pre_ok and pk[PK_K0 + K_POS] < 0.5:
        acc[A_E_PRE] += e_path
        q_pre = e_path * p.r_pre_ohm / (p.r_pre_ohm + p.r_contact_ohm)
    precharge_resistor_heat(p, pk, q_pre, inp[IN_TAMB], dt_s)
    acc[A_Q_PACK] += i_pack * dt_s
    pk[PK_VBUS] = vb1
    pk[PK_VPACK] = v_pack
    pk[PK_IPACK] = i_pack
    pk[PK_IDEM] = i_dem
    pk[PK_ETH] = eth
    pk[PK_RTH] = rth
    return i_pack


@pack_jit(nogil=True)
def pack_step(p, f, st, inp, bleed_cmd, dt_s):
    """One physics step of the whole pack: contactors, cell Thevenin sources, circuit,
    current split and cell update, and (every ``p.thermal_every`` steps) the thermal network
    and the coefficient cache. ``inp`` is the (NIN,) input row (hil.pack.layout IN_*),
    ``bleed_cmd`` (n_series,) uint8 balancing commands. No allocation. Non-finite demands count
    in PK_BADIN and act as zero demand; a non-positive or non-finite ``dt_s`` or wrongly sized
    arrays count there too and the step is skipped."""
    pk = st.pk
    if not (dt_s > 0.0 and dt_s < 1e6) or bleed_cmd.shape[0] != p.n_series or inp.shape[0] < NIN:
        pk[PK_BADIN] += 1.0
        return
    if pk[PK_CACHE_DT] != dt_s:
        refresh_cache(p, st.x, st.cache, dt_s)
        pk[PK_CACHE_DT] = dt_s
    contactors_update(p, f, pk, inp, dt_s)
    eth, rth = cells_thevenin(p, st.x, st.cache, st.elem, bleed_cmd)
    i_pack = circuit_step(p, f, pk, st.acc, inp, eth, rth, dt_s)
    cells_advance(p, f, st.x, st.cache, st.elem, bleed_cmd, i_pack, dt_s, st.acc)
    pk[PK_TH_DT] += dt_s
    pk[PK_NSTEP] += 1.0
    pk[PK_TIME] += dt_s
    if pk[PK_NSTEP] >= p.thermal_every:
        thermal_update(p, f, st.x, pk, st.acc, st.ts_temp, inp, st.scratch)
        refresh_cache(p, st.x, st.cache, dt_s)


@pack_jit(nogil=True)
def pack_run(p, f, st, inp_seq, bleed_cmd, dt_s, trace):
    """Run ``inp_seq.shape[0]`` steps of :func:`pack_step` with the input rows of ``inp_seq``;
    ``trace`` (n_steps, 3) receives pack voltage, pack current and bus voltage per step."""
    for k in range(inp_seq.shape[0]):
        pack_step(p, f, st, inp_seq[k], bleed_cmd, dt_s)
        trace[k, 0] = st.pk[PK_VPACK]
        trace[k, 1] = st.pk[PK_IPACK]
        trace[k, 2] = st.pk[PK_VBUS]
