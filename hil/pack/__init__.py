"""Virtual pack: a numba pack model richer than the BMS estimator's cell model (per-cell spread,
parallel current split, 2RC + two-state hysteresis, Arrhenius resistances, self-discharge,
lumped thermal network with coolant, contactor / precharge / DC-link circuit, bleed resistors)
and its sensors.

Typical use (one call per physics step, arrays only; column indices from :mod:`hil.pack.layout`)::

    p = build_params(load_profile("winston_lfp100"), PackGeometry(), seed=1)   # 192s2p
    f = new_faults(p)                      # fault arrays, set in place by fault injection
    st = init_state(p, soc=0.8, temp_c=25.0, dt_s=0.01, seed=1)
    inp = new_inputs(); bleed = np.zeros(p.n_series, np.uint8)
    inp[IN_K0 + K_NEG] = inp[IN_K0 + K_PRE] = 1.0     # contactor commands (precharge)
    inp[IN_I_A] = -200.0                               # load demand (or IN_KIND = 1, IN_P_W)
    pack_step(p, f, st, inp, bleed, 0.01)              # every 10 ms
    sample_sensors(p, f, st, 0.1)                      # whenever the CMUs / sensors sample
    st.meas[p.ch_cell_v(0)], st.meas[p.ch_current], st.pk[PK_KFB0 + K_POS]   # measured values
    st.x[:, X_Z], st.x[:, X_T], st.pk[PK_VBUS]         # the truth, for scoring

``hil.pack.ready.ready_pack`` builds all of it with the contactors closed through a precharge;
``hil.pack.bound.bind_step`` / ``bind_sensors`` give ``f(dt_s)`` callables without numba's
per-call dispatch (half the per-step cost from Python); ``pack_run`` runs many steps in one call.
"""

from hil.pack import layout as _layout
from hil.pack.layout import *  # noqa: F401,F403  (column indices are part of the API)
from hil.pack.model import pack_run, pack_step
from hil.pack.params import PackFaults, PackGeometry, PackModelParams, PackSpread, SensorSpec, build_params, new_faults
from hil.pack.sensors import sample_sensors
from hil.pack.state import PackState, copy_state, init_state, new_inputs

__all__ = [
    "PackFaults", "PackGeometry", "PackModelParams", "PackSpread", "PackState", "SensorSpec", "build_params",
    "copy_state", "init_state", "new_faults", "new_inputs", "pack_run", "pack_step", "sample_sensors",
] + [k for k in dir(_layout) if k.isupper()]
