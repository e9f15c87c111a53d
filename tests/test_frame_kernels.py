"""The fused frame kernels give what the step-by-step path gave: the plant's board temperature
(numpy's summation order), the plan encoder (codec + E2E), the bound kernels (no type dispatch)."""

from __future__ import annotations

import numba as nb
import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from bms.bound import bind
from bms.can.codec import FrameCodec
from bms.can.e2e import batch_arrays, protect_batch
from bms.can.schedule import Plan, due_kernel, encode_plan
from bms.signal_map import load_map
from hil.pack.frames import numpy_mean

_finite = st.floats(-1e6, 1e6, allow_nan=False)


@given(arrays(np.float64, st.integers(1, 140), elements=_finite), st.data())
def test_numpy_mean_is_bitwise_numpys(a, data):
    b0 = data.draw(st.integers(0, a.shape[0] - 1))
    n = data.draw(st.integers(1, min(128, a.shape[0] - b0)))
    assert numpy_mean(a, b0, n) == a[b0:b0 + n].mean()
    rows = a[:a.shape[0] - a.shape[0] % n].reshape(-1, n)  # as the plant took it: rows of a 2-D block
    assert all(numpy_mean(a, r * n, n) == m for r, m in enumerate(rows.mean(axis=1)))


def test_encode_plan_is_the_codec_and_e2e_batch():
    smap = load_map("bms_fil_heavy_duty_192s")
    c = FrameCodec(smap.tx_messages, smap.db)
    names = list(smap.tx_messages)
    plan = Plan(c, names)
    rng = np.random.default_rng(3)
    values = rng.uniform(-50, 500, c.n_slots)
    values[rng.random(c.n_slots) < 0.1] = np.nan
    due = rng.random(len(names)) < 0.5
    n = encode_plan(due, plan.begin, plan.rows, plan.mux, values, c.msg_i, c.sig_i, c.sig_mask, c.sig_f, plan.e2e_id,
                    plan.e2e_crc_byte, plan.keys, plan.data, plan.dlc, plan.saturated)
    rows, mux, keys = c.cycle_plan([nm for nm, d in zip(names, due) if d])
    data, sat = c.encode(rows, mux, values)
    ids, crc_bytes, lengths = batch_arrays(list(c.messages))
    protect_batch(data, ids[rows], crc_bytes[rows], lengths[rows])
    assert n == rows.shape[0] > 0 and np.any(crc_bytes[rows] >= 0)
    np.testing.assert_array_equal(plan.keys[:n], keys)
    np.testing.assert_array_equal(plan.data[:n], data)
    np.testing.assert_array_equal(plan.dlc[:n], lengths[rows])
    assert plan.saturated[0] == sat.sum()


def test_bound_kernel_is_the_kernel():
    args = [np.array([0.0, 0.05, 1.0]), np.array([0.1, 0.1, 1.0]), 0.05, np.array([0, -1, 1]), np.array([4, 1, 16]),
            np.array([3, 0, 15]), np.zeros(2), np.zeros(3, np.bool_)]
    ref = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    f = bind(due_kernel, *args[:2], free=(nb.float64,) + tuple(nb.typeof(a) for a in args[3:]))
    assert f(*args[2:]) == due_kernel(*ref) == 2
    for a, b in zip(args, ref):
        np.testing.assert_array_equal(a, b)
