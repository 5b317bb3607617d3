"""Issue 23's scale rows (``bench_summary.py --scale``), each a child process with its
peak RSS: a 100 GiB sparse VMDK whose disk is an ext4 holding 1 GiB and then ``gib`` GiB of
files, converted, mapped and listed against qemu-img and fls; ``files()`` of an ext4 and an
NTFS with a tenth of and then ``nfiles`` files against fls -r -p. Big outputs are deleted
after each row."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from summary_kit import (
    OURS,
    GiB,
    MiB,
    add,
    best_interleaved,
    child,
    ext_image,
    have,
    log,
)

SCALE_PIECE = 64 * MiB  # one random file debugfs writes under many names


def scale_disk(work: Path, gib: int) -> tuple[Path, float]:
    """A 100 GiB sparse VMDK (monolithicSparse, so fls reads it too) whose whole disk is an
    ext4 holding ``gib`` GiB of files: mke2fs on a sparse raw file, debugfs ``write`` of one
    64 MiB random file under 16 names a GiB in ``gib`` folders (top folders land in
    different block groups), qemu-img convert; the raw file is deleted. Returns the image
    and its build seconds (0 when cached)."""
    img = work / f"scale-100G-{gib}G.vmdk"
    if img.exists():
        return img, 0.0
    t = time.perf_counter()
    src, raw, script = work / "scale-piece.bin", work / "scale-src.raw", work / "scale.debugfs"
    if not src.exists() or src.stat().st_size != SCALE_PIECE:
        src.write_bytes(random.Random(9).randbytes(SCALE_PIECE))
    try:
        with open(raw, "wb") as f:
            f.truncate(100 * GiB)
        subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", "-L", "scale", str(raw)],
                       check=True, capture_output=True)
        cmds = []
        for d in range(gib):
            cmds.append(f"mkdir d{d:03d}")
            cmds += [f"write {src} d{d:03d}/f{i:02d}.bin" for i in range(GiB // SCALE_PIECE)]
        script.write_text("\n".join(cmds) + "\n")
        for cmd in (["debugfs", "-w", "-f", script, raw], ["qemu-img", "convert", "-f", "raw",
                    "-O", "vmdk", "-o", "subformat=monolithicSparse", raw, img]):
            subprocess.run([str(c) for c in cmd], check=True, capture_output=True)
    finally:
        raw.unlink(missing_ok=True)
    log(f"  built {img.name} in {time.perf_counter() - t:.0f} s")
    return img, time.perf_counter() - t


def pair(ours: list, peer: list, ours_out: Path, peer_out: Path) -> dict:
    """Two commands interleaved (warm-up, one round), their stdout kept for the checks."""
    def run(cmd: list, path: Path):
        def go():
            with open(path, "wb") as f:
                return child(cmd, stdout=f)
        return go
    return best_interleaved({"ours": run(ours, ours_out), "peer": run(peer, peer_out)}, 1)


def rows_scale_disk(work: Path, gib: int) -> None:
    """Convert, map and list the 100 GiB image with ``gib`` GiB of data, each a child
    process (peak RSS) against qemu-img convert, qemu-img map and fls -r -p; the output is
    checked against the image (qemu-img compare), the maps' data bytes and the listings'
    counts against each other."""
    img, built = scale_disk(work, gib)
    label = f"100 GiB VMDK, {gib} GiB data"
    out, peer_out = work / "scale-out.raw", work / "scale-peer.raw"
    try:
        def ours():
            out.unlink(missing_ok=True)
            return child(OURS + ["convert", img, out])

        def peer():  # one output on disk at a time: ours is checked after the last round
            out.unlink(missing_ok=True)
            r = child(["qemu-img", "convert", "-O", "raw", img, peer_out])
            peer_out.unlink()
            return r

        r = best_interleaved({"peer": peer, "ours": ours}, 1)
        same = subprocess.run(["qemu-img", "compare", "-q", "-F", "raw", str(img), str(out)]
                              ).returncode == 0
        note = (f"output = image (qemu-img compare), {out.stat().st_blocks * 512 / GiB:.1f}"
                " GiB on disk" if same else "OUTPUT DIFFERS")
        note += f"; image built in {built:.0f} s" if built else ""
        out.unlink()
        add(f"convert (a process), {label}", r["ours"], "qemu-img convert", r["peer"],
            "<= 1.2x, constant memory", limit=1.2, note=note)

        om, pm = work / "scale-map.json", work / "scale-qmap.json"
        r = pair(OURS + ["map", "--json", img], ["qemu-img", "map", "--output=json", img], om, pm)
        ours_data = sum(e["length"] for e in json.loads(om.read_text()) if e["state"] == "data")
        peer_data = sum(e["length"] for e in json.loads(pm.read_text()) if e["data"])
        add(f"`vdinspect map --json` (a process), {label}", r["ours"], "qemu-img map",
            r["peer"], "constant memory", note=f"data {ours_data / GiB:.2f} GiB, qemu-img "
            f"{peer_data / GiB:.2f} GiB" + ("" if ours_data == peer_data else " DIFFERS"))

        ol, pl = work / "scale-ls.json", work / "scale-fls.txt"
        r = pair(OURS + ["ls", "-r", "--json", img], ["fls", "-r", "-p", img], ol, pl)
        listed = json.loads(ol.read_text())
        ours_bin = sum(1 for e in listed if e["path"].endswith(".bin"))
        peer_bin = sum(1 for line in pl.read_text().splitlines() if line.endswith(".bin"))
        add(f"`ls -r --json` (a process), {label}", r["ours"], "fls -r -p", r["peer"],
            "<= 2x, constant memory", limit=2.0, note=f"{len(listed)} entries, "
            f"{ours_bin} .bin files (fls {peer_bin}, written {gib * GiB // SCALE_PIECE})")
        for p in (om, pm, ol, pl):
            p.unlink()
    finally:
        out.unlink(missing_ok=True)
        peer_out.unlink(missing_ok=True)
        img.unlink(missing_ok=True)


def ntfs_scale_image(work: Path, nfiles: int) -> tuple[Path | None, float]:
    """An NTFS volume written by the ntfs-3g FUSE driver after mkntfs -Q: ``nfiles`` files
    of 0 to 199 bytes (resident: the volume holds the MFT, not 4 KiB a file) in folders
    of 1000. Cached in ``work`` (a stamp file says it is complete). Returns the image and
    its build seconds (0 when cached); None without mkntfs, ntfs-3g or FUSE."""
    img = work / f"ntfs-scale-{nfiles}.img"
    stamp = img.with_suffix(".done")
    if img.exists() and stamp.exists():
        return img, 0.0
    try:
        from tests import ntfs_builder as nb
    except ImportError:
        return None, 0.0
    if not (have("mkntfs", "ntfs-3g") and nb.fuse_works(work)):
        return None, 0.0
    t = time.perf_counter()
    size = max(1 * GiB, nfiles * 2048 + 512 * MiB)  # 1 KiB MFT record + index per file
    nb.mkntfs(img, size, label="scale")
    with nb.mounted(img, work / "ntfs-scale.mnt", "big_writes", "noatime") as m:
        for d in range(-(-nfiles // 1000)):
            (m / f"d{d:04d}").mkdir()
            for i in range(d * 1000, min(nfiles, d * 1000 + 1000)):
                (m / f"d{d:04d}" / f"file {i:07d}.txt").write_bytes(b"n" * (i * 7919 % 200))
    stamp.write_text(f"{nfiles}\n")
    log(f"  ntfs-3g wrote {nfiles} files in {time.perf_counter() - t:.0f} s")
    return img, time.perf_counter() - t


def row_scale_files(label: str, img: Path, built: float, nfiles: int) -> None:
    """``files()`` (open included) in a child process against ``fls -r -p``: time, peak
    RSS, and the row count beside fls's line count."""
    code = ("import sys, vdinspect\nd = vdinspect.open(sys.argv[1])\n"
            "fs = d.filesystem(d.filesystem_volumes()[0].key)\nf = fs.files()\n"
            "print(len(f), int(f['path'].str.endswith('.txt').sum()))")
    got, fl = img.with_suffix(".files.txt"), img.with_suffix(".fls.txt")
    r = pair([sys.executable, "-c", code, img], ["fls", "-r", "-p", img], got, fl)
    rows, txt = got.read_text().split()
    fls_txt = sum(1 for line in fl.read_text().splitlines() if line.endswith(".txt"))
    note = f"{int(rows):,} rows, {int(txt):,} .txt files (fls {fls_txt:,}, written {nfiles:,})"
    note += f"; image built in {built:.0f} s" if built else ""
    for p in (got, fl):
        p.unlink()
    add(f"`files()` (a process), {label}", r["ours"], "fls -r -p", r["peer"], "<= 1.5x",
        limit=1.5, note=note)


