"""``bms run`` loads every kernel before real time starts (``bms.node.node.warm_up``), including
the power-up SOC read that the first step with fresh boards runs: loading its kernels there
stalled that step by ~0.25 s inside user-mode Linux, and under SCHED_FIFO the pack simulator
with it (its current sensor timed out: COMM_ISENSE at power-up, the bench verdicts failed).

Checked in a fresh interpreter (this process has compiled everything already): after
``warm_up``, a node's power-up read and its first steps add no compiled overload to any numba
dispatcher. Marked ``realtime`` so that it runs in make test's second pass, on the numba cache
the first pass wrote (cold, the child would compile the firmware step, ~1.5 CPU-minutes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import gc, json
from numba.core.dispatcher import Dispatcher
from bms import core
from bms.node import BmsNode, SimClock
from bms.node.node import warm_up
from bms.signal_map import load_map

def overloads():
    return {id(d): (d.py_func.__qualname__, len(d.overloads)) for d in gc.get_objects() if isinstance(d, Dispatcher)}

smap = load_map()
warm_up(smap)
before = overloads()
node = BmsNode(None, smap, clock=SimClock())
inp = node.inp
inp.cell_v[:], inp.temp_c[:], inp.board_valid[:], inp.board_age_s[:] = 3.29, 21.0, True, 0.01
core.initialise(node.st, node.prm, inp)
for k in range(5):
    node.step_to(k * node.period_s, poll=False)
after = overloads()
added = sorted(name for key, (name, n) in after.items() if n > before.get(key, (name, 0))[1])
print(json.dumps({"added": added, "soc": float(node.st.x[0, 0])}))
"""


@pytest.mark.realtime
def test_after_warm_up_the_power_up_read_and_first_steps_load_no_kernel():
    r = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["added"] == [], f"compiled or loaded after warm_up: {out['added']}"
    assert 0.0 < out["soc"] < 1.0   # the power-up read ran on the rested voltages
