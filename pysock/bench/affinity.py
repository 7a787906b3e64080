"""Which CPUs this process may run on, and pinning it to some: os's
sched_getaffinity/sched_setaffinity where the interpreter has them (CPython on
Linux), else the same libc calls through ctypes (PyPy 3.9 lacks them).  The
benchmark pins the server and the load generator to different CPUs."""
from __future__ import annotations

import ctypes
import os

_SET_BYTES = 128  # a cpu_set_t of 1,024 CPUs, glibc's size


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def get() -> set[int]:
    """The CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    mask = (ctypes.c_ubyte * _SET_BYTES)()
    if _libc().sched_getaffinity(0, _SET_BYTES, mask) != 0:
        return set(range(os.cpu_count() or 1))  # unknown: every CPU
    return {i for i in range(_SET_BYTES * 8) if mask[i // 8] >> (i % 8) & 1}


def set_to(cpus: set[int]) -> None:
    """Run this process (this thread, and what it starts later) on cpus only."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cpus)
        return
    mask = (ctypes.c_ubyte * _SET_BYTES)()
    for cpu in cpus:
        mask[cpu // 8] |= 1 << (cpu % 8)
    if _libc().sched_setaffinity(0, _SET_BYTES, mask) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
