"""Fill numba's on-disk cache before a test run: ``python -m hil.warm [--jobs N]``.

On a fresh clone nothing is cached and every process that calls a kernel compiles it; with
pytest-xdist both workers compiled the same big kernels (the firmware step ~75 CPU s, the
estimator's series run ~47 s, the plant's tick ~22 s and step ~12 s, ...) once each. Here the
kernels are compiled once, split into groups of about equal cost that run side by side in
separate processes (each big kernel in one group only; a callee shared by two groups in
different signatures may lose one index entry to the other's write: it is then compiled again
where it is called directly, never wrong), by tiny real calls through the same entry points the programs use, so the signatures are the
production ones. The test workers then only load them (``make test`` runs this first).

A group that fails prints its error and the run goes on: the tests then compile what is
missing and report the real failure."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import traceback


def firmware() -> None:
    """The BMS node: firmware step, frame kernels, the power-up SOC read."""
    from bms.node.node import warm_up
    from bms.signal_map import load_map

    warm_up(load_map())


def estimators() -> None:
    """The single-cell series run of every estimator (``bms eval`` / ``bms tune``)."""
    from bms.evaluate import evaluate
    from bms.soc.estimator import ESTIMATORS

    for name in ESTIMATORS:
        evaluate("winston_lfp100", "winston_lfp100/udds_P25.csv.gz", estimator=name)


def plant() -> None:
    """The pack simulator's tick, step, sensors and frames (no BMS node: that is ``firmware``)."""
    from hil.rtplant import DT_S, Plant
    from hil.scenario import load_scenario

    import can

    pl = Plant(load_scenario("bench_short"))
    for k in range(1, 4):
        pl.tick(k * DT_S)
    msg = pl.smap.db.get_message_by_name(pl.smap.messages_of("state")[0])   # the bus view's decoder
    pl.view.feed([can.Message(arbitration_id=msg.frame_id, data=bytes(msg.length), is_extended_id=False)], 0.0)


def sweep() -> None:
    """The tuning sweep's SIMD-lane kernel (``bms tune sweep``)."""
    import tempfile
    from pathlib import Path

    from bms.profile import load_profile
    from bms.tune.datasets import load_dataset
    from bms.tune.perturb import PRESETS
    from bms.tune.sweep import run_sweep

    prof = load_profile("winston_lfp100")
    ds = [load_dataset("winston_lfp100/udds_P25.csv.gz,start=3000,duration=60", prof)]
    with tempfile.TemporaryDirectory() as d:
        run_sweep(prof, ds, [PRESETS["nominal"]], [{"r_v2": 1e-3}], Path(d) / "w.jsonl", progress=False)


# make test: two groups of about equal compile cost (CPU s measured cold, one process each:
# firmware 83, estimators 47, plant 38, sweep 35); the firmware and the estimators share
# soc_step's signature. bms demo: only what the closed loop calls, the BMS node beside the pack.
GROUPS = {"firmware": [firmware, estimators], "plant": [plant, sweep], "node": [firmware], "pack": [plant]}
SUITE = ("firmware", "plant")
DEMO = ("node", "pack")


def run_group(name: str) -> int:
    t0 = time.process_time()
    ok = 0
    for fn in GROUPS[name]:
        try:
            fn()
        except Exception:  # noqa: BLE001 -- reported; the tests will show the failure properly
            traceback.print_exc()
            print(f"hil.warm: {fn.__name__} failed (the tests compile it instead)", file=sys.stderr)
            ok = 1
    print(f"hil.warm: {name} {time.process_time() - t0:.1f} CPU s", file=sys.stderr)
    return ok


def warm(groups=SUITE, jobs: int = 2) -> float:
    """Run ``groups`` in separate processes, ``jobs`` side by side; the wall seconds it took.
    Never raises for a failing group (see the module's docstring)."""
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        raise ValueError(f"unknown warm-up group(s) {unknown}; known: {sorted(GROUPS)}")
    t0 = time.monotonic()
    running: list[subprocess.Popen] = []
    for name in groups:
        while len(running) >= max(1, jobs):
            running.pop(0).wait()
        running.append(subprocess.Popen([sys.executable, "-m", "hil.warm", "--group", name]))
    for p in running:
        p.wait()
    return time.monotonic() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hil.warm", description=__doc__.splitlines()[0])
    ap.add_argument("--group", choices=sorted(GROUPS), help="run one group in this process")
    ap.add_argument("--groups", default=",".join(SUITE),
                    help=f"groups to run side by side, comma-separated (default {','.join(SUITE)}: all "
                         f"the suite's kernels; {','.join(DEMO)}: what bms demo calls)")
    ap.add_argument("--jobs", type=int, default=2, help="groups run side by side (default 2)")
    a = ap.parse_args(argv)
    if a.group:
        return run_group(a.group)
    try:
        warm([g for g in a.groups.split(",") if g], a.jobs)
    except ValueError as exc:
        ap.error(str(exc))
    return 0  # never fails the run: see the module's docstring


if __name__ == "__main__":
    sys.exit(main())
