"""Column indices of the pack model's state and parameter arrays (one place, used by every kernel).

Cells are numbered ``c = s * n_parallel + p`` (series element ``s``, parallel position ``p``);
the coolant flows and heat conducts along this order. Sensor channels are numbered
``[0, n_series)`` cell (series element) voltages, ``[n_series, n_series + n_ts)`` temperature
sensors, then pack current, pack voltage (battery side of the contactors) and bus voltage.
"""

# --- per-cell state x[c, :] -------------------------------------------------------------
X_Z = 0  # state of charge, 0..1 (may leave the range: over-charge / over-discharge is physical)
X_V1 = 1  # voltage of RC pair 1 (V)
X_V2 = 2  # voltage of RC pair 2 (V)
X_H = 3  # slow hysteresis state, -1..1
X_S = 4  # fast ("instantaneous") hysteresis state, -1..1
X_T = 5  # cell temperature (degC)
X_I = 6  # cell terminal current of the last step (A, + = charge)
X_QGEN = 7  # heat generated since the last thermal update (J)
X_QTOT = 8  # heat generated since start (J), bleed share included
X_E = 9  # scratch: Thevenin EMF of the cell over the step (V)
X_G = 10  # scratch: Thevenin conductance 1 / R_c of the cell over the step (S)
X_OCV = 11  # scratch: OCV at the start of the step (V)
X_F = 12  # scratch: SOC factor of R0 at the start of the step
NX = 13

# --- per-cell coefficient cache cache[c, :], refreshed with the thermal update ----------
C_R0C = 0  # R0 in charge (ohm), Arrhenius in the cell temperature, spread applied
C_R0D = 1  # R0 in discharge (ohm)
C_R1 = 2  # R1 (ohm)
C_A1 = 3  # exp(-dt/tau1)
C_B1 = 4  # tau1 (1 - a1) / dt: step-mean weight of the initial RC1 voltage
C_C1 = 5  # C1 = tau1 / R1 (F), 0 when R1 = 0
C_R2 = 6
C_A2 = 7
C_B2 = 8
C_C2 = 9
C_GAM = 10  # hysteresis rate gamma / (3600 Q) per ampere-second (1/(A s))
C_M0 = 11  # fast hysteresis amplitude (V)
C_SD = 12  # self-discharge current at the cell temperature (A)
C_J = 13  # temperature bracket index (as float)
C_WT = 14  # temperature bracket weight
NC = 15

# --- per series element elem[s, :] ------------------------------------------------------
E_E = 0  # Thevenin EMF of the element incl. bleed load (V)
E_R = 1  # Thevenin resistance of the element (ohm)
E_V = 2  # element terminal voltage over the last step (V), the truth a CMU measures
E_IBL = 3  # bleed current of the last step (A)
NE = 4

# --- pack scalars pk[:] -------------------------------------------------------------------
PK_VBUS = 0  # bus (DC link) voltage at the end of the step (V)
PK_VPACK = 1  # pack voltage, battery side of the contactors, step mean (V)
PK_IPACK = 2  # pack current, step mean (A, + = charge)
PK_IDEM = 3  # load current demand actually applied (A, + = into the bus / charging)
PK_TCOOL_OUT = 4  # coolant outlet temperature (degC)
PK_K0 = 5  # contactor positions 0/1: negative, precharge, positive  (PK_K0 + k)
PK_KT0 = 8  # contactor transition timers (s)  (PK_KT0 + k)
PK_KBREAK0 = 11  # current at the last opening of contactor k (A)
PK_IPEAK = 14  # largest instantaneous path current seen (A), e.g. inrush at closing
PK_PLIM = 15  # 1 when a power demand was beyond the deliverable maximum in the last step
PK_TH_DT = 16  # time accumulated since the last thermal update (s)
PK_NSTEP = 17  # steps since the last thermal update
PK_CACHE_DT = 18  # step length the cache was built for (s)
PK_TIME = 19  # simulated time (s)
PK_ETH = 20  # pack Thevenin EMF of the last step (V)
PK_RTH = 21  # pack Thevenin resistance of the last step (ohm)
PK_BADIN = 22  # count of steps whose inputs were not finite (demand / coolant / dt): ignored safely
PK_KFB0 = 23  # contactor auxiliary-contact feedback 0/1 as the BMS sees it  (PK_KFB0 + k)
PK_TPRE = 26  # precharge resistor temperature (degC)
PK_PRE_FUSED = 27  # 1 once the precharge resistor's thermal fuse opened (overheated)
NPK = 28

# --- accumulators acc[:] (energies in J, charge in A s) ---------------------------------
A_E_TERM = 0  # integral of V_pack * I_pack dt (energy into the pack terminals)
A_E_LOAD = 1  # energy delivered to the load: -integral of V_bus * I_dem dt
A_E_DIS = 2  # heat in the bus discharge resistor
A_E_PATH = 3  # heat in the contactor / precharge path (closing balance incl. inrush)
A_E_BLEED = 4  # heat in all bleed resistors
A_E_BLEED_BOARD = 5  # bleed heat not going into cells (board / ambient)
A_Q_COOL = 6  # heat carried away by the coolant
A_Q_AMB = 7  # heat lost to ambient from the cells
A_Q_PACK = 8  # charge into the pack terminals, integral of I_pack dt
A_E_PRE = 9  # share of A_E_PATH while only the precharge path was closed
NACC = 10

# --- inputs inp[:] for one step ---------------------------------------------------------
IN_I_A = 0  # current demand of the load side (A, + = charging the pack)
IN_P_W = 1  # power demand at the bus (W, + = charging)
IN_KIND = 2  # 0: current demand, 1: power demand
IN_FLOW = 3  # coolant mass flow (kg/s)
IN_TCOOL = 4  # coolant inlet temperature (degC)
IN_TAMB = 5  # ambient temperature (degC)
IN_K0 = 6  # contactor commands 0/1: negative, precharge, positive  (IN_K0 + k)
NIN = 9

K_NEG, K_PRE, K_POS = 0, 1, 2

# --- sensor table sens[ch, :] (nominal characteristics) -------------------------------
S_GAIN = 0  # multiplicative gain
S_OFFSET = 1  # additive offset (channel unit)
S_NOISE = 2  # noise standard deviation (channel unit)
S_QUANT = 3  # quantisation step (channel unit), 0 = none
S_LO = 4  # range low (reading clamps here)
S_HI = 5  # range high
NS = 6
