"""``run_on_vcan``: run a command where real SocketCAN vcan interfaces exist.

Backend choice (``backend="auto"``, or the ``BMS_VCAN_BACKEND`` environment variable):
``host`` when the host kernel has SocketCAN and every channel exists or can be created
and brought up (a laptop after ``modprobe vcan``), else ``uml``: a user-mode Linux guest
booted for this one command with the host's filesystem as its root.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Mapping, Sequence

from .host import ensure_host_vcan, run_on_host
from .uml import UmlError, run_in_uml

BACKENDS = ("auto", "host", "uml")
DEFAULT_TIMEOUT_S = 60.0
_IFNAME = re.compile(r"[A-Za-z0-9_.-]{1,15}")  # Linux IFNAMSIZ is 16 including the NUL


class HarnessError(RuntimeError):
    """The harness could not provide vcan interfaces (the command did not run)."""


@dataclass(frozen=True)
class Result:
    """Outcome of one command run on vcan.

    ``returncode`` is the command's exit status (128+N when killed by signal N), or None
    when it was stopped at the deadline (``timed_out``). ``startup_s`` is the time from the
    call to the command's start (UML boot and vcan setup; 0 on the host backend).
    """

    returncode: int | None
    stdout: str
    stderr: str
    backend: str
    elapsed_s: float
    timed_out: bool = False
    startup_s: float | None = None

    @property
    def output(self) -> str:
        """stdout followed by stderr."""
        return self.stdout + self.stderr


def _normalize_command(command: Sequence[str] | str) -> list[str] | str:
    if isinstance(command, str):
        if not command.strip():
            raise ValueError("empty shell command")
        return command
    argv = [str(a) for a in command]
    if not argv:
        raise ValueError("empty command argv")
    return argv


def _check_channels(channels: Sequence[str]) -> tuple[str, ...]:
    if isinstance(channels, str):
        channels = (channels,)
    channels = tuple(channels)
    if not channels:
        raise ValueError("at least one channel is needed")
    for name in channels:
        if not isinstance(name, str) or not _IFNAME.fullmatch(name):
            raise ValueError(f"invalid interface name {name!r}: 1-15 of [A-Za-z0-9_.-]")
    return channels


def choose_backend(channels: Sequence[str] = ("vcan0",), backend: str | None = None) -> str:
    """Resolve ``auto``: 'host' when the host can provide every channel (creating missing
    vcan interfaces if allowed), else 'uml'. An explicit 'host' that cannot work raises
    :class:`HarnessError` with the laptop setup commands."""
    backend = backend or os.environ.get("BMS_VCAN_BACKEND") or "auto"
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    channels = _check_channels(channels)
    if backend == "uml":
        return "uml"
    why_not = ensure_host_vcan(channels)
    if why_not is None:
        return "host"
    if backend == "host":
        first = channels[0]
        raise HarnessError(
            f"host backend unavailable: {why_not}. On a machine with the vcan module: "
            f"sudo modprobe vcan; sudo ip link add dev {first} type vcan; "
            f"sudo ip link set up {first}")
    return "uml"


def run_on_vcan(command: Sequence[str] | str, channels: Sequence[str] = ("vcan0",), *,
                timeout_s: float = DEFAULT_TIMEOUT_S, env: Mapping[str, str] | None = None,
                cwd: str | os.PathLike | None = None, backend: str | None = None,
                uml_mem_mb: int = 512) -> Result:
    """Run ``command`` (an argv list, or a string for ``/bin/sh -c``) with ``channels`` up.

    ``env`` replaces the environment like :mod:`subprocess` does (None: this process's
    environment); ``cwd`` defaults to the current directory. ``timeout_s`` is the budget
    including a UML boot (counted from the guest kernel's start, a fraction of a second
    after the call): then the command is stopped and ``timed_out`` set; a guest that does
    not power off within ``uml.HALT_GRACE_S`` more is killed with its whole process group.
    The command's stdin is /dev/null. Raises :class:`HarnessError` when no vcan can be
    provided.
    """
    command = _normalize_command(command)
    channels = _check_channels(channels)
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}")
    cwd = os.path.abspath(os.fspath(cwd) if cwd is not None else os.getcwd())
    if not os.path.isdir(cwd):
        raise ValueError(f"cwd is not a directory: {cwd}")
    env = dict(os.environ if env is None else env)
    chosen = choose_backend(channels, backend)
    if chosen == "host":
        raw = run_on_host(command, timeout_s=timeout_s, env=env, cwd=cwd)
    else:
        try:
            raw = run_in_uml(command, channels, timeout_s=timeout_s, env=env, cwd=cwd,
                             mem_mb=uml_mem_mb)
        except UmlError as exc:
            raise HarnessError(str(exc)) from exc
    return Result(backend=chosen, **raw)
