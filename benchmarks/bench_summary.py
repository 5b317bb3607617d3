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
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

import vdinspect  # noqa: E402

MiB, GiB = 1 << 20, 1 << 30
ENV = dict(os.environ, PYTHONPATH=str(ROOT))  # children measure this tree, not an install
OURS = [sys.executable, "-m", "vdinspect"]
ROWS: list[dict] = []


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


TIME = shutil.which("time") or "/usr/bin/time"


def child(cmd: list, stdout=subprocess.DEVNULL, stdin=None) -> tuple[float, float, int]:
    """Run ``cmd``: (wall s, CPU s, peak RSS bytes) of that one process. The CPU and RSS
    come from GNU time (a small process between us and the command: a child forked from
    this large one would count our RSS as its peak, which exec keeps); wall is ours."""
    with tempfile.NamedTemporaryFile("r") as rep:
        t0 = time.perf_counter()
        p = subprocess.run([TIME, "-q", "-o", rep.name, "-f", "%U %S %M"] +
                           [str(c) for c in cmd], stdout=stdout, stdin=stdin,
                           stderr=subprocess.PIPE, env=ENV)
        wall = time.perf_counter() - t0
        if p.returncode:
            raise RuntimeError(f"{cmd[:3]}... exit {p.returncode}: {p.stderr[-400:]!r}")
        user, sys_, rss = rep.read().split()[-3:]
    return wall, float(user) + float(sys_), int(rss) * 1024


def inproc(fn) -> tuple[float, float, int]:
    c0, t0 = cpu_self(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, cpu_self() - c0, 0


def best_interleaved(fns: dict, reps: int) -> dict:
    """Each callable (returning (wall, cpu, rss)) once as a warm-up, then ``reps`` rounds
    in turns (the order alternating); per name the best wall, best CPU, largest RSS."""
    for fn in fns.values():
        fn()
    got: dict = {k: [] for k in fns}
    names = list(fns)
    for r in range(reps):
        for k in (names if r % 2 == 0 else names[::-1]):
            got[k].append(fns[k]())
    return {k: (min(w for w, _c, _m in v), min(c for _w, c, _m in v), max(m for _w, _c, m in v))
            for k, v in got.items()}


def secs(t: float) -> str:
    return f"{t * 1000:.0f} ms" if t < 1 else f"{t:.2f} s"


def add(measure: str, ours: tuple, peer_name: str | None, peer: tuple | None, goal: str,
        limit: float | None = None, absolute: float | None = None, rate: int | None = None,
        note: str = "") -> None:
    """One table row; ``limit`` is the goal as a time ratio, ``absolute`` in seconds;
    ``rate`` (operations per timing) shows rates beside the times."""
    def cell(t: tuple) -> str:
        s = f"{secs(t[0])} ({secs(t[1])} CPU)"
        if rate:
            s = f"{rate / t[0]:,.0f}/s, " + s
        if t[2]:
            s += f", {t[2] / MiB:.0f} MiB RSS"
        return s

    ratio = ours[0] / peer[0] if peer else None
    cpu_ratio = ours[1] / peer[1] if peer and peer[1] > 0 else None
    if absolute is not None:
        met = ours[0] <= absolute
    elif limit is not None and ratio is not None:
        met = ratio <= limit
    else:
        met = None
    ROWS.append(dict(measure=measure, ours=cell(ours), peer=f"{peer_name} {cell(peer)}"
                     if peer else "-", ratio=f"{ratio:.2f}x" if ratio else "-",
                     cpu=f"{cpu_ratio:.2f}x" if cpu_ratio else "-", goal=goal,
                     met="-" if met is None else "yes" if met else "**no**", note=note))
    log(f"  {measure}: {ROWS[-1]['ours']} | {ROWS[-1]['peer']} | {ROWS[-1]['ratio']}")


# --- images -----------------------------------------------------------------------------------


def sparse_source(path: Path, size: int, seed: int = 7) -> None:
    """Half of the 1 MiB pieces hold random data, scattered; holes between."""
    if path.exists() and path.stat().st_size == size:
        return
    rnd = random.Random(seed)
    with open(path, "wb") as f:
        f.truncate(size)
        for i in sorted(rnd.sample(range(size // MiB), size // MiB // 2)):
            f.seek(i * MiB)
            f.write(rnd.randbytes(MiB))


def converted(src: Path, out: Path, fmt: str, *opts: str) -> Path:
    if not out.exists():
        subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", fmt, *opts, str(src),
                        str(out)], check=True, capture_output=True)
    return out


def have(*tools: str) -> bool:
    return all(shutil.which(t) for t in tools)


# --- rows -------------------------------------------------------------------------------------


def row_info(work: Path, reps: int) -> None:
    img = work / "info.qcow2"
    if not img.exists():
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(img), "4G"], check=True)
    r = best_interleaved({"ours": lambda: child(OURS + ["info", img]),
                          "peer": lambda: child(["qemu-img", "info", img])}, reps)
    add("`vdinspect info` (whole process)", r["ours"], "qemu-img info", r["peer"], "<= 0.1 s",
        absolute=0.1)


