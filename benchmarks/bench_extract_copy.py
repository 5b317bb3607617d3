#!/usr/bin/env python3
"""Extraction of one big file from Btrfs and from striped LVM: kernel copy against read
and write, in child processes, interleaved.

    python benchmarks/bench_extract_copy.py [--workdir DIR] [--mib N] [--reps R]

Builds (once, in ``--workdir``) a Btrfs made by ``mkfs.btrfs --rootdir`` and a disk whose
two-stripe LV (lvm2 on loop devices, needs root; ``tests/lvm_tools.py``) holds an ext4
made by ``mke2fs -d``, both holding one random file of ``N`` MiB (default 1024). Each rep
runs ``vdinspect extract`` of the file twice in child processes: as shipped (host ranges
and ``os.copy_file_range``) and with ``Extractor.kernel_copy`` off (the read-and-write
path every source had before it had host ranges). CPU is the children's user + system
time; both outputs are compared with the source file.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from clock import cpu_children

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
MiB = 1 << 20
RUN = ("import sys; from vdinspect.filesystems.extract import Extractor; "
       "Extractor.kernel_copy = sys.argv[1] == 'copy'; from vdinspect.cli import main; "
       "sys.exit(main(sys.argv[2:]))")


def build(work: Path, mib: int) -> dict[str, list[str]]:
    tree = work / "tree"
    big = tree / "big.bin"
    if not big.exists():
        tree.mkdir(parents=True, exist_ok=True)
        with open(big, "wb") as f:
            for _ in range(mib):
                f.write(os.urandom(MiB))
    cases = {}
    btrfs = work / "btrfs.img"
    if not btrfs.exists():
        with open(btrfs, "wb") as f:
            f.truncate(mib * MiB * 5 // 4 + 256 * MiB)
        subprocess.run(["mkfs.btrfs", "-q", "-f", "--rootdir", str(tree), str(btrfs)],
                       check=True, capture_output=True)
    cases["btrfs"] = [str(btrfs)]
    disk = work / "lvm" / "disk.img"
    if not disk.exists():
        from tests.lvm_tools import can_make_lvm, striped_lvm_disk

        if can_make_lvm():
            disk.parent.mkdir(exist_ok=True)

            def payload(size: int) -> Path:
                img = work / "lvm" / "ext4.img"
                subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", "-b", "4096", "-d",
                                str(tree), str(img), f"{size // 1024}K"], check=True)
                return img

            striped_lvm_disk(disk, mib * MiB * 17 // 16 + 64 * MiB, payload, disk.parent)
            (work / "lvm" / "ext4.img").unlink()
    if disk.exists():
        cases["lvm"] = ["--part", "hrvg/str", str(disk)]
    return cases


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default="/tmp/vdinspect-bench-extract-copy")
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    work = Path(a.workdir)
    work.mkdir(parents=True, exist_ok=True)
    cases = build(work, a.mib)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    res: dict[tuple[str, str], list[tuple[float, float]]] = {}
    same = True
    for _ in range(a.reps):
        for case, args in cases.items():
            for mode in ("copy", "read"):
                dest = work / f"out-{mode}"
                shutil.rmtree(dest, ignore_errors=True)
                cmd = [sys.executable, "-c", RUN, mode, "extract", *args, "/big.bin", str(dest)]
                c0, t0 = cpu_children(), time.perf_counter()
                subprocess.run(cmd, check=True, capture_output=True, env=env)
                res.setdefault((case, mode), []).append((cpu_children() - c0,
                                                         time.perf_counter() - t0))
                same &= filecmp.cmp(dest / "big.bin", work / "tree" / "big.bin", shallow=False)
                shutil.rmtree(dest, ignore_errors=True)
    for (case, mode), v in sorted(res.items()):
        cpu = sorted(c for c, _w in v)
        wall = sorted(w for _c, w in v)
        print(f"{case:6} {'kernel copy' if mode == 'copy' else 'read+write':12} "
              f"CPU best {cpu[0]:.2f} s median {cpu[len(cpu) // 2]:.2f} s; "
              f"wall best {wall[0]:.2f} s median {wall[len(wall) // 2]:.2f} s")
    print("same bytes as the source" if same else "DIFFERS", "; load", os.getloadavg())


if __name__ == "__main__":
    main()
