"""``bms vcan -- COMMAND...``: run a command with real SocketCAN vcan interfaces up.

On the host kernel when it has SocketCAN (a laptop after ``sudo modprobe vcan``), else in
a throw-away user-mode Linux guest (see docs/socketcan.md). Prints the command's output
and exits with its exit code; 124 when it ran past ``--timeout``, 125 when no vcan could
be provided."""

from __future__ import annotations

import argparse
import sys

EXIT_TIMEOUT = 124  # as timeout(1)
EXIT_HARNESS = 125  # as timeout(1)/env(1) when they fail themselves


def register(sub) -> None:
    p = sub.add_parser(
        "vcan", help="run a command on real vcan interfaces (host kernel or user-mode Linux)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-c", "--channel", action="append", dest="channels", metavar="IFACE",
                   help="vcan interface to create (repeatable; default vcan0)")
    p.add_argument("-t", "--timeout", type=float, default=60.0, metavar="S",
                   help="bound on the whole run including a UML boot (default 60 s)")
    p.add_argument("--backend", choices=("auto", "host", "uml"), default=None,
                   help="force a backend (default: auto, or $BMS_VCAN_BACKEND)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="report backend, startup and elapsed time on stderr")
    # dest is not "command": bms.cli keeps the subcommand's name there
    p.add_argument("argv", nargs=argparse.REMAINDER, metavar="COMMAND",
                   help="command and arguments, after --  (use sh -c '...' for a pipeline)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hil.socketcan import HarnessError, run_on_vcan

    command = list(args.argv)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise ValueError("no command given: bms vcan -- COMMAND [ARGS...]")
    try:
        result = run_on_vcan(command, channels=tuple(args.channels or ("vcan0",)),
                             timeout_s=args.timeout, backend=args.backend)
    except HarnessError as exc:
        print(f"bms vcan: {exc}", file=sys.stderr)
        return EXIT_HARNESS
    sys.stdout.write(result.stdout)
    sys.stdout.flush()
    sys.stderr.write(result.stderr)
    if args.verbose:
        startup = "" if result.startup_s is None else f", startup {result.startup_s:.2f} s"
        print(f"bms vcan: backend {result.backend}, exit {result.returncode}, "
              f"{result.elapsed_s:.2f} s{startup}", file=sys.stderr)
    if result.timed_out:
        print(f"bms vcan: timed out after {args.timeout:g} s", file=sys.stderr)
        return EXIT_TIMEOUT
    return result.returncode
