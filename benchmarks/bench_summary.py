#!/usr/bin/env python3
"""Issue 23's table in one run: every row measured against its peer, tools interleaved.

    python benchmarks/bench_summary.py [--quick] [--scale] [--peers DIR] [--workdir DIR]

Builds its images (qemu-img, mke2fs -d, mkfs.fat + mcopy, the NTFS builder of
tests/ntfs_builder.py through ntfs-3g), then for each row runs vdinspect and the peer in
turns (best of N after a warm-up; wall and CPU time, user + system; a child process's
CPU and peak RSS from ``os.wait4``) and prints a Markdown table: measure, vdinspect, peer,
ratio (vdinspect time / peer time: above 1 is slower), goal, met. The load average is
printed before and after. Peers: qemu-img, qemu-io, The Sleuth Kit (fls, icat), and the
Python bindings of libyal (pyqcow, pyvmdk, pyvhdi for VHD and VHDX, pyphdi for Parallels
through a bundle made by ``phdi_bundle``) and dissect.hypervisor when ``--peers DIR``
(default /tmp/peers) holds them (``pip install --target DIR libqcow-python
libvmdk-python libvhdi-python libphdi-python dissect.hypervisor``: oracles, never
dependencies); without them qemu-io is the read peer. Random 4 KiB and sequential 1 MiB
reads are measured for QCOW2, VMDK, VHD, VHDX, VDI and Parallels, after every reader's
1 MiB steps over the whole image are found equal to ``qemu-img convert -O raw``.
``--scale`` adds issue 23's scale rows, each a child process with its
peak RSS: a 100 GiB sparse VMDK whose disk is an ext4 holding 1 GiB and then
``--scale-gib`` GiB of files (mke2fs + debugfs write), converted (qemu-img convert),
mapped (qemu-img map) and listed (fls -r -p); then ``files()`` of an ext4 (mke2fs -d) and
an NTFS (mkntfs + ntfs-3g) with a tenth of and then ``--scale-files`` files, against
fls -r -p; build times in the notes, big outputs deleted after each row (the file-count
images kept with ``--scale-keep``); full size and commands in docs/benchmarks.md.
vdinspect is the tree this script sits in.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from summary_kit import (  # noqa: E402
    HERE,
    OURS,
    ROOT,
    ROWS,
    GiB,
    MiB,
    add,
    best_interleaved,
    child,
    converted,
    ext_image,
    fat_image,
    have,
    inproc,
    log,
    ntfs_image,
    row_listing,
    sparse_source,
)

import vdinspect  # noqa: E402  (the tree summary_kit put first on sys.path)

# --- rows -------------------------------------------------------------------------------------


def row_info(work: Path, reps: int) -> None:
    img = work / "info.qcow2"
    if not img.exists():
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(img), "4G"], check=True)
    r = best_interleaved({"ours": lambda: child(OURS + ["info", img]),
                          "peer": lambda: child(["qemu-img", "info", img])}, reps)
    add("`vdinspect info` (whole process)", r["ours"], "qemu-img info", r["peer"], "<= 0.1 s",
        absolute=0.1)


PHDI_XML = """<?xml version='1.0' encoding='UTF-8'?>
<Parallels_disk_image Version="1.0">
 <Disk_Parameters><Disk_size>{n}</Disk_size><Cylinders>{cyl}</Cylinders>
  <PhysicalSectorSize>4096</PhysicalSectorSize><LogicSectorSize>512</LogicSectorSize>
  <Heads>16</Heads><Sectors>32</Sectors><Padding>0</Padding></Disk_Parameters>
 <StorageData><Storage><Start>0</Start><End>{n}</End><Blocksize>{bs}</Blocksize>
  <Image><GUID>{{{g}}}</GUID><Type>Compressed</Type><File>disk.hds</File></Image>
 </Storage></StorageData>
 <Snapshots><Shot><GUID>{{{g}}}</GUID>
  <ParentGUID>{{00000000-0000-0000-0000-000000000000}}</ParentGUID></Shot></Snapshots>
