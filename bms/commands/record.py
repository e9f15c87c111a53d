"""``bms record``: record a CAN bus to a file, as candump does, with python-can's writers.

    bms record -i socketcan -c can0 -o drive.log              # candump -L format
    bms record -i socketcan -c vcan0 -o bench.blf --max-bytes 50000000

The format follows the suffix: ``.log`` (candump ``-L``), ``.asc`` (Vector ASCII), ``.blf``
(Vector binary; also ``.csv``, ``.txt``). ``--max-bytes N`` rotates by size: the file is closed
at about N bytes, renamed with a time stamp and a sequence number (python-can's
``SizedRotatingLogger``), and a new one begun. Frames are handed to the OS at least every
``--flush-s`` (0.25 s; and a .blf container is closed at the same time), so a killed recorder
loses at most that much. Stops on SIGINT / SIGTERM, after ``--duration-s`` or ``-n`` frames;
prints the frame count (``--stats-json`` writes it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

SUFFIXES = (".log", ".asc", ".blf", ".csv", ".txt")
RCVBUF_BYTES = 8 << 20


def register(sub) -> None:
    import can.cli

    from bms.commands._realtime import add_rt_argument

    p = sub.add_parser("record", help="record a CAN bus to .log / .asc / .blf (rotation by size)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-o", "--output", type=Path, required=True, metavar="FILE", help="file; the suffix sets the format")
    p.add_argument("--max-bytes", type=int, default=0, metavar="N", help="rotate at about N bytes (default: never)")
    p.add_argument("--flush-s", type=float, default=0.25, metavar="S", help="hand frames to the OS at least this often")
    p.add_argument("--duration-s", type=float, default=None, metavar="S", help="stop after S seconds")
    p.add_argument("-n", "--count", type=int, default=None, metavar="N", help="stop after N frames")
    p.add_argument("--stats-json", type=Path, default=None, metavar="FILE", help="write the frame count here at exit")
    p.add_argument("--rcvbuf", type=int, default=RCVBUF_BYTES, metavar="BYTES",
                   help=f"SocketCAN: socket receive buffer to ask for (default {RCVBUF_BYTES}: "
                        "bursts of ~10,000 frames; the kernel's own default holds ~280)")
    p.add_argument("--can-config", type=Path, default=None, metavar="FILE", help="python-can config file")
    p.add_argument("--can-context", default=None, metavar="SECTION", help="section of the config file")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary line")
    add_rt_argument(p)
    can.cli.add_bus_arguments(p, group_title="CAN bus (python-can)")
    p.set_defaults(func=run)


def _flush(logger) -> None:
    w = getattr(logger, "writer", logger)  # a rotating logger's current writer
    if hasattr(w, "_flush"):  # BLFWriter: close the open container (python-can has no public call)
        w._flush()
    f = getattr(w, "file", None)
    if f is not None and not f.closed:
        f.flush()


def run(args: argparse.Namespace) -> int:
    import can

    from bms.can.socketbatch import SocketBatch
    from bms.commands._realtime import apply_rt_priority
    from bms.commands._signals import StopOnSignals
    from bms.commands.run import _bus

    out: Path = args.output
    if out.suffix.lower() not in SUFFIXES:
        raise ValueError(f"{out}: unknown format {out.suffix!r} (use one of {', '.join(SUFFIXES)})")
    if args.max_bytes < 0 or not args.flush_s > 0:
        raise ValueError("--max-bytes must be >= 0 and --flush-s > 0")
    out.parent.mkdir(parents=True, exist_ok=True)
    apply_rt_priority(args.rt_priority)
    bus = _bus(args)
    logger = can.SizedRotatingLogger(str(out), max_bytes=args.max_bytes) if args.max_bytes else can.Logger(str(out))
    if out.suffix.lower() == ".blf":
        logger = _BlfChannelFit(logger)
    sock = SocketBatch.of(bus)   # SocketCAN: every queued frame in one system call
    if sock is not None:
        sock.set_rcvbuf(args.rcvbuf)

    def take(timeout: float) -> list:
        if sock is not None:
            return sock.recv_messages(bus.channel) if timeout <= 0.0 or sock.wait(timeout) else []
        msg = bus.recv(timeout=timeout)
        return [] if msg is None else [msg]

    n = 0
    t0 = time.monotonic()
    next_flush = t0 + args.flush_s
    try:
        with StopOnSignals() as stop:
            while not stop():
                now = time.monotonic()
                if args.duration_s is not None and now - t0 >= args.duration_s:
                    break
                if args.count is not None and n >= args.count:
                    break
                msgs = take(max(0.0, min(next_flush - now, 0.1)))
                if args.count is not None:
                    msgs = msgs[:args.count - n]
                for msg in msgs:
                    logger.on_message_received(msg)
                n += len(msgs)
                if time.monotonic() >= next_flush:
                    _flush(logger)
                    next_flush = time.monotonic() + args.flush_s
        while args.count is None or n < args.count:  # what is queued when the stop came
            msgs = take(0.0)
            if not msgs:
                break
            for msg in msgs:
                logger.on_message_received(msg)
            n += len(msgs)
        dropped = sock.drops() if sock is not None else None   # frames the kernel could not queue
    finally:
        logger.stop()
        bus.shutdown()
    if args.stats_json is not None:
        args.stats_json.write_text(json.dumps({"frames": n, "seconds": time.monotonic() - t0, "dropped": dropped}))
    if not args.quiet:
        print(f"bms record: {n} frames to {out}", file=sys.stderr)
    return 0


class _BlfChannelFit:
    """BLF stores a frame's channel as a 16-bit number, which python-can takes from the trailing
    digits of the channel name ("can0" -> 0). A name whose digits do not fit (a virtual channel
    "rec-1f234567" -> 234567) made the writer raise and the recording stop; such frames are
    stored on the writer's default channel instead."""

    def __init__(self, logger):
        self._logger = logger

    def on_message_received(self, msg: can.Message) -> None:
        from can.util import channel2int

        ch = channel2int(msg.channel)
        if ch is not None and not 0 <= ch < 0xFFFF:
            msg.channel = None
        self._logger.on_message_received(msg)

    def __getattr__(self, name):
        return getattr(self._logger, name)

