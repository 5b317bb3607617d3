#!/usr/bin/env python3
"""vdinspect's NTFS driver against The Sleuth Kit, side by side, in one run on one machine.

    python benchmarks/bench_ntfs.py [--workdir DIR] [--files N] [--json FILE] [--profile]

1. builds (once, cached in the work dir) a 1 GiB NTFS volume with ``mkntfs -Q`` and fills it
   through the ntfs-3g FUSE driver: N small files (default 20000) in 200 directories, a
   256 MiB file, and a 32 MiB file in an LZNT1-compressed directory. Copying 20k files
   with ``ntfscp`` would start 20k processes (each opening the volume): minutes; one FUSE
   mount writes them in under 20 s here. Without FUSE the script stops and says so.
2. ``NTFS.files()`` (fresh open each time: boot sector, MFT scan, DataFrame) against
   ``fls -r -p`` (best of 3 after a warm-up): the ratio ours / fls (target <= 3);
3. the per-directory index walk (the base class's walk) for comparison;
4. extraction throughput: the 256 MiB file and the 32 MiB compressed file read through
   ``FileSystem.open`` in 1 MiB reads, against ``icat`` writing to /dev/null;
5. when wimlib's ``wimcapture`` is installed: WOF decoding speed (XPRESS 4K/16K, LZX) on
   chunks wimlib compressed (WIM resources use WOF's chunk layout).

Timings are wall-clock and CPU (user + system, children included for the tools), with the
image in the page cache; on a busy machine the CPU ratio is the steadier figure.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

MiB = 1 << 20
VERSION = 1  # bump to rebuild the cached image after changing the builder


def build(work: Path, nfiles: int) -> Path:
    img = work / f"ntfs-{nfiles}.img"
    stamp = img.with_suffix(".json")
    want = {"version": VERSION, "files": nfiles}
    if img.exists() and stamp.exists() and json.loads(stamp.read_text()) == want:
        return img
    from tests import ntfs_builder as nb

    work.mkdir(parents=True, exist_ok=True)
    if not nb.fuse_works(work):
        sys.exit("ntfs-3g cannot mount here (needs /dev/fuse and root): cannot build the image")
    t = time.perf_counter()
    nb.mkntfs(img, 1 << 30, label="bench")
    with nb.mounted(img, work / "mnt", "big_writes") as m:
        for d in range(200):
            (m / f"dir{d:03d}").mkdir()
        for i in range(nfiles):
            (m / f"dir{i % 200:03d}" / f"file_{i:06d}.txt").write_bytes(
                b"x" * (100 + (i * 37) % 3000)
            )
        block = os.urandom(MiB)
        with open(m / "big.bin", "wb") as f:
            for _ in range(256):
                f.write(block)
        (m / "comp").mkdir()
        import struct

        a = struct.unpack("<I", os.getxattr(m / "comp", "system.ntfs_attrib"))[0]
        os.setxattr(m / "comp", "system.ntfs_attrib", struct.pack("<I", a | 0x800))
        text = b"".join(b"line %08d of a compressible file\n" % i for i in range(32 * MiB // 34))
        (m / "comp" / "text.txt").write_bytes(text)
    stamp.write_text(json.dumps(want))
    print(f"built {img} in {time.perf_counter() - t:.1f} s")
    return img


def best(fn, n: int = 3) -> float:
    """Best wall-clock time of ``n`` runs after a warm-up."""
    fn()  # warm-up
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def best_cpu(fn, n: int = 3) -> float:
    """Best CPU time (user + system, this process and its children) of ``n`` runs."""
    fn()
    times = []
    for _ in range(n):
        a, c = time.process_time(), resource.getrusage(resource.RUSAGE_CHILDREN)
        fn()
        d = resource.getrusage(resource.RUSAGE_CHILDREN)
        times.append(
            time.process_time() - a + (d.ru_utime - c.ru_utime) + (d.ru_stime - c.ru_stime)
        )
    return min(times)


def wof_speeds(work: Path, results: dict) -> None:
    """WOF decoding speed on chunks compressed by wimlib (the same chunk layout as WOF)."""
    from tests import ntfs_builder as nb
    from tests.test_ntfs import _wof_payload
    from vdinspect.filesystems.ntfs.wof import WofSource
    from vdinspect.io import MemorySource

    data = _wof_payload() * 4
    src = work / "wof-src"
    src.mkdir(parents=True, exist_ok=True)
    (src / "payload").write_bytes(data)
    for comp, chunk, algo in (("XPRESS", 4096, 0), ("XPRESS", 16384, 3), ("LZX", 32768, 1)):
        wim = work / f"wof-{comp}{chunk}.wim"
        wim.unlink(missing_ok=True)
        nb.run("wimcapture", src, wim, f"--compress={comp}", f"--chunk-size={chunk}")
        stream = nb.wim_resource(wim, len(data))[1]
        t = best(
            lambda s=stream, a=algo: WofSource(MemorySource(s), len(data), a).read(0, len(data)), 1
        )
        label = f"wof_{comp.lower()}{chunk // 1024}k_MiBps"
        results[label] = len(data) / MiB / t
        print(
            f"  WOF {comp:6s} {chunk // 1024:2d}K chunks ({len(data) / MiB:.1f} MiB): "
            f"{results[label]:6.2f} MiB/s"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", type=Path, default=HERE / "work")
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    for tool in ("mkntfs", "ntfs-3g", "fls", "icat"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is needed")
    img = build(args.workdir, args.files)

    from vdinspect.filesystems.base import FileSystem
    from vdinspect.filesystems.ntfs import open_filesystem
    from vdinspect.io import FileSource

    def ours():
        fs = open_filesystem(FileSource(str(img)))
        return fs.files()

    def index_walk():
        fs = open_filesystem(FileSource(str(img)))
        return [e for e in FileSystem.iter_entries(fs, "/")]

    def fls():
        subprocess.run(["fls", "-r", "-p", str(img)], stdout=subprocess.DEVNULL, check=True)

    rows = len(ours())
    fls_lines = subprocess.run(
        ["fls", "-r", "-p", str(img)], capture_output=True, text=True
    ).stdout.count("\n")
    t_fls = best(fls)
    t_ours = best(ours)
    c_fls = best_cpu(fls)
    c_ours = best_cpu(ours)
    t_walk = best(index_walk, 1)
    results = {
        "files": args.files,
        "rows": rows,
        "fls_lines": fls_lines,
        "fls_s": t_fls,
        "files_s": t_ours,
        "ratio": t_ours / t_fls,
        "fls_cpu_s": c_fls,
        "files_cpu_s": c_ours,
        "cpu_ratio": c_ours / c_fls,
        "index_walk_s": t_walk,
        "load_average": os.getloadavg()[0],
    }

    fs = open_filesystem(FileSource(str(img)))

    def read_all(path: str) -> int:
        n = 0
        with fs.open(path) as f:
            while chunk := f.read(MiB):
                n += len(chunk)
        return n

    for path, label in (("/big.bin", "plain"), ("/comp/text.txt", "lznt1")):
        e = fs.lookup(path)
        size = e.size

        def icat(addr=e.extra["tsk_addr"]):
            subprocess.run(["icat", str(img), addr], stdout=subprocess.DEVNULL, check=True)

        fs._files.clear()
        t_read = best(lambda p=path: read_all(p), 2)
        t_icat = best(icat, 2)
        results[f"{label}_MiB"] = size / MiB
        results[f"{label}_ours_MiBps"] = size / MiB / t_read
        results[f"{label}_icat_MiBps"] = size / MiB / t_icat

    print(f"NTFS volume: {args.files} files, {rows} rows (fls prints {fls_lines} lines)")
    print(f"  files()          {t_ours:7.3f} s wall, {c_ours:6.3f} s CPU")
    print(f"  fls -r -p        {t_fls:7.3f} s wall, {c_fls:6.3f} s CPU")
    print(
        f"  ratio ours/fls   {t_ours / t_fls:7.2f} wall, {c_ours / c_fls:6.2f} CPU "
        f"(target <= 3; load average {os.getloadavg()[0]:.1f})"
    )
    print(f"  index walk       {t_walk:7.3f} s   (directory by directory, no fast path)")
    for label in ("plain", "lznt1"):
        print(
            f"  read {label:6s} {results[f'{label}_MiB']:6.0f} MiB: "
            f"ours {results[f'{label}_ours_MiBps']:7.1f} MiB/s, "
            f"icat {results[f'{label}_icat_MiBps']:7.1f} MiB/s"
        )
    if shutil.which("wimcapture"):
        wof_speeds(args.workdir, results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if args.profile:
        cProfile.runctx("ours()", globals(), {"ours": ours}, str(args.workdir / "ntfs.prof"))
        pstats.Stats(str(args.workdir / "ntfs.prof")).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
