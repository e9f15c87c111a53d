"""The EKF's covariance algebra over scalars, one definition for the per-cell kernel
(:func:`bms.soc.ekf.ekf_run`) and the sweep's SIMD-lane kernel (:mod:`bms.tune.ekf_lanes`).

The covariance ``P`` of ``[z, v1, v2, h, b]`` is passed as its upper triangle
``(p00, p01, p02, p03, p04, p11, p12, p13, p14, p22, p23, p24, p33, p34)`` (``p44`` apart: it
only gains its process noise in the time update). Scalars only, ``inline="always"``: no
array reference counting per call, and LLVM sees straight-line arithmetic it can vectorise
across lanes.
"""

from __future__ import annotations

import numba as nb

P_FLOOR = 1e-14


@nb.njit(cache=True, inline="always")
def cov_predict(p00, p01, p02, p03, p04, p11, p12, p13, p14, p22, p23, p24, p33, p34, p44, a1, a2, ah, u0, u1, u2,
                u3):
    """F P F^T without process noise, F = diag(1, a1, a2, ah, 1) + u e_b^T (every state depends
    on itself and the offset b): rows with d = (1, a1, a2, ah),
    P'[r,c] = dr dc Prc + dr uc Pr4 + ur dc Pc4 + ur uc P44. Returns the upper triangle
    without P'44 (= p44)."""
    n00 = p00 + 2.0 * u0 * p04 + u0 * u0 * p44
    n01 = a1 * p01 + u1 * p04 + u0 * a1 * p14 + u0 * u1 * p44
    n02 = a2 * p02 + u2 * p04 + u0 * a2 * p24 + u0 * u2 * p44
    n03 = ah * p03 + u3 * p04 + u0 * ah * p34 + u0 * u3 * p44
    n11 = a1 * a1 * p11 + 2.0 * a1 * u1 * p14 + u1 * u1 * p44
    n12 = a1 * a2 * p12 + a1 * u2 * p14 + u1 * a2 * p24 + u1 * u2 * p44
    n13 = a1 * ah * p13 + a1 * u3 * p14 + u1 * ah * p34 + u1 * u3 * p44
    n22 = a2 * a2 * p22 + 2.0 * a2 * u2 * p24 + u2 * u2 * p44
    n23 = a2 * ah * p23 + a2 * u3 * p24 + u2 * ah * p34 + u2 * u3 * p44
    n33 = ah * ah * p33 + 2.0 * ah * u3 * p34 + u3 * u3 * p44
    n04 = p04 + u0 * p44
    n14 = a1 * p14 + u1 * p44
    n24 = a2 * p24 + u2 * p44
    n34 = ah * p34 + u3 * p44
    return n00, n01, n02, n03, n04, n11, n12, n13, n14, n22, n23, n24, n33, n34


@nb.njit(cache=True, inline="always")
def cov_rc_soc(n00, n01, n02, n03, n04, n11, n12, n13, n14, n22, n23, n24, c1, c2):
    """E P E^T with E = I + c e_z^T, c = (0, c1, c2, 0, 0) (d vj'/dz = cj from the RC
    resistances' SOC factor): returns the changed (n01, n02, n11, n12, n13, n14, n22, n23, n24)."""
    n11 += 2.0 * c1 * n01 + c1 * c1 * n00
    n12 += c1 * n02 + c2 * n01 + c1 * c2 * n00
    n22 += 2.0 * c2 * n02 + c2 * c2 * n00
    n01 += c1 * n00
    n02 += c2 * n00
    n13 += c1 * n03
    n23 += c2 * n03
    n14 += c1 * n04
    n24 += c2 * n04
    return n01, n02, n11, n12, n13, n14, n22, n23, n24


@nb.njit(cache=True, inline="always")
def cov_ph(n00, n01, n02, n03, n04, n11, n12, n13, n14, n22, n23, n24, n33, n34, hz, m):
    """ph = P H^T for H = [hz, 1, 1, m, 0], and H P H^T."""
    ph0 = n00 * hz + n01 + n02 + n03 * m
    ph1 = n01 * hz + n11 + n12 + n13 * m
    ph2 = n02 * hz + n12 + n22 + n23 * m
    ph3 = n03 * hz + n13 + n23 + n33 * m
    ph4 = n04 * hz + n14 + n24 + n34 * m
    return ph0, ph1, ph2, ph3, ph4, hz * ph0 + ph1 + ph2 + m * ph3


@nb.njit(cache=True, inline="always")
def cov_correct(n00, n01, n02, n03, n04, n11, n12, n13, n14, n22, n23, n24, n33, n34, n44, ph0, ph1, ph2, ph3, ph4,
                si):
    """P - ph ph^T / S (``si = 1/S``), the diagonal floored at P_FLOOR: the whole upper triangle."""
    return (max(n00 - ph0 * ph0 * si, P_FLOOR), n01 - ph0 * ph1 * si, n02 - ph0 * ph2 * si, n03 - ph0 * ph3 * si,
            n04 - ph0 * ph4 * si, max(n11 - ph1 * ph1 * si, P_FLOOR), n12 - ph1 * ph2 * si, n13 - ph1 * ph3 * si,
            n14 - ph1 * ph4 * si, max(n22 - ph2 * ph2 * si, P_FLOOR), n23 - ph2 * ph3 * si, n24 - ph2 * ph4 * si,
            max(n33 - ph3 * ph3 * si, P_FLOOR), n34 - ph3 * ph4 * si, max(n44 - ph4 * ph4 * si, P_FLOOR))
