"""The BMS node: the firmware's CAN shell (see :mod:`bms.node.node`).

- :mod:`bms.node.rx`     screen (E2E, counters, DLC, ranges) + decode frames into the step's inputs
- :mod:`bms.node.tx`     cyclic schedule, encoding and E2E protection of the node's messages
- :mod:`bms.node.node`   :class:`BmsNode`: lock-step ``step_to(t_s)`` or wall-clock ``run()``
- :mod:`bms.node.stats`  frames in/out, rejections per reason, timeouts, overruns
- :mod:`bms.node.clock`  :class:`SimClock` / :class:`WallClock` (the only wall-clock reader)
"""

from bms.node.clock import SimClock, WallClock
from bms.node.node import BmsNode, status_line
from bms.node.stats import NodeStats

__all__ = ["BmsNode", "NodeStats", "SimClock", "WallClock", "status_line"]
