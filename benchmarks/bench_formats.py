#!/usr/bin/env python3
"""Every container format's reader against ``qemu-img convert -O raw``, in one run.

    python benchmarks/bench_formats.py [--size MIB] [--workdir DIR] [--reps N] [--reads N]

For each format qemu-img writes (VMDK monolithicSparse and streamOptimized, VHD dynamic,
VHDX dynamic, VDI dynamic, Parallels, QCOW v1, QCOW2 for reference) the script converts
one sparse raw source (half of its 1 MiB pieces hold random data, scattered) into that
format with qemu-img, then times ``Disk.to_raw`` (the API, in this process) against
``qemu-img convert -O raw`` (best of N after one warm-up, wall and CPU time) and checks the
two outputs are byte-identical. Targets: within 2x of qemu-img (streamOptimized: 3x).
With ``--reads N`` it also times N random 4 KiB ``Disk.read`` calls (fixed seed) against
the same reads given to one ``qemu-io`` process (``read`` commands on its stdin).
Outputs go to /dev/shm when it has room, so disk speed does not count.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from clock import cpu_children, cpu_self  # noqa: E402

import vdinspect  # noqa: E402

MiB = 1 << 20
FORMATS = [  # (label, qemu-img -O, -o options, target ratio)
    ("qcow2", "qcow2", "", 2.0),
    ("qcow (v1)", "qcow", "", 2.0),
    ("vmdk monolithicSparse", "vmdk", "subformat=monolithicSparse", 2.0),
    ("vmdk streamOptimized", "vmdk", "subformat=streamOptimized", 3.0),
    ("vhd dynamic", "vpc", "subformat=dynamic", 2.0),
    ("vhdx dynamic", "vhdx", "subformat=dynamic", 2.0),
    ("vdi dynamic", "vdi", "", 2.0),
    ("parallels", "parallels", "", 2.0),
]


def make_source(path: Path, size: int, seed: int = 7) -> None:
    rnd = random.Random(seed)
    pieces = sorted(rnd.sample(range(size // MiB), size // MiB // 2))
    with open(path, "wb") as f:
        f.truncate(size)
        for i in pieces:
            f.seek(i * MiB)
            f.write(rnd.randbytes(MiB))


def qemu_convert(src: Path, dst: Path) -> tuple[float, float]:
    c0, t0 = cpu_children(), time.perf_counter()
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(src), str(dst)], check=True)
    return time.perf_counter() - t0, cpu_children() - c0


def ours_convert(src: Path, dst: Path) -> tuple[float, float]:
    c0, t0 = cpu_self(), time.perf_counter()
    with vdinspect.open(src) as disk:
        disk.to_raw(dst)
    return time.perf_counter() - t0, cpu_self() - c0


def best(fn, src: Path, dst: Path, reps: int) -> tuple[float, float]:
    fn(src, dst)  # warm-up (page cache, imports)
    runs = []
    for _ in range(reps):
        dst.unlink(missing_ok=True)
        runs.append(fn(src, dst))
    return min(r[0] for r in runs), min(r[1] for r in runs)


def read_offsets(size: int, n: int, seed: int = 42) -> list[int]:
    rnd = random.Random(seed)
    return [rnd.randrange(size // 4096) * 4096 for _ in range(n)]


def ours_reads(img: Path, offsets: list[int]) -> float:
    with vdinspect.open(img) as disk:
        disk.read(0, 4096)  # open and warm the tables outside the clock
        t0 = time.perf_counter()
        for off in offsets:
            disk.read(off, 4096)
        return time.perf_counter() - t0


def qemu_reads(img: Path, fmt: str, offsets: list[int], work: Path) -> float:
    """qemu-io reading the same offsets, minus the time of a run with no reads (start-up)."""
    cmds = work / "reads.qemu-io"
    cmds.write_text("".join(f"read -q {off} 4096\n" for off in offsets))
    empty = work / "empty.qemu-io"
    empty.write_text("")

    def once(f: Path) -> float:
        t0 = time.perf_counter()
        with open(f) as stdin:
            subprocess.run(["qemu-io", "-f", fmt, "-r", str(img)], stdin=stdin, check=True,
                           stdout=subprocess.DEVNULL)
        return time.perf_counter() - t0

    return max(1e-9, min(once(cmds) for _ in range(2)) - min(once(empty) for _ in range(2)))


def same(a: Path, b: Path) -> bool:
    return subprocess.run(["cmp", "-s", str(a), str(b)]).returncode == 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512, help="virtual size, MiB (default 512)")
    ap.add_argument("--workdir", default=str(HERE / "work" / "formats"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--reads", type=int, default=0, help="random 4 KiB reads per format")
    ap.add_argument("--only", default="", help="formats whose label contains this")
    args = ap.parse_args(argv)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    size = args.size * MiB
    src = work / f"source-{args.size}M.raw"
    if not src.exists():
        make_source(src, size)
    shm = Path("/dev/shm")
    outdir = Path(tempfile.mkdtemp(dir=shm if shm.is_dir() and
                                   shutil.disk_usage(shm).free > 3 * size else work))
    print(f"source: {args.size} MiB virtual, {args.size // 2} MiB of data in scattered "
          f"1 MiB pieces; outputs in {outdir}")
    print(f"{'format':<24} {'ours s':>8} {'qemu s':>8} {'ratio':>6} {'ours cpu':>9} "
          f"{'qemu cpu':>9} {'cpu ratio':>9} {'target':>7}  same")
    rows = []
    try:
        for label, fmt, opts, target in FORMATS:
            if args.only not in label:
                continue
            img = work / f"bench-{args.size}M.{label.replace(' ', '-').replace('(', '').replace(')', '')}"
            if not img.exists():
                cmd = ["qemu-img", "convert", "-O", fmt] + (["-o", opts] if opts else [])
                subprocess.run(cmd + [str(src), str(img)], check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            q_out, o_out = outdir / "qemu.raw", outdir / "ours.raw"
            qw, qc = best(qemu_convert, img, q_out, args.reps)
            ow, oc = best(ours_convert, img, o_out, args.reps)
            ok = same(q_out, o_out)
            q_out.unlink()
            o_out.unlink()
            rows.append((label, ow, qw, oc, qc, target, ok))
            print(f"{label:<24} {ow:8.3f} {qw:8.3f} {ow / qw:6.2f} {oc:9.3f} {qc:9.3f} "
                  f"{oc / qc if qc else float('nan'):9.2f} {target:6.1f}x  {'yes' if ok else 'NO'}",
                  flush=True)
            if args.reads:
                offsets = read_offsets(size, args.reads)
                ours = min(ours_reads(img, offsets) for _ in range(args.reps))
                qemu = qemu_reads(img, "vpc" if fmt == "vpc" else fmt, offsets, outdir)
                print(f"{'':<24} {args.reads} random 4 KiB reads: ours {args.reads / ours:,.0f}/s, "
                      f"qemu-io {args.reads / qemu:,.0f}/s, ratio {ours / qemu:.2f}", flush=True)
    finally:
        shutil.rmtree(outdir, ignore_errors=True)
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    return 0 if all(r[-1] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
