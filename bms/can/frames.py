"""python-can frames <-> the batch codec's arrays, with as little Python work per frame as possible.

The codec and the node's screen work on arrays: ``keys`` (n,) int64 (:func:`bms.can.codec.frame_key`),
``data`` (n, 8) uint8 (payload, zero-padded), ``dlc`` (n,) int64 (payload length). A bus hands over
:class:`can.Message` objects; :func:`to_arrays` turns a list of them into those arrays in a few
list comprehensions (no per-frame NumPy call), :func:`to_messages` the other way.
"""

from __future__ import annotations

from operator import attrgetter
from typing import NamedTuple, Sequence

import can
import numba as nb
import numpy as np

from bms.can._kernels import find_row
from bms.can.codec import EXTENDED_FLAG

CAN_MAX_DLC = 8
_DATA, _ERR, _RTR, _FD = (attrgetter(a) for a in ("data", "is_error_frame", "is_remote_frame", "is_fd"))


class FrameArrays(NamedTuple):
    keys: np.ndarray      # (n,) int64: arbitration ID, bit 31 set for extended IDs
    data: np.ndarray      # (n, 8) uint8 payloads, zero-padded
    dlc: np.ndarray       # (n,) int64 payload lengths (0..8; longer payloads are cut, see ``data_frame``)
    data_frame: np.ndarray  # (n,) bool: a classic data frame (not error / remote / CAN FD, at most 8 bytes)


_ALL_DATA = np.ones(1024, np.bool_)


def all_data(n: int) -> np.ndarray:
    """``data_frame`` of n classic data frames (all True): a shared array for n <= 1024, not to be modified."""
    return _ALL_DATA[:n] if n <= _ALL_DATA.shape[0] else np.ones(n, np.bool_)


def all_true(data_frame: np.ndarray) -> bool:
    """``data_frame.all()``, answered without a pass over the array when it is one of :func:`all_data`'s."""
    return data_frame.base is _ALL_DATA or bool(data_frame.all())


def to_arrays(frames: Sequence[can.Message]) -> FrameArrays:
    """Arrays of a list of python-can frames (see module docstring)."""
    n = len(frames)
    keys = np.array([m.arbitration_id | EXTENDED_FLAG if m.is_extended_id else m.arbitration_id for m in frames],
                    np.int64).reshape(n)
    payloads = list(map(_DATA, frames))
    raw = b"".join(payloads)
    plain = not (any(map(_ERR, frames)) or any(map(_RTR, frames)) or any(map(_FD, frames)))
    if len(raw) == CAN_MAX_DLC * n and plain and (n == 0 or max(map(len, payloads)) == CAN_MAX_DLC):
        data = np.frombuffer(raw, np.uint8).reshape(n, CAN_MAX_DLC).copy()
        return FrameArrays(keys, data, np.full(n, CAN_MAX_DLC, np.int64), np.ones(n, np.bool_))
    dlc = np.array([len(p) for p in payloads], np.int64).reshape(n)
    padded = b"".join([bytes(p[:CAN_MAX_DLC]).ljust(CAN_MAX_DLC, b"\0") for p in payloads])
    data = np.frombuffer(padded, np.uint8).reshape(n, CAN_MAX_DLC).copy()
    ok = np.array([not (m.is_error_frame or m.is_remote_frame or m.is_fd) for m in frames], np.bool_).reshape(n)
    ok &= dlc <= CAN_MAX_DLC
    return FrameArrays(keys, data, np.minimum(dlc, CAN_MAX_DLC), ok)


def to_messages(keys: np.ndarray, data: np.ndarray, dlc: np.ndarray, t_s: float) -> list[can.Message]:
    """python-can frames of arrays (classic data frames stamped ``t_s``)."""
    raw = data.tobytes()
    width = data.shape[1] if data.ndim == 2 else CAN_MAX_DLC
    return data_messages(keys.tolist(), dlc.tolist(), raw, width, t_s, None, True)


_MESSAGE_FIELDS = frozenset(can.Message.__slots__) - {"__weakref__"}
_FIELDS_KNOWN = _MESSAGE_FIELDS == {
    "arbitration_id", "bitrate_switch", "channel", "data", "dlc", "error_state_indicator", "is_error_frame",
    "is_extended_id", "is_fd", "is_remote_frame", "is_rx", "timestamp"}


