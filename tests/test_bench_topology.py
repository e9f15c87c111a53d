"""The bench topology (hil.benchrun): ``bms run`` (the BMS), ``bms pack`` (the pack, VCU and
charger of the bench_short scenario) and a recorder as separate programs in real time, an
outside VCU injecting fault-reset requests. The test bodies are written for any backend of
hil.benchrun: python-can's ``virtual`` bus (programs as threads of one process) and SocketCAN
(separate processes on a real vcan0, with candump and cansend, through the harness).

Each backend runs once per test session (one UML boot for every check; xdist workers share the
result through a lock file). The SocketCAN run (~50 s on an idle machine) is in the ``uml`` xdist
group, with the other user-mode Linux tests. There ``bms pack`` and ``bms run`` are forked from
the harness after it loaded their kernels (``--fork``, hil.forkrun): started as new interpreters
inside the guest they took ~70 s CPU to send their first frames."""

from __future__ import annotations

import fcntl
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from bms.signal_map import load_map
from hil.benchrun import VCU_GONE_S
from hil.rtfigures import cyclic_figures, open_latency_s, read_frames

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.realtime  # make test runs these after the parallel suite, on an otherwise idle machine
BACKENDS = ["virtual", pytest.param("socketcan", marks=[pytest.mark.socketcan, pytest.mark.xdist_group("uml")])]
UML_TIMEOUT_S = 200.0   # the whole guest run: ~50 s idle, up to ~120 s on a loaded 2-core machine


