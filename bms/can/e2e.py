"""End-to-end protection of the safety-relevant frames: CRC-8 SAE J1850 and a 4-bit alive counter.

Profile (documented in ``docs/can.md``; every E2E message in the DBC follows it):

- CRC: CRC-8 SAE J1850, polynomial 0x1D, initial value 0xFF, final XOR 0xFF, no reflection
  (AUTOSAR ``Crc_CalculateCRC8``). The CRC is the byte-aligned 8-bit signal ``<Message>_CRC``.
- CRC input: the 2-byte data ID (frame ID low byte, then frame ID bits 8..15), followed by every
  payload byte 0..DLC-1 except the CRC byte, in increasing byte order. Including the ID makes a
  frame copied onto another ID with the same layout fail the check.
- Counter: ``<Message>_Counter``, 4 bits, +1 modulo 16 per transmission. A receiver accepts a
  delta of 1..max_delta; 0 is a repeated (stale or replayed) frame, larger is lost sequence.

Kernels are numba-compiled and work on batches of ``(n, 8)`` uint8 payloads.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba as nb
import numpy as np
from cantools.database.can import Message

from bms.can import _kernels as K
from bms.can.dbc import e2e_signals

CRC8_POLY = 0x1D
CRC8_INIT = 0xFF
CRC8_XOROUT = 0xFF

# counter check status codes
E2E_OK = 0
E2E_CRC_ERROR = 1
E2E_REPEATED = 2
E2E_WRONG_SEQUENCE = 3


def _make_table() -> np.ndarray:
    table = np.zeros(256, dtype=np.uint8)
    for i in range(256):
        c = i
        for _ in range(8):
            c = ((c << 1) ^ CRC8_POLY) & 0xFF if c & 0x80 else (c << 1) & 0xFF
        table[i] = c
    return table


_TABLE = _make_table()


@nb.njit(cache=True)
def crc8_j1850_update(crc: np.uint8, byte: np.uint8) -> np.uint8:
    """One table step of the MSB-first CRC: crc' = T[crc XOR byte], T[i] = i * x^8 mod (x^8+x^4+x^3+x^2+1)."""
    return _TABLE[(crc ^ byte) & 0xFF]


@nb.njit(cache=True)
def crc8_j1850_bytes(buf: np.ndarray, n: int) -> int:
    """CRC-8 SAE J1850 of buf[0:n]: c = 0xFF; c = T[c ^ b] for each byte b; result c ^ 0xFF."""
    crc = np.uint8(CRC8_INIT)
    for i in range(n):
        crc = _TABLE[(crc ^ buf[i]) & 0xFF]
    return int(crc ^ CRC8_XOROUT)


def crc8_j1850(data: bytes | bytearray | np.ndarray) -> int:
    """CRC-8 SAE J1850 (poly 0x1D, init 0xFF, xorout 0xFF) of a byte string."""
    buf = np.frombuffer(bytes(data), dtype=np.uint8) if not isinstance(data, np.ndarray) else data.astype(np.uint8)
    return crc8_j1850_bytes(buf, buf.shape[0])


@nb.njit(cache=True)
def frame_crc(payload: np.ndarray, data_id: int, crc_byte: int, length: int) -> int:
    """E2E CRC of one payload: CRC8-J1850 over [id & 0xFF, (id >> 8) & 0xFF] + payload[0:length] minus byte crc_byte."""
    crc = np.uint8(CRC8_INIT)
    crc = _TABLE[(crc ^ np.uint8(data_id & 0xFF)) & 0xFF]
    crc = _TABLE[(crc ^ np.uint8((data_id >> 8) & 0xFF)) & 0xFF]
    for i in range(length):
        if i != crc_byte:
            crc = _TABLE[(crc ^ payload[i]) & 0xFF]
    return int(crc ^ CRC8_XOROUT)


@nb.njit(cache=True, nogil=True)
def protect_batch(data: np.ndarray, data_ids: np.ndarray, crc_bytes: np.ndarray, lengths: np.ndarray) -> None:
    """Write the E2E CRC into each frame: data[j, crc_bytes[j]] = frame_crc(data[j], data_ids[j], ...); crc_bytes[j] < 0: unprotected, untouched."""
    for j in range(data.shape[0]):
        if crc_bytes[j] < 0:
            continue
        data[j, crc_bytes[j]] = np.uint8(frame_crc(data[j], data_ids[j], crc_bytes[j], lengths[j]))


