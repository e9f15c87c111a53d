"""Real-time scheduling for the bus commands (``bms run``, ``bms pack``, ``bms record``):
``--rt-priority PRIO`` runs the command under ``SCHED_FIFO`` at that priority, what
``chrt -f PRIO`` does from outside.

Why: on a kernel without full preemption (``PREEMPT_NONE``/``VOLUNTARY``, most distribution
and VM kernels) a node's 10 ms timer that expires while another task of the same class runs
is served at that task's next tick or system call, up to one tick (4 ms at ``HZ=250``) late.
A ``SCHED_FIFO`` task preempts every normal task at the next scheduling point, so the node's
cyclic frames stop queueing behind a recorder, a compiler or a test suite on the same CPU.
The node sleeps between its steps, so it never holds a CPU; the kernel's real-time
throttling (``kernel.sched_rt_runtime_us``, 95 % by default) bounds it if it ever spun.

Needs root, ``CAP_SYS_NICE`` (``setcap cap_sys_nice+ep`` on the interpreter) or an
``rtprio`` limit (``/etc/security/limits.conf``); without one the command stops with that
explanation instead of silently running at normal priority.
"""

from __future__ import annotations

import gc
import os
import resource


def add_rt_argument(p) -> None:
    p.add_argument("--rt-priority", type=int, default=None, metavar="PRIO",
                   help="run under SCHED_FIFO at PRIO (1-99), as `chrt -f PRIO` (needs root, "
                        "CAP_SYS_NICE or an rtprio limit; default: normal scheduling)")


def freeze_heap() -> int:
    """Before real time: what the start-up built (modules, the DBC, compiled kernels' dispatchers:
    ~140 000 objects in ``bms run``) goes into the garbage collector's permanent generation
    (``gc.freeze``), so a full collection in the loop visits only what the loop made since. A full
    collection over that heap stopped the process for ~90 ms on the development host (far more
    under user-mode Linux): one 10 ms cycle of frames sent ~9 cycles late. Returns the number
    of objects frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def apply_rt_priority(prio: int | None) -> str:
    """Switch the calling thread (the process's main thread: the command's loop) to
    ``SCHED_FIFO`` at ``prio``; returns the policy now in force, for statistics."""
    if prio is None:
        return "normal"
    lo, hi = os.sched_get_priority_min(os.SCHED_FIFO), os.sched_get_priority_max(os.SCHED_FIFO)
    if not lo <= prio <= hi:
        raise ValueError(f"--rt-priority {prio}: SCHED_FIFO priorities are {lo}..{hi}")
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(prio))
    except PermissionError as e:
        raise PermissionError(
            f"--rt-priority {prio}: not permitted ({e.strerror}); run as root, give the interpreter "
            "CAP_SYS_NICE (setcap cap_sys_nice+ep), or raise the rtprio limit "
            "(/etc/security/limits.conf), or leave --rt-priority out") from None
    return f"SCHED_FIFO {prio}"


def rusage() -> dict:
    """This process's CPU seconds and context switches, for statistics: a voluntary switch is a
    sleep of the loop (a wake-up later), an involuntary one a preemption by another task."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"utime_s": ru.ru_utime, "stime_s": ru.ru_stime, "nvcsw": ru.ru_nvcsw, "nivcsw": ru.ru_nivcsw}
