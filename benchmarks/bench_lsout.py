#!/usr/bin/env python3
"""What ``vdinspect ls -r`` costs as a whole process, against ``fls -r -p``, and the floor
any Python process stands on.

    python benchmarks/bench_lsout.py [--repeat N] [--before DIR] [--workdir DIR] [--only ext4]

Builds (or reuses, in ``--workdir``) bench_summary.py's 20k-file ext4, FAT32 and NTFS
images, then runs, each as a new process and all in turns (best of N CPU, user + system
of the child from ``os.wait4``, and best wall): the start-up floor (``python3 -S -c pass``,
``python3 -c pass``, ``import numpy`` with one BLAS thread as the CLI sets it, ``numpy.ma``,
``construct``), ``ls -r --json`` and ``ls -r`` of each image with the work tree's
vdinspect, with the one in ``--before DIR`` (an older commit unpacked with ``git
archive``) when given, and ``fls -r -p``. Before and after must write the same bytes
(checked once per command). Prints a Markdown table and the load average.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from bench_summary import ext_image, fat_image, ntfs_image  # noqa: E402

PY = sys.executable


def child(argv: list[str], env: dict) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one run of ``argv``, its output thrown away."""
    t = time.perf_counter()
    p = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, ru = os.wait4(p.pid, 0)
    if status:
        raise RuntimeError(f"{argv} exited with {status}")
    return ru.ru_utime + ru.ru_stime, time.perf_counter() - t


def output(argv: list[str], env: dict) -> bytes:
    return subprocess.run(argv, env=env, check=True, capture_output=True).stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--before", type=Path, help="a folder holding an older vdinspect package")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/b23"))
    ap.add_argument("--only", action="append", help="ext4, fat32 or ntfs (repeatable)")
    a = ap.parse_args()
    a.workdir.mkdir(parents=True, exist_ok=True)
    base = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    one_blas = dict(base, OPENBLAS_NUM_THREADS="1")
    trees = {"after": dict(base, PYTHONPATH=str(ROOT))}
    if a.before:
        trees["before"] = dict(base, PYTHONPATH=str(a.before))
    cases: list[tuple[str, list[str], dict]] = [
        ("`python3 -S -c pass`", [PY, "-S", "-c", "pass"], base),
        ("`python3 -c pass`", [PY, "-c", "pass"], base),
        ("`import numpy` (1 BLAS thread)", [PY, "-c", "import numpy"], one_blas),
        ("`import numpy, numpy.ma`", [PY, "-c", "import numpy, numpy.ma"], one_blas),
        ("`import construct`", [PY, "-c", "import construct"], base),
        ("`import numpy, numpy.ma, construct`", [PY, "-c", "import numpy, numpy.ma, construct"],
         one_blas),
    ]
    makers = {"ext4": lambda: ext_image(a.workdir, 20_000),
              "fat32": lambda: fat_image(a.workdir, 20_000),
              "ntfs": lambda: ntfs_image(a.workdir, 20_000)}
    for fs, make in makers.items():
        if a.only and fs not in a.only:
            continue
        img = make()
        if img is None:
            print(f"({fs}: no image: its builder's tools are missing)", file=sys.stderr)
            continue
        for flags in (["-r", "--json"], ["-r"]):
            argv = [PY, "-m", "vdinspect", "ls", *flags, str(img)]
            if "before" in trees:
                same = output(argv, trees["before"]) == output(argv, trees["after"])
                if not same:
                    raise SystemExit(f"before and after differ: ls {' '.join(flags)} {img}")
            for name, env in trees.items():
                cases.append((f"{name}: `ls {' '.join(flags)}` {fs}", argv, env))
        cases.append((f"`fls -r -p` {fs}", ["fls", "-r", "-p", str(img)], base))
    print(f"load average at the start: {os.getloadavg()[0]:.2f}", file=sys.stderr)
    for argv_env in cases:  # a warm-up each (page cache, .pyc files)
        child(argv_env[1], argv_env[2])
    best = {label: (float("inf"), float("inf")) for label, _, _ in cases}
    for _ in range(a.repeat):
        for label, argv, env in cases:
            cpu, wall = child(argv, env)
            best[label] = (min(best[label][0], cpu), min(best[label][1], wall))
    load = os.getloadavg()[0]
    print("| command | CPU | wall |\n|---|---:|---:|")
    for label, (cpu, wall) in best.items():
        print(f"| {label} | {cpu * 1000:.0f} ms | {wall * 1000:.0f} ms |")
    print(f"\nbest of {a.repeat}, load average at the end {load:.2f}, {PY}")


if __name__ == "__main__":
    main()
