#!/usr/bin/env python3
"""vdinspect's XFS driver: listing against ``fls -r -p`` on an ext4 of the same tree (there
is no fls for XFS), and reading a large file against the page-cache ceiling.

    python benchmarks/bench_xfs.py [--workdir DIR] [--files N] [--json FILE] [--profile]

1. builds (once, cached in the work dir) a host tree of ``N`` files (default 20000) in 200
   folders plus one 64 MiB file, an XFS volume from it with ``mkfs.xfs -p`` (a prototype
   file) and an ext4 volume with ``mke2fs -d``;
2. listing: ``FileSystem.files()`` of the XFS (open + walk + DataFrame) against
   ``fls -r -p`` of the ext4 (target: within 2x), best of 5 runs each, taken in turn;
3. reading: the 64 MiB file through ``fs.open`` in MiB/s, against reading the same number
   of bytes of the image file with ``os.pread`` (the page-cache ceiling).

Wall-clock and CPU are both reported; on a busy machine the CPU figures are steadier.
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
from pathlib import Path

from clock import listing_vs_fls, timed

HERE = Path(__file__).resolve().parent
MiB = 1 << 20
VERSION = 1
LISTING_TARGET = 2.0


def build(work: Path, nfiles: int) -> tuple[Path, Path]:
    xfs, ext = work / f"xfs-{nfiles}.img", work / f"ext4-same-{nfiles}.img"
    stamp = work / f"xfs-{nfiles}.json"
    if xfs.exists() and ext.exists() and stamp.exists() and json.loads(
            stamp.read_text()).get("v") == VERSION:
        return xfs, ext
    print(f"building {xfs} and {ext} ({nfiles} files) ...", flush=True)
    src = work / "xfs-tree"
    shutil.rmtree(src, ignore_errors=True)
    per = max(1, nfiles // 200)
    lines = ["bench", "0 0", "d--755 0 0"]
    n = 0
    for d in range(200):
        dd = src / f"folder_{d:03d}"
        dd.mkdir(parents=True)
        lines.append(f"{dd.name} d--755 0 0")
        for i in range(per):
            if n >= nfiles:
                break
            size = (n * 7919) % 6000
            seed = hashlib.sha256(str(n).encode()).digest()
            p = dd / f"file_{i:04d}_with_a_long_name.txt"
            p.write_bytes((seed * (size // 32 + 1))[:size])
            lines.append(f"{p.name} ---644 0 0 {p}")
            n += 1
        lines.append("$")
    big = src / "big.bin"
    with open(big, "wb") as f:
        for k in range(64):
            f.write(hashlib.sha256(str(k).encode()).digest() * (MiB // 32))
    lines += [f"big.bin ---644 0 0 {big}", "$", "$"]
    proto = work / "xfs.proto"
    proto.write_text("\n".join(lines) + "\n")
    for img in (xfs, ext):
        img.unlink(missing_ok=True)
        with open(img, "wb") as f:
            f.truncate(512 * MiB)
    subprocess.run(["mkfs.xfs", "-q", "-p", str(proto), str(xfs)], check=True)
    subprocess.run(["mke2fs", "-q", "-t", "ext4", "-d", str(src), str(ext)], check=True)
    stamp.write_text(json.dumps({"v": VERSION}))
    return xfs, ext


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "vdinspect-bench"))
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--json")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    if not all(shutil.which(t) for t in ("mkfs.xfs", "mke2fs", "fls")):
        print("needs mkfs.xfs, mke2fs and fls", file=sys.stderr)
        return 2
    sys.path.insert(0, str(HERE.parent))
    from vdinspect.filesystems import open_filesystem
    from vdinspect.io import FileSource

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    xfs, ext = build(work, args.files)

    def ours_list():
        return open_filesystem(FileSource(xfs), "xfs").files()

    results = {}
    df, results["listing"] = listing_vs_fls(ours_list, ext, LISTING_TARGET, args.profile,
                                              repeat=5, interleave=True)
    fs = open_filesystem(FileSource(xfs), "xfs")
    size = fs.stat("/big.bin").size

    def read_ours():
        with fs.open("/big.bin") as f:
            while f.read(MiB):
                pass

    fd = os.open(xfs, os.O_RDONLY)

    def read_host():
        for off in range(0, size, MiB):
            os.pread(fd, MiB, off)

    w_ours, c_ours = timed(read_ours)
    w_host, c_host = timed(read_host)
    os.close(fd)
    print(f"reading a {size // MiB} MiB file: {size / MiB / w_ours:.0f} MiB/s "
          f"(page cache via pread: {size / MiB / w_host:.0f} MiB/s; ratio "
          f"{w_ours / w_host:.2f}x wall)")
    results["read"] = dict(bytes=size, ours_wall=w_ours, ours_cpu=c_ours, host_wall=w_host,
                           host_cpu=c_host)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
