#!/usr/bin/env python3
"""The lost-partition scan against TestDisk's search, in one run on one machine.

    python benchmarks/bench_scan.py [--workdir DIR] [--mib N] [--json FILE]

1. builds (once, cached in the work dir) ``N`` MiB (default 1024) of random bytes, in which
   no tool should find anything: the cost of reading and matching every sector;
2. times the in-process read pass (``Scan(disk)``: partitions and images) and the
   ``vdinspect scan`` command against ``testdisk /cmd IMAGE partition_none,analyze,search``
   (TestDisk's deeper search, which also reads the whole disk); best of 3 after a warm-up,
   the file in the page cache for both;
3. the same image as a sparse 1 TiB qcow2 holding those bytes: the scan reads only the
   allocated clusters (``qemu-img map`` says how many), where TestDisk would need a raw copy.

Wall-clock and CPU (user + system) are reported, and MB/s over the bytes read.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from clock import timed

HERE = Path(__file__).resolve().parent
MiB = 1 << 20


def build(work: Path, mib: int) -> tuple[Path, Path]:
    raw = work / f"random-{mib}.raw"
    if not raw.exists() or raw.stat().st_size != mib * MiB:
        print(f"building {raw} ({mib} MiB of random bytes) ...", flush=True)
        with open(raw, "wb") as f:
            for _ in range(mib):
                f.write(os.urandom(MiB))
    q = work / f"random-{mib}-in-1T.qcow2"
    if not q.exists() and shutil.which("qemu-img"):
        subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, q], check=True)
        subprocess.run(["qemu-img", "resize", "-q", q, "1T"], check=True)
    return raw, q


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=HERE / "work")
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    raw, q = build(args.workdir, args.mib)

    import vdinspect
    from vdinspect.recovery.scan import Scan

    def scan(path):
        with vdinspect.open(path) as d:
            s = Scan(d)
            s.partition_rows()
            s.image_rows()
            return s.read_bytes

    results = {}
    nbytes = scan(raw)
    wall, cpu = timed(lambda: scan(raw))
    results["scan (in-process)"] = dict(wall=wall, cpu=cpu, mb_s=nbytes / wall / 1e6)
    cli = [sys.executable, "-m", "vdinspect", "scan", "--json", str(raw)]
    wall, cpu = timed(lambda: subprocess.run(cli, capture_output=True), child=True)
    results["vdinspect scan (CLI)"] = dict(wall=wall, cpu=cpu, mb_s=nbytes / wall / 1e6)
    if shutil.which("testdisk"):
        with tempfile.TemporaryDirectory() as tmp:
            td = ["testdisk", "/log", "/cmd", str(raw), "partition_none,analyze,search"]
            wall, cpu = timed(lambda: subprocess.run(td, capture_output=True, cwd=tmp),
                              child=True)
        results["testdisk deeper search"] = dict(wall=wall, cpu=cpu, mb_s=nbytes / wall / 1e6)
    if q.exists():
        qbytes = scan(q)
        wall, cpu = timed(lambda: scan(q))
        results["scan of the 1 TiB qcow2"] = dict(wall=wall, cpu=cpu, read=qbytes,
                                                  mb_s=qbytes / wall / 1e6)
    print(f"{args.mib} MiB of random bytes (best of 3, page cache warm)")
    for name, r in results.items():
        print(f"  {name:28s} {r['wall']:7.2f} s wall  {r['cpu']:7.2f} s CPU  "
              f"{r['mb_s']:7.0f} MB/s")
    ref = results.get("testdisk deeper search")
    if ref:
        print(f"  ratio scan / testdisk (wall): "
              f"{results['scan (in-process)']['wall'] / ref['wall']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
