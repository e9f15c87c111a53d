"""Compiled pack kernels bound to one pack's arrays, called without numba's per-call dispatch.

Typing the parameter and state tuples on every call costs about as much as the 384-cell step
itself; :func:`bind_step` and :func:`bind_sensors` resolve the compiled overload once and return
``f(dt_s)`` callables (through :func:`bms.bound.bind`, as ``bms.core.bind``). The bound arrays must then be
changed in place only (``inp[...] = ...``, ``bleed[:] = ...``, fault arrays), never replaced.
"""

from __future__ import annotations

import numba as nb

from bms.bound import bind
from hil.pack.model import pack_step
from hil.pack.sensors import sample_sensors


def bind_step(p, f, st, inp, bleed):
    """``step(dt_s)``: :func:`hil.pack.model.pack_step` on these arrays."""
    return bind(pack_step, p, f, st, inp, bleed, free=(nb.float64,))


def bind_sensors(p, f, st):
    """``sample(dt_since_s)``: :func:`hil.pack.sensors.sample_sensors` on these arrays."""
    return bind(sample_sensors, p, f, st, free=(nb.float64,))
