"""``--rt-priority`` (bms run / pack / record): SCHED_FIFO for the command's loop, a clear error
when the priority is out of range or not permitted, never a silent fallback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bms import cli
from bms.commands._realtime import apply_rt_priority

PROBE = """
import os, sys
from bms.commands._realtime import apply_rt_priority
if sys.argv[1] == "drop":
    os.setgid(65534); os.setuid(65534)   # no capabilities left, rtprio limit as the system sets it
try:
    got = apply_rt_priority(int(sys.argv[2]))
except PermissionError as e:
    print("DENIED", e); sys.exit(3)
print(got, os.sched_getscheduler(0) == os.SCHED_FIFO, os.sched_getparam(0).sched_priority)
"""


def _probe(mode: str, prio: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROBE, mode, str(prio)], capture_output=True, text=True, timeout=60)


def test_normal_scheduling_without_the_option():
    assert apply_rt_priority(None) == "normal"
    assert os.sched_getscheduler(0) == os.SCHED_OTHER


@pytest.mark.parametrize("prio", [0, 100, -5])
def test_out_of_range_priority_is_a_clear_error(prio, capsys):
    rc = cli.main(["run", "-i", "virtual", "-c", "rt-range", "--duration-s", "0.1", "-q", "--rt-priority", str(prio)])
    assert rc == 2
    assert f"--rt-priority {prio}: SCHED_FIFO priorities are 1..99" in capsys.readouterr().err


def test_fifo_when_permitted_else_the_reason():
    """Root (as inside the user-mode Linux bench) gets SCHED_FIFO; the same call after dropping
    to an unprivileged user, or run unprivileged, gets the explanation and exit code."""
    import resource

    r = _probe("keep", 20)
    if os.geteuid() == 0 or resource.getrlimit(resource.RLIMIT_RTPRIO)[0] >= 20:
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == ["SCHED_FIFO", "20", "True", "20"]
    else:
        assert r.returncode == 3 and "CAP_SYS_NICE" in r.stdout, (r.stdout, r.stderr)
    if os.geteuid() == 0:
        r = _probe("drop", 20)
        assert r.returncode == 3, (r.stdout, r.stderr)
        assert "not permitted" in r.stdout and "CAP_SYS_NICE" in r.stdout and "rtprio" in r.stdout


def test_freeze_heap_keeps_start_up_objects_out_of_full_collections():
    import gc

    from bms.commands._realtime import freeze_heap

    built = [{"start-up": [k]} for k in range(1000)]   # long-lived objects made before real time
    assert all(gc.is_tracked(o) for o in built) and id(built[0]) in {id(o) for o in gc.get_objects()}
    try:
        n = freeze_heap()
        assert n == gc.get_freeze_count() and n >= len(built)
        tracked = {id(o) for o in gc.get_objects()}
        assert not tracked & {id(o) for o in built}   # a full collection no longer visits them
        later = {"made": ["in the loop"]}
        assert id(later) in {id(o) for o in gc.get_objects()}
    finally:
        gc.unfreeze()
