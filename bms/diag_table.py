"""The fault table: one entry per diagnostic, as data.

The checks (``bms.diag``), the documentation (``docs/faults.md``, ``bms faults-doc``) and the
CAN fault bits (bit position = id in BMS_Faults / BMS_Warnings, signals ``Flt_<NAME>`` and
``Wrn_<NAME>``) are all derived from :data:`FAULTS`. Ids and names are fixed by the DBC.

The structure of every entry (measured quantity, direction, which severity levels exist,
debounce kind, reaction, latching, recovery rule) lives here; the numbers (thresholds,
hysteresis, debounce and heal times) live in the pack TOML (``[faults.<NAME>]``), because they
depend on the cell and the pack. :func:`diag_array` joins both into the numba table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bms import layout as L

# ---- measured quantities (computed once per step by bms.diag.measure) ----------------------------
QUANTITIES: tuple[tuple[str, str, str], ...] = (
    # (name, unit, how it is measured)
    ("cell_v_max", "V", "highest fresh cell voltage"),
    ("cell_v_min", "V", "lowest fresh cell voltage"),
    ("temp_max_chg", "degC", "highest plausible temperature while charging (current > charge-detect)"),
    ("temp_max_dis", "degC", "highest plausible temperature while not charging"),
    ("temp_min_chg", "degC", "lowest plausible temperature while charging (current > charge-detect)"),
    ("temp_min_dis", "degC", "lowest plausible temperature while not charging"),
    ("i_chg", "A", "pack charge current (0 when discharging)"),
    ("i_dis", "A", "pack discharge current magnitude (0 when charging)"),
    ("i2t_chg", "1", "RMS of the charge current (first-order I^2 filter, tau i2t_tau_s) / rated current"),
    ("i2t_dis", "1", "RMS of the discharge current (first-order I^2 filter) / rated current"),
    ("cell_v_spread", "V", "highest minus lowest fresh cell voltage"),
    ("temp_spread", "K", "highest minus lowest plausible temperature"),
    ("pack_v_diff", "V", "|sum of fresh cell voltages - measured pack voltage| (all boards fresh)"),
    ("sense_wire", "V", "largest opposite deviation of two neighbouring cells of a board from the pack mean"),
    ("temp_raw_min", "degC", "lowest fresh raw temperature reading (open NTC reads very cold)"),
    ("temp_raw_max", "degC", "highest fresh raw temperature reading (shorted NTC reads very hot)"),
    ("stuck_s", "s", "longest continuous time a cell reading stayed within stuck_dv_v of its reference "
                     "while the current stayed more than stuck_di_a away from the current at the reference"),
    ("isense_err", "A", "current above the sensor range, or |current| while all contactors are open"),
    ("cmu_age", "s", "age of the oldest cell-monitoring board data (invalid data counts as its age + the warning age)"),
    ("isense_age", "s", "age of the current-sensor data: current and contactor feedback, the older (invalid: + the warning age)"),
    ("vcu_age", "s", "age of the vehicle controller's request (invalid: + the warning age)"),
    ("contactor_mismatch", "1", "number of contactors whose auxiliary contact differs from the command after the settle time (welded closed, or not closing)"),
    ("weld_ratio", "1", "bus / pack voltage, weld_check_s after both mains were opened"),
    ("precharge_fails", "1", "failed precharge attempts in the present closing sequence"),
    ("soc_innovation", "V", "largest |mean voltage innovation| of the SOC estimator over the cells (inf if a SOC is not finite)"),
    ("capacity_err", "1", "largest |estimated cell capacity / profile capacity - 1| over the cells"),
    ("self_discharge", "%/h", "largest charge loss of a cell relative to the pack median between two rest points "
                              "(rested voltage read as SOC), net of the charge the BMS bled from it; held until the "
                              "next rest point (bms.selfdischarge)"),
)
QTY = {name: i for i, (name, _, _) in enumerate(QUANTITIES)}
NQ = len(QUANTITIES)
# the task (bms.layout.T_*) measuring each quantity; the entries on it are evaluated on that task's period
_MEDIUM = ("cell_v_max", "cell_v_min", "temp_max_chg", "temp_max_dis", "temp_min_chg", "temp_min_dis",
           "cell_v_spread", "temp_spread", "pack_v_diff", "sense_wire", "temp_raw_min", "temp_raw_max",
           "stuck_s")
_SLOW = ("soc_innovation", "capacity_err", "self_discharge")
QUANTITY_TASK = {name: L.T_MEDIUM if name in _MEDIUM else L.T_SLOW if name in _SLOW else L.T_FAST
                 for name, _, _ in QUANTITIES}
assert set(_MEDIUM + _SLOW) <= set(QTY), "task table names an unknown quantity"
QTASK = np.array([QUANTITY_TASK[name] for name, _, _ in QUANTITIES], dtype=np.int64)


@dataclass(frozen=True)
class FaultDef:
    id: int
    name: str
    quantity: str
    direction: int           # +1 fault above the threshold, -1 below
    levels: str              # which of "w" warning, "f" fault, "c" critical exist
    reaction: int            # RE_* bits at FAULT level; CRITICAL always opens the contactors
    derate_chg: float = 1.0  # limit factors while at FAULT (with RE_DERATE)
    derate_dis: float = 1.0
    latch: bool = False
    recovery: int = L.RC_AUTO
    persistent: bool = False
    debounce: int = L.DEB_TIME
    down_ratio: float = 1.0  # DEB_COUNTER: decrement rate / increment rate
    text: str = ""


_D, _NC, _O = L.RE_DERATE, L.RE_NO_CLOSE, L.RE_OPEN
FAULTS: tuple[FaultDef, ...] = (
    FaultDef(0, "CELL_OV", "cell_v_max", +1, "wfc", _D, 0.0, 1.0, text="cell over-voltage: charge forbidden"),
    FaultDef(1, "CELL_UV", "cell_v_min", -1, "wfc", _D, 1.0, 0.0, text="cell under-voltage: discharge forbidden"),
    FaultDef(2, "CELL_DEEP_DISCHARGE", "cell_v_min", -1, "f", _D | _NC | _O, 0.0, 0.0, latch=True,
             recovery=L.RC_SERVICE, persistent=True, text="a cell went below its damage voltage: pack locked until serviced"),
    FaultDef(3, "CELL_OT_CHG", "temp_max_chg", +1, "wfc", _D, 0.0, 1.0, text="too hot to charge"),
    FaultDef(4, "CELL_OT_DIS", "temp_max_dis", +1, "wfc", _D, 1.0, 0.2, text="too hot to discharge: derated"),
    FaultDef(5, "CELL_UT_CHG", "temp_min_chg", -1, "wfc", _D, 0.0, 1.0,
             text="LFP charged below 0 degC (plating): charge forbidden; the limits already derate it from the warning on"),
    FaultDef(6, "CELL_UT_DIS", "temp_min_dis", -1, "wfc", _D, 1.0, 0.2, text="too cold to discharge: derated"),
    FaultDef(7, "PACK_OC_CHG", "i_chg", +1, "wfc", _D, 0.0, 1.0, debounce=L.DEB_COUNTER, down_ratio=0.5,
             text="charge current above the peak rating"),
    FaultDef(8, "PACK_OC_DIS", "i_dis", +1, "wfc", _D, 1.0, 0.0, debounce=L.DEB_COUNTER, down_ratio=0.5,
             text="discharge current above the peak rating"),
    FaultDef(9, "PACK_I2T_CHG", "i2t_chg", +1, "wfc", _D, 0.5, 1.0, text="time at current (I2t) in charge above the continuous rating"),
    FaultDef(10, "PACK_I2T_DIS", "i2t_dis", +1, "wfc", _D, 1.0, 0.5, text="time at current (I2t) in discharge above the continuous rating"),
    FaultDef(11, "CELL_V_SPREAD", "cell_v_spread", +1, "wf", _D, 0.5, 0.5, text="cells drifted apart (imbalance, weak cell)"),
    FaultDef(12, "CELL_T_SPREAD", "temp_spread", +1, "wf", _D, 0.5, 0.5, text="uneven temperatures (cooling problem)"),
    FaultDef(13, "PACK_V_PLAUSIBILITY", "pack_v_diff", +1, "wf", _D | _NC, 0.5, 0.5, latch=True, recovery=L.RC_RESET,
             text="sum of cells disagrees with the pack voltage measurement"),
    FaultDef(14, "SENSE_WIRE_OPEN", "sense_wire", +1, "f", _D | _NC | _O, 0.0, 0.0, latch=True, recovery=L.RC_RESET_STANDBY,
             text="open cell sense wire: two cells no longer supervised"),
    FaultDef(15, "TEMP_SENSOR_OPEN", "temp_raw_min", -1, "f", _D, 0.5, 0.5, latch=True, recovery=L.RC_RESET,
             text="temperature sensor open (reads implausibly cold): excluded, limits derated"),
    FaultDef(16, "TEMP_SENSOR_SHORT", "temp_raw_max", +1, "f", _D, 0.5, 0.5, latch=True, recovery=L.RC_RESET,
             text="temperature sensor shorted (reads implausibly hot): excluded, limits derated"),
    FaultDef(17, "SENSOR_STUCK", "stuck_s", +1, "f", _D | _NC, 0.5, 0.5, latch=True, recovery=L.RC_RESET,
             text="a cell-voltage reading does not follow a load change"),
    FaultDef(18, "ISENSE_IMPLAUSIBLE", "isense_err", +1, "f", _D | _NC, 0.0, 0.0, latch=True, recovery=L.RC_RESET_STANDBY,
             text="current sensor out of range or reads current with the contactors open"),
    FaultDef(19, "COMM_CMU", "cmu_age", +1, "wfc", _D | _NC | _O, 0.0, 0.0, latch=True, recovery=L.RC_RESET,
             text="a cell-monitoring board is silent: cells unsupervised"),
    FaultDef(20, "COMM_ISENSE", "isense_age", +1, "wfc", _D | _NC | _O, 0.0, 0.0, latch=True, recovery=L.RC_RESET,
             text="the current sensor is silent (current or contactor feedback): current and contactors unsupervised"),
    FaultDef(21, "COMM_VCU", "vcu_age", +1, "wf", _D | _NC | _O, 0.0, 0.0, text="vehicle controller silent: go to standby"),
    FaultDef(22, "CONTACTOR_FEEDBACK", "contactor_mismatch", +1, "f", _NC | _O, latch=True, recovery=L.RC_RESET_STANDBY,
             text="a contactor auxiliary contact disagrees with the command (a welded or a not-closing contactor, one is enough)"),
    FaultDef(23, "CONTACTOR_WELDED", "weld_ratio", +1, "f", _NC, latch=True, recovery=L.RC_SERVICE, persistent=True,
             text="bus voltage stays after opening: both main contactors are welded (a single weld shows as CONTACTOR_FEEDBACK)"),
    FaultDef(24, "PRECHARGE_FAIL", "precharge_fails", +1, "wf", _NC, latch=True, recovery=L.RC_RESET_STANDBY,
             text="the bus did not reach the precharge fraction within the timeout (all retries)"),
    FaultDef(25, "SOC_IMPLAUSIBLE", "soc_innovation", +1, "wf", _D, 0.5, 0.5, text="SOC estimator diverged"),
    FaultDef(26, "CAPACITY_IMPLAUSIBLE", "capacity_err", +1, "wf", 0, text="capacity estimate implausible"),
    FaultDef(27, "CELL_SELF_DISCHARGE", "self_discharge", +1, "wf", _D, 0.5, 0.5, latch=True, recovery=L.RC_RESET,
             text="a cell loses charge far faster than its neighbours (internal short): service the pack; the limits "
                  "are halved (less heat in a damaged cell) but the vehicle can still drive to the workshop"),
)
NF = len(FAULTS)
BY_NAME = {f.name: f for f in FAULTS}
assert all(f.id == i for i, f in enumerate(FAULTS)), "fault ids must equal their table position"
assert NF <= 32

# thresholds etc. that every pack must give per fault ([faults.<NAME>] in the pack TOML)
THRESHOLD_KEYS = ("warning", "fault", "critical")
TIMING_KEYS = ("hysteresis", "debounce_s", "critical_debounce_s", "heal_s")


@dataclass
class FaultNumbers:
    warning: float = float("nan")
    fault: float = float("nan")
    critical: float = float("nan")
    hysteresis: float = 0.0
    debounce_s: float = 0.0
    critical_debounce_s: float = 0.0
    heal_s: float = 0.0


def diag_array(numbers: dict[str, FaultNumbers]) -> np.ndarray:
    """The numba table (NF, ND): structure from :data:`FAULTS`, numbers from the pack."""
    d = np.full((NF, L.ND), np.nan)
    for f in FAULTS:
        n = numbers[f.name]
        d[f.id, L.D_QTY] = QTY[f.quantity]
        d[f.id, L.D_DIR] = f.direction
        d[f.id, L.D_WARN] = n.warning if "w" in f.levels else np.nan
        d[f.id, L.D_FAULT] = n.fault if "f" in f.levels else np.nan
        d[f.id, L.D_CRIT] = n.critical if "c" in f.levels else np.nan
        d[f.id, L.D_HYST] = n.hysteresis
        d[f.id, L.D_DEB_KIND] = f.debounce
        d[f.id, L.D_DEB_S] = n.debounce_s
        d[f.id, L.D_CRIT_DEB_S] = n.critical_debounce_s
        d[f.id, L.D_DOWN_RATIO] = f.down_ratio
        d[f.id, L.D_HEAL_S] = n.heal_s
        d[f.id, L.D_REACT] = f.reaction
        d[f.id, L.D_DERATE_CHG] = f.derate_chg
        d[f.id, L.D_DERATE_DIS] = f.derate_dis
        d[f.id, L.D_LATCH] = 1.0 if f.latch else 0.0
        d[f.id, L.D_RECOVER] = f.recovery
        d[f.id, L.D_PERSIST] = 1.0 if f.persistent else 0.0
        d[f.id, L.D_TASK] = QUANTITY_TASK[f.quantity]
    return d


def reaction_text(bits: int) -> str:
    parts = [txt for bit, txt in L.REACTION_NAMES.items() if bits & bit]
    return ", ".join(parts) if parts else "warn only"
assert NF == L.NF and all(getattr(L, f"F_{f.name}") == f.id for f in FAULTS), "layout F_* must match the table"
