"""The project DBC, loaded once with cantools, plus the lookups the rest of the code needs.

Nothing here (or anywhere in Python) restates a frame ID, a scaling or a period: they are all read
from the DBC. Conventions the DBC follows (documented in ``docs/can.md``):

- ``GenMsgCycleTime`` (ms) on every cyclic message; a multiplexed message sends every multiplexer
  value once per cycle.
- E2E-protected messages carry ``<Message>_Counter`` (4-bit alive counter) and ``<Message>_CRC``
  (CRC-8 SAE J1850), see :mod:`bms.can.e2e`.
- ``Baudrate`` (bit/s) network attribute.
"""

from __future__ import annotations

import functools
from pathlib import Path

import cantools
from cantools.database.can import Database, Message, Signal

DEFAULT_DBC_PATH = Path(__file__).resolve().parents[2] / "dbc" / "bms_fil.dbc"


@functools.lru_cache(maxsize=8)
def _load(path: str) -> Database:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"DBC file not found: {p}")
    db = cantools.database.load_file(str(p), database_format="dbc", strict=True)
    if not isinstance(db, Database):  # pragma: no cover - load_file with format dbc returns a CAN db
        raise ValueError(f"{p}: not a CAN database")
    return db


def database(path: str | Path | None = None) -> Database:
    """The cantools database of ``path`` (default: the project DBC), loaded once per path."""
    return _load(str(Path(path).resolve()) if path is not None else str(DEFAULT_DBC_PATH))


def message(name: str, db: Database | None = None) -> Message:
    """Message by name, with an error naming the DBC if it does not exist."""
    db = db or database()
    try:
        return db.get_message_by_name(name)
    except KeyError:
        raise KeyError(f"no message {name!r} in the DBC") from None


def signal(message_name: str, signal_name: str, db: Database | None = None) -> Signal:
    """Signal of a message by names."""
    msg = message(message_name, db)
    try:
        return msg.get_signal_by_name(signal_name)
    except KeyError:
        raise KeyError(f"no signal {signal_name!r} in message {message_name!r}") from None


def cycle_time_s(msg: Message | str, db: Database | None = None) -> float | None:
    """Period from the message's ``GenMsgCycleTime`` attribute, in seconds; None if not cyclic."""
    if isinstance(msg, str):
        msg = message(msg, db)
    ms = msg.cycle_time
    return None if not ms else ms / 1000.0


def bitrate_bps(db: Database | None = None) -> int:
    """Nominal bit rate from the DBC's ``Baudrate`` network attribute."""
    db = db or database()
    attrs = db.dbc.attributes if db.dbc is not None else {}
    if "Baudrate" not in attrs:
        raise ValueError("the DBC has no 'Baudrate' attribute")
    return int(attrs["Baudrate"].value)


def mux_values(msg: Message) -> list[int]:
    """Multiplexer values used by ``msg`` (sorted), or ``[]`` if it is not multiplexed."""
    vals: set[int] = set()
    for s in msg.signals:
        if s.multiplexer_ids:
            vals.update(s.multiplexer_ids)
    return sorted(vals)


def multiplexer_signal(msg: Message) -> Signal | None:
    """The (single-level) multiplexer signal of ``msg``; None if not multiplexed."""
    muxes = [s for s in msg.signals if s.is_multiplexer]
    if len(muxes) > 1:
        raise ValueError(f"message {msg.name!r}: nested/extended multiplexing is not supported")
    return muxes[0] if muxes else None


def frames_per_cycle(msg: Message) -> int:
    """Frames sent per cycle: one per multiplexer value, else one."""
    return max(1, len(mux_values(msg)))


def e2e_signals(msg: Message) -> tuple[Signal, Signal] | None:
    """``(counter, crc)`` signals of an E2E-protected message, or None."""
    names = {s.name: s for s in msg.signals}
    crc = names.get(f"{msg.name}_CRC")
    ctr = names.get(f"{msg.name}_Counter")
    if crc is None:
        return None
    if ctr is None:
        raise ValueError(f"message {msg.name!r} has a CRC signal but no {msg.name}_Counter")
    return ctr, crc


def e2e_messages(db: Database | None = None) -> list[Message]:
    """All messages that carry a counter + CRC."""
    db = db or database()
    return [m for m in db.messages if e2e_signals(m) is not None]