@nb.njit(cache=True, nogil=True)
def check_batch(data: np.ndarray, data_ids: np.ndarray, crc_bytes: np.ndarray, lengths: np.ndarray,
                crc_ok: np.ndarray) -> int:
    """crc_ok[j] = (data[j, crc_byte] == frame_crc(data[j], ...)) (True if crc_bytes[j] < 0); returns the failures."""
    bad = 0
    for j in range(data.shape[0]):
        if crc_bytes[j] < 0:
            crc_ok[j] = True
            continue
        ok = data[j, crc_bytes[j]] == frame_crc(data[j], data_ids[j], crc_bytes[j], lengths[j])
        crc_ok[j] = ok
        if not ok:
            bad += 1
    return bad


@nb.njit(cache=True, nogil=True)
def decode_checked(msg_keys, msg_i, sig_i, sig_mask, sig_f, data_ids, crc_bytes, value, raw, valid, time_s, keys, data,
                   dlc, t_s) -> int:
    """Decode, stamped t_s, the frames of known keys (row r) whose E2E CRC is right (crc_bytes[r] < 0:
    unprotected; else data[j, crc_bytes[r]] == frame_crc(data[j], data_ids[r], crc_bytes[r],
    msg_i[r, M_LEN])), in order (:func:`bms.can._kernels.decode_frame`); returns the number of
    known frames with a wrong CRC (dropped)."""
    bad = 0
    for j in range(keys.shape[0]):
        r = K.find_row(msg_keys, keys[j])
        if r < 0:
            continue
        cb = crc_bytes[r]
        if cb >= 0 and data[j, cb] != frame_crc(data[j], data_ids[r], cb, msg_i[r, K.M_LEN]):
            bad += 1
            continue
        K.decode_frame(keys, data, dlc, j, t_s, msg_keys, msg_i, sig_i, sig_mask, sig_f, value, raw, valid, time_s)
    return bad


@nb.njit(cache=True)
def counter_status(prev_counter: int, new_counter: int, max_delta: int, modulus: int) -> int:
    """Alive-counter verdict: delta = (new - prev) mod modulus; 0 -> REPEATED, 1..max_delta -> OK, else WRONG_SEQUENCE."""
    delta = (new_counter - prev_counter) % modulus
    if delta == 0:
        return E2E_REPEATED
    if delta <= max_delta:
        return E2E_OK
    return E2E_WRONG_SEQUENCE


@dataclass(frozen=True)
class E2ESpec:
    """Where the E2E fields of a message are, read from the DBC."""

    message: str
    data_id: int
    length: int
    crc_byte: int
    counter_signal: str
    counter_modulus: int

    @classmethod
    def from_message(cls, msg: Message) -> "E2ESpec":
        sigs = e2e_signals(msg)
        if sigs is None:
            raise ValueError(f"message {msg.name!r} is not E2E protected (no {msg.name}_CRC signal)")
        ctr, crc = sigs
        if crc.length != 8 or crc.byte_order != "little_endian" or crc.start % 8 or crc.is_signed:
            raise ValueError(f"message {msg.name!r}: {crc.name} must be an unsigned byte-aligned 8-bit field")
        if msg.length > 8:
            raise ValueError(f"message {msg.name!r}: only classic CAN (<= 8 bytes) is supported")
        return cls(msg.name, msg.frame_id & 0xFFFF, msg.length, crc.start // 8, ctr.name, 1 << ctr.length)

    def crc(self, payload: bytes) -> int:
        """E2E CRC of ``payload`` (the CRC byte itself is skipped)."""
        buf = np.frombuffer(bytes(payload).ljust(8, b"\0"), dtype=np.uint8)
        return frame_crc(buf, self.data_id, self.crc_byte, self.length)

    def protect(self, payload: bytes) -> bytes:
        """``payload`` with its CRC byte filled in."""
        if len(payload) != self.length:
            raise ValueError(f"{self.message}: payload has {len(payload)} bytes, expected {self.length}")
        out = bytearray(payload)
        out[self.crc_byte] = self.crc(payload)
        return bytes(out)

    def check(self, payload: bytes) -> bool:
        """True if the length and the CRC byte are right."""
        return len(payload) == self.length and payload[self.crc_byte] == self.crc(payload)


def batch_arrays(messages: "list[Message] | tuple[Message, ...]") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(data_ids, crc_bytes, lengths)`` per message for :func:`protect_batch` / :func:`check_batch`.

    Index the result with a codec's frame rows (``arrays[0][rows]``...); unprotected messages get
    crc_byte -1 and are skipped by the kernels.
    """
    n = len(messages)
    ids = np.zeros(n, np.int64)
    crc_bytes = np.full(n, -1, np.int64)
    lengths = np.zeros(n, np.int64)
    for i, m in enumerate(messages):
        lengths[i] = m.length
        if e2e_signals(m) is not None:
            spec = E2ESpec.from_message(m)
            ids[i], crc_bytes[i] = spec.data_id, spec.crc_byte
    return ids, crc_bytes, lengths
