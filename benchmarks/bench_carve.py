#!/usr/bin/env python3
"""Carving against PhotoRec and foremost on one image, in one run.

    python benchmarks/bench_carve.py [--size MIB] [--groups N] [--workdir DIR] [--json FILE]

Builds a FAT32 image (mkfs.vfat, mtools): first filled with random bytes that are then
deleted (so free space is noise, as on a used disk), then ``N`` groups of the test files
(tests/carve_builder.py: JPEG, PNG, GIF, PDF, ZIP, DOCX, ODT, SQLite, gzip, bzip2, xz, WAV,
MP4, ELF, PE) copied in and deleted with mdel. Then, on the same image:

- vdinspect ``fs.carve()`` (free space) against ``photorec ... freespace``;
- vdinspect ``disk.carve()`` (whole disk) against ``photorec ... wholespace`` and
  ``foremost -q -t all`` (sector-aligned headers, as we do).

For each: files written, how many are byte-exact originals, how many are not (false
positives or cut/over-long files), wall seconds and MB/s of the bytes searched; the ratio
is ours/theirs in MB/s (best of ``--repeat`` runs each). Every tool writes its files,
so the times include writing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import vdinspect  # noqa: E402
from tests.carve_builder import make_files  # noqa: E402
from vdinspect.recovery.carve import file_name  # noqa: E402


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def build(work: Path, size_mib: int, groups: int) -> tuple[Path, set[str]]:
    img = work / "carve.img"
    img.unlink(missing_ok=True)
    subprocess.run(["mkfs.vfat", "-C", "-F", "32", str(img), str(size_mib * 1024)],
                   check=True, capture_output=True)
    noise = work / "noise.bin"
    noise.write_bytes(os.urandom((size_mib - 8) << 20))
    subprocess.run(["mcopy", "-i", str(img), str(noise), "::/"], check=True)
    subprocess.run(["mdel", "-i", str(img), "::/noise.bin"], check=True)
    noise.unlink()
    originals: set[str] = set()
    names = []
    src = work / "files"
    shutil.rmtree(src, ignore_errors=True)
    for k in range(groups):
        made = make_files(src / str(k), seed=k + 1)
        for name, content in made.items():
            target = src / f"{k}_{name}"
            target.write_bytes(content)
            names.append(target)
            originals.add(hashlib.sha256(content).hexdigest())
    subprocess.run(["mcopy", "-i", str(img), *map(str, names), "::/"], check=True)
    subprocess.run(["mdel", "-i", str(img), *[f"::/{p.name}" for p in names]], check=True)
    return img, originals


def tally(folder: Path, originals: set[str]) -> dict:
    outs = [p for p in folder.rglob("*") if p.is_file() and p.suffix not in (".xml", ".txt")]
    hashes = [sha(p) for p in outs]
    exact = {h for h in hashes if h in originals}
    return dict(written=len(outs), exact=len(exact), not_original=sum(h not in originals
                                                                         for h in hashes))


def best(fn, repeat: int) -> float:
    """The best wall seconds of ``repeat`` runs of ``fn`` (each writes its files afresh)."""
    walls = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t)
    return min(walls)


def run_photorec(img: Path, out: Path, mode: str, repeat: int) -> float:
    def once():
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        subprocess.run(["photorec", "/log", "/d", str(out / "r"), "/cmd", str(img),
                        f"partition_none,options,paranoid,fileopt,everything,enable,{mode},"
                        "search"], cwd=out, capture_output=True, check=False)

    return best(once, repeat)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=256, help="image size, MiB (default 256)")
    ap.add_argument("--groups", type=int, default=20, help="groups of test files")
    ap.add_argument("--workdir", type=Path, default=HERE / "work" / "carve")
    ap.add_argument("--repeat", type=int, default=3, help="runs per tool; the best counts")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    a.workdir.mkdir(parents=True, exist_ok=True)
    img, originals = build(a.workdir, a.size, a.groups)
    disk = vdinspect.open(img)
    fs = disk.filesystem()
    free = sum(n for _o, n in fs.free_ranges())
    results = {"image_bytes": img.stat().st_size, "free_bytes": free,
               "originals": len(originals)}
    rows = []

    def ours(name, fn, searched):
        out = a.workdir / name
        got = []

        def once():
            shutil.rmtree(out, ignore_errors=True)
            got[:] = [fn(out)]

        wall = best(once, a.repeat)
        res = got[0]
        r = dict(tool=name, seconds=wall, mbps=searched / wall / 1e6, **tally(out, originals),
                 rows=len(res), validated=sum(x["validated"] for x in res.rows),
                 validated_not_original=0)
        good = {hashlib.sha256((out / file_name(x)).read_bytes())
                .hexdigest() for x in res.rows if x["validated"]}
        r["validated_not_original"] = len(good - originals)
        rows.append(r)

    ours("vdinspect-free", lambda out: fs.carve(out), free)
    if shutil.which("photorec"):
        wall = run_photorec(img, a.workdir / "photorec-free", "freespace", a.repeat)
        rows.append(dict(tool="photorec-free", seconds=wall, mbps=free / wall / 1e6,
                         **tally(a.workdir / "photorec-free", originals)))
    ours("vdinspect-disk", lambda out: disk.carve(out), img.stat().st_size)
    if shutil.which("photorec"):
        wall = run_photorec(img, a.workdir / "photorec-whole", "wholespace", a.repeat)
        rows.append(dict(tool="photorec-whole", seconds=wall,
                         mbps=img.stat().st_size / wall / 1e6,
                         **tally(a.workdir / "photorec-whole", originals)))
    if shutil.which("foremost"):
        out = a.workdir / "foremost"

        def foremost():
            shutil.rmtree(out, ignore_errors=True)
            subprocess.run(["foremost", "-q", "-t", "all", "-i", str(img), "-o", str(out)],
                           capture_output=True, check=False)

        wall = best(foremost, a.repeat)
        rows.append(dict(tool="foremost", seconds=wall, mbps=img.stat().st_size / wall / 1e6,
                         **tally(out, originals)))
    results["rows"] = rows
    print(f"image {results['image_bytes'] >> 20} MiB, free {free >> 20} MiB, "
          f"{len(originals)} original files deleted")
    print(f"{'tool':16} {'written':>7} {'exact':>5} {'other':>5} {'valid':>5} "
          f"{'valid-FP':>8} {'s':>6} {'MB/s':>7}")
    for r in rows:
        print(f"{r['tool']:16} {r['written']:7} {r['exact']:5} {r['not_original']:5} "
              f"{r.get('validated', ''):>5} {r.get('validated_not_original', ''):>8} "
              f"{r['seconds']:6.2f} {r['mbps']:7.1f}")
    by = {r["tool"]: r for r in rows}
    for mine, theirs in (("vdinspect-free", "photorec-free"), ("vdinspect-disk", "photorec-whole"),
                         ("vdinspect-disk", "foremost")):
        if theirs in by:
            print(f"{mine} / {theirs}: {by[mine]['mbps'] / by[theirs]['mbps']:.2f}x MB/s")
    if a.json:
        a.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
