"""Statistics of the BMS node, as plain data (``NodeStats.as_dict()``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from bms.layout import TASK_NAMES

# per-frame verdicts of the receive screen (index = code)
OK = 0
UNKNOWN_ID = 1
BAD_DLC = 2
UNKNOWN_MUX = 3
BAD_CRC = 4
OUT_OF_RANGE = 5
STALE = 6
COUNTER_REPEATED = 7
COUNTER_JUMP = 8
OK_GAP = 9          # accepted, but the alive counter skipped (frames were lost)
NOT_DATA = 10       # error / remote / CAN FD frame: ignored
REASONS = ("ok", "unknown_id", "bad_dlc", "unknown_mux", "bad_crc", "out_of_range", "stale",
           "counter_repeated", "counter_jump", "ok_gap", "not_data")
REJECT_CODES = (BAD_DLC, UNKNOWN_MUX, BAD_CRC, OUT_OF_RANGE, STALE, COUNTER_REPEATED, COUNTER_JUMP)


@dataclass
class NodeStats:
    frames_in: int = 0            # every frame handed to the node
    frames_accepted: int = 0      # decoded into the inputs
    frames_out: int = 0           # transmitted
    tx_errors: int = 0            # bus.send raised (frame dropped)
    tx_saturated: int = 0         # transmitted values clamped to their DBC range (or NaN without INVALID marker)
    ignored: dict[str, int] = field(default_factory=lambda: {"unknown_id": 0, "not_data": 0})
    rejected: dict[str, int] = field(default_factory=lambda: {REASONS[c]: 0 for c in REJECT_CODES})
    sequence_gaps: int = 0        # accepted frames whose counter skipped (lost frames)
    steps: int = 0                # firmware steps run
    overruns: int = 0             # tick periods skipped because the node ran late
    task_runs: dict[str, int] = field(default_factory=lambda: {n: 0 for n in TASK_NAMES})      # task -> runs
    task_overruns: dict[str, int] = field(default_factory=lambda: {n: 0 for n in TASK_NAMES})  # task -> late runs
    max_step_s: float = 0.0       # longest step (processing time, measured on the node's clock)
    timeouts: dict[str, int] = field(default_factory=dict)   # source -> times it went silent
    silent: dict[str, bool] = field(default_factory=dict)    # source -> silent now

    def count(self, verdicts) -> None:
        """Add one receive batch's verdicts (sequence of REASONS codes)."""
        import numpy as np

        verdicts = np.asarray(verdicts, dtype=np.int64)
        self.add(np.bincount(verdicts, minlength=len(REASONS)), verdicts.shape[0], int(np.count_nonzero(verdicts)))

    def add(self, counts, n: int, not_ok: int) -> None:
        """Add one receive batch of ``n`` frames given as its verdict counts per code (``not_ok``
        of them not OK)."""
        self.frames_in += n
        if not_ok == 0:  # every frame OK (code 0)
            self.frames_accepted += n
            return
        self.frames_accepted += int(counts[OK] + counts[OK_GAP])
        self.sequence_gaps += int(counts[OK_GAP])
        self.ignored["unknown_id"] += int(counts[UNKNOWN_ID])
        self.ignored["not_data"] += int(counts[NOT_DATA])
        for c in REJECT_CODES:
            self.rejected[REASONS[c]] += int(counts[c])

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    def as_dict(self) -> dict:
        return {
            "frames_in": self.frames_in, "frames_accepted": self.frames_accepted, "frames_out": self.frames_out,
            "tx_errors": self.tx_errors, "tx_saturated": self.tx_saturated, "ignored": dict(self.ignored),
            "rejected": dict(self.rejected), "sequence_gaps": self.sequence_gaps, "steps": self.steps,
            "overruns": self.overruns, "task_runs": dict(self.task_runs), "task_overruns": dict(self.task_overruns), "max_step_s": self.max_step_s, "timeouts": dict(self.timeouts),
            "silent": dict(self.silent),
        }
