"""A fleet inventory: images per second and files listed per second, serial, on a process
pool and on a dask LocalCluster (issue 21).

    python benchmarks/bench_fleet.py [--images N] [--workers W] [--json FILE]

The images are copies of one generated QCOW2 (GPT, a FAT16 and an ext4 partition made by
sfdisk/mkfs.vfat/mke2fs -d, 300 files) plus a few broken ones (a missing backing file),
so every path does the work a real fleet needs. Prints a Markdown table with each mode's
ratio to serial.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import vdinspect  # noqa: E402
from vdinspect.fleet import files_of  # noqa: E402

MIB = 1 << 20


def sh(*cmd, **kw) -> None:
    subprocess.run([str(c) for c in cmd], check=True, capture_output=True, **kw)


def template(work: Path) -> Path:
    """One 64 MiB disk: GPT, FAT16 (32 MiB) and ext4 (the rest), 150 files in each."""
    src = work / "src"
    for i in range(15):
        d = src / f"dir{i:02d}"
        d.mkdir(parents=True)
        for j in range(10):
            (d / f"file{j}.txt").write_text(f"{i} {j}\n" * (j + 1))
    raw = work / "t.raw"
    with open(raw, "wb") as f:
        f.truncate(64 * MIB)
    sh("sfdisk", "-q", raw, input=b"label: gpt\n,32M\n,\n")
    fat, ext = work / "fat.img", work / "ext.img"
    with open(fat, "wb") as f:
        f.truncate(32 * MIB)
    sh("mkfs.vfat", "-F", "16", fat)
    sh("mcopy", "-s", "-i", fat, *sorted(src.iterdir()), "::/")
    with open(ext, "wb") as f:
        f.truncate(31 * MIB)
    sh("mke2fs", "-q", "-F", "-t", "ext4", "-d", src, ext)
    sh("dd", f"if={fat}", f"of={raw}", "bs=1M", "seek=1", "conv=notrunc")
    sh("dd", f"if={ext}", f"of={raw}", "bs=1M", "seek=33", "conv=notrunc")
    out = work / "template.qcow2"
    sh("qemu-img", "convert", "-O", "qcow2", raw, out)
    return out


def fleet(work: Path, n: int) -> list[str]:
    t = template(work)
    paths = []
    for i in range(n):
        p = work / f"vm{i:04d}.qcow2"
        if i % 50 == 49:  # a broken chain now and then
            sh("qemu-img", "create", "-q", "-f", "qcow2", "-b", str(work / "gone.qcow2"),
               "-F", "qcow2", "-u", p, "64M")
        else:
            shutil.copyfile(t, p)
        paths.append(str(p))
    return paths


def files_count(paths, mapper) -> int:
    return sum(len(df) for df in mapper(files_of, paths))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        paths = fleet(Path(tmp), args.images)

        def serial_inv():
            return vdinspect.inventory(paths)

        def pool_inv():
            with ProcessPoolExecutor(args.workers) as ex:
                return vdinspect.inventory(paths, executor=ex)

        def serial_files():
            return files_count(paths, map)

        def pool_files():
            with ProcessPoolExecutor(args.workers) as ex:
                return files_count(paths, lambda f, p: ex.map(f, p, chunksize=8))

        modes = [("serial", serial_inv, serial_files), ("process pool", pool_inv, pool_files)]
        try:
            from distributed import Client, LocalCluster

            import vdinspect.dask as vdd

            cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1,
                                   host="127.0.0.1", dashboard_address=None)
            client = Client(cluster)
            modes.append(("dask LocalCluster", lambda: vdd.inventory(paths).compute(),
                          lambda: len(vdd.files(paths).compute())))
        except ImportError:
            client = cluster = None
        for name, inv, fil in modes:
            t0 = time.perf_counter()
            rows = inv()
            t_inv = time.perf_counter() - t0
            t0 = time.perf_counter()
            nfiles = fil()
            t_files = time.perf_counter() - t0
            results[name] = {"images": len(rows), "inventory_s": t_inv,
                             "images_per_s": len(rows) / t_inv, "files": nfiles,
                             "files_s": t_files, "files_per_s": nfiles / t_files}
        if client is not None:
            client.close()
            cluster.close()
    base = results["serial"]
    print(f"{args.images} images, {args.workers} workers, load {load} at start\n")
    print("| mode | images/s | ratio | files/s | ratio |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['images_per_s']:.1f} | "
              f"{r['images_per_s'] / base['images_per_s']:.2f}x | {r['files_per_s']:.0f} | "
              f"{r['files_per_s'] / base['files_per_s']:.2f}x |")
    if args.json:
        args.json.write_text(json.dumps({"load": load, "results": results}, indent=1))


if __name__ == "__main__":
    main()
