"""``bms faults-doc``: write docs/faults.md from the fault table and a pack's thresholds."""

from __future__ import annotations


def _run(args) -> int:
    from bms import faultdoc

    path = faultdoc.write(args.output or faultdoc.DOC_PATH, args.pack)
    print(f"wrote {path}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("faults-doc", help="write docs/faults.md from the fault table (bms/diag_table.py)")
    p.add_argument("--pack", default="heavy_duty_192s", help="pack whose thresholds are documented")
    p.add_argument("-o", "--output", help="output file (default docs/faults.md)")
    p.set_defaults(func=_run)
