"""The ``bms`` command line: discovers subcommands in :mod:`bms.commands`."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import bms.commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bms",
        description="bms-fil: BMS firmware-in-the-loop toolkit (charge current is positive).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for info in sorted(pkgutil.iter_modules(bms.commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"bms.commands.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rc = args.func(args)
    except KeyboardInterrupt:
        return 130
    except (ValueError, FileNotFoundError, PermissionError) as exc:  # configuration / data / permission errors: clear message, no traceback
        print(f"bms {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