def data_messages(keys: list[int], dlc: list[int], raw: bytes, width: int, ts: float, channel: object,
                  is_rx: bool) -> list[can.Message]:
    """python-can classic data frames ``j``: arbitration ID and extended flag of ``keys[j]``, payload
    ``raw[j * width:][:dlc[j]]``, stamped ``ts`` -- the very objects ``can.Message(timestamp=ts,
    arbitration_id=..., is_extended_id=..., channel=channel, dlc=..., data=..., is_rx=is_rx)``
    gives, with every field set directly (about 3x cheaper than the keyword call, the largest
    cost per frame of the virtual bus). Falls back to the constructor if python-can's Message
    has fields other than the ones known here."""
    Msg, ext = can.Message, EXTENDED_FLAG
    if not _FIELDS_KNOWN:  # pragma: no cover - another python-can version
        return [Msg(timestamp=ts, arbitration_id=k & ~ext, is_extended_id=k >= ext, channel=channel, dlc=d,
                    data=raw[j * width:j * width + d], is_rx=is_rx) for j, (k, d) in enumerate(zip(keys, dlc))]
    new = Msg.__new__
    out = []
    j = 0
    for k, d in zip(keys, dlc):
        m = new(Msg)
        m.timestamp = ts
        m.arbitration_id = k & ~ext
        m.is_extended_id = k >= ext
        m.is_remote_frame = m.is_error_frame = m.is_fd = m.bitrate_switch = m.error_state_indicator = False
        m.channel = channel
        m.is_rx = is_rx
        m.data = bytearray(raw[j:j + d])
        m.dlc = d
        out.append(m)
        j += width
    return out


@nb.njit(cache=True, nogil=True)
def _padded_copy(keys, data, dlc, keys_out, data_out, dlc_out):
    """keys_out = keys, dlc_out = dlc, data_out[j, c] = data[j, c] for c < dlc[j], else 0."""
    for j in range(keys.shape[0]):
        keys_out[j] = keys[j]
        dlc_out[j] = dlc[j]
        for c in range(CAN_MAX_DLC):
            data_out[j, c] = data[j, c] if c < dlc[j] else 0


def padded_copy(keys: np.ndarray, data: np.ndarray, dlc: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A copy of classic frames' arrays (``data`` (n, 8), ``0 <= dlc <= 8``) as :func:`to_arrays`
    gives them for the same frames: keys int64, payload bytes past the DLC zeroed, dlc int64."""
    n = keys.shape[0]
    out = (np.empty(n, np.int64), np.empty((n, CAN_MAX_DLC), np.uint8), np.empty(n, np.int64))
    if keys.dtype == _I64 and dlc.dtype == _I64 and data.dtype == _U8 and keys.flags.c_contiguous \
            and data.flags.c_contiguous and dlc.flags.c_contiguous:  # a codec's arrays: no type dispatch
        _padded_copy_c()(keys, data, dlc, *out)
    else:
        _padded_copy(keys, data, dlc, *out)
    return out


_I64, _U8 = np.dtype(np.int64), np.dtype(np.uint8)
_C_ENTRY: list = []


def _padded_copy_c():
    """:func:`_padded_copy`'s overload for C-contiguous int64 / uint8 arrays (compiled or loaded from
    numba's cache on first use), called without the dispatcher's typing of six arguments."""
    if not _C_ENTRY:
        i64, u8 = nb.int64[::1], nb.uint8[:, ::1]
        _C_ENTRY.append(_padded_copy.compile((i64, u8, i64, i64, u8, i64)))
    return _C_ENTRY[0]


def frame_copy(keys: np.ndarray, data: np.ndarray, dlc: np.ndarray,
               dlc_min: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """As :func:`padded_copy` (same result); when every frame has 8 bytes (``dlc_min``, the least
    DLC, if the caller knows it) there is nothing to zero: three plain NumPy copies, without the
    kernel's dispatch (the usual case: the DBC's messages are 8 bytes long)."""
    if dlc_min is None:
        dlc_min = int(dlc.min()) if dlc.shape[0] else CAN_MAX_DLC
    if dlc_min == CAN_MAX_DLC and data.ndim == 2 and data.shape[1] == CAN_MAX_DLC:
        return keys.astype(np.int64), data.astype(np.uint8), dlc.astype(np.int64)
    return padded_copy(keys, data, dlc)


@nb.njit(cache=True, nogil=True)
def rows_of(keys, msg_keys, rows):
    """rows[j] = the index of keys[j] in the sorted ``msg_keys`` (a codec's), -1 if absent; returns
    how many were found."""
    found = 0
    for j in range(keys.shape[0]):
        rows[j] = find_row(msg_keys, keys[j])
        if rows[j] >= 0:
            found += 1
    return found