def _run(backend: str, out: Path) -> None:
    if backend == "virtual":
        from hil.benchrun import run_bench

        run_bench(out, "virtual", f"bench-{uuid.uuid4().hex[:8]}")
        return
    done = subprocess.run([str(ROOT / "scripts" / "install-system-deps.sh")], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    from hil.benchrun import warm_caches
    from hil.socketcan import run_on_vcan

    warm_caches()  # numba's on-disk cache filled here, so the guest only loads it
    for attempt in (1, 2):
        r = run_on_vcan([sys.executable, "-m", "hil.benchrun", str(out), "--timeout-s", str(UML_TIMEOUT_S - 40),
                        "--fork"],
                        timeout_s=UML_TIMEOUT_S, cwd=ROOT)
        assert r.returncode == 0 and not r.timed_out, r.output[-4000:]
        slow = _stall_reason(out)
        if slow is None or attempt == 2:
            return
        # the guest stalled (most of the BMS's steps late, or the outside VCU's cansend past the
        # window the injections rely on: the valid reset must reach the BMS within its VCU
        # timeout): a missed precondition of these checks, not a BMS result. Before the harness
        # pinned the guest to one host CPU this happened in many boots; now it takes a loaded
        # machine. The run is kept beside the new one, and run once more.
        out.rename(out.with_name(out.name + "-stalled"))
        (out.with_name(out.name + "-stalled") / "stalled.txt").write_text(slow)


STALL_S = 0.5   # an injection that took longer from the call to the bus (normally ~0.04 s): the guest stalled
LATE_STEPS = 0.3   # the share of BMS steps run late above which the run measured a stalled machine, not the BMS


def _stall_reason(out: Path) -> str | None:
    """Why the run measured a stalled guest rather than the programs (an injected frame not on
    the bus within STALL_S of the call, the harness late, or more than LATE_STEPS of the BMS's
    steps late), or None."""
    stats = json.loads((out / "bms.json").read_text())["stats"]
    if stats["overruns"] >= LATE_STEPS * stats["steps"]:
        return f"{stats['overruns']} of {stats['steps']} BMS steps late"
    injections = json.loads((out / "bench.json").read_text()).get("injections", [])
    for inj in injections:
        if inj.get("latency_s") is None or inj["latency_s"] > STALL_S:
            return f"{inj['name']}: from the call to the bus {inj.get('latency_s')} s (None: not seen within the settle time)"
    if injections and injections[0]["after_last_vcu_s"] > VCU_GONE_S + STALL_S:
        return f"the first injection came {injections[0]['after_last_vcu_s']} s after the last genuine VCU frame"
    return None


@pytest.fixture(params=BACKENDS)
def bench(request, tmp_path_factory, worker_id) -> dict:
    base = tmp_path_factory.getbasetemp()
    root = base if worker_id == "master" else base.parent  # shared by the xdist workers of this session
    out = root / f"bench-{request.param}"
    with open(root / f"bench-{request.param}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (out / "bench.json").exists() and not (out / "failed.txt").exists():
            try:
                _run(request.param, out)
            except BaseException as exc:
                out.mkdir(parents=True, exist_ok=True)
                (out / "failed.txt").write_text(repr(exc))
                raise
    if (out / "failed.txt").exists():
        pytest.fail(f"the {request.param} bench run failed: {(out / 'failed.txt').read_text()[:3000]}")
    d = {k: json.loads((out / f"{k}.json").read_text()) for k in ("bench", "pack", "bms")}
    d["dir"] = out
    return d


def test_scenario_verdicts_pass_with_separate_nodes(bench):
    pack = bench["pack"]
    bad = [v for v in pack["verdicts"] if not v["ok"]]
    assert pack["passed"] and not bad, (bad, pack["events"])
    assert "DRIVE" in pack["states"] and "PRECHARGE" in pack["states"]
    board = next(i for i in pack["injected"] if i["fault"].startswith("board_silent"))
    assert board["detected"]["COMM_CMU"] <= 1.2 and board["contactors_open_after_s"] <= 2.5
    assert pack["loop"]["tx_errors"] == 0


def test_outside_vcu_valid_request_obeyed_bad_crc_and_replay_rejected(bench):
    inj = {i["name"]: i for i in bench["bench"]["injections"]}
    assert set(inj) == {"bad_crc", "valid", "replayed"}
    # before the valid request the BMS stays in ERROR (the bad-CRC one changed nothing) ...
    t_valid = inj["valid"]["t_wall"]
    between = [s for t, s in bench["bench"]["states"] if inj["bad_crc"]["t_wall"] <= t < t_valid]
    assert between == [], between
    # ... the valid one (fault reset) takes it to STANDBY, the replayed copy does not
    assert "STANDBY" in inj["valid"]["states_after"], inj
    assert "STANDBY" not in inj["replayed"]["states_after"], inj
    rej = bench["bms"]["stats"]["rejected"]
    assert rej["bad_crc"] >= 1 and rej["counter_repeated"] >= 1, rej


def test_bms_shuts_down_cleanly_with_contactors_open(bench):
    assert bench["bench"]["rc"]["bms"] == 0
    assert bench["bms"]["status"]["contactors"] == 0
    assert bench["bench"]["rc"]["record"] == 0


def test_recording_decodes_with_cantools(bench):
    log = bench["dir"] / "bus.log"
    n = len(read_frames(log))
    with log.open() as fh:
        dec = subprocess.run([sys.executable, "-m", "cantools", "decode", "--single-line", str(ROOT / "dbc" / "bms_fil.dbc")],
                             stdin=fh, capture_output=True, text=True, timeout=300)
    assert dec.returncode == 0, dec.stderr[-2000:]
    lines = dec.stdout.splitlines()
    assert len(lines) == n and not [ln for ln in lines if "Unknown frame id" in ln or " :: " not in ln]
    for name in ("BMS_State(", "CMU00_CellV(", "ISENSE_Current(", "VCU_Request("):
        assert any(name in ln for ln in lines), name
    assert n > 5000


def test_realtime_figures_from_the_recording(bench):
    smap = load_map()
    fig = cyclic_figures(bench["dir"] / "bus.log", smap)
    assert {10, 100} <= set(fig)
    for ms in (10, 100):
        p50 = fig[ms]["period_ms"]["p50"]
        assert 0.8 * ms <= p50 <= 1.25 * ms, fig[ms]
    t_on = bench["pack"]["fault_wall_time"]["board_silent(board=3)"]
    lat = open_latency_s(bench["dir"] / "bus.log", smap, t_on)
    assert lat is not None and 0.0 < lat <= 2.5
    # the node keeps its schedule: before frames went in and out in batches, inside user-mode Linux
    # the p99 jitter of the 10 ms frames was 400 ms and 60 % of the steps ran late (docs/bench.md)
    assert fig[10]["jitter_ms"]["p99"] < 100.0, fig[10]
    stats = bench["bms"]["stats"]
    assert stats["overruns"] < LATE_STEPS * stats["steps"], stats
