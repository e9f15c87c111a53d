"""SocketCAN on the host kernel: detect it, create missing vcan interfaces, run a command.

A laptop with the ``vcan`` module needs, once per boot (see docs/socketcan.md)::

    sudo modprobe vcan
    sudo ip link add dev vcan0 type vcan
    sudo ip link set up vcan0
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from ._proc import run_group

ARPHRD_CAN = 280  # /sys/class/net/<if>/type of a CAN interface
IFF_UP = 0x1


def _has_af_can() -> bool:
    try:
        socket.socket(socket.AF_CAN, socket.SOCK_RAW, socket.CAN_RAW).close()
    except (OSError, AttributeError):
        return False
    return True


def _interface_state(channel: str) -> str:
    """'up', 'down', 'missing' or 'not-can' for a network interface name."""
    sysdir = Path("/sys/class/net") / channel
    if not sysdir.is_dir():
        return "missing"
    try:
        if int((sysdir / "type").read_text()) != ARPHRD_CAN:
            return "not-can"
        return "up" if int((sysdir / "flags").read_text(), 16) & IFF_UP else "down"
    except (OSError, ValueError):
        return "missing"


def _ip(*args: str) -> bool:
    ip = shutil.which("ip")
    if ip is None:
        return False
    done = subprocess.run([ip, *args], stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
    return done.returncode == 0


def ensure_host_vcan(channels: tuple[str, ...]) -> str | None:
    """Make every channel an up CAN interface on the host kernel.

    Returns None on success, else the reason it is not possible (no AF_CAN in this kernel,
    no permission to create the interface, name taken by a non-CAN interface...). Creating
    needs root (or CAP_NET_ADMIN) and the vcan module; ``modprobe vcan`` is tried when missing.
    """
    if not _has_af_can():
        return "the host kernel has no SocketCAN (socket(AF_CAN) fails)"
    for channel in channels:
        state = _interface_state(channel)
        if state == "not-can":
            return f"host interface {channel} exists but is not a CAN interface"
        if state == "missing" and not _ip("link", "add", "dev", channel, "type", "vcan"):
            modprobe = shutil.which("modprobe")
            if modprobe:
                subprocess.run([modprobe, "vcan"], capture_output=True, timeout=10)
            _ip("link", "add", "dev", channel, "type", "vcan")
        # re-read: a parallel run may have created it between our check and our `ip link add`
        state = _interface_state(channel)
        if state in ("missing", "not-can"):
            return f"cannot create {channel} (needs root and the vcan module)"
        if state == "down" and not _ip("link", "set", "up", channel):
            return f"cannot bring {channel} up (needs root)"
    return None


def run_on_host(command: list[str] | str, *, timeout_s: float, env: dict[str, str],
                cwd: str) -> dict:
    """Run ``command`` directly (the host already has the vcan interfaces); same dict as UML."""
    argv = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)
    t0 = time.monotonic()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            run = run_group(argv, timeout_s=timeout_s, stdout=out, stderr=err, cwd=cwd, env=env)
        except OSError as exc:  # same codes as a shell: 127 not found, 126 not executable
            return {"returncode": 127 if isinstance(exc, FileNotFoundError) else 126,
                    "stdout": "", "stderr": f"{argv[0]}: {exc.strerror}\n",
                    "timed_out": False, "startup_s": 0.0, "elapsed_s": time.monotonic() - t0}
        out.seek(0)
        err.seek(0)
        return {
            # killed by a signal: report 128+N like a shell (and like the UML guest) does
            "returncode": None if run.returncode is None else (
                128 - run.returncode if run.returncode < 0 else run.returncode),
            "stdout": out.read().decode(errors="replace"),
            "stderr": err.read().decode(errors="replace"),
            "timed_out": run.killed_at_deadline,
            "startup_s": 0.0,
            "elapsed_s": run.elapsed_s,
        }
