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


def listing_vs_fls(ours_list, img, target: float = 3.0, profile: bool = False,
                   repeat: int = 3, interleave: bool = False):
    """Time ``ours_list()`` (a ``files()`` listing) against ``fls -r -p`` of ``img``; print
    the ratio and return (the frame, a results dict). ``interleave``: one run of each in
    turn, ``repeat`` times (a busy machine's load then weighs on both alike)."""
    import cProfile
    import pstats
    import subprocess

    def fls_list():
        subprocess.run(["fls", "-r", "-p", str(img)], check=True, stdout=subprocess.DEVNULL)

    df = ours_list()
    fls_rows = subprocess.run(["fls", "-r", "-p", str(img)], check=True,
                              capture_output=True).stdout.count(b"\n")
    if interleave:
        ours, theirs = [], []
        for _ in range(repeat):
            ours.append(timed(ours_list, repeat=1))
            theirs.append(timed(fls_list, child=True, repeat=1))
        w_ours, c_ours = min(w for w, _ in ours), min(c for _, c in ours)
        w_fls, c_fls = min(w for w, _ in theirs), min(c for _, c in theirs)
    else:
        w_ours, c_ours = timed(ours_list, repeat=repeat)
        w_fls, c_fls = timed(fls_list, child=True, repeat=repeat)
    ratio_wall, ratio_cpu = w_ours / w_fls, c_ours / max(c_fls, 1e-9)
    print(
        f"listing {len(df)} entries (fls: {fls_rows} lines): files() {w_ours:.3f} s wall / "
        f"{c_ours:.3f} s CPU; fls -r -p {w_fls:.3f} s / {c_fls:.3f} s; ratio "
        f"{ratio_wall:.2f}x wall, {ratio_cpu:.2f}x CPU (target <= {target:g}x)"
    )
    if profile:
        prof = cProfile.Profile()
        prof.runcall(ours_list)
        pstats.Stats(prof).sort_stats("tottime").print_stats(15)
    return df, dict(rows_ours=len(df), lines_fls=fls_rows, ours_wall=w_ours, ours_cpu=c_ours,
                    fls_wall=w_fls, fls_cpu=c_fls, ratio_wall=ratio_wall, ratio_cpu=ratio_cpu,
                    target=target)
