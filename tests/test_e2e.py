"""CRC-8 SAE J1850 known answers and the E2E protection of the DBC's protected messages."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bms.can import dbc
from bms.can.e2e import (E2E_OK, E2E_REPEATED, E2E_WRONG_SEQUENCE, E2ESpec, check_batch, counter_status,
                         crc8_j1850, protect_batch)

E2E_MSGS = dbc.e2e_messages()
SPECS = [E2ESpec.from_message(m) for m in E2E_MSGS]


@pytest.mark.parametrize("data, crc", [
    ("00000000", 0x59), ("F20183", 0x37), ("0FAA0055", 0x79), ("00FF5511", 0xB8),
    ("332255AABBCCDDEEFF", 0xCB), ("926B55", 0x8C), ("FFFFFFFF", 0x74),
])
def test_autosar_known_answers(data, crc):
    assert crc8_j1850(bytes.fromhex(data)) == crc


def _crc_bitwise(data: bytes) -> int:
    """Reference: MSB-first shift register, poly 0x1D, init 0xFF, xorout 0xFF."""
    c = 0xFF
    for b in data:
        c ^= b
        for _ in range(8):
            c = ((c << 1) ^ 0x1D) & 0xFF if c & 0x80 else (c << 1) & 0xFF
    return c ^ 0xFF


@given(st.binary(max_size=64))
def test_table_crc_equals_bitwise_reference(data):
    assert crc8_j1850(data) == _crc_bitwise(data)


def test_protected_messages_follow_the_profile():
    names = {m.name for m in E2E_MSGS}
    assert {"VCU_Request", "BMS_State", "BMS_Pack", "BMS_Faults"} <= names
    for spec in SPECS:
        assert spec.crc_byte == 7 and spec.length == 8 and spec.counter_modulus == 16


@pytest.mark.parametrize("spec", SPECS, ids=[s.message for s in SPECS])
@given(payload=st.binary(min_size=8, max_size=8), bit=st.integers(0, 63))
def test_protect_then_check_and_any_single_bit_flip_is_caught(spec, payload, bit):
    good = spec.protect(payload)
    assert spec.check(good)
    # the CRC covers the data ID then bytes 0..6
    assert good[7] == _crc_bitwise(bytes([spec.data_id & 0xFF, spec.data_id >> 8]) + good[:7])
    bad = bytearray(good)
    bad[bit // 8] ^= 1 << (bit % 8)
    assert not spec.check(bytes(bad))
    assert not spec.check(good[:7])  # short frame


@given(payload=st.binary(min_size=7, max_size=7))
def test_frame_copied_to_another_id_fails(payload):
    """The data ID is in the CRC: a valid frame of one message is rejected under every other E2E ID."""
    frame = SPECS[0].protect(payload + b"\0")
    for other in SPECS[1:]:
        assert not other.check(frame)


@given(payload=st.lists(st.binary(min_size=8, max_size=8), min_size=1, max_size=20), flip=st.integers(0, 63))
def test_batch_kernels_agree_with_python(payload, flip):
    n = len(payload)
    data = np.frombuffer(b"".join(payload), np.uint8).reshape(n, 8).copy()
    pick = [SPECS[i % len(SPECS)] for i in range(n)]
    ids = np.array([s.data_id for s in pick], np.int64)
    crc_bytes = np.array([s.crc_byte for s in pick], np.int64)
    lengths = np.array([s.length for s in pick], np.int64)
    protect_batch(data, ids, crc_bytes, lengths)
    for j in range(n):
        assert bytes(data[j]) == pick[j].protect(payload[j])
    ok = np.zeros(n, np.bool_)
    assert check_batch(data, ids, crc_bytes, lengths, ok) == 0 and ok.all()
    data[0, flip // 8] ^= np.uint8(1 << (flip % 8))
    assert check_batch(data, ids, crc_bytes, lengths, ok) == 1 and not ok[0] and ok[1:].all()


@given(prev=st.integers(0, 15), delta=st.integers(0, 15))
def test_counter_status(prev, delta):
    new = (prev + delta) % 16
    got = counter_status(prev, new, 2, 16)
    expected = E2E_REPEATED if delta == 0 else (E2E_OK if delta <= 2 else E2E_WRONG_SEQUENCE)
    assert got == expected


def test_non_protected_message_is_refused():
    with pytest.raises(ValueError, match="not E2E protected"):
        E2ESpec.from_message(dbc.message("CMU00_CellV"))
    with pytest.raises(ValueError, match="expected 8"):
        SPECS[0].protect(b"\0" * 7)


def test_codec_cycle_protected_in_one_batch():
    """Encode a BMS cycle with the codec, protect it in one call, and cantools sees the right CRC bytes."""
    from bms.can.codec import FrameCodec
    from bms.can.e2e import batch_arrays

    codec = FrameCodec([m for m in dbc.database().messages if m.senders == ["BMS"]])
    rows, mux, _ = codec.cycle_plan(["BMS_State", "BMS_Balancing", "BMS_Pack"])
    data, _ = codec.encode(rows, mux, np.zeros(codec.n_slots))
    before = data.copy()
    ids, crc_bytes, lengths = (a[rows] for a in batch_arrays(codec.messages))
    protect_batch(data, ids, crc_bytes, lengths)
    ok = np.zeros(len(rows), np.bool_)
    assert check_batch(data, ids, crc_bytes, lengths, ok) == 0 and ok.all()
    for j, r in enumerate(rows):
        msg = codec.messages[r]
        if msg.name == "BMS_Balancing":
            assert bytes(data[j]) == bytes(before[j])  # not protected: untouched
        else:
            assert E2ESpec.from_message(msg).check(bytes(data[j]))
            assert msg.decode(bytes(data[j]))[f"{msg.name}_CRC"] == data[j, 7]
