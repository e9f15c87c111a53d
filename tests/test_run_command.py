"""``bms run``: the node in real time on a python-can virtual bus, with a peer in this process,
and a clean shutdown on SIGINT in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import can

from bms import cli
from bms.can.e2e import E2ESpec
from bms.signal_map import load_map

from node_rig import new_channel


def test_bms_run_on_a_virtual_bus_talks_to_a_peer_and_ends_with_a_state_frame(tmp_path):
    ch = new_channel()
    db = load_map().db
    vcu = db.get_message_by_name("VCU_Request")
    state = db.get_message_by_name("BMS_State")
    spec, st_spec = E2ESpec.from_message(vcu), E2ESpec.from_message(state)
    peer = can.Bus(interface="virtual", channel=ch)
    got: list[can.Message] = []
    done = threading.Event()

    def vcu_peer():
        ctr = 0
        while not done.is_set():
            payload = vcu.encode({"VCU_OpRequest": 0, "VCU_FaultReset": 0, "VCU_Request_Counter": ctr,
                                  "VCU_Request_CRC": 0})
            peer.send(can.Message(arbitration_id=vcu.frame_id, is_extended_id=False, data=spec.protect(payload)))
            ctr = (ctr + 1) % 16
            t_end = time.monotonic() + vcu.cycle_time / 1000.0
            while (left := t_end - time.monotonic()) > 0:
                m = peer.recv(timeout=left)
                if m is not None:
                    got.append(m)

    th = threading.Thread(target=vcu_peer, daemon=True)
    th.start()
    stats = tmp_path / "stats.json"
    try:
        rc = cli.main(["run", "-i", "virtual", "-c", ch, "--duration-s", "2", "-q", "--stats-json", str(stats)])
        time.sleep(0.2)
    finally:
        done.set()
        th.join(5)
        peer.shutdown()
    assert rc == 0
    d = json.loads(stats.read_text())
    s = d["stats"]
    assert s["frames_accepted"] >= 20 and s["rejected"]["bad_crc"] == 0 and s["steps"] >= 50
    assert not s["silent"]["VCU"] and s["silent"]["CMU00"]  # the VCU talked; no CMU on this bus
    w = d["wake_late"]   # how late the loop woke for its steps (bms.node.wakeup)
    assert 0 < w["n"] <= s["steps"] and 0.0 <= w["p50_ms"] <= w["p99_ms"] <= w["max_ms"], w
    assert w["loops_per_step"] >= 1.0, w   # each step is a pass of the loop; frames may add passes
    ru = d["rusage"]   # this process's CPU and context switches (a voluntary one per sleep of the loop)
    assert ru["utime_s"] > 0 and ru["nvcsw"] >= w["n"] // 2, ru
    states = [m for m in got if m.arbitration_id == state.frame_id]
    assert len(states) >= 50 and all(st_spec.check(bytes(m.data)) for m in states)
    last = got[-1]  # the final state frame comes after every scheduled one
    assert last.arbitration_id == state.frame_id
    assert state.decode(last.data, decode_choices=False)["BMS_ContPosCmd"] == 0
    assert d["status"]["contactors"] == 0


def test_bms_run_stops_cleanly_on_sigint(tmp_path):
    stats = tmp_path / "stats.json"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    p = subprocess.Popen([sys.executable, "-m", "bms.cli", "run", "-i", "virtual", "-c", new_channel(),
                          "--stats-json", str(stats)], stderr=subprocess.PIPE, text=True, env=env)
    try:
        first = p.stderr.readline()  # the first status line: the node runs
        assert first.startswith("t=")
        time.sleep(0.5)
        p.send_signal(signal.SIGINT)
        rc = p.wait(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert rc == 0
    d = json.loads(stats.read_text())
    assert d["status"]["contactors"] == 0 and d["stats"]["frames_out"] > 0


def test_bms_run_rejects_a_bad_map(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[map]\n")
    assert cli.main(["run", "-i", "virtual", "-c", new_channel(), "--map", str(bad), "--duration-s", "0.1"]) == 2
