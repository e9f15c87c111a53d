"""Run a process in its own process group with a hard deadline; never leave a member behind.

User-mode Linux forks several host processes (one per guest address space plus I/O helpers),
all in the process group of the first one, so the whole group is what gets killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class GroupRun:
    """How a process group ended: the leader's exit status (None if killed at the deadline)."""

    returncode: int | None
    killed_at_deadline: bool
    elapsed_s: float


def group_members(pgid: int) -> list[int]:
    """PIDs of live (non-zombie) processes whose process group is ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # the process ended while we looked
            continue
        # fields after the ")" closing the command name: state ppid pgrp ...
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) >= 3 and int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def kill_group(pgid: int, wait_s: float = 5.0) -> None:
    """SIGKILL every process of group ``pgid`` and wait (bounded) until none is alive."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            return
        if not group_members(pgid) or time.monotonic() > deadline:
            return
        time.sleep(0.05)


def run_group(argv: list[str], *, timeout_s: float, stdout, stderr, cwd=None, env=None) -> GroupRun:
    """Start ``argv`` as leader of a new session; kill its whole group at ``timeout_s``.

    Also kills leftovers of the group after a normal exit, so that helpers forked by the
    leader cannot outlive the call. ``stdout``/``stderr`` are file objects or DEVNULL.
    """
    start = time.monotonic()
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
        cwd=cwd, env=env, start_new_session=True,
    )
    pgid = proc.pid  # leader of a new session: pgid == pid
    deadline = start + max(timeout_s, 0.0)
    killed = False
    try:
        # Wait WITHOUT reaping (WNOWAIT): while the leader is an unreaped zombie its pid, hence
        # the pgid, cannot be reused, so the kill below can only hit our own processes.
        while os.waitid(os.P_PID, pgid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
            if time.monotonic() >= deadline:
                killed = True
                break
            time.sleep(0.02)
    finally:
        kill_group(pgid)
        code = proc.wait()
    return GroupRun(None if killed else code, killed, time.monotonic() - start)
