"""The progress bar of a scenario run (``bms demo``, ``bms sim``): simulated seconds on stderr.

The co-simulation reports its simulated time every record period (1 s simulated, some 70
times per wall second on the reference pack); the bar advances by ``update`` so that tqdm
redraws it at most every ``mininterval``: 0.1 s on a terminal, 10 s when stderr is a file or a
pipe (a CI log gets a line every 10 s instead of one per simulated second).
"""

from __future__ import annotations

import sys
from typing import Callable


def sim_bar(total_s: float, desc: str) -> tuple[object, Callable[[float, float], None]]:
    """A tqdm bar over ``total_s`` simulated seconds and the ``progress(t_s, total_s)`` callback
    of :func:`hil.cosim.run_scenario` that advances it; close the bar after the run."""
    from tqdm import tqdm

    tty = sys.stderr.isatty()
    bar = tqdm(total=round(total_s), unit="sim s", desc=desc, file=sys.stderr, mininterval=0.1 if tty else 10.0)

    def progress(t_s: float, _total_s: float) -> None:
        step = round(t_s) - bar.n
        if step > 0:
            bar.update(step)

    return bar, progress
