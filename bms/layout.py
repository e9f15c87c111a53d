"""Array layouts of the firmware step: every index constant of inputs, state, parameters and
outputs, in one place. A CAN node fills :class:`Inputs` from decoded frames and reads
:class:`Outputs`-indices from ``state.out``; the kernels index the same constants.

Sign convention: current is positive in charge. Limits are reported as positive magnitudes.

Inputs (``bms.core.Inputs``, a NamedTuple of arrays, written by the node before each step)::

    cell_v       (n_series,)  float64  cell voltages, V
    board_valid  (n_boards,)  bool     last cell-voltage frame set of the board passed E2E checks
    board_age_s  (n_boards,)  float64  time since the board's last valid cell-voltage frame, s
    temp_c       (n_temps,)   float64  temperature sensors, degC
    temp_valid   (n_temps,)   bool     sensor frame valid
    temp_age_s   (n_temps,)   float64  age of the sensor reading, s
    u            (NU,)        float64  scalar inputs, indices U_* below

A measurement group older than its COMM_* warning threshold, or not valid, is never used
as fresh: it is excluded from the checks and the estimator (the held value is not reused).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

# ---- operating states, requests, severities ---------------------------------------------
ST_INIT, ST_STANDBY, ST_PRECHARGE, ST_DRIVE, ST_CHARGE, ST_ERROR = 0, 1, 2, 3, 4, 5
STATE_NAMES = ("INIT", "STANDBY", "PRECHARGE", "DRIVE", "CHARGE", "ERROR")
REQ_STANDBY, REQ_DRIVE, REQ_CHARGE = 0, 1, 2
SEV_NONE, SEV_WARNING, SEV_FAULT, SEV_CRITICAL = 0, 1, 2, 3
SEVERITY_NAMES = ("NONE", "WARNING", "FAULT", "CRITICAL")

# contactor bits (commands in Y_CONTACTORS, feedback in U_CONTACTOR_FB)
K_NEG, K_PRE, K_POS = 1, 2, 4

# ---- fault ids (fixed: bit position in BMS_Faults / BMS_Warnings of dbc/bms_fil.dbc) ----------
F_CELL_OV = 0
F_CELL_UV = 1
F_CELL_DEEP_DISCHARGE = 2
F_CELL_OT_CHG = 3
F_CELL_OT_DIS = 4
F_CELL_UT_CHG = 5
F_CELL_UT_DIS = 6
F_PACK_OC_CHG = 7
F_PACK_OC_DIS = 8
F_PACK_I2T_CHG = 9
F_PACK_I2T_DIS = 10
F_CELL_V_SPREAD = 11
F_CELL_T_SPREAD = 12
F_PACK_V_PLAUSIBILITY = 13
F_SENSE_WIRE_OPEN = 14
F_TEMP_SENSOR_OPEN = 15
F_TEMP_SENSOR_SHORT = 16
F_SENSOR_STUCK = 17
F_ISENSE_IMPLAUSIBLE = 18
F_COMM_CMU = 19
F_COMM_ISENSE = 20
F_COMM_VCU = 21
F_CONTACTOR_FEEDBACK = 22
F_CONTACTOR_WELDED = 23
F_PRECHARGE_FAIL = 24
F_SOC_IMPLAUSIBLE = 25
F_CAPACITY_IMPLAUSIBLE = 26
F_CELL_SELF_DISCHARGE = 27
NF = 28

# ---- scalar inputs u -----------------------------------------------------------------------
U_PACK_I_A = 0        # pack (string) current, A, + = charge
U_ISENSE_VALID = 1    # 1.0 if the current-sensor frame passed its checks
U_ISENSE_AGE_S = 2    # age of the current reading, s
U_PACK_V = 3          # pack voltage (battery side of the contactors), V
U_BUS_V = 4           # bus voltage (load side of the contactors), V
U_HV_VALID = 5        # 1.0 if pack_v / bus_v are valid (they come with the current sensor)
U_CONTACTOR_FB = 6    # feedback bits K_NEG | K_PRE | K_POS (auxiliary contacts: the real contact positions)
U_VCU_REQUEST = 7     # REQ_STANDBY / REQ_DRIVE / REQ_CHARGE
U_VCU_RESET = 8       # 1.0 while the vehicle asks for a fault reset
U_VCU_VALID = 9       # 1.0 if the request frame passed its checks
U_VCU_AGE_S = 10      # age of the request frame, s
U_CHARGER_CONNECTED = 11  # 1.0 if a charger reports connected
U_SERVICE_RESET = 12  # 1.0 while a service tool asks to clear persistent faults
U_MEAS_WINDOW = 13    # 1.0 while the CMUs measure (bleeding paused)
U_CONTACTOR_FB_VALID = 14  # 1.0 if the feedback frame passed its checks (or the feedback is wired directly)
U_CONTACTOR_FB_AGE_S = 15  # age of the feedback reading, s (supervised with the current sensor: COMM_ISENSE)
NU = 16
U_NAMES = ("pack_i_a", "isense_valid", "isense_age_s", "pack_v", "bus_v", "hv_valid",
           "contactor_fb", "vcu_request", "vcu_reset", "vcu_valid", "vcu_age_s",
           "charger_connected", "service_reset", "meas_window", "contactor_fb_valid", "contactor_fb_age_s")

# ---- outputs out (state.out) ---------------------------------------------------------------
Y_STATE = 0            # operating state ST_*
Y_CONTACTORS = 1       # commanded contactor bits K_*
Y_I_CHG_LIM_A = 2      # charge current limit (pack), A >= 0
Y_I_DIS_LIM_A = 3      # discharge current limit (pack), A >= 0
Y_P_CHG_LIM_W = 4
Y_P_DIS_LIM_W = 5
Y_V_CHG_MAX_V = 6      # charge voltage limit (pack), V
Y_V_DIS_MIN_V = 7      # discharge voltage limit (pack), V
Y_SOC_MIN = 8
Y_SOC_MEAN = 9
Y_SOC_MAX = 10
Y_SOC_DISPLAY = 11     # rate-limited SOC reported to the vehicle, 0..1
Y_CAPACITY_AH = 12     # estimated usable pack capacity (lowest cell x parallel), Ah
Y_FAULT_BITS = 13      # bit id set while fault id is at FAULT/CRITICAL or latched
Y_WARN_BITS = 14       # bit id set while fault id is at WARNING or above
Y_SEVERITY = 15        # highest severity SEV_*
Y_CELL_V_MIN = 16
Y_CELL_V_MIN_IDX = 17
Y_CELL_V_MAX = 18
Y_CELL_V_MAX_IDX = 19
Y_TEMP_MIN_C = 20
Y_TEMP_MIN_IDX = 21
Y_TEMP_MAX_C = 22
Y_TEMP_MAX_IDX = 23
Y_N_BLEEDING = 24
Y_CELL_V_SUM = 25
NY = 26

# ---- scalar state s (state.s) --------------------------------------------------------------
S_STATE = 0
S_STATE_T_S = 1        # time in the present state, s
S_TARGET = 2           # state to enter after precharge (ST_DRIVE / ST_CHARGE)
S_PRE_PHASE = 3        # 0 idle, 1 charging the bus, 2 positive closed / overlap, 3 retry wait
S_PRE_T_S = 4
S_PRE_ATTEMPTS = 5     # failed precharge attempts in this closing sequence
S_PRE_OK = 6           # 1 after a successful precharge until the mains open again
S_CONTACTORS = 7       # commanded bits
S_CMD_T_S = 8          # time since the command bits last changed, s
S_OPEN_T_S = 9         # time since both mains were commanded open, s
S_CRIT_T_S = 10        # time a critical fault has persisted, s (-1 while none is)
S_I2_CHG = 11          # low-pass filtered I^2 in charge, A^2
S_I2_DIS = 12
S_REST_T_S = 13        # time at rest (|I| < balancing rest current), s
S_MEAS_PHASE_S = 14    # position in the measurement period, s
S_I_CHG_LIM_A = 15     # rate-limited limits (previous output)
S_I_DIS_LIM_A = 16
S_SOC_DISPLAY = 17
S_TIME_S = 18
S_RESET_PREV = 19      # reset flag of the previous step (edge detection)
S_RESET_EDGE = 20      # 1 in the step where the reset request rose
S_REACT = 21           # reaction bits of this step (RE_*)
S_DERATE_CHG = 22      # fault derating factors of this step
S_DERATE_DIS = 23
S_CAPACITY_AH = 24     # estimated cell capacity, Ah (mirrors the estimator when it has one)
S_SOC_COUNT = 25       # coulomb count of the pack current since start, Ah
S_OPENING = 26         # 1 while the contactors are to open (waiting for the break current)
S_EST_T_S = 27         # time accumulated towards the next estimator update, s
S_EST_Q_AS = 28        # cell charge accumulated over it, A s (its mean current drives the update)
S_TASK_T_S = 29        # (NT slots, + T_*) time since task k last ran, s (-1: never ran, released at once)
S_TASK_DT_S = 32       # (NT slots, + T_*) period task k covered at its last run, s (its dt)
S_TASKS_RAN = 35       # bits 1 << T_* of the tasks run in the last step
S_SD_REF_T_S = 36      # time (S_TIME_S) of the self-discharge check's reference rest point, s (NaN: none yet)
S_SD_RATE = 37         # last self-discharge rate of the check (largest over the cells), %/h (NaN: none yet)
S_SD_LOC = 38          # the cell of that rate
S_SD_REF_SLOPE = 39    # OCV slope (floored) at the reference rest point, V per unit SOC
S_SD_REF_SOC = 40      # pack mean SOC at the reference rest point
NS = 41

# ---- tasks: the step is called every fast period; the others run when their period is reached --------
T_FAST, T_MEDIUM, T_SLOW = 0, 1, 2
NT = 3
TASK_NAMES = ("fast", "medium", "slow")
TASK_TEXT = (
    "current, pack/bus voltage, contactor feedback, communication ages (boards too), I2t, state machine, contactors",
    "cell voltages and temperatures (min/max, spreads, sense wires, stuck readings), balancing, limits",
    "SOC estimation (period means of current and cell voltages), pack SOC / displayed SOC, capacity (SOH), "
    "estimator plausibility",
)

# ---- fault status columns (state.fst, shape (NF, NFS)) ---------------------------------------
FS_LEVEL = 0           # debounced severity of the condition now (0..3)
FS_SEV = 1             # reported severity (max of level and latch)
FS_LATCHED = 2         # 1 while latched at FAULT level
FS_HEAL_S = 3          # time the condition has been gone, s
FS_COUNT = 4           # occurrences (fault memory, persistent)
FS_Q = 5               # last quantity value
FS_LOC = 6             # location (cell / sensor / board index) of the quantity, -1 if none
FS_LATCHED_CRIT = 7    # 1 while latched at CRITICAL level
NFS = 8

# ---- reaction bits -----------------------------------------------------------------------------
RE_DERATE = 1          # multiply the limits by the entry's derating factors
RE_NO_CLOSE = 2        # forbid closing the contactors
RE_OPEN = 4            # open the contactors (when the current is below the break current)
REACTION_NAMES = {RE_DERATE: "derate", RE_NO_CLOSE: "forbid closing", RE_OPEN: "open contactors"}

# recovery rules
RC_AUTO, RC_RESET, RC_RESET_STANDBY, RC_SERVICE = 0, 1, 2, 3
RECOVERY_TEXT = (
    "condition gone for the heal time",
    "condition gone for the heal time AND a reset request from the vehicle",
    "condition gone for the heal time AND contactors open AND a reset request from the vehicle",
    "condition gone AND a service reset (persistent: survives a restart)",
)
# debounce kinds
DEB_TIME, DEB_COUNTER = 0, 1

# ---- diag table columns (params.diag, shape (NF, ND)) -----------------------------------------
D_QTY = 0
D_DIR = 1              # +1: fault above the threshold, -1: below
D_WARN = 2             # thresholds (NaN: level not used)
D_FAULT = 3
D_CRIT = 4
D_HYST = 5
D_DEB_KIND = 6
D_DEB_S = 7            # debounce of warning and fault, s
D_CRIT_DEB_S = 8
D_DOWN_RATIO = 9       # up/down counter: decrement rate / increment rate
D_HEAL_S = 10
D_REACT = 11           # RE_* bits at FAULT level (CRITICAL always opens)
D_DERATE_CHG = 12
D_DERATE_DIS = 13
D_LATCH = 14
D_RECOVER = 15
D_PERSIST = 16
D_TASK = 17            # task T_* that measures the entry's quantity and evaluates the entry
ND = 18

# ---- scalar pack parameters (params.pp) --------------------------------------------------------
P_N_SERIES = 0
P_N_PARALLEL = 1
P_N_BOARDS = 2
P_N_TEMPS = 3
P_CELL_CAPACITY_AH = 4
P_I_RANGE_A = 5
P_I_CHG_MAX_A = 6
P_I_DIS_MAX_A = 7
P_P_CHG_MAX_W = 8
P_P_DIS_MAX_W = 9
P_V_CHG_CELL_V = 10
P_V_DIS_CELL_V = 11
P_RAMP_UP_A_S = 12
P_RAMP_DOWN_A_S = 13
P_SOC_RATE_PER_S = 14
P_PRE_FRAC = 15
P_PRE_TIMEOUT_S = 16
P_PRE_MIN_S = 17
P_PRE_OVERLAP_S = 18
P_PRE_ATTEMPTS = 19
P_PRE_RETRY_S = 20
P_BREAK_A = 21
P_CRIT_OPEN_S = 22
P_CONT_SETTLE_S = 23
P_WELD_CHECK_S = 24
P_INIT_S = 25
P_I2T_TAU_S = 26
P_I2T_CHG_RATED_A = 27
P_I2T_DIS_RATED_A = 28
P_CHG_DETECT_A = 29
P_T_OPEN_C = 30
P_T_SHORT_C = 31
P_STUCK_DV_V = 32
P_STUCK_DI_A = 33
P_BAL_MODE = 34
P_BAL_STATES = 35
P_BAL_MAX_PER_BOARD = 36
P_BAL_START_SOC = 37
P_BAL_STOP_SOC = 38
P_BAL_START_V = 39
P_BAL_STOP_V = 40
P_BAL_V_MIN_V = 41
P_BAL_SOC_TOP = 42
P_BAL_REST_A = 43
P_BAL_REST_S = 44
P_BAL_R_OHM = 45
P_BAL_C_J_K = 46
P_BAL_G_W_K = 47
P_BAL_T_MAX_C = 48
P_BAL_T_HYST_K = 49
P_MEAS_PERIOD_S = 50
P_MEAS_WINDOW_S = 51
P_TASK_SLOW_S = 52      # task periods, s (pack TOML [tasks]); the SOC estimator runs on the slow one
P_TASK_FAST_S = 53
P_TASK_MEDIUM_S = 54
P_SD_REST_S = 55        # self-discharge check ([self_discharge]): rest time before a rest point, s
P_SD_WINDOW_S = 56      # least time between the rest points compared, s
P_SD_SLOPE_MIN_V = 57   # floor of the OCV slope converting rest voltage to SOC, V per unit SOC
P_SD_SLOPE_RATIO = 58   # two rest points are compared only if their OCV slopes differ by less than this factor
P_SD_SOC_STEP = 59      # ... and their pack SOCs by at most this
P_SD_DV_DEADBAND_V = 60  # relative voltage movement between rest points not read as charge (resolution), V
P_SD_SOC_LO = 61       # rest points are taken only at pack SOCs within [lo, hi]: the OCV curve bends too much
P_SD_SOC_HI = 62       # outside it for a cell's static SOC offset to cancel between two points
NPP = 63
PP_NAMES = (
    "N_SERIES", "N_PARALLEL", "N_BOARDS", "N_TEMPS", "CELL_CAPACITY_AH", "I_RANGE_A", "I_CHG_MAX_A",
    "I_DIS_MAX_A", "P_CHG_MAX_W", "P_DIS_MAX_W", "V_CHG_CELL_V", "V_DIS_CELL_V", "RAMP_UP_A_S",
    "RAMP_DOWN_A_S", "SOC_RATE_PER_S", "PRE_FRAC", "PRE_TIMEOUT_S", "PRE_MIN_S", "PRE_OVERLAP_S",
    "PRE_ATTEMPTS", "PRE_RETRY_S", "BREAK_A", "CRIT_OPEN_S", "CONT_SETTLE_S", "WELD_CHECK_S",
    "INIT_S", "I2T_TAU_S", "I2T_CHG_RATED_A", "I2T_DIS_RATED_A", "CHG_DETECT_A", "T_OPEN_C",
    "T_SHORT_C", "STUCK_DV_V", "STUCK_DI_A", "BAL_MODE", "BAL_STATES", "BAL_MAX_PER_BOARD",
    "BAL_START_SOC", "BAL_STOP_SOC", "BAL_START_V", "BAL_STOP_V", "BAL_V_MIN_V", "BAL_SOC_TOP",
    "BAL_REST_A", "BAL_REST_S", "BAL_R_OHM", "BAL_C_J_K", "BAL_G_W_K", "BAL_T_MAX_C",
    "BAL_T_HYST_K", "MEAS_PERIOD_S", "MEAS_WINDOW_S", "TASK_SLOW_S",
    "TASK_FAST_S", "TASK_MEDIUM_S", "SD_REST_S", "SD_WINDOW_S", "SD_SLOPE_MIN_V",
    "SD_SLOPE_RATIO", "SD_SOC_STEP", "SD_DV_DEADBAND_V",
    "SD_SOC_LO", "SD_SOC_HI",
)

# ---- self-discharge check columns (state.sd, shape (n_series, NSD)) ---------------------------------
SD_BLEED = 0           # charge the BMS bled from the cell since start, as SOC of its element
SD_REF_DV = 1          # the cell's rested voltage minus the pack median at the reference rest point, V
SD_REF_BLEED = 2       # SD_BLEED at the reference rest point
SD_TMP = 3             # scratch (medians)
NSD = 4

# balancing modes
BAL_VOLTAGE, BAL_SOC, BAL_BOTH = 0, 1, 2


# ---- the arrays themselves ---------------------------------------------------------------------
class Inputs(NamedTuple):
    """Measurements and requests of one step (filled by the node from decoded frames)."""

    cell_v: np.ndarray       # (n_series,) V
    board_valid: np.ndarray  # (n_boards,) bool
    board_age_s: np.ndarray  # (n_boards,) s
    temp_c: np.ndarray       # (n_temps,) degC
    temp_valid: np.ndarray   # (n_temps,) bool
    temp_age_s: np.ndarray   # (n_temps,) s
    u: np.ndarray            # (NU,) scalar inputs U_*


class State(NamedTuple):
    """Everything the firmware remembers between steps, plus its outputs and scratch arrays."""

    s: np.ndarray            # (NS,) scalar state S_*
    out: np.ndarray          # (NY,) outputs Y_*
    bleed: np.ndarray        # (n_series,) bool, bleed command per cell (output)
    x: np.ndarray            # (n_series, NXW) estimator state, x[:, 0] = cell SOC (bms.soc.layout)
    P: np.ndarray            # (n_series, NP, NP) estimator covariance, a view into x's storage
    fst: np.ndarray          # (NF, NFS) fault status FS_*
    fcnt: np.ndarray         # (NF, 3) debounce counters (warning, fault, critical), s
    q: np.ndarray            # (NQ,) measured quantities of this step
    qloc: np.ndarray         # (NQ,) location index of each quantity (-1 none)
    cell_ok: np.ndarray      # (n_series,) bool: fresh, used this step
    temp_ok: np.ndarray      # (n_temps,) bool: fresh and plausible
    cell_t_c: np.ndarray     # (n_series,) temperature used for each cell
    stuck_v: np.ndarray      # (n_series,) reference reading of the stuck check
    stuck_i: np.ndarray      # (n_series,) current at the reference reading
    stuck_t: np.ndarray      # (n_series,) time the reading stayed while the current moved
    bal_d: np.ndarray        # (n_series,) balancing metric above the lowest cell (scratch)
    board_heat_c: np.ndarray  # (n_boards,) bleed-resistor board temperature (thermal model)
    bal_sel: np.ndarray      # (n_series,) bool, cells selected for bleeding (hysteresis memory)
    board_hot: np.ndarray    # (n_boards,) bool, board paused until it cooled by the hysteresis
    est_v_acc: np.ndarray    # (n_series,) cell voltage accumulated over the estimator period, V s
    est_ok: np.ndarray       # (n_series,) bool, the cell was fresh at every sample of the period
    sd: np.ndarray           # (n_series, NSD) self-discharge check SD_* (bleed charge, reference rest point)

    def __deepcopy__(self, memo):
        """Field by field, with the copy's ``x`` and ``P`` again views of one array (the
        estimator's in-place layout, bms.soc.estimator.state_arrays)."""
        import copy

        from bms.soc.estimator import copy_state

        x, P = copy_state(self.x, self.P)
        return State(*(x if f == "x" else P if f == "P" else copy.deepcopy(getattr(self, f), memo)
                       for f in self._fields))


def _check_kernel_cache() -> None:
    # every firmware kernel module imports this one first: drop stale cached kernels (see there)
    from bms import kernel_cache

    kernel_cache.check()


_check_kernel_cache()
