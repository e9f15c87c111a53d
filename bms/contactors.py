"""Operating state machine and contactor control.

States INIT -> STANDBY -> PRECHARGE -> DRIVE | CHARGE, and ERROR (``bms.layout.ST_*``).

* PRECHARGE closes the negative and precharge contactors and waits until the bus voltage
  reaches ``fraction`` x pack voltage (fresh HV measurement) after at least ``min_s``, within
  ``timeout_s``; then it closes the positive contactor, keeps both for ``overlap_s`` and opens
  the precharge one. A timeout opens everything, waits ``retry_delay_s`` and retries, at most
  ``attempts`` times per closing sequence; then PRECHARGE_FAIL trips (forbid closing).
* The positive contactor is only ever commanded closed by a successful precharge
  (``S_PRE_OK``); DRIVE / CHARGE without it fall back to STANDBY.
* Break-current rule: a closed contactor is only opened while |I| <= break_current_a with a
  fresh current reading, or when a CRITICAL fault has persisted for critical_open_s. (The
  precharge contactor, shunted by a closed positive contactor, carries no current and is exempt.)
* A fault reaction RE_OPEN (or any CRITICAL fault) opens the contactors under that rule and
  then enters ERROR; RE_NO_CLOSE forbids leaving STANDBY and sends STANDBY to ERROR.
* STANDBY starts a closing sequence only while fresh auxiliary-contact feedback shows every
  contactor open (a welded contactor must never see a precharge: CONTACTOR_FEEDBACK follows).
* ERROR is left to STANDBY only when no fault is held (latched) and the vehicle asks for it
  (reset flag with a fresh request frame).
"""

from __future__ import annotations

import numba as nb
import numpy as np

from bms import layout as L

MAINS = L.K_NEG | L.K_POS


@nb.njit(cache=True)
def gate_opening(prev, want, i_abs, break_a, crit_ok):
    """Apply the break-current rule to a command change ``prev`` -> ``want``: opening a
    carrying contactor is deferred (the previous bits are kept) unless |I| <= break_a or the
    critical timer has run out. Returns the command to apply."""
    opening = prev & ~want
    if opening == 0 or i_abs <= break_a or crit_ok:
        return want
    if opening == L.K_PRE and (prev & L.K_POS) and (want & L.K_POS):
        return want  # precharge contactor shunted by the positive one
    return prev | want  # keep closed what may not open yet


@nb.njit(cache=True)
def contactor_step(st, inp, prm, dt_s, sev, react, i_abs, vcu_ok, hv_ok, any_held):
    """Advance the state machine by ``dt_s``. ``sev`` highest severity, ``react`` reaction bits
    of this step's diagnostics, ``i_abs`` |pack current| (inf if not fresh), ``vcu_ok`` the
    request is fresh, ``hv_ok`` pack / bus voltages are fresh, ``any_held`` a fault is held."""
    s, pp, u = st.s, prm.pp, inp.u
    state = int(s[L.S_STATE])
    prev = int(s[L.S_CONTACTORS])
    if sev == L.SEV_CRITICAL:  # timer from the first critical step (-1: not critical)
        s[L.S_CRIT_T_S] = 0.0 if s[L.S_CRIT_T_S] < 0.0 else s[L.S_CRIT_T_S] + dt_s
    else:
        s[L.S_CRIT_T_S] = -1.0
    crit_ok = sev == L.SEV_CRITICAL and s[L.S_CRIT_T_S] >= pp[L.P_CRIT_OPEN_S] - 1e-9
    want_open = (react & L.RE_OPEN) != 0
    no_close = (react & (L.RE_OPEN | L.RE_NO_CLOSE)) != 0
    # the vehicle's request: held while the frame is stale (COMM_VCU handles silence)
    req = int(u[L.U_VCU_REQUEST]) if vcu_ok else -1
    if req == L.REQ_CHARGE and u[L.U_CHARGER_CONNECTED] < 0.5:
        req = L.REQ_STANDBY
    if req < 0 or req > L.REQ_CHARGE:
        req = -1 if not vcu_ok else L.REQ_STANDBY
    fb_open = (u[L.U_CONTACTOR_FB_VALID] > 0.5 and u[L.U_CONTACTOR_FB_AGE_S] < prm.diag[L.F_COMM_ISENSE, L.D_WARN]
               and (int(u[L.U_CONTACTOR_FB]) & 7) == 0)
    new = state
    want = prev
    s[L.S_OPENING] = 0.0
    if state == L.ST_INIT:
        want = 0
        if s[L.S_STATE_T_S] >= pp[L.P_INIT_S]:
            new = L.ST_STANDBY
    elif state == L.ST_STANDBY:
        want = 0
        if no_close:
            new = L.ST_ERROR
        elif ((req == L.REQ_DRIVE or req == L.REQ_CHARGE) and prev & 7 == 0 and fb_open
              and s[L.S_PRE_ATTEMPTS] < pp[L.P_PRE_ATTEMPTS]):
            new = L.ST_PRECHARGE
            s[L.S_TARGET] = L.ST_DRIVE if req == L.REQ_DRIVE else L.ST_CHARGE
            s[L.S_PRE_PHASE], s[L.S_PRE_T_S], s[L.S_PRE_ATTEMPTS], s[L.S_PRE_OK] = 1.0, 0.0, 0.0, 0.0
            want = L.K_NEG | L.K_PRE
    elif state == L.ST_PRECHARGE:
        new, want = _precharge(s, pp, u, dt_s, req, no_close, hv_ok, st.out[L.Y_CELL_V_SUM])
    elif state == L.ST_DRIVE or state == L.ST_CHARGE:
        mine = L.REQ_DRIVE if state == L.ST_DRIVE else L.REQ_CHARGE
        keep = s[L.S_PRE_OK] > 0.0 and not want_open and (req == mine or req == -1)
        want = MAINS if keep else 0
        s[L.S_OPENING] = 0.0 if keep else 1.0
    else:  # ERROR
        want = 0
        s[L.S_OPENING] = 1.0 if prev & 7 else 0.0
        if (not any_held and not no_close and vcu_ok and u[L.U_VCU_RESET] > 0.5
                and req == L.REQ_STANDBY and prev & 7 == 0):
            new = L.ST_STANDBY
    cmd = gate_opening(prev, want, i_abs, pp[L.P_BREAK_A], crit_ok)
    if (state == L.ST_DRIVE or state == L.ST_CHARGE) and cmd & MAINS == 0:
        new = L.ST_ERROR if no_close else L.ST_STANDBY
    if cmd & MAINS == 0:
        s[L.S_PRE_OK] = 0.0
        if state != L.ST_PRECHARGE and new != L.ST_PRECHARGE and not (state == L.ST_STANDBY and new == L.ST_STANDBY):
            s[L.S_PRE_PHASE] = 0.0
    if new == L.ST_ERROR:
        s[L.S_PRE_ATTEMPTS] = 0.0  # PRECHARGE_FAIL stays held until the vehicle resets it
    _apply(s, cmd, prev, new, state, dt_s)


