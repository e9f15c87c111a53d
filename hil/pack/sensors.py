"""Sensor models of the pack (numba): cell voltage channels of the CMUs, temperature sensors,
pack current, pack voltage and bus voltage, with noise, quantisation, offset, gain, drift,
range clamping and injected faults (stuck, open sense wire, extra offset / gain / noise).

Noise comes from the state's own xoshiro256** generator (``st.rng``, four uint64 words seeded
by :func:`seed_rng`), so a run is reproducible from its seed and independent of any other
user of numba's global random state.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from hil.pack.jit import pack_jit
from hil.pack.layout import E_V, PK_IPACK, PK_VBUS, PK_VPACK, S_GAIN, S_HI, S_LO, S_NOISE, S_OFFSET, S_QUANT

_MASK = (1 << 64) - 1


def seed_rng(seed: int) -> np.ndarray:
    """Four xoshiro256** state words from ``seed`` by splitmix64 (never all zero)."""
    z = seed & _MASK
    out = np.empty(4, dtype=np.uint64)
    for k in range(4):
        z = (z + 0x9E3779B97F4A7C15) & _MASK
        y = z
        y = ((y ^ (y >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        y = ((y ^ (y >> 27)) * 0x94D049BB133111EB) & _MASK
        out[k] = y ^ (y >> 31)
    return out


@pack_jit(inline="always")
def _rotl(v, k):
    """64-bit rotate left: (v << k) | (v >> (64 - k))."""
    return (v << nb.uint64(k)) | (v >> nb.uint64(64 - k))


@pack_jit
def next_uniform(rng):
    """Uniform double in (0, 1) from xoshiro256** (Blackman & Vigna), advancing ``rng`` in place."""
    s0, s1, s2, s3 = rng[0], rng[1], rng[2], rng[3]
    result = _rotl(s1 * nb.uint64(5), 7) * nb.uint64(9)
    t = s1 << nb.uint64(17)
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = _rotl(s3, 45)
    rng[0], rng[1], rng[2], rng[3] = s0, s1, s2, s3
    return ((result >> nb.uint64(11)) + 0.5) * (1.0 / 9007199254740992.0)


@pack_jit
def fill_normal(rng, out):
    """Standard normal numbers into ``out`` by Box-Muller: z = sqrt(-2 ln u1) (cos, sin)(2 pi u2)."""
    n = out.shape[0]
    k = 0
    while k < n:
        r = math.sqrt(-2.0 * math.log(next_uniform(rng)))
        phi = 2.0 * math.pi * next_uniform(rng)
        out[k] = r * math.cos(phi)
        if k + 1 < n:
            out[k + 1] = r * math.sin(phi)
        k += 2


@pack_jit
def sensor_truth(p, f, st):
    """True values seen by each channel into ``st.truth``: element voltages (an open sense wire w
    adds its shift to element w-1 and subtracts it from element w), the lagged sensor
    temperatures, pack current, pack voltage and bus voltage."""
    ns = p.n_series
    tr = st.truth
    for s in range(ns):
        v = st.elem[s, E_V]
        if f.wire_open[s + 1] != 0:
            v += f.wire_shift_v[s + 1]
        if f.wire_open[s] != 0:
            v -= f.wire_shift_v[s]
        tr[s] = v
    nts = st.ts_temp.shape[0]
    for k in range(nts):
        tr[ns + k] = st.ts_temp[k]
    tr[ns + nts] = st.pk[PK_IPACK]
    tr[ns + nts + 1] = st.pk[PK_VPACK]
    tr[ns + nts + 2] = st.pk[PK_VBUS]


@pack_jit
def reading(x, z, gain, offset, offset_f, drift, sd, qs, lo, hi):
    """A channel's reading of the true value ``x`` with the standard normal ``z``:

        y = clamp(Q(gain x + offset + offset_f + drift + sd z), lo, hi)

    (``gain`` = gain (1 + gain_err), ``sd`` = sqrt(sd^2 + sd_f^2) of the channel), Q rounding to
    the quantisation step ``qs`` (none if 0). Scalars only, shared by both samplers (helpers taking
    the state tuples or the channel arrays were 2-3x slower)."""
    y = gain * x + offset + offset_f + drift + sd * z
    if qs > 0.0:
        y = math.floor(y / qs + 0.5) * qs
    return min(max(y, lo), hi)


@pack_jit(nogil=True)
def sample_sensors(p, f, st, dt_since_s):
    """Measure every channel into ``st.meas`` (:func:`reading`; a stuck channel reads its stuck
    value), the drift integrating its rate over ``dt_since_s`` (the time since the previous sample)."""
    sensor_truth(p, f, st)
    fill_normal(st.rng, st.noise)
    sens = p.sens
    for ch in range(sens.shape[0]):
        st.drift[ch] += f.sens_drift_per_s[ch] * dt_since_s
        if f.sens_stuck[ch] != 0:
            st.meas[ch] = f.sens_stuck_val[ch]
            continue
        sd = math.sqrt(sens[ch, S_NOISE] ** 2 + f.sens_noise[ch] ** 2)
        st.meas[ch] = reading(st.truth[ch], st.noise[ch], sens[ch, S_GAIN] * (1.0 + f.sens_gain_err[ch]), sens[ch, S_OFFSET],
                              f.sens_offset[ch], st.drift[ch], sd, sens[ch, S_QUANT], sens[ch, S_LO], sens[ch, S_HI])


@pack_jit
def advance_drift(f, st, dt_s):
    """drift[ch] += rate[ch] dt_s for every channel (sampled or not, so a channel's drift is always
    its rate times the time elapsed, however rarely it is read)."""
    d = st.drift
    r = f.sens_drift_per_s
    for ch in range(d.shape[0]):
        d[ch] += r[ch] * dt_s


@pack_jit
def sample_channels(p, f, st, chans):
    """Measure only the channels ``chans`` (in that order, one normal number each from ``st.rng``)
    into ``st.meas`` and their true values into ``st.truth``, by the truth and the equation of
    :func:`sensor_truth` and :func:`reading` with the drift as it stands (:func:`advance_drift`);
    the other channels keep their last reading."""
    k = chans.shape[0]
    if k == 0:
        return
    z = st.noise[:k]
    fill_normal(st.rng, z)
    ns = p.n_series
    nts = st.ts_temp.shape[0]
    sens = p.sens
    for r in range(k):
        ch = chans[r]
        if ch < ns:
            x = st.elem[ch, E_V]
            if f.wire_open[ch + 1] != 0:
                x += f.wire_shift_v[ch + 1]
            if f.wire_open[ch] != 0:
                x -= f.wire_shift_v[ch]
        elif ch < ns + nts:
            x = st.ts_temp[ch - ns]
        elif ch == ns + nts:
            x = st.pk[PK_IPACK]
        elif ch == ns + nts + 1:
            x = st.pk[PK_VPACK]
        else:
            x = st.pk[PK_VBUS]
        st.truth[ch] = x
        if f.sens_stuck[ch] != 0:
            st.meas[ch] = f.sens_stuck_val[ch]
            continue
        sd = math.sqrt(sens[ch, S_NOISE] ** 2 + f.sens_noise[ch] ** 2)
        st.meas[ch] = reading(x, z[r], sens[ch, S_GAIN] * (1.0 + f.sens_gain_err[ch]), sens[ch, S_OFFSET],
                              f.sens_offset[ch], st.drift[ch], sd, sens[ch, S_QUANT], sens[ch, S_LO], sens[ch, S_HI])
