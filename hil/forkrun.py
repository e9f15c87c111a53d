"""Start a ``bms`` command as a child process forked from this one, not as a new interpreter.

Under user-mode Linux a new Python process is expensive: every page it touches and every file it
opens costs host round trips, so ``python -m bms.cli pack ...`` spends ~45 s CPU importing numpy,
numba and cantools and loading numba's cached kernels before it sends its first frame (``bms run``
~25 s), against ~2 s on the host. A parent that has imported and loaded all of that once (see
:func:`hil.benchrun.warm_caches`) forks instead: the child is a separate process with its own
pid, sockets, signals and scheduling policy, and runs exactly :func:`bms.cli.main` on the same
arguments as the command line would. Only the interpreter's start-up is skipped, which the
commands' own tests on the host cover.

:class:`ForkedCommand` has the part of :class:`subprocess.Popen`'s interface that
:mod:`hil.benchrun` uses (``pid``, ``poll``, ``wait``, ``send_signal``, ``kill``, ``returncode``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

from bms.commands._realtime import freeze_heap


class ForkedCommand:
    """``bms.cli.main(argv)`` in a forked child; stdin from /dev/null, stdout and stderr to files.

    Every inherited descriptor above 2 is closed in the child (the parent's bus sockets, the
    pipes of other children), so the child holds only what it opens itself."""

    def __init__(self, argv: list[str], stdout: Path, stderr: Path, cwd: str | Path | None = None):
        for stream in (sys.stdout, sys.stderr):
            stream.flush()   # else the child writes the parent's buffered text again
        # what exists now is shared copy-on-write with the child: kept out of the garbage
        # collector's passes, which write into every object they visit and so would copy the
        # whole heap page by page in both processes (each page a host round trip under UML)
        freeze_heap()
        self.args = list(argv)
        self.returncode: int | None = None
        pid = os.fork()
        if pid == 0:   # the child: never returns
            os._exit(self._child(argv, Path(stdout), Path(stderr), cwd))
        self.pid = pid

    @staticmethod
    def _child(argv: list[str], stdout: Path, stderr: Path, cwd) -> int:
        rc = 1
        try:
            null = os.open(os.devnull, os.O_RDONLY)
            out = os.open(stdout, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            err = os.open(stderr, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            for fd, std in ((null, 0), (out, 1), (err, 2)):
                os.dup2(fd, std)
            os.closerange(3, os.sysconf("SC_OPEN_MAX"))
            # the parent's sys streams may wrap other descriptors (a test runner's capture): new ones
            sys.stdin = sys.__stdin__ = open(0, closefd=False)
            sys.stdout = sys.__stdout__ = open(1, "w", buffering=1, closefd=False)
            sys.stderr = sys.__stderr__ = open(2, "w", buffering=1, closefd=False)
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, signal.SIG_DFL)   # the command installs its own
            if cwd is not None:
                os.chdir(cwd)
            from bms import cli

            rc = cli.main(argv)
            rc = 0 if rc is None else int(rc)
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:   # noqa: BLE001 -- reported on the child's stderr, exit code 1
            traceback.print_exc()
            rc = 1
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            except BaseException:   # noqa: BLE001 -- nothing left to report to
                pass
        return rc

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid == self.pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        end = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if end is not None and time.monotonic() >= end:
                raise subprocess.TimeoutExpired(self.args, timeout)
            time.sleep(0.01)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)