def row_listing(label: str, img: Path, reps: int, files_goal: float = 1.5) -> None:
    """``ls -r --json`` (a process) and ``files()`` (in this process) against fls -r -p."""
    fls = lambda: child(["fls", "-r", "-p", img])  # noqa: E731
    r = best_interleaved({"ours": lambda: child(OURS + ["ls", "-r", "--json", img]),
                          "peer": fls}, reps)
    add(f"`ls -r --json`, {label}", r["ours"], "fls -r -p", r["peer"], "<= 2x", limit=2.0)

    def files():
        with vdinspect.open(str(img)) as disk:
            vol = disk.filesystem_volumes(readable=True)[0]
            disk.filesystem(vol.key).files()

    r = best_interleaved({"ours": lambda: inproc(files), "peer": fls}, reps)
    add(f"`files()` warm (open included), {label}", r["ours"], "fls -r -p", r["peer"],
        f"<= {files_goal}x", limit=files_goal)


def ext_image(work: Path, nfiles: int, folders: int = 200, trees: Path | None = None) -> Path:
    """An ext4 of ``nfiles`` files (mke2fs -d of a tree built under ``trees``, default
    ``work``: the scale rows pass a tmpfs, 15x faster than a disk for a million files)."""
    img = work / f"ext4-{nfiles}.img"
    if img.exists():
        return img
    tree = (trees or work) / f"ext-tree-{nfiles}"
    shutil.rmtree(tree, ignore_errors=True)
    per = -(-nfiles // folders)
    for d in range(folders):
        dd = tree / f"d{d:04d}"
        dd.mkdir(parents=True)
        for i in range(min(per, nfiles - d * per)):
            (dd / f"file {i:05d}.txt").write_bytes(b"x" * ((d * per + i) * 7919 % 3000))
    t = time.perf_counter()
    mib = max(256, nfiles // 1000 * 8)
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", "-N", str(nfiles + 1000), "-d",
                    str(tree), str(img), f"{mib}M"], check=True, capture_output=True)
    log(f"  mke2fs -d of {nfiles} files: {time.perf_counter() - t:.1f} s")
    shutil.rmtree(tree)
    return img


def fat_image(work: Path, nfiles: int) -> Path:
    img = work / f"fat32-{nfiles}.img"
    if img.exists():
        return img
    tree = work / "fat-tree"
    shutil.rmtree(tree, ignore_errors=True)
    for d in range(200):
        dd = tree / f"d{d:03d}"
        dd.mkdir(parents=True)
        for i in range(nfiles // 200):
            (dd / f"f{i:05d}.txt").write_bytes(b"y" * (i * 37 % 3000))
    subprocess.run(["mkfs.fat", "-F", "32", "-C", str(img), str(512 * 1024)], check=True,
                   capture_output=True)
    subprocess.run(["mcopy", "-s", "-i", str(img)] + [str(p) for p in tree.iterdir()] +
                   ["::/"], check=True, capture_output=True)
    shutil.rmtree(tree)
    return img


def ntfs_image(work: Path, nfiles: int) -> Path | None:
    try:
        import bench_ntfs

        from tests import ntfs_builder as nb
    except ImportError:
        return None
    if not (have("mkntfs", "ntfs-3g") and nb.fuse_works(work)):
        return None
    return bench_ntfs.build(work, nfiles)


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
