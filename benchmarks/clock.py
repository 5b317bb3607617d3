"""Timing helpers the benchmark scripts share: best wall and CPU time of a call."""

from __future__ import annotations

import resource
import time


def cpu_self() -> float:
    """CPU seconds (user + system) this process has used."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def cpu_children() -> float:
    """CPU seconds (user + system) the finished child processes have used."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(fn, child: bool = False, repeat: int = 3) -> tuple[float, float]:
    """(best wall seconds, best CPU seconds) of ``fn`` after one warm-up run; ``child``
    counts the CPU of the processes it runs instead of this one's."""
    fn()
    walls, cpus = [], []
    for _ in range(repeat):
        c0 = cpu_children() if child else cpu_self()
        t0 = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append((cpu_children() if child else cpu_self()) - c0)
    return min(walls), min(cpus)
