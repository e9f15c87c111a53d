"""Batch CAN codec compiled from cantools' signal layout.

cantools stays the source of truth: :class:`FrameCodec` reads every signal's start bit, length,
byte order, sign, scale, offset, range, multiplexer value and ``INVALID`` marker from the cantools
``Message`` objects and flattens them into integer/float tables. The numba kernels in
:mod:`bms.can._kernels` then decode a whole batch of frames (keys, ``(n, 8)`` uint8 payloads) into
flat per-signal *slot* arrays, or encode slot values into payloads, without touching Python
objects per frame.

Slots: every signal of the compiled messages owns one slot (signal names must be unique across
them). ``slot_order`` puts chosen signals first, in that order, so that e.g. the 192 cell voltages
occupy slots 0..191 and ``values[0:192]`` is a view the BMS step reads directly.

Frame keys: ``key = arbitration_id | (1 << 31 if extended)`` (see :func:`frame_key`); for a bus of
standard IDs the key is the ID itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
from cantools.database.can import Database, Message

from bms.can import _kernels as K
from bms.can.dbc import database, multiplexer_signal, mux_values
from bms.can._kernels import ST_BAD_DLC, ST_OK, ST_UNKNOWN_ID, ST_UNKNOWN_MUX  # noqa: F401 (re-export)

EXTENDED_FLAG = 1 << 31


def frame_key(arbitration_id: int | np.ndarray, is_extended: bool | np.ndarray = False):
    """Lookup key of a frame: the ID, with bit 31 set for extended (29-bit) IDs."""
    if isinstance(arbitration_id, np.ndarray):
        return arbitration_id.astype(np.int64) | (np.asarray(is_extended, dtype=np.int64) << 31)
    return int(arbitration_id) | (EXTENDED_FLAG if is_extended else 0)


def message_key(msg: Message) -> int:
    return frame_key(msg.frame_id, msg.is_extended_frame)


@dataclass
class DecodeBuffers:
    """Per-slot outputs of :meth:`FrameCodec.decode` (allocated once, updated in place)."""

    value: np.ndarray  # float64 physical value (NaN until first received)
    raw: np.ndarray  # int64 raw field value
    valid: np.ndarray  # bool: within the DBC range and not the INVALID marker
    time_s: np.ndarray  # float64 timestamp of the frame that last wrote the slot (-inf: never)


def _signal_rows(msg: Message, slot_of: dict[str, int]) -> tuple[list[list[int]], list[int], list[list[float]], int]:
    """Integer rows, masks, float rows of msg's signals; index (within msg) of the multiplexer or -1."""
    if msg.length > 8:
        raise ValueError(f"message {msg.name!r}: {msg.length} bytes; only classic CAN (<= 8) is supported")
    if msg.is_container:
        raise ValueError(f"message {msg.name!r}: container messages are not supported")
    mux_sig = multiplexer_signal(msg)
    rows_i: list[list[int]] = []
    masks: list[int] = []
    rows_f: list[list[float]] = []
    mux_index = -1
    for idx, s in enumerate(msg.signals):
        if s.is_float:
            raise ValueError(f"signal {s.name!r}: IEEE float signals are not supported by the batch codec")
        if s.multiplexer_ids:
            if len(s.multiplexer_ids) != 1 or s.multiplexer_signal != (mux_sig.name if mux_sig else None):
                raise ValueError(f"signal {s.name!r}: only one multiplexer value per signal is supported")
            mux_val = int(s.multiplexer_ids[0])
        else:
            mux_val = -1
        if s.is_multiplexer:
            mux_index = idx
        if s.byte_order == "little_endian":
            shift, big = s.start, 0
        else:
            msb = 8 * (s.start // 8) + (7 - s.start % 8)  # bit index counted from the MSB of byte 0
            shift, big = 64 - (msb + s.length), 1
        if shift < 0 or shift + s.length > 64:
            raise ValueError(f"signal {s.name!r}: does not fit in 8 bytes")
        scale, offset = float(s.scale), float(s.offset)
        if scale == 0.0:
            raise ValueError(f"signal {s.name!r}: scale 0")
        field_lo = -(1 << (s.length - 1)) if s.is_signed else 0
        field_hi = (1 << (s.length - 1)) - 1 if s.is_signed else (1 << s.length) - 1
        raw_lo, raw_hi = field_lo, field_hi
        if s.minimum is not None and s.maximum is not None:
            a = (float(s.minimum) - offset) / scale
            b = (float(s.maximum) - offset) / scale
            a, b = min(a, b), max(a, b)
            raw_lo = max(field_lo, math.ceil(a - 1e-9))
            raw_hi = min(field_hi, math.floor(b + 1e-9))
            if raw_lo > raw_hi:
                raise ValueError(f"signal {s.name!r}: range [{s.minimum}, {s.maximum}] holds no raw value")
        invalid = [int(k) for k, v in (s.choices or {}).items() if str(v).upper() == "INVALID"]
        if len(invalid) > 1:
            raise ValueError(f"signal {s.name!r}: more than one INVALID marker")
        rows_i.append([shift, s.length, big, int(s.is_signed), mux_val, slot_of[s.name],
                       invalid[0] if invalid else 0, int(bool(invalid)), int(s.is_multiplexer), raw_lo, raw_hi])
        masks.append((1 << s.length) - 1)
        rows_f.append([scale, offset])
    return rows_i, masks, rows_f, mux_index


class FrameCodec:
    """Batch decoder/encoder for a set of DBC messages (see module docstring)."""

    def __init__(self, messages: Iterable[Message | str], db: Database | None = None,
                 slot_order: Sequence[str] = ()):
        db = db or database()
        msgs = [db.get_message_by_name(m) if isinstance(m, str) else m for m in messages]
        if not msgs:
            raise ValueError("FrameCodec needs at least one message")
        msgs.sort(key=message_key)
        keys = [message_key(m) for m in msgs]
        if len(set(keys)) != len(keys):
            raise ValueError("two messages share a frame ID")
        names: list[str] = []
        for m in msgs:
            names.extend(s.name for s in m.signals)
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"signal names must be unique across the codec's messages: {dup[:5]}")
        unknown = [n for n in slot_order if n not in set(names)]
        if unknown or len(set(slot_order)) != len(slot_order):
            raise ValueError(f"slot_order names unknown or repeated signals: {unknown[:5]}")
        first = list(slot_order)
        chosen = set(first)
        self.names: tuple[str, ...] = tuple(first + [n for n in names if n not in chosen])
        self._slot = {n: i for i, n in enumerate(self.names)}
        self.messages: tuple[Message, ...] = tuple(msgs)
        self._row = {m.name: i for i, m in enumerate(msgs)}

        sig_i, masks, sig_f, msg_i = [], [], [], []
        for m in msgs:
            ri, mk, rf, mux_index = _signal_rows(m, self._slot)
            begin = len(sig_i)
            msg_i.append([message_key(m), m.length, begin, begin + len(ri), begin + mux_index if mux_index >= 0 else -1])
            sig_i += ri
            masks += mk
            sig_f += rf
        self.msg_keys = np.array(keys, dtype=np.int64)
        self.msg_i = np.array(msg_i, dtype=np.int64).reshape(-1, K.N_MSG_I)
        self.sig_i = np.array(sig_i, dtype=np.int64).reshape(-1, K.N_SIG_I)
        self.sig_mask = np.array(masks, dtype=np.uint64)
        self.sig_f = np.array(sig_f, dtype=np.float64).reshape(-1, K.N_SIG_F)
        self.n_slots = len(self.names)

    # ---- lookups -------------------------------------------------------------------------
    def slot(self, name: str) -> int:
        try:
            return self._slot[name]
        except KeyError:
            raise KeyError(f"signal {name!r} is not in this codec") from None

    def slots(self, names: Iterable[str]) -> np.ndarray:
        return np.array([self.slot(n) for n in names], dtype=np.int64)

    def row(self, message_name: str) -> int:
        try:
            return self._row[message_name]
        except KeyError:
            raise KeyError(f"message {message_name!r} is not in this codec") from None

    def cycle_plan(self, message_names: Iterable[str] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(rows, mux_values, keys)`` of one full cycle: every multiplexer value once per message."""
        rows, muxes = [], []
        for name in (message_names if message_names is not None else [m.name for m in self.messages]):
            r = self.row(name)
            vals = mux_values(self.messages[r]) or [-1]
            rows += [r] * len(vals)
            muxes += vals
        rows_a = np.array(rows, dtype=np.int64)
        return rows_a, np.array(muxes, dtype=np.int64), self.msg_keys[rows_a]

    # ---- decode --------------------------------------------------------------------------
    def new_buffers(self) -> DecodeBuffers:
        n = self.n_slots
        return DecodeBuffers(np.full(n, np.nan), np.zeros(n, np.int64), np.zeros(n, np.bool_), np.full(n, -np.inf))

    def decode(self, keys: np.ndarray, data: np.ndarray, out: DecodeBuffers, dlc: np.ndarray | None = None,
               t_s: np.ndarray | None = None, status: np.ndarray | None = None) -> np.ndarray:
        """Decode a batch into ``out`` (in place); returns the per-frame status array (ST_*)."""
        n = keys.shape[0]
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 8 or data.shape[0] != n:
            raise ValueError(f"data must be uint8 of shape ({n}, 8), got {data.dtype} {data.shape}")
        dlc = np.full(n, 8, np.int64) if dlc is None else dlc
        t_s = np.zeros(n) if t_s is None else t_s
        status = np.empty(n, np.int8) if status is None else status
        K.decode_batch(keys, data, dlc, t_s, self.msg_keys, self.msg_i, self.sig_i, self.sig_mask, self.sig_f,
                       out.value, out.raw, out.valid, out.time_s, status)
        return status

    # ---- encode --------------------------------------------------------------------------
    def encode(self, rows: np.ndarray, mux: np.ndarray, values: np.ndarray, out: np.ndarray | None = None,
               saturated: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Encode frames ``rows[j]`` / ``mux[j]`` from ``values[slot]``; returns ``(data (n, 8) uint8, saturated)``."""
        n = rows.shape[0]
        if values.shape != (self.n_slots,):
            raise ValueError(f"values must have shape ({self.n_slots},), got {values.shape}")
        out = np.zeros((n, 8), np.uint8) if out is None else out
        saturated = np.zeros(n, np.int64) if saturated is None else saturated
        K.encode_batch(rows, mux, values, self.msg_i, self.sig_i, self.sig_mask, self.sig_f, out, saturated)
        return out, saturated
