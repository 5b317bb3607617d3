#!/usr/bin/env python3
"""vdinspect's FAT driver against The Sleuth Kit and mtools, in one run on one machine.

    python benchmarks/bench_fat.py [--workdir DIR] [--files N] [--json FILE] [--profile]

1. builds (once, cached in the work dir) a FAT32 volume of 512 MiB holding ``N`` files
   (default 20000) in 200 folders, written by ``mcopy -s`` from a host tree, plus one
   64 MiB file;
2. listing: ``FileSystem.files()`` (open + walk + DataFrame) against ``fls -r -p``
   (target: within 3x), best of 3 after a warm-up;
3. extraction: ``extract("/")`` of the whole tree and of the 64 MiB file, in MiB/s, with
   ``mcopy -s`` / ``mcopy`` doing the same as the reference; outputs compared.

Wall-clock and CPU (user + system, this process or the child) are both reported.
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

from clock import listing_vs_fls, timed

HERE = Path(__file__).resolve().parent
MiB = 1 << 20
ENV = dict(os.environ, MTOOLS_SKIP_CHECK="1", TZ="UTC")
VERSION = 1


def build(work: Path, nfiles: int) -> Path:
    img = work / f"fat32-{nfiles}.img"
    stamp = work / f"fat32-{nfiles}.json"
    if img.exists() and stamp.exists() and json.loads(stamp.read_text()).get("v") == VERSION:
        return img
    print(f"building {img} with mkfs.fat + mcopy -s ({nfiles} files) ...", flush=True)
    src = work / "tree"
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
    big = src / "big.bin"
    with open(big, "wb") as f:
        for k in range(64):
            f.write(hashlib.sha256(str(k).encode()).digest() * (MiB // 32))
    img.unlink(missing_ok=True)
    subprocess.run(
        ["mkfs.fat", "-F", "32", "-s", "8", "-C", str(img), str(512 * 1024)],
        check=True,
        capture_output=True,
    )
    t = time.perf_counter()
    subprocess.run(
        ["mcopy", "-s", "-i", str(img)] + [str(p) for p in sorted(src.iterdir())] + ["::/"],
        check=True,
        env=ENV,
    )
    print(f"  mcopy -s took {time.perf_counter() - t:.1f} s")
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
    for tool in ("mkfs.fat", "mcopy", "fls"):
        if not shutil.which(tool):
            print(f"needs {tool}", file=sys.stderr)
            return 2
    args.workdir.mkdir(parents=True, exist_ok=True)
    img = build(args.workdir, args.files)

    from vdinspect.filesystems import fat
    from vdinspect.io import FileSource

    results: dict = {"files": args.files, "image_bytes": img.stat().st_size}

    def ours_list():
        fs = fat.open_filesystem(FileSource(img))
        return fs.files()

    df, results["listing"] = listing_vs_fls(ours_list, img, 3.0, args.profile)

    total = int(df.loc[df["kind"] == "file", "size"].sum())
    big = int(df.loc[df["path"] == "/big.bin", "size"].iloc[0])
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        tmp = Path(tmp)

        def ours_tree():
            shutil.rmtree(tmp / "ours", ignore_errors=True)
            fat.open_filesystem(FileSource(img)).extract("/", tmp / "ours")

        def mcopy_tree():
            shutil.rmtree(tmp / "mcopy", ignore_errors=True)
            (tmp / "mcopy").mkdir()
            subprocess.run(
                ["mcopy", "-s", "-n", "-i", str(img), "::/*", str(tmp / "mcopy")],
                check=True,
                env=ENV,
            )

        def ours_big():
            fat.open_filesystem(FileSource(img)).extract("/big.bin", tmp / "big")

        def mcopy_big():
            subprocess.run(
                ["mcopy", "-n", "-i", str(img), "::/big.bin", str(tmp / "big.m")],
                check=True,
                env=ENV,
            )

        w1, c1 = timed(ours_tree, repeat=1)
        w2, c2 = timed(mcopy_tree, child=True, repeat=1)
        same = all(
            (tmp / "ours" / p).read_bytes() == (tmp / "mcopy" / p).read_bytes()
            for p in ("big.bin", "folder 007/file 0003 with a long name.txt")
        )
        w3, c3 = timed(ours_big)
        w4, c4 = timed(mcopy_big, child=True)
        results["extract_tree"] = dict(
            bytes=total,
            ours_wall=w1,
            ours_cpu=c1,
            mcopy_wall=w2,
            mcopy_cpu=c2,
            ours_mib_s=total / MiB / w1,
            mcopy_mib_s=total / MiB / w2,
            same=same,
        )
        results["extract_big"] = dict(
            bytes=big,
            ours_wall=w3,
            ours_cpu=c3,
            mcopy_wall=w4,
            mcopy_cpu=c4,
            ours_mib_s=big / MiB / w3,
            mcopy_mib_s=big / MiB / w4,
        )
    print(
        f"extract tree ({total / MiB:.0f} MiB, {args.files + 1} files): "
        f"{total / MiB / w1:.0f} MiB/s ({w1:.2f} s); mcopy -s {total / MiB / w2:.0f} MiB/s "
        f"({w2:.2f} s); same bytes: {same}"
    )
    print(
        f"extract one {big // MiB} MiB file: {big / MiB / w3:.0f} MiB/s ({w3:.3f} s); "
        f"mcopy {big / MiB / w4:.0f} MiB/s ({w4:.3f} s)"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
