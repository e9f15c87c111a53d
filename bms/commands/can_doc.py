"""``bms can-doc``: write (or check) docs/can.md generated from the DBC."""

from __future__ import annotations

import argparse
import sys


def _run(args: argparse.Namespace) -> int:
    from bms.can import docgen
    from bms.can.dbc import database

    db = database(args.dbc) if args.dbc else None
    if args.check:
        if docgen.is_up_to_date(args.out, db):
            print(f"{args.out} is up to date")
            return 0
        print(f"{args.out} is out of date: run `bms can-doc`", file=sys.stderr)
        return 1
    path = docgen.write(args.out, db)
    _, load = docgen.bus_load(db)
    print(f"wrote {path} (bus load {load * 100:.1f} % worst case)")
    return 0


def register(sub) -> None:
    from bms.can.docgen import DEFAULT_DOC_PATH

    p = sub.add_parser("can-doc", help="generate docs/can.md from the DBC",
                       description="Generate the CAN documentation (messages, signals, E2E, bus load) from the DBC.")
    p.add_argument("--dbc", help="DBC file (default: the project DBC dbc/bms_fil.dbc)")
    p.add_argument("--out", default=str(DEFAULT_DOC_PATH), help="output markdown file (default: %(default)s)")
    p.add_argument("--check", action="store_true", help="only check that the file is up to date (exit 1 if not)")
    p.set_defaults(func=_run)
