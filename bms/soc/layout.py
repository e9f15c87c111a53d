"""Array layouts shared by every SOC estimator (one row per cell).

Estimator state ``x`` (n, NXE):

====  =========  ====================================================================
 idx  name       meaning
====  =========  ====================================================================
  0   Z          state of charge, 0..1
  1   V1         voltage over RC pair 1 (V)
  2   V2         voltage over RC pair 2 (V)
  3   H          dynamic hysteresis state, -1..1
  4   S          instantaneous hysteresis sign (last non-negligible current)
  5   BIAS       estimated current-sensor offset (A); true current = measured - BIAS
  6   REST_S     time since the current last exceeded the rest threshold (s)
  7   FLAGS      bit field, see FLAG_*
  8   I_HOLD     last valid cell current (A), used for the next prediction
  9   T_HOLD     last valid temperature (C)
 10   V_HOLD     last valid voltage (V)
 11   CAP_AH     capacity used by the estimator (Ah)
 12   N_HELD     number of samples held because they were not finite or not valid
 13   RECAL      1 once the current rest has been used for an OCV recalibration
 14   E_BAR      exponentially weighted mean of the voltage innovation (V)
 15.. CACHE      temperature-dependent scalars of the last (T, dt), recomputed only when
                 either changes: T, dt, a1, a2, R1, R2, gamma, M0, R0chg, R0dis, j, wt
 27   ZG         SOC at which the RC SOC factor G is read: Z unless charging, then counted charge
                 pulled toward Z (time constant bms.soc.ekf.G_TAU_S)
====  =========  ====================================================================

Covariance ``P`` (n, NP, NP) over the filtered states [Z, V1, V2, H, BIAS].

Storage: see ROW_CELLS below (x has NXW columns; the table above is its first NXE).

Tuning ``tune`` (NT,): see the T_* indices.
"""

IZ, IV1, IV2, IH, IS, IBIAS, IREST, IFLAGS, IIHOLD, ITHOLD, IVHOLD, ICAP, INHELD, IRECAL, IEBAR = range(15)
(IC_T, IC_DT, IC_A1, IC_A2, IC_R1, IC_R2, IC_GAM, IC_M0, IC_R0C, IC_R0D, IC_J, IC_W) = range(15, 27)
IZG = 27  # SOC at which G is read: counted charge, set to Z at rest (bms.soc.ekf)
NXE = 28
NP = 5
PZ, PV1, PV2, PH, PB = range(5)
#: the EKF's storage (bms.soc.ekf): one (NXW, ROW_CELLS) array, a row per column of ``x``, of
#: which ``x`` (n, NXW) and ``P`` (n, NP, NP) are views (bms.soc.estimator.new_state). Columns
#: IP.. hold P (``P[c, i, j] = x[c, IP + NP i + j]``), IW.. the kernel's per-sample scratch.
#: The rows' fixed length makes every state a compile-time offset from the first: the kernel's
#: loops over cells vectorise (SIMD lanes = cells)
IP = NXE
IW = IP + NP * NP
NW = 18
NXW = IW + NW
ROW_CELLS = 1000

FLAG_V_HELD = 1  # last voltage sample was not usable (NaN/inf/invalid): measurement update skipped
FLAG_I_HELD = 2  # last current sample was not finite: previous current held
FLAG_T_HELD = 4  # last temperature sample was not finite: previous temperature held
FLAG_AT_REST = 8  # rested long enough for OCV recalibration
FLAG_SOC_CLAMPED = 16  # SOC estimate hit 0 or 1 and was clamped

# tuning vector indices
(T_QZ, T_QV, T_QH, T_QB, T_RV, T_REST_I, T_REST_S, T_RREST, T_BIAS_MAX, T_P0Z, T_P0H, T_P0B,
 T_QV2, T_QZ_ADAPT, T_TAU_E, T_SIGMA_R, T_LOAD_T_MARGIN) = range(17)
NT = 17