@nb.njit(cache=True)
def _precharge(s, pp, u, dt_s, req, no_close, hv_ok, cell_v_sum):
    """One step of the precharge sequence; returns (new state, wanted contactor bits)."""
    phase = int(s[L.S_PRE_PHASE])
    if no_close or req == L.REQ_STANDBY:
        s[L.S_PRE_PHASE] = 0.0
        return (L.ST_ERROR if no_close else L.ST_STANDBY), 0
    if req == L.REQ_DRIVE or req == L.REQ_CHARGE:
        s[L.S_TARGET] = L.ST_DRIVE if req == L.REQ_DRIVE else L.ST_CHARGE
    s[L.S_PRE_T_S] += dt_s
    t = s[L.S_PRE_T_S]
    if phase == 1:
        pack_v = u[L.U_PACK_V] if hv_ok else np.nan
        if not np.isfinite(pack_v) or pack_v < 1.0:
            pack_v = cell_v_sum
        reached = hv_ok and np.isfinite(pack_v) and pack_v > 1.0 and u[L.U_BUS_V] >= pp[L.P_PRE_FRAC] * pack_v
        if reached and t >= pp[L.P_PRE_MIN_S]:
            s[L.S_PRE_PHASE], s[L.S_PRE_T_S], s[L.S_PRE_OK] = 2.0, 0.0, 1.0
            return L.ST_PRECHARGE, L.K_NEG | L.K_PRE | L.K_POS
        if t >= pp[L.P_PRE_TIMEOUT_S]:
            s[L.S_PRE_ATTEMPTS] += 1.0
            s[L.S_PRE_T_S] = 0.0
            if s[L.S_PRE_ATTEMPTS] >= pp[L.P_PRE_ATTEMPTS]:
                s[L.S_PRE_PHASE] = 0.0
                return L.ST_STANDBY, 0
            s[L.S_PRE_PHASE] = 3.0
            return L.ST_PRECHARGE, 0
        return L.ST_PRECHARGE, L.K_NEG | L.K_PRE
    if phase == 2:
        if t >= pp[L.P_PRE_OVERLAP_S]:
            s[L.S_PRE_PHASE], s[L.S_PRE_T_S] = 0.0, 0.0
            return int(s[L.S_TARGET]), L.K_NEG | L.K_POS
        return L.ST_PRECHARGE, L.K_NEG | L.K_PRE | L.K_POS
    # phase 3: cooling the precharge resistor before the next attempt
    if t >= pp[L.P_PRE_RETRY_S]:
        s[L.S_PRE_PHASE], s[L.S_PRE_T_S] = 1.0, 0.0
        return L.ST_PRECHARGE, L.K_NEG | L.K_PRE
    return L.ST_PRECHARGE, 0


@nb.njit(cache=True)
def _apply(s, cmd, prev, new, state, dt_s):
    """Store the command and the state, with their timers."""
    if cmd != prev:
        s[L.S_CMD_T_S] = 0.0
    else:
        s[L.S_CMD_T_S] += dt_s
    if cmd & MAINS == 0:
        s[L.S_OPEN_T_S] = s[L.S_OPEN_T_S] + dt_s if prev & MAINS == 0 else 0.0
    else:
        s[L.S_OPEN_T_S] = 0.0
    s[L.S_CONTACTORS] = cmd
    if new != state:
        s[L.S_STATE_T_S] = 0.0
    else:
        s[L.S_STATE_T_S] += dt_s
    s[L.S_STATE] = new
