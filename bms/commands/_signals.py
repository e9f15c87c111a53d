"""Stop flag for the long-running bus commands (``bms run``, ``bms pack``, ``bms record``)."""

from __future__ import annotations

import signal
import threading


_STOP_IN_PROCESS = threading.Event()


def stop_in_process(on: bool = True) -> None:
    """Stop every command running in a thread of this process (their ``stop()`` turns True):
    what SIGTERM is to the process-per-node bench, for the in-process (virtual bus) one."""
    (_STOP_IN_PROCESS.set if on else _STOP_IN_PROCESS.clear)()


class StopOnSignals:
    """``stop()`` turns True on SIGINT / SIGTERM once :meth:`install` ran (and until
    :meth:`restore`; also a context manager). Outside the main thread (a command run in a
    thread, e.g. the virtual-bus bench) no handler can be installed: then only :meth:`set`
    stops."""

    def __init__(self):
        self.flag = False
        self._old: dict = {}

    def set(self, *_args) -> None:
        self.flag = True

    def __call__(self) -> bool:
        return self.flag or _STOP_IN_PROCESS.is_set()

    def install(self) -> StopOnSignals:
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self.set) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def restore(self) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old = {}

    def __enter__(self) -> StopOnSignals:
        return self.install()

    def __exit__(self, *exc) -> None:
        self.restore()
