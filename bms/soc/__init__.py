"""State-of-charge estimation: coulomb counting, OCV recalibration, a per-cell EKF, pack SOC."""
