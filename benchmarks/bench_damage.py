#!/usr/bin/env python3
"""What knowing which files are damaged costs, against The Sleuth Kit, in one run.

    python benchmarks/bench_damage.py [--workdir DIR] [--files N]

1. the ext4 volume of ``bench_ext.py`` (``N`` files, default 20000, in 200 folders, plus a
   64 MiB file), converted by ``qemu-img`` to a QCOW2 with 64 KiB clusters;
2. a copy whose L2 entries for 64 data clusters spread over the volume point past the end
   of the file (salvage mode shows them ``damaged``);
3. ``files()`` (with its ``damaged`` column) on the intact QCOW2, then on the damaged one
   in salvage mode (where every file's extents are mapped through the damage), against
   ``fls -r -p`` of the raw volume; best of 3 after a warm-up;
4. ``Disk.damaged_ranges()`` on a fresh open of the damaged copy (its first question).
"""

from __future__ import annotations

import argparse
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from bench_ext import build  # noqa: E402
from clock import cpu_self, timed  # noqa: E402

import vdinspect  # noqa: E402

CLUSTER = 64 << 10


def break_clusters(src: Path, dst: Path, count: int) -> int:
    """Copy ``src`` with ``count`` allocated guest clusters (spread evenly) pointed past
    the end of the file; returns how many were broken."""
    data = bytearray(src.read_bytes())
    l1_size, l1_off = struct.unpack_from(">IQ", data, 36)
    per = CLUSTER // 8
    allocated = []
    for i1 in range(l1_size):
        l2 = struct.unpack_from(">Q", data, l1_off + 8 * i1)[0] & 0x00FFFFFFFFFFFE00
        if not l2:
            continue
        for i2 in range(per):
            if struct.unpack_from(">Q", data, l2 + 8 * i2)[0] & 0x00FFFFFFFFFFFE00:
                allocated.append(l2 + 8 * i2)
    step = max(1, len(allocated) // count)
    beyond = (len(data) + (1 << 30)) // CLUSTER * CLUSTER
    picked = allocated[step // 2::step][:count]
    for where in picked:
        struct.pack_into(">Q", data, where, (1 << 63) | beyond)
        beyond += CLUSTER
    dst.write_bytes(bytes(data))
    return len(picked)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", type=Path, default=HERE / "work")
    ap.add_argument("--files", type=int, default=20000)
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    raw = build(args.workdir, args.files)
    qcow = args.workdir / f"ext4-{args.files}.qcow2"
    if not qcow.exists():
        subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", "-o",
                        f"cluster_size={CLUSTER}", str(raw), str(qcow)], check=True)
    with tempfile.TemporaryDirectory() as tmp:
        bad = Path(tmp) / "damaged.qcow2"
        n = break_clusters(qcow, bad, 64)

        def fls() -> None:
            subprocess.run(["fls", "-r", "-p", str(raw)], check=True, capture_output=True)

        def listing(path: Path, strict: bool):
            def run():
                with vdinspect.open(path, strict=strict) as disk:
                    return disk.filesystem().files()
            return run

        t_fls = timed(fls, child=True)
        t_clean = timed(listing(qcow, True))
        t_bad = timed(listing(bad, False))
        df = listing(bad, False)()
        hit = int((df.damaged.fillna(0) > 0).sum())
        with vdinspect.open(bad, strict=False) as disk:
            c0, t0 = cpu_self(), time.perf_counter()
            ranges = disk.damaged_ranges()
            first = (time.perf_counter() - t0, cpu_self() - c0)
    print(f"{len(df)} entries; {n} clusters broken; {hit} files report damage; "
          f"{len(ranges)} damaged ranges")
    print(f"fls -r -p (raw)                 {t_fls[0]:.3f} s wall {t_fls[1]:.3f} s CPU")
    for name, (w, c) in (("files() intact qcow2", t_clean), ("files() damaged, salvage", t_bad)):
        print(f"{name:31s} {w:.3f} s wall {c:.3f} s CPU   {w / t_fls[0]:.2f}x wall, "
              f"{c / t_fls[1]:.2f}x CPU of fls")
    print(f"damaged_ranges() first call     {first[0] * 1000:.1f} ms wall {first[1] * 1000:.1f} "
          "ms CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
