#!/usr/bin/env python3
"""vdinspect's ext4 driver against The Sleuth Kit and debugfs, in one run on one machine.

    python benchmarks/bench_ext.py [--workdir DIR] [--files N] [--json FILE] [--profile]

1. builds (once, cached in the work dir) an ext4 volume (4 KiB blocks, 512 MiB) holding
   ``N`` files (default 20000) in 200 folders, written by ``mke2fs -d`` from a host tree,
   plus one 64 MiB file;
2. listing: ``FileSystem.files()`` (open + walk + DataFrame) against ``fls -r -p``
   (target: within 3x), best of 3 after a warm-up;
3. extraction: ``extract("/")`` of the whole tree against ``debugfs -R "rdump / DIR"``,
   and of the 64 MiB file against ``icat``, in MiB/s; outputs compared.

Wall-clock and CPU (user + system, this process or the child) are both reported; on a
busy machine the CPU figures are the steadier comparison.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from clock import listing_vs_fls, timed

HERE = Path(__file__).resolve().parent
MiB = 1 << 20
VERSION = 2  # 2: rebuilt, as bench_btrfs.py once wrote its own tree under this name
LISTING_TARGET = 3.0  # files() / fls -r -p


def build(work: Path, nfiles: int) -> Path:
    img = work / f"ext4-{nfiles}.img"
    stamp = work / f"ext4-{nfiles}.json"
    if img.exists() and stamp.exists() and json.loads(stamp.read_text()).get("v") == VERSION:
        return img
    print(f"building {img} with mke2fs -d ({nfiles} files) ...", flush=True)
    src = work / "ext-tree"
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
                (seed * (size // 32 + 1))[:size]
            )
            n += 1
    with open(src / "big.bin", "wb") as f:
        for k in range(64):
            f.write(hashlib.sha256(str(k).encode()).digest() * (MiB // 32))
    img.unlink(missing_ok=True)
    t = time.perf_counter()
    subprocess.run(
        [
            "mke2fs",
            "-q",
            "-F",
            "-t",
            "ext4",
            "-b",
            "4096",
            "-N",
            str(nfiles + 1000),
            "-d",
            str(src),
            str(img),
            "512M",
        ],
        check=True,
        capture_output=True,
    )
    print(f"  mke2fs -d took {time.perf_counter() - t:.1f} s")
    shutil.rmtree(src)
    stamp.write_text(json.dumps({"v": VERSION, "files": nfiles}))
    return img


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", type=Path, default=HERE / "work")
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    for tool in ("mke2fs", "debugfs", "fls", "icat"):
        if not shutil.which(tool):
            print(f"needs {tool}", file=sys.stderr)
            return 2
    args.workdir.mkdir(parents=True, exist_ok=True)
    img = build(args.workdir, args.files)

    import pandas  # noqa: F401  (imported up front: not part of the measurement)

    from vdinspect.filesystems import ext
    from vdinspect.io import FileSource

    results: dict = {"files": args.files, "image_bytes": img.stat().st_size}

    def ours_list():
        fs = ext.open_filesystem(FileSource(img))
        return fs.files()

    df, results["listing"] = listing_vs_fls(ours_list, img, LISTING_TARGET, args.profile)

    files = df[df["kind"] == "file"]
    total = int(files["size"].sum())
    big_row = df[df["path"] == "/big.bin"].iloc[0]
    big, big_ino = int(big_row["size"]), int(big_row["inode"])
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        tmp = Path(tmp)

        def ours_tree():
            shutil.rmtree(tmp / "ours", ignore_errors=True)
            ext.open_filesystem(FileSource(img)).extract("/", tmp / "ours")

        def debugfs_tree():
            shutil.rmtree(tmp / "debugfs", ignore_errors=True)
            (tmp / "debugfs").mkdir()
            subprocess.run(
                ["debugfs", "-R", f"rdump / {tmp / 'debugfs'}", str(img)],
                check=True,
                capture_output=True,
            )

        def ours_big():
            ext.open_filesystem(FileSource(img)).extract("/big.bin", tmp / "big")

        def icat_big():
            with open(tmp / "big.icat", "wb") as out:
                subprocess.run(["icat", str(img), str(big_ino)], check=True, stdout=out)

        w1, c1 = timed(ours_tree, repeat=1)
        w2, c2 = timed(debugfs_tree, child=True, repeat=1)
        probe = "folder 007/file 0003 with a long name.txt"
        same = all(
            (tmp / "ours" / p).read_bytes() == (tmp / "debugfs" / p).read_bytes()
            for p in ("big.bin", probe)
        )
        w3, c3 = timed(ours_big)
        w4, c4 = timed(icat_big, child=True)
        same = same and (tmp / "big" / "big.bin").read_bytes() == (tmp / "big.icat").read_bytes()
        results["extract_tree"] = dict(
            bytes=total,
            ours_wall=w1,
            ours_cpu=c1,
            debugfs_wall=w2,
            debugfs_cpu=c2,
            ours_mib_s=total / MiB / w1,
            debugfs_mib_s=total / MiB / w2,
            same=same,
        )
        results["extract_big"] = dict(
            bytes=big,
            ours_wall=w3,
            ours_cpu=c3,
            icat_wall=w4,
            icat_cpu=c4,
            ours_mib_s=big / MiB / w3,
            icat_mib_s=big / MiB / w4,
        )
    print(
        f"extract tree ({total / MiB:.0f} MiB, {len(files)} files): "
        f"{total / MiB / w1:.0f} MiB/s ({w1:.2f} s); debugfs rdump "
        f"{total / MiB / w2:.0f} MiB/s ({w2:.2f} s); same bytes: {same}"
    )
    print(
        f"extract one {big // MiB} MiB file: {big / MiB / w3:.0f} MiB/s ({w3:.3f} s); "
        f"icat {big / MiB / w4:.0f} MiB/s ({w4:.3f} s)"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
