#!/usr/bin/env python3
"""vdinspect's Btrfs driver: listing speed against ``fls -r -p`` on an ext4 of the same tree.

    python benchmarks/bench_btrfs.py [--workdir DIR] [--files N] [--json FILE] [--profile]

There is no fls for Btrfs, so (as issue 18 asks) the reference is The Sleuth Kit listing
an ext4 volume made by ``mke2fs -d`` from the same host tree (``N`` files, default 20000,
in 200 folders) that ``mkfs.btrfs --rootdir`` copies. ``files()`` (open + walk +
DataFrame) on the Btrfs image is timed against ``fls -r -p`` on the ext4 one, each run of
ours followed by one of fls (interleaved, so both see the same machine load), best of 5
after a warm-up; the target is within 2x. ``files(deleted=False)`` (no search of older
trees for deleted files) is timed too. Both listings are checked to hold the same paths.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from clock import cpu_children, cpu_self

HERE = Path(__file__).resolve().parent
TARGET = 2.0


def build(work: Path, nfiles: int) -> tuple[Path, Path]:
    # names of its own: bench_ext.py builds another tree as ext4-N.img in the same work dir
    ext, btr = work / f"ext4-btrfs-same-{nfiles}.img", work / f"btrfs-{nfiles}.img"
    if ext.exists() and btr.exists():
        return ext, btr
    src = work / "btrfs-tree"
    shutil.rmtree(src, ignore_errors=True)
    per = max(1, nfiles // 200)
    n = 0
    for d in range(200):
        dd = src / f"folder {d:03d}"
        dd.mkdir(parents=True)
        for i in range(per):
            if n >= nfiles:
                break
            size = (n * 7919) % 6000
            seed = hashlib.sha256(str(n).encode()).digest()
            (dd / f"file {i:04d} with a long name.txt").write_bytes(
                (seed * (size // 32 + 1))[:size])
            n += 1
    for img in (ext, btr):
        with open(img, "wb") as f:
            f.truncate(512 << 20)
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", "-d", str(src), str(ext)], check=True)
    subprocess.run(["mkfs.btrfs", "-q", "-f", "--rootdir", str(src), str(btr)], check=True)
    shutil.rmtree(src)
    return ext, btr


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", type=Path)
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    sys.path.insert(0, str(HERE.parent))
    from vdinspect.filesystems.btrfs import open_filesystem
    from vdinspect.io import FileSource

    work = a.workdir or Path(tempfile.mkdtemp(prefix="bench-btrfs-"))
    work.mkdir(parents=True, exist_ok=True)
    ext, btr = build(work, a.files)

    def ours():
        with FileSource(btr) as src:
            return open_filesystem(src).files()

    def fls():
        subprocess.run(["fls", "-r", "-p", str(ext)], check=True, stdout=subprocess.DEVNULL)

    df = ours()
    lines = subprocess.run(["fls", "-r", "-p", str(ext)], check=True,
                           capture_output=True).stdout.decode().splitlines()
    theirs = {ln.split("\t", 1)[1] for ln in lines if "\t" in ln} - {"$OrphanFiles"}
    theirs = {p for p in theirs if not p.startswith(("lost+found", "$OrphanFiles"))}
    mine = {p.lstrip("/") for p in df.path}
    assert mine == theirs, (len(mine), len(theirs))
    def live():
        with FileSource(btr) as src:
            return open_filesystem(src).files(deleted=False)

    best: dict[str, list[float]] = {}
    for fn in (ours, live, fls):
        fn()  # warm-up
    for _ in range(a.repeat):  # interleaved: ours, ours without deleted, fls
        for name, fn, child in (("ours", ours, False), ("live", live, False),
                                ("fls", fls, True)):
            c0, t0 = (cpu_children() if child else cpu_self()), time.perf_counter()
            fn()
            wall = time.perf_counter() - t0
            cpu = (cpu_children() if child else cpu_self()) - c0
            w, c = best.get(name, [9e9, 9e9])
            best[name] = [min(w, wall), min(c, cpu)]
    (w_ours, c_ours), (w_live, c_live), (w_fls, c_fls) = best["ours"], best["live"], best["fls"]
    load = os.getloadavg()[0]
    res = dict(rows=len(df), ours_wall=w_ours, ours_cpu=c_ours, fls_wall=w_fls, fls_cpu=c_fls,
               live_wall=w_live, live_cpu=c_live, ratio_wall=w_ours / w_fls,
               ratio_cpu=c_ours / max(c_fls, 1e-9), ratio_live_cpu=c_live / max(c_fls, 1e-9),
               target=TARGET, load=load)
    print(f"Btrfs files() of {len(df)} entries: {w_ours:.3f} s wall / {c_ours:.3f} s CPU "
          f"(deleted=False: {w_live:.3f} s / {c_live:.3f} s); fls -r -p on ext4: "
          f"{w_fls:.3f} s / {c_fls:.3f} s; ratio {res['ratio_wall']:.2f}x wall, "
          f"{res['ratio_cpu']:.2f}x CPU, deleted=False {res['ratio_live_cpu']:.2f}x CPU "
          f"(target <= {TARGET:g}x; load average {load:.1f}, best of {a.repeat})")
    if a.profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.runcall(ours)
        pstats.Stats(prof).sort_stats("tottime").print_stats(15)
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