def scratch(need: int) -> Path | None:
    """A folder in /dev/shm for mke2fs -d's tree if it has twice ``need`` bytes free."""
    shm = Path("/dev/shm")
    if shm.is_dir() and shutil.disk_usage(shm).free > 2 * need:
        return Path(tempfile.mkdtemp(dir=shm, prefix="vdscale-"))
    return None


def rows_scale(work: Path, gib: int, nfiles: int, keep: bool) -> None:
    """The scale rows: the 100 GiB image with 1 GiB and then ``gib`` GiB of data (peak
    RSS should not move), then ``files()`` of ext4 and NTFS with ``nfiles // 10`` and then
    ``nfiles`` files (time should grow tenfold, not more). Each big output is deleted
    after its row; the file-count images too unless ``keep``."""
    for g in sorted({1, gib}):
        rows_scale_disk(work, g)
    for n in sorted({max(1, nfiles // 10), nfiles}):
        t = time.perf_counter()
        fresh = not (work / f"ext4-{n}.img").exists()
        tmp = None if not fresh else scratch(n * 6 * 1024)
        try:
            ext = ext_image(work, n, folders=max(200, n // 1000), trees=tmp)
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
        row_scale_files(f"ext4 with {n:,} files", ext, time.perf_counter() - t if fresh
                        else 0.0, n)
        nt, built = ntfs_scale_image(work, n)
        if nt is not None:
            row_scale_files(f"NTFS with {n:,} files", nt, built, n)
        for img in ([] if keep else [ext, nt, nt and nt.with_suffix(".done")]):
            if img is not None:
                img.unlink()
