"""bms.can.socketbatch: sendmmsg / recvmmsg on python-can SocketCAN buses, checked on a real vcan0
(user-mode Linux here) against python-can's own per-frame path, in one guest."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import can
import pytest

from bms.can.socketbatch import SocketBatch

ROOT = Path(__file__).resolve().parent.parent

IN_GUEST = r"""
import json, time
import can, numpy as np
from bms.can.socketbatch import SocketBatch

out = {}
a = can.Bus(interface="socketcan", channel="vcan0")
b = can.Bus(interface="socketcan", channel="vcan0")
sa, sb = SocketBatch.of(a), SocketBatch.of(b)
rng = np.random.default_rng(1)
n = 200
keys = rng.integers(0, 0x800, n)
keys[::7] = (1 << 31) | rng.integers(0, 1 << 29, keys[::7].size)   # extended IDs
data = rng.integers(0, 256, (n, 8)).astype(np.uint8)
dlc = rng.integers(0, 9, n)
t0 = time.time()
out["sent"] = sa.send_frames(keys, data, dlc)
out["ready"] = sb.wait(2.0)
k, d, l, ok, t = sb.recv_arrays()
out["same_keys"] = k.tolist() == keys.tolist()
out["same_dlc"] = l.tolist() == dlc.tolist()
out["same_data"] = all(d[j, :l[j]].tolist() == data[j, :l[j]].tolist() for j in range(n))
out["all_data_frames"] = bool(ok.all())
out["stamped"] = bool(np.all((t >= t0) & (t <= time.time())))
# python-can's own path sees the batch-sent frames, the batch sees python-can's
sa.send_frames(keys[:3], data[:3], dlc[:3])
got = [b.recv(1.0) for _ in range(3)]
out["pycan_recv"] = [(m.arbitration_id, m.is_extended_id, bytes(m.data).hex()) for m in got]
out["pycan_expect"] = [(int(x) & 0x1FFFFFFF, bool(x >> 31), bytes(data[j, :dlc[j]]).hex()) for j, x in enumerate(keys[:3])]
a.send(can.Message(arbitration_id=0x10, data=b"\x01\x02", is_extended_id=False))
a.send(can.Message(arbitration_id=0x11, is_remote_frame=True, dlc=2, is_extended_id=False))
sb.wait(1.0)
ms = sb.recv_messages("vcan0")
out["messages"] = [(m.arbitration_id, m.is_remote_frame, bytes(m.data).hex(), m.channel) for m in ms]
out["drops_before"] = sb.drops()
for _ in range(20):   # 2000 frames into the default receive buffer (~280 frames): the kernel drops
    sa.send_frames(keys[:100], data[:100], dlc[:100])
out["kept"] = len(sb.recv_arrays()[0])
out["drops_after"] = sb.drops()
a.shutdown(); b.shutdown()
print(json.dumps(out))
"""


def test_socketbatch_is_none_for_other_buses():
    with can.Bus(interface="virtual", channel="sb-none") as bus:
        assert SocketBatch.of(bus) is None


@pytest.mark.socketcan
@pytest.mark.xdist_group("uml")
def test_batches_on_a_real_vcan_match_python_can_frame_by_frame():
    done = subprocess.run([str(ROOT / "scripts" / "install-system-deps.sh")], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    from hil.socketcan import run_on_vcan

    r = run_on_vcan([sys.executable, "-c", IN_GUEST], timeout_s=90, cwd=ROOT)
    assert r.returncode == 0 and not r.timed_out, r.output[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["sent"] == 200 and out["ready"]
    assert out["same_keys"] and out["same_dlc"] and out["same_data"] and out["all_data_frames"] and out["stamped"]
    assert out["pycan_recv"] == [list(x) for x in out["pycan_expect"]]
    assert out["messages"] == [[0x10, False, "0102", "vcan0"], [0x11, True, "", "vcan0"]]
    assert out["drops_before"] == 0
    assert out["kept"] < 2000 and out["drops_after"] == 2000 - out["kept"]
