"""A pack ready to run: parameters, faults, state, an input row and bleed commands, with the
contactors optionally closed through a real precharge (for tests, benchmarks and scenarios)."""

from __future__ import annotations

import numpy as np

from bms.profile import Profile
from hil.pack.layout import IN_K0, K_NEG, K_POS, K_PRE, PK_K0
from hil.pack.model import pack_step
from hil.pack.params import PackGeometry, PackSpread, build_params, new_faults
from hil.pack.state import init_state, new_inputs


def precharge_and_close(p, f, st, inp, bleed, dt_s: float, precharge_s: float = 0.5) -> None:
    """Negative + precharge contactors for ``precharge_s``, then positive, then precharge open;
    raises RuntimeError if the contactors do not end in the drive position (e.g. a fault)."""
    inp[IN_K0 + K_NEG] = inp[IN_K0 + K_PRE] = 1.0
    for _ in range(max(1, int(round(precharge_s / dt_s)))):
        pack_step(p, f, st, inp, bleed, dt_s)
    settle = max(1, int(np.ceil(max(p.k_close_s, p.k_open_s) / dt_s)) + 1)
    inp[IN_K0 + K_POS] = 1.0
    for _ in range(settle):
        pack_step(p, f, st, inp, bleed, dt_s)
    inp[IN_K0 + K_PRE] = 0.0
    for _ in range(settle):
        pack_step(p, f, st, inp, bleed, dt_s)
    pos = st.pk[PK_K0:PK_K0 + 3]
    if not (pos[K_NEG] == 1.0 and pos[K_POS] == 1.0 and pos[K_PRE] == 0.0):
        raise RuntimeError(f"contactors did not reach the drive position: neg/pre/pos = {pos.tolist()}")


def ready_pack(profile: Profile, geometry: PackGeometry | None = None, spread: PackSpread | None = None,
               soc: float | np.ndarray = 0.5, temp_c: float | np.ndarray = 25.0, seed: int = 0, close: bool = True,
               dt_s: float = 0.01):
    """(params, faults, state, inputs, bleed commands) of a rested pack at ``soc`` and ``temp_c``
    (scalars or per cell; coolant and ambient at the mean temperature), contactors closed after a
    precharge when ``close``."""
    p = build_params(profile, geometry, spread, seed=seed)
    f = new_faults(p)
    st = init_state(p, soc=soc, temp_c=temp_c, dt_s=dt_s, seed=seed)
    t_mean = float(np.mean(temp_c))
    inp = new_inputs(coolant_c=t_mean, ambient_c=t_mean)
    bleed = np.zeros(p.n_series, np.uint8)
    if close:
        precharge_and_close(p, f, st, inp, bleed, dt_s)
    return p, f, st, inp, bleed