</Parallels_disk_image>
"""


def phdi_bundle(img: Path) -> Path:
    """A ``.hdd`` bundle libphdi opens, holding a copy of the qemu-written ``img``: libphdi
    reads only the first header version ("WithoutFreeSpace", BAT entries in sectors), so
    the copy has that magic and its BAT entries (clusters in "WithouFreSpacExt", as QEMU
    writes them) times the sectors per cluster (QEMU docs/interop/parallels.txt); the
    descriptor (prl-xml) names it. Returns the DiskDescriptor.xml."""
    import struct

    bundle = img.with_name(img.name + ".hdd")
    xml = bundle / "DiskDescriptor.xml"
    if xml.exists():
        return xml
    bundle.mkdir(exist_ok=True)
    hds = bundle / "disk.hds"
    shutil.copyfile(img, hds)
    with open(hds, "r+b") as f:
        head = f.read(64)
        if head[:16] != b"WithouFreSpacExt":
            raise SystemExit(f"{img}: not the header version QEMU writes")
        tracks, entries = struct.unpack_from("<II", head, 28)
        sectors = struct.unpack_from("<Q", head, 36)[0]
        bat = [v * tracks for v in struct.unpack(f"<{entries}I", f.read(4 * entries))]
        f.seek(0)
        f.write(b"WithoutFreeSpace")
        f.seek(64)
        f.write(struct.pack(f"<{entries}I", *bat))
    xml.write_text(PHDI_XML.format(n=sectors, cyl=sectors // 512, bs=tracks,
                                   g="5fbaabe3-6958-40ff-92a7-860e329aab41"))
    return xml


class Peers:
    """Reading peers available here: name -> (open(path) -> reader, read(reader, off, n))."""

    def __init__(self, where: str) -> None:
        self.mods: dict = {}
        if where and Path(where).is_dir():
            sys.path.append(where)  # last: a peer never shadows anything of ours
        for name in ("pyqcow", "pyvmdk", "pyvhdi", "pyphdi"):
            try:
                self.mods[name] = __import__(name)
            except ImportError:
                pass
        try:
            from dissect.hypervisor.disk import hdd, qcow2, vdi, vhd, vhdx, vmdk

            self.mods["dissect"] = dict(qcow2=qcow2.QCow2, vmdk=vmdk.VMDK, vhd=vhd.VHD,
                                        vhdx=vhdx.VHDX, vdi=vdi.VDI, parallels=hdd.HDS)
        except ImportError:
            pass

    def readers(self, fmt: str, img: Path) -> dict:
        """name -> read(offset, length) for the in-process peers of ``fmt``."""
        out = {}
        if fmt == "qcow2" and "pyqcow" in self.mods:
            f = self.mods["pyqcow"].file()
            f.open(str(img))
            out["libqcow"] = lambda o, n, f=f: f.read_buffer_at_offset(n, o)
        if fmt == "vmdk" and "pyvmdk" in self.mods:
            h = self.mods["pyvmdk"].handle()
            h.open(str(img))
            h.open_extent_data_files()
            out["libvmdk"] = lambda o, n, h=h: h.read_buffer_at_offset(n, o)
        if fmt in ("vhd", "vhdx") and "pyvhdi" in self.mods:
            v = self.mods["pyvhdi"].file()
            v.open(str(img))
            out["libvhdi"] = lambda o, n, v=v: v.read_buffer_at_offset(n, o)
        if fmt == "parallels" and "pyphdi" in self.mods:
            p = self.mods["pyphdi"].handle()
            p.open(str(phdi_bundle(img)))
            p.open_extent_data_files()
            out["libphdi"] = lambda o, n, p=p: p.read_buffer_at_offset(n, o)
        cls = self.mods.get("dissect", {}).get(fmt)
        if cls is not None:
            obj = cls(open(img, "rb"))
            s = obj.open() if hasattr(obj, "open") else obj

            def rd(o, n, s=s):
                s.seek(o)
                return s.read(n)
            out["dissect"] = rd
        return out


def qemu_io_reads(img: Path, fmt: str, offsets: list[int], length: int, work: Path):
    """qemu-io reading ``offsets`` from one process's stdin, minus an empty run's start-up."""
    cmds, empty = work / "reads.qemu-io", work / "empty.qemu-io"
    cmds.write_text("".join(f"read -q {o} {length}\n" for o in offsets))
    empty.write_text("")

    def once():
        runs = []
        for f in (cmds, empty):
            with open(f) as stdin:
                runs.append(child(["qemu-io", "-f", fmt, "-r", img], stdin=stdin))
        return max(1e-9, runs[0][0] - runs[1][0]), max(0.0, runs[0][1] - runs[1][1]), 0
    return once


def same_as_qemu_img(img: Path, readers: dict, label: str, work: Path) -> None:
    """Every reader's 1 MiB steps over the whole image (the last one short) equal the
    bytes ``qemu-img convert -O raw`` writes; SystemExit naming the first that differs."""
    raw = work / f"check-{label}.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(img), str(raw)], check=True,
                   capture_output=True)
    try:
        with open(raw, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            for o in range(0, size, MiB):
                want = f.read(MiB)
                for name, rd in readers.items():
                    if rd(o, len(want)) != want:
                        raise SystemExit(f"{name} reads {label} unlike qemu-img at {o}")
    finally:
        raw.unlink()


def rows_reads(work: Path, size: int, nreads: int, reps: int, peers: Peers) -> None:
    src = work / f"source-{size // MiB}M.raw"
    sparse_source(src, size)
    formats = [("qcow2", "qcow2", []), ("vmdk", "vmdk", ["-o", "subformat=monolithicSparse"]),
               ("vhd", "vpc", ["-o", "subformat=dynamic"]), ("vhdx", "vhdx", []),
               ("vdi", "vdi", []), ("parallels", "parallels", [])]
    rnd = random.Random(42)
    offsets = [rnd.randrange(size // 4096) * 4096 for _ in range(nreads)]
    truth = open(src, "rb")
    for label, fmt, opts in formats:
        img = converted(src, work / f"bench-{size // MiB}M.{label}", fmt, *opts)
        disk = vdinspect.open(str(img))
        readers = dict(vdinspect=disk.read, **peers.readers(label, img))
        for name, rd in readers.items():  # every reader agrees with the source it came from
            for o in offsets[:50]:
                truth.seek(o)
                if rd(o, 4096) != truth.read(4096):
                    raise SystemExit(f"{name} reads {label} wrongly at {o}")

        def loop(rd, offs=offsets):
            def go():
                for o in offs:
                    rd(o, 4096)
            return lambda: inproc(go)
        fns = {k: loop(v) for k, v in readers.items()}
        fns["qemu-io"] = qemu_io_reads(img, fmt, offsets, 4096, work)
        r = best_interleaved(fns, reps)
        peer = min((k for k in r if k != "vdinspect"), key=lambda k: r[k][0])
        add(f"random 4 KiB reads, {label}", r["vdinspect"], peer, r[peer], "<= 1x (rate >= 1x)",
            limit=1.0, rate=nreads,
            note=", ".join(f"{k} {nreads / r[k][0]:,.0f}/s" for k in r if k != "vdinspect"))
        seq = list(range(0, size, MiB))
        same_as_qemu_img(img, readers, label, work)
        fns = {k: loop(lambda o, n, rd=v: rd(o, MiB), seq) for k, v in readers.items()}
        fns["qemu-io"] = qemu_io_reads(img, fmt, seq, MiB, work)
        r = best_interleaved(fns, reps)
        peer = min((k for k in r if k != "vdinspect"), key=lambda k: r[k][0])
        add(f"sequential 1 MiB reads, {label} ({size // MiB} MiB)", r["vdinspect"], peer,
            r[peer], "<= 1x", limit=1.0,
            note=", ".join(f"{k} {size / r[k][0] / GiB:.1f} GiB/s" for k in r) +
            "; every reader's bytes = qemu-img convert's")
        disk.close()


def row_convert(label: str, img: Path, out: Path, reps: int, goal: float) -> None:
    def ours():
        out.unlink(missing_ok=True)
        return child(OURS + ["convert", img, out])

    def peer():
        out.unlink(missing_ok=True)
        return child(["qemu-img", "convert", "-O", "raw", img, out])

    r = best_interleaved({"ours": ours, "peer": peer}, reps)
    ours()
    ok = subprocess.run(["qemu-img", "compare", "-q", "-F", "raw", str(img), str(out)]
                        ).returncode == 0
    out.unlink(missing_ok=True)
    add(f"convert (`vdinspect convert`, a process), {label}", r["ours"], "qemu-img convert",
        r["peer"], f"<= {goal}x", limit=goal, note="output = image (qemu-img compare)"
        if ok else "OUTPUT DIFFERS")


def row_allocation(img: Path, label: str, reps: int) -> None:
    def ours():
        with vdinspect.open(str(img)) as disk:
            disk.allocation()
    r = best_interleaved({"ours": lambda: inproc(ours),
                          "peer": lambda: child(["qemu-img", "map", "--output=json", img])},
                         reps)
    add(f"`allocation()` (open included), {label}", r["ours"], "qemu-img map", r["peer"],
        "< 0.2 s", absolute=0.2)


def big_sparse_qcow2(path: Path, virtual: int, extents: int) -> Path:
    """``extents`` 1-4 cluster extents of 4 KiB data spread over ``virtual`` bytes."""
    if path.exists():
        return path
    rng = random.Random(6)
    span = virtual // extents
    raw = path.with_name(path.name + ".src.raw")
    with open(raw, "wb") as f:
        f.truncate(virtual)
        for i in range(extents):
            off = i * span + rng.randrange((span - 4 * 65536) // 65536) * 65536
            for j in range(rng.randint(1, 4)):
                f.seek(off + j * 65536)
                f.write(rng.randbytes(4096))
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(path)],
                   check=True, capture_output=True)
    raw.unlink()
    return path


def row_extract(work: Path, size: int, reps: int) -> None:
    img = work / f"ext4-big-{size // MiB}M.img"
    if not img.exists():
        tree = work / "big-tree"
        tree.mkdir(exist_ok=True)
        block = random.Random(3).randbytes(MiB)
        with open(tree / "big.bin", "wb") as f:
            for k in range(size // MiB):
                f.write(block[k % 7 :] + block[: k % 7])
        subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", "-d", str(tree), str(img),
                        f"{size // MiB * 9 // 8 + 128}M"], check=True, capture_output=True)
        shutil.rmtree(tree)
    ino = next(line.split()[1].rstrip(":") for line in subprocess.run(
        ["fls", "-p", str(img)], check=True, capture_output=True, text=True).stdout.splitlines()
        if line.endswith("big.bin"))
    dest = Path(tempfile.mkdtemp(dir=work))
    out = dest / "icat.bin"

    def ours():
        shutil.rmtree(dest / "x", ignore_errors=True)
        return child(OURS + ["extract", img, "/big.bin", dest / "x"])

    def peer():
        with open(out, "wb") as f:
            return child(["icat", img, ino], stdout=f)

    r = best_interleaved({"ours": ours, "peer": peer}, reps)
    ok = subprocess.run(["cmp", "-s", str(out), str(dest / "x" / "big.bin")]).returncode == 0
    shutil.rmtree(dest)
    add(f"extract one {size // MiB} MiB file (a process)", r["ours"], "icat", r["peer"],
        "<= 1.1x, memory as now", limit=1.1, note="same bytes as icat" if ok else "DIFFERS")


def run_rows(args, work: Path, q: bool, reps: int, peers: Peers) -> None:
    """The rows ``--only`` and ``--scale`` ask for, in order."""
    def want(group: str) -> bool:
        return args.only in group

    if want("info"):
        row_info(work, reps + 2)
    if want("ls") and have("fls", "mke2fs"):
        row_listing("ext4 20k files", ext_image(work, 20_000), reps)
        if have("mkfs.fat", "mcopy"):
            row_listing("FAT32 20k files", fat_image(work, 20_000), reps)
        nt = ntfs_image(work, 20_000)
        if nt is not None:
            row_listing("NTFS 20k files", nt, reps)
    if want("reads"):
        rows_reads(work, (256 if q else 1024) * MiB, 5000 if q else 20000, reps, peers)
    if want("convert"):
        src = work / f"convert-{512 if q else 2048}M.raw"
        sparse_source(src, (512 if q else 2048) * MiB, seed=5)
        vhdx = converted(src, work / f"convert-{src.stem}.vhdx", "vhdx", "-o", "subformat=dynamic")
        outdir = Path(tempfile.mkdtemp(dir="/dev/shm" if Path("/dev/shm").is_dir() else work))
        row_convert(f"VHDX dynamic {src.stat().st_size // MiB} MiB (half data)", vhdx,
                    outdir / "o.raw", reps, 1.2)
        comp = work / f"zlib-{256 if q else 512}M.qcow2"
        if not comp.exists():
            text = work / "text.raw"
            with open(text, "wb") as f:
                rnd = random.Random(2)
                for _ in range((256 if q else 512) * 4):  # 256 KiB of letters at a time
                    f.write(bytes(rnd.choice(b"abcdefghijklmnop") for _ in range(1024)) * 256)
            subprocess.run(["qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", str(text),
                            str(comp)], check=True, capture_output=True)
            text.unlink()
        row_convert(f"zlib QCOW2 {256 if q else 512} MiB", comp, outdir / "o.raw", reps, 1.0)
        shutil.rmtree(outdir)
    if want("allocation"):
        big = big_sparse_qcow2(work / f"big-{64 if q else 1024}G.qcow2",
                               (64 if q else 1024) * GiB, 1024 if q else 16384)
        row_allocation(big, f"{64 if q else 1024} GiB, {1024 if q else 16384} extents", reps + 2)
    if want("extract") and have("icat", "mke2fs"):
        row_extract(work, (256 if q else 2048) * MiB, reps)
    if args.scale:
        from bench_scale import rows_scale

        rows_scale(work, args.scale_gib, args.scale_files, args.scale_keep)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small images, best of 2: minutes")
    ap.add_argument("--scale", action="store_true", help="add the scale rows (long, big files)")
    ap.add_argument("--scale-gib", type=int, default=2, help="GiB of data in the 100 GiB image")
    ap.add_argument("--scale-files", type=int, default=200_000, help="files in the ext4 "
                    "and NTFS of the files() rows (a tenth of it is measured too)")
    ap.add_argument("--scale-keep", action="store_true", help="keep the file-count images "
                    "in the work dir for the next run (the 100 GiB images are always deleted)")
    ap.add_argument("--peers", default="/tmp/peers", help="where the Python peers are installed")
    ap.add_argument("--workdir", default=str(HERE / "work" / "summary"))
    ap.add_argument("--only", default="", help="rows whose group contains this: info, ls, "
                    "reads, convert, allocation, extract")
    args = ap.parse_args(argv)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    q = args.quick
    reps = 2 if q else 3
    peers = Peers(args.peers)
    load0 = os.getloadavg()
    started = time.perf_counter()
    log(f"load average {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f} on {os.cpu_count()} cores")
    try:
        run_rows(args, work, q, reps, peers)
    except Exception:  # the rows measured so far are still printed
        import traceback

        traceback.print_exc()
        ROWS.append(dict(measure="(the run stopped here: see the traceback on stderr)",
                         ours="-", peer="-", ratio="-", cpu="-", goal="-", met="-", note=""))
    load1 = os.getloadavg()
    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip()
    out = io.StringIO()
    out.write(f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, vdinspect {rev}, "
              f"{'--quick ' if q else ''}best of {reps}, {os.cpu_count()} cores, load average "
              f"{load0[0]:.2f} at the start, {load1[0]:.2f} at the end; "
              f"{time.perf_counter() - started:.0f} s in all; peers: "
              f"{', '.join(sorted(peers.mods)) or 'qemu-io only'}\n\n")
    out.write("| measure | vdinspect | peer | ratio | CPU ratio | goal | met? | notes |\n")
    out.write("|---|---|---|---:|---:|---|---|---|\n")
    for r in ROWS:
        out.write(f"| {r['measure']} | {r['ours']} | {r['peer']} | {r['ratio']} | {r['cpu']} | "
                  f"{r['goal']} | {r['met']} | {r['note']} |\n")
    print(out.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
