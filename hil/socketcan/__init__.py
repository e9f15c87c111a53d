"""SocketCAN anywhere: run a command on real vcan interfaces, on the host kernel when it has
SocketCAN, else inside a throw-away user-mode Linux guest (see docs/socketcan.md).

>>> from hil.socketcan import run_on_vcan
>>> r = run_on_vcan(["candump", "-n", "1", "vcan0"], timeout_s=30)   # doctest: +SKIP
>>> r.returncode, r.backend, r.stdout                                # doctest: +SKIP
"""

from .harness import DEFAULT_TIMEOUT_S, HarnessError, Result, choose_backend, run_on_vcan

__all__ = ["DEFAULT_TIMEOUT_S", "HarnessError", "Result", "choose_backend", "run_on_vcan"]
