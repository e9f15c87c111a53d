"""Run every benchmark in this folder: ``python -m benchmarks [--json] [-k NAME]``."""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys
from pathlib import Path


def discover(select: str | None = None):
    here = Path(__file__).parent
    for info in sorted(pkgutil.iter_modules([str(here)]), key=lambda m: m.name):
        if info.name.startswith("bench_") and (select is None or select in info.name):
            yield info.name, importlib.import_module(f"benchmarks.{info.name}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    ap.add_argument("--json", action="store_true", help="print one JSON object of all figures")
    ap.add_argument("-k", dest="select", help="only modules whose name contains this")
    args = ap.parse_args(argv)
    figures: dict[str, dict] = {}
    for name, module in discover(args.select):
        if not args.json:
            print(f"# {name}", file=sys.stderr, flush=True)
        figures.update(module.run())
    if args.json:
        print(json.dumps(figures, indent=None, sort_keys=True))
        return 0
    print(f"{'figure':<44} {'value':>14} {'unit':<16} {'baseline':>12} {'ratio':>9}")
    for key, fig in figures.items():
        base = fig.get("baseline")
        ratio = fig.get("ratio")
        print(
            f"{key:<44} {fig['value']:>14.4g} {fig.get('unit', ''):<16} "
            f"{'' if base is None else format(base, '.4g'):>12} {'' if ratio is None else format(ratio, '.1f') + 'x':>9}"
        )
        if fig.get("note"):
            print(f"    {fig['note']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
