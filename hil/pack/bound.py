"""Compiled pack kernels bound to one pack's arrays, called without numba's per-call dispatch.

Typing the parameter and state tuples on every call costs about as much as the 384-cell step
itself; :func:`bind_step` and :func:`bind_sensors` resolve the compiled overload once and return
``f(dt_s)`` callables (as ``bms.core.bind`` does for the BMS step). The bound arrays must then be
changed in place only (``inp[...] = ...``, ``bleed[:] = ...``, fault arrays), never replaced.
"""

from __future__ import annotations

import functools

import numba as nb

from hil.pack.model import pack_step
from hil.pack.sensors import sample_sensors


def bind_step(p, f, st, inp, bleed):
    """``step(dt_s)``: :func:`hil.pack.model.pack_step` on these arrays."""
    sig = (nb.typeof(p), nb.typeof(f), nb.typeof(st), nb.typeof(inp), nb.typeof(bleed), nb.float64)
    return functools.partial(pack_step.compile(sig), p, f, st, inp, bleed)


def bind_sensors(p, f, st):
    """``sample(dt_since_s)``: :func:`hil.pack.sensors.sample_sensors` on these arrays."""
    sig = (nb.typeof(p), nb.typeof(f), nb.typeof(st), nb.float64)
    return functools.partial(sample_sensors.compile(sig), p, f, st)
