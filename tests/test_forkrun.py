"""hil.forkrun: a ``bms`` command forked from this process behaves like the command line's
process for the bench harness: own pid, its output in files, its exit code, signals, and none
of the parent's descriptors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from hil.forkrun import ForkedCommand
from node_rig import new_channel


def _wait_for(path, timeout_s: float = 60.0) -> str:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        text = path.read_text() if path.exists() else ""
        if text:
            return text
        time.sleep(0.02)
    raise AssertionError(f"nothing in {path} after {timeout_s} s")


def test_exit_code_and_stderr_of_a_bad_command_line(tmp_path):
    p = ForkedCommand(["no-such-command"], tmp_path / "o", tmp_path / "e")
    assert p.pid != os.getpid()
    assert p.wait(60) == 2 == p.returncode == p.poll()
    assert "invalid choice" in (tmp_path / "e").read_text()


def test_runs_until_signalled_holds_no_parent_descriptor_and_stops_cleanly(tmp_path):
    r, w = os.pipe()   # a descriptor of the parent's (e.g. the harness's bus socket)
    try:
        stats = tmp_path / "stats.json"
        p = ForkedCommand(["run", "-i", "virtual", "-c", new_channel(), "--stats-json", str(stats)],
                          tmp_path / "o", tmp_path / "e", cwd=tmp_path)
        try:
            assert _wait_for(tmp_path / "e").startswith("t=")   # the node's first status line
            assert p.poll() is None
            with pytest.raises(subprocess.TimeoutExpired):
                p.wait(0.05)
            pipes = {os.readlink(f"/proc/self/fd/{fd}") for fd in (r, w)}
            held = {os.readlink(f"/proc/{p.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{p.pid}/fd")}
            assert not pipes & held, held
            assert os.readlink(f"/proc/{p.pid}/cwd") == str(tmp_path)
            p.send_signal(signal.SIGTERM)
            assert p.wait(60) == 0
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(10)
    finally:
        os.close(r)
        os.close(w)
    d = json.loads(stats.read_text())
    assert d["status"]["contactors"] == 0 and d["stats"]["frames_out"] > 0
    p.send_signal(signal.SIGTERM)   # ended: a no-op, not an error
