#!/usr/bin/env python3
"""Make the small QEMU sample images in this folder and qemu-img's answers for them.

Run it from anywhere (``python3 sample_images/make_samples.py``); it writes next to
itself and nowhere else, apart from a temporary directory for raw conversions.
It needs ``qemu-img`` and ``qemu-io`` on PATH and only the Python standard library; the
partitioned disks also need sfdisk, mkfs.fat, mtools, mke2fs, mkntfs/ntfscp, blkid and
The Sleuth Kit (mmls, fls).

It is idempotent: every output it owns is deleted first and made again. The content is
deterministic (fixed qemu-io patterns at fixed offsets, a seeded byte stream for the
compression sources), so a re-run gives byte-identical files, except for the images
with internal snapshots: qcow2 stores the wall-clock time of ``qemu-img snapshot -c``
in the snapshot table, and the partitioned disks, whose NTFS partition gets random
serials and the current time from mkntfs/ntfscp (see README.md).

For every image ``X`` it writes the oracle files described in README.md and one index,
``oracles.json``, which the tests load.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
KiB = 1024
MiB = 1024 * KiB
# Fixed modification time given to every output file (2024-01-01T00:00:00Z).
# git does not keep it, but it keeps local re-runs tidy.
FIXED_MTIME = 1_704_067_200
SOURCE_SEED = b"vdinspect sample_images v1"


# --------------------------------------------------------------------------- helpers


def run(*args: str, ok_codes: tuple[int, ...] = (0,)) -> str:
    """Run a command in this folder and return its stdout; fail loudly."""
    proc = subprocess.run(args, cwd=HERE, capture_output=True, text=True)
    if proc.returncode not in ok_codes:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(args)}")
    return proc.stdout


def qemu_img(*args: str) -> str:
    return run("qemu-img", *args)


def qemu_io(image: str, *commands: str, fmt: str = "qcow2") -> None:
    """Run qemu-io commands on an image; qemu-io exits 1 when a command failed."""
    argv = ["qemu-io", "-f", fmt]
    for command in commands:
        argv += ["-c", command]
    out = run(*argv, image)
    if "failed" in out:
        sys.stderr.write(out)
        raise SystemExit(f"qemu-io reported a failure on {image}")


def P(pattern: int, offset: int, length: int) -> str:
    """qemu-io: fill [offset, offset+length) with the byte `pattern`."""
    return f"write -P {pattern:#04x} {offset} {length}"


def Z(offset: int, length: int) -> str:
    """qemu-io: write zeros; on qcow2 v3 this makes zero clusters where it can."""
    return f"write -z {offset} {length}"


def C(pattern: int, offset: int, length: int) -> str:
    """qemu-io: compressed write (whole, aligned clusters only)."""
    return f"write -c -P {pattern:#04x} {offset} {length}"


def create(name: str, size: int, fmt: str = "qcow2", options: str = "",
           backing: str | None = None, backing_fmt: str | None = None) -> None:
    argv = ["create", "-q", "-f", fmt]
    if options:
        argv += ["-o", options]
    if backing:
        argv += ["-b", backing, "-F", backing_fmt or "qcow2"]
    qemu_img(*argv, name, str(size))


def source_bytes(layout: list[tuple[str, int]]) -> bytes:
    """Deterministic raw content from (kind, length) pieces:
    'text' (compressible), 'random' (incompressible), 'zero', 'ramp' (0..255 repeated),
    'one' (zeros ending in a single 0x5a byte)."""
    out = bytearray()
    counter = 0
    line_no = 0
    for kind, length in layout:
        piece = bytearray()
        if kind == "text":
            while len(piece) < length:
                piece += (f"{line_no:06d} vdinspect sample: the quick brown fox jumps "
                          f"over the lazy dog\n").encode()
                line_no += 1
        elif kind == "random":
            while len(piece) < length:
                piece += hashlib.sha256(SOURCE_SEED + counter.to_bytes(8, "little")).digest()
                counter += 1
        elif kind == "zero":
            piece = bytearray(length)
        elif kind == "ramp":
            piece = bytearray(i & 0xFF for i in range(length))
        elif kind == "one":
            piece = bytearray(length)
            piece[-1] = 0x5A
        else:
            raise ValueError(kind)
        out += piece[:length]
    return bytes(out)


# Raw source for the compressed images: 2 MiB, cluster-aligned pieces of each kind so
# the 16 KiB clusters come out as compressed, stored uncompressed (random data does
# not shrink) or not allocated at all (zeros).
COMPRESSION_SOURCE = source_bytes([
    ("text", 192 * KiB),      # clusters 0-11: compress well
    ("random", 88 * KiB),     # clusters 12-16 random (stored as is); cluster 17 half
    ("zero", 744 * KiB),      # random, half zero; then zero clusters: left unallocated
    ("ramp", 64 * KiB),       # 1 MiB: 00 01 .. ff repeated
    ("one", 64 * KiB),        # zeros and one byte: compresses to almost nothing
    ("zero", 856 * KiB),
    ("text", 40 * KiB),       # last cluster: 24 KiB zeros, then 40 KiB text
])
assert len(COMPRESSION_SOURCE) == 2 * MiB


def write_file(name: str, data: bytes) -> None:
    with open(HERE / name, "wb") as f:
        f.write(data)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 * MiB):
            digest.update(chunk)
    return digest.hexdigest()


def densify(name: str) -> None:
    """Rewrite a file so every byte is really written (no holes, no unwritten extents).

    A git checkout is always dense, and qemu-img's answers depend on holes: `map`
    reports holes in a raw file as zero, and qcow2's metadata-preallocation heuristic
    (qcow2_detect_metadata_preallocation, which compares on-disk usage with the
    refcounts) makes it look through data clusters at the host file's holes too.
    Making every file dense before asking qemu keeps the oracles true for a checkout.
    """
    path = HERE / name
    data = path.read_bytes()
    tmp = path.with_name(path.name + ".dense-tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def sparsify(name: str, block: int = 4 * KiB) -> None:
    """Rewrite a file with holes where whole `block`s are zero (same bytes)."""
    path = HERE / name
    before = sha256_file(path)
    size = path.stat().st_size
    tmp = path.with_name(path.name + ".sparse-tmp")
    with open(path, "rb") as src, open(tmp, "wb") as dst:
        zero = bytes(block)
        while chunk := src.read(block):
            if chunk == zero[:len(chunk)]:
                dst.seek(len(chunk), os.SEEK_CUR)
            else:
                dst.write(chunk)
        dst.truncate(size)
    os.replace(tmp, path)
    assert sha256_file(path) == before, name


# --------------------------------------------------------------------------- images
#
# Each recipe makes one group of files. IMAGES lists every image the oracles are made
# for (name -> one-line description, also used for README.md); EXTRA_FILES lists the
# other files the recipes leave behind (external data files).

IMAGES: dict[str, str] = {}
EXTRA_FILES: dict[str, str] = {}


def image(name: str, description: str) -> str:
    IMAGES[name] = description
    return name


def make_chain() -> None:
    base = image("chain-base.qcow2",
                 "qcow2 v3, 4 MiB, 64 KiB clusters; bottom of a 3-deep backing chain")
    mid = image("chain-mid.qcow2",
                "qcow2 over chain-base.qcow2: partial-cluster COW writes and a zero "
                "cluster hiding base data")
    top = image("chain-top.qcow2",
                "qcow2 over chain-mid.qcow2 with internal snapshots 'clean' and "
                "'after-update' taken between writes")
    opts = "cluster_size=64k"
    create(base, 4 * MiB, options=opts)
    qemu_io(base,
            P(0x11, 3 * MiB, 128 * KiB),             # clusters 48-49
            P(0x12, 0, 64 * KiB),                    # cluster 0
            P(0x13, 1 * MiB + 4 * KiB, 100 * KiB),   # unaligned, clusters 16-17
            P(0x14, 2 * MiB + 60 * KiB, 8 * KiB))    # straddles clusters 32/33
    create(mid, 4 * MiB, options=opts, backing=base, backing_fmt="qcow2")
    qemu_io(mid,
            P(0x21, 1 * MiB + 64 * KiB, 64 * KiB),   # replaces one base cluster
            Z(3 * MiB + 64 * KiB, 64 * KiB),         # zero cluster over base 0x11
            P(0x22, 2 * MiB + 32 * KiB, 16 * KiB),   # COW: rest of cluster from base
            P(0x23, 32 * KiB, 8 * KiB))              # COW of base cluster 0
    create(top, 4 * MiB, options=opts, backing=mid, backing_fmt="qcow2")
    qemu_io(top,
            P(0x31, 3 * MiB, 4 * KiB),               # partial over base 0x11
            P(0x32, 512 * KiB, 64 * KiB))            # fresh cluster, no backing data
    qemu_img("snapshot", "-c", "clean", top)
    qemu_io(top,
            P(0x34, 2 * MiB + 40 * KiB, 8 * KiB),    # overlaps mid's 0x22
            P(0x33, 0, 4 * KiB))
    qemu_img("snapshot", "-c", "after-update", top)
    qemu_io(top,
            P(0x36, 3 * MiB + 512 * KiB, 64 * KiB),
            P(0x35, 512 * KiB + 1 * KiB, 2 * KiB),   # COW of a cluster the snapshots share
            Z(1 * MiB + 64 * KiB, 64 * KiB))         # zero cluster over mid's 0x21


def make_compressed() -> None:
    descriptions = {
        "zlib": "qcow2, 16 KiB clusters, made by qemu-img convert -c (compression_type=zlib) "
                "from a 2 MiB raw file with text, random and zero regions",
        "zstd": "the same source converted with -c and compression_type=zstd",
    }
    write_file("compress-source.tmp.raw", COMPRESSION_SOURCE)
    try:
        for kind, description in descriptions.items():
            name = image(f"{kind}.qcow2", description)
            qemu_img("convert", "-c", "-f", "raw", "-O", "qcow2",
                     "-o", f"compression_type={kind},cluster_size=16k",
                     "compress-source.tmp.raw", name)
        v1 = image("v1-compressed.qcow",
                   "QCOW version 1 made by qemu-img convert -c -O qcow from the same "
                   "2 MiB source (4 KiB clusters)")
        # qemu-img 7.2 exits 1, silently, after writing every cluster of a compressed
        # qcow (v1) target; main() checks that it reads back as the source bytes.
        run("qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow",
            "compress-source.tmp.raw", v1, ok_codes=(0, 1))
    finally:
        (HERE / "compress-source.tmp.raw").unlink(missing_ok=True)


def make_extl2() -> None:
    base = image("extl2-base.qcow2",
                 "qcow2, 4 MiB, 64 KiB clusters; backing file of extl2.qcow2")
    top = image("extl2.qcow2",
                "qcow2 with extended_l2=on (32 x 2 KiB subclusters) over extl2-base.qcow2: "
                "sub-cluster data and zero writes, the rest falls through")
    create(base, 4 * MiB, options="cluster_size=64k")
    qemu_io(base,
            P(0xA2, 1 * MiB, 64 * KiB),
            P(0xA1, 0, 192 * KiB))
    create(top, 4 * MiB, options="extended_l2=on,cluster_size=64k",
           backing=base, backing_fmt="qcow2")
    qemu_io(top,
            P(0xB2, 64 * KiB + 2 * KiB, 4 * KiB),    # subclusters 1-2 of cluster 1
            P(0xB1, 6 * KiB, 2 * KiB),               # subcluster 3 of cluster 0
            Z(64 * KiB + 40 * KiB, 4 * KiB),         # zero subclusters over base data
            P(0xB3, 1 * MiB + 62 * KiB, 4 * KiB),    # crosses clusters 16/17
            Z(128 * KiB, 64 * KiB),                  # whole zero cluster over base data
            P(0xB4, 2 * MiB + 2 * KiB, 2 * KiB),     # no backing data below
            P(0xB5, 1 * KiB, 512),                   # half a subcluster: COW from base
            Z(3 * MiB + 4 * KiB, 2 * KiB))           # zero subcluster, nothing below


def make_cluster_sizes() -> None:
    small = image("small-clusters.qcow2",
                  "qcow2, 1 MiB, 512-byte clusters (64-entry L2 tables, many refcount "
                  "blocks), unaligned writes")
    create(small, 1 * MiB, options="cluster_size=512")
    qemu_io(small,
            P(0xC1, 700 * KiB, 1536),
            P(0xC2, 0, 512),
            P(0xC3, 300 * KiB + 100, 1000),          # unaligned start and end
            Z(900 * KiB, 1 * KiB),                   # zero clusters, no backing
            P(0xC4, 32 * KiB - 512, 1 * KiB),        # crosses an L2 table boundary
            P(0xC5, 1 * MiB - 512, 512))             # last cluster


def make_v2() -> None:
    name = image("v2.qcow2",
                 "qcow2 version 2 (compat=0.10), 2 MiB, 4 KiB clusters; write -z "
                 "cannot make zero clusters here")
    create(name, 2 * MiB, options="compat=0.10,cluster_size=4k")
    qemu_io(name,
            P(0x42, 1 * MiB, 64 * KiB),
            P(0x41, 128 * KiB, 96 * KiB),
            Z(1 * MiB + 16 * KiB, 16 * KiB),         # zeros inside an allocated cluster
            Z(1536 * KiB, 64 * KiB))                 # zeros over an unallocated cluster


def make_zero_clusters() -> None:
    base = image("zero-clusters-base.qcow2",
                 "qcow2, 2 MiB, 16 KiB clusters, data in the first 384 KiB; backing file "
                 "of zero-clusters.qcow2")
    top = image("zero-clusters.qcow2",
                "qcow2 v3 over zero-clusters-base.qcow2: zero clusters (plain and "
                "allocated) that hide the backing data")
    create(base, 2 * MiB, options="cluster_size=16k")
    qemu_io(base, P(0x51, 192 * KiB, 192 * KiB), P(0x50, 0, 192 * KiB))
    create(top, 2 * MiB, options="cluster_size=16k", backing=base, backing_fmt="qcow2")
    qemu_io(top,
            P(0x52, 256 * KiB, 64 * KiB),            # allocate ...
            Z(64 * KiB, 128 * KiB),                  # plain zero clusters over data
            Z(256 * KiB, 64 * KiB),                  # ... then zero: zero, still allocated
            Z(200 * KiB, 10 * KiB),                  # partial: written as a data cluster
            Z(1 * MiB, 64 * KiB),                    # zero cluster, nothing below
            "discard 320K 64K")                      # discard over backing: zero cluster


def make_raw_backing() -> None:
    raw = image("raw-backing.raw",
                "raw file, 256 KiB, fully written (no holes); backing file of "
                "raw-backing.qcow2")
    top = image("raw-backing.qcow2",
                "qcow2, 512 KiB, 16 KiB clusters, over raw-backing.raw (-F raw), which is "
                "shorter than it")
    create(raw, 256 * KiB, fmt="raw")
    qemu_io(raw,
            P(0x61, 128 * KiB, 128 * KiB),
            P(0x60, 0, 64 * KiB),
            fmt="raw")
    create(top, 512 * KiB, options="cluster_size=16k", backing=raw, backing_fmt="raw")
    qemu_io(top,
            P(0x63, 256 * KiB - 32 * KiB, 64 * KiB), # straddles the backing file's end
            P(0x62, 4 * KiB, 4 * KiB),               # COW from the raw backing
            Z(128 * KiB, 64 * KiB))                  # zero cluster over raw data


def make_data_files() -> None:
    raw_on = image("datafile.qcow2",
                   "qcow2, 256 KiB, 4 KiB clusters, external data file datafile.data with "
                   "data_file_raw=on (the data file is a valid raw image)")
    raw_off = image("datafile2.qcow2",
                    "qcow2, 256 KiB, 4 KiB clusters, external data file datafile2.data, "
                    "data_file_raw off")
    EXTRA_FILES["datafile.data"] = "external data file of datafile.qcow2 (raw, 256 KiB)"
    EXTRA_FILES["datafile2.data"] = "external data file of datafile2.qcow2"
    writes = (
        P(0x72, 160 * KiB, 32 * KiB),
        P(0x71, 32 * KiB + 512, 3 * KiB),
        Z(64 * KiB, 64 * KiB),
        P(0x73, 0, 4 * KiB),
    )
    create(raw_on, 256 * KiB,
           options="cluster_size=4k,data_file=datafile.data,data_file_raw=on")
    qemu_io(raw_on, *writes)
    create(raw_off, 256 * KiB, options="cluster_size=4k,data_file=datafile2.data")
    qemu_io(raw_off, *writes)


def make_qcow1() -> None:
    name = image("v1.qcow", "QCOW version 1, 1 MiB, 4 KiB clusters, scattered writes")
    create(name, 1 * MiB, fmt="qcow")
    qemu_io(name,
            P(0x82, 512 * KiB, 8 * KiB),
            P(0x81, 0, 5 * KiB),
            P(0x83, 1 * MiB - 3 * KiB, 3 * KiB),
            P(0x84, 100 * KiB + 7, 1000),
            fmt="qcow")


# The same 1 MiB of content in every other container format qemu-img writes: text at
# the start, random and ramp bytes in the middle, one byte at the very end. 193 KiB of
# it is non-zero, in four 64 KiB-aligned pieces (VMDK grains, Parallels clusters).
FORMATS_SOURCE = source_bytes([
    ("text", 128 * KiB),
    ("zero", 384 * KiB),
    ("random", 48 * KiB),     # 512 KiB
    ("ramp", 16 * KiB),
    ("zero", 384 * KiB),
    ("one", 64 * KiB),        # ends in a single 0x5a byte: the disk's last byte
])
assert len(FORMATS_SOURCE) == 1 * MiB

# name -> (qemu-img format, -o options, description)
OTHER_FORMATS = {
    "vmdk-sparse.vmdk": ("vmdk", "subformat=monolithicSparse",
                         "VMDK monolithicSparse (hosted sparse extent, 64 KiB grains)"),
    "vmdk-stream.vmdk": ("vmdk", "subformat=streamOptimized",
                         "VMDK streamOptimized (deflate-compressed grains, markers)"),
    "vhd-dynamic.vhd": ("vpc", "subformat=dynamic",
                        "VHD dynamic; 2 MiB blocks, so one block holds the whole disk; "
                        "virtual size rounded up to the CHS geometry (1079296 bytes)"),
    "vdi-dynamic.vdi": ("vdi", "", "VDI dynamic, one 1 MiB block"),
    "parallels.hds": ("parallels", "cluster_size=4k",
                      "Parallels expandable image, 4 KiB clusters (qemu-img default is 1 MiB)"),
}
# VHDX is left out: qemu-img puts each region (headers, log, metadata, BAT) on its own
# 1 MiB boundary, so even an empty 1 MiB VHDX with block_size=1M,log_size=1M is 8 MiB,
# more than this folder may hold. Formats whose qemu-img map is not to be trusted
# (QEMU's VHDX driver has no block status and maps everything as data) go here.
MAP_UNRELIABLE_FORMATS = {"vhdx"}


def make_other_formats() -> None:
    write_file("formats-source.tmp.raw", FORMATS_SOURCE)
    try:
        for name, (fmt, options, description) in OTHER_FORMATS.items():
            image(name, description + " made by qemu-img convert from the 1 MiB "
                  "formats source (see Notes)")
            argv = ["convert", "-f", "raw", "-O", fmt]
            if options:
                argv += ["-o", options]
            qemu_img(*argv, "formats-source.tmp.raw", name)
    finally:
        (HERE / "formats-source.tmp.raw").unlink(missing_ok=True)


# ------------------------------------------------------------------ partitioned disks
#
# Filesystems are made in a temporary folder with their own tools, copied into a raw
# disk at the partition offsets with dd conv=notrunc, and the disk is stored as a
# compressed qcow2 (4 KiB clusters keep the metadata small). Only the qcow2 stays.

SECTOR = 512
# name -> list of partition numbers holding a filesystem, filled by the recipes
PARTITIONED: dict[str, list[int]] = {}


def tool(*args: str, cwd: Path, env: dict | None = None, input: str | None = None) -> str:
    """Run a filesystem/partitioning tool in `cwd`; fail loudly."""
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, input=input,
                          env=None if env is None else {**os.environ, **env})
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(args)}")
    return proc.stdout


def file_tree(root: Path) -> Path:
    """A small folder of files with fixed contents and times, for every filesystem."""
    files = {
        "README.TXT": b"vdinspect sample disk\n",
        "A long file name with spaces.txt": b"long file names need VFAT entries\n",
        "docs/notes.txt": b"".join(f"{i:04d} notes line\n".encode() for i in range(400)),
        "docs/sub/deep.txt": b"three levels down\n",
        "DELETED.TXT": b"this file is deleted on the FAT partition\n",
    }
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    for path in [root, *root.rglob("*")]:
        os.utime(path, (FIXED_MTIME, FIXED_MTIME))
    return root


def make_fat(path: Path, size: int, bits: int, label: str, tree: Path,
             delete: str | None = None) -> None:
    """mkfs.fat --invariant (fixed serial 1234-ABCD, fixed times), then mcopy/mdel."""
    with open(path, "wb") as f:
        f.truncate(size)
    tool("mkfs.fat", "-F", str(bits), "-s", "1", "-S", "512", "-n", label, "--invariant", path.name, cwd=path.parent)
    env = {"MTOOLS_SKIP_CHECK": "1"}
    entries = sorted(p.name for p in tree.iterdir())
    tool("mcopy", "-s", "-m", "-i", path.name, *[str(tree / e) for e in entries], "::/",
         cwd=path.parent, env=env)
    if delete:
        tool("mdel", "-i", path.name, f"::/{delete}", cwd=path.parent, env=env)


def make_ext(path: Path, size: int, kind: str, label: str, uuid: str, tree: Path) -> None:
    with open(path, "wb") as f:
        f.truncate(size)
    tool("mke2fs", "-q", "-F", "-t", kind, "-L", label, "-U", uuid,
         "-E", f"hash_seed={uuid}", "-d", str(tree), path.name,
         cwd=path.parent, env={"E2FSPROGS_FAKE_TIME": str(FIXED_MTIME)})


def make_ntfs(path: Path, size: int, label: str, start_sector: int, tree: Path) -> None:
    with open(path, "wb") as f:
        f.truncate(size)
    tool("mkntfs", "-F", "-Q", "-s", "512", "-L", label, "-p", str(start_sector),
         "-H", "255", "-S", "63", path.name, cwd=path.parent)
    for rel in ("README.TXT", "docs/notes.txt"):
        tool("ntfscp", path.name, str(tree / rel), Path(rel).name, cwd=path.parent)


def build_disk(name: str, tmp: Path, size: int, script: str,
               parts: list[tuple[int, Path]]) -> None:
    """sfdisk `script` onto a raw disk, dd each filesystem file in, convert -c to qcow2."""
    raw = tmp / (name + ".raw")
    with open(raw, "wb") as f:
        f.truncate(size)
    tool("sfdisk", "-q", raw.name, cwd=tmp, input=script)
    for start_sector, fs in parts:
        tool("dd", f"if={fs.name}", f"of={raw.name}", f"bs={SECTOR}", f"seek={start_sector}",
             "conv=notrunc", "status=none", cwd=tmp)
        fs.unlink()
    qemu_img("convert", "-c", "-f", "raw", "-O", "qcow2", "-o", "cluster_size=4k",
             str(raw), name)
    raw.unlink()


def make_partitioned() -> None:
    gpt = image("gpt-fat32-ext4-ntfs.qcow2",
                "compressed qcow2 (4 KiB clusters) of a 44 MiB GPT disk: 1 FAT32 (34 MiB, "
                "512-byte clusters, long name, subfolders, a deleted file), 2 ext4 (4 MiB), "
                "3 NTFS (4 MiB, two files)")
    mbr = image("mbr-logical.qcow2",
                "compressed qcow2 (4 KiB clusters) of an 8 MiB MBR disk: extended "
                "partition 1 holding logical 5 FAT16 (3 MiB) and logical 6 ext2 (1 MiB)")
    PARTITIONED[gpt] = [1, 2, 3]
    PARTITIONED[mbr] = [5, 6]
    with tempfile.TemporaryDirectory(prefix="vdinspect-parts-") as t:
        tmp = Path(t)
        tree = file_tree(tmp / "tree")
        # GPT: sectors 2048 (FAT32, 69632), 71680 (ext4, 8192), 79872 (NTFS, 8192)
        make_fat(tmp / "p1", 69632 * SECTOR, 32, "VDFAT32", tree,
                 delete="DELETED.TXT")
        make_ext(tmp / "p2", 8192 * SECTOR, "ext4", "vdext4",
                 "5a3c1e2d-0000-4000-8000-0000000000e4", tree)
        make_ntfs(tmp / "p3", 8192 * SECTOR, "VDNTFS", 79872, tree)
        guid = "5A3C1E2D-0000-4000-8000-0000000000"
        basic, linux = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7", "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
        build_disk(gpt, tmp, 44 * MiB, "\n".join([
            "label: gpt",
            f"label-id: {guid}01",
            "first-lba: 2048",
            f'start=2048, size=69632, type={basic}, name="fat32", uuid={guid}11',
            f'start=71680, size=8192, type={linux}, name="ext4", uuid={guid}12',
            f'start=79872, size=8192, type={basic}, name="ntfs", uuid={guid}13',
        ]) + "\n", [(2048, tmp / "p1"), (71680, tmp / "p2"), (79872, tmp / "p3")])
        # MBR: extended 2048..16383; logicals at 4096 (FAT16, 6144) and 12288 (ext2, 2048)
        make_fat(tmp / "p5", 6144 * SECTOR, 16, "VDFAT16", tree)
        make_ext(tmp / "p6", 2048 * SECTOR, "ext2", "vdext2",
                 "5a3c1e2d-0000-4000-8000-0000000000e2", tree)
        build_disk(mbr, tmp, 8 * MiB, "\n".join([
            "label: dos",
            "label-id: 0x5a3c1e2d",
            "start=2048, size=14336, type=5",
            "start=4096, size=6144, type=6",
            "start=12288, size=2048, type=83",
        ]) + "\n", [(4096, tmp / "p5"), (12288, tmp / "p6")])


def partition_answers(name: str, tmpdir: Path) -> tuple[dict, list[dict]]:
    """mmls, sfdisk --json, blkid and fls answers for a partitioned image (via raw)."""
    raw = tmpdir / "parts.raw"
    qemu_img("convert", "-O", "raw", name, str(raw))
    try:
        texts = {f"{name}.mmls.txt": run("mmls", str(raw))}
        table = json.loads(run("sfdisk", "--json", str(raw)))["partitiontable"]
        table["device"] = name
        for p in table["partitions"]:
            p["node"] = p["node"].replace(str(raw), name)
        texts[f"{name}.sfdisk.json"] = {"partitiontable": table}
        sector = table.get("sectorsize", SECTOR)
        parts = []
        for p in table["partitions"]:
            number = int(p["node"][len(name):])
            start, length = p["start"] * sector, p["size"] * sector
            row = {"index": number, "start": start, "length": length,
                   "filesystem": None, "version": None, "label": None, "uuid": None}
            if number in PARTITIONED[name]:
                out = run("blkid", "-p", "-o", "export", "-O", str(start), "-S", str(length),
                          str(raw), ok_codes=(0, 2))
                tags = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
                row.update(filesystem=tags.get("TYPE"), version=tags.get("VERSION"),
                           label=tags.get("LABEL"), uuid=tags.get("UUID"))
                texts[f"{name}.p{number}.fls.txt"] = run(
                    "fls", "-r", "-p", "-o", str(p["start"]), str(raw))
            parts.append(row)
        return texts, parts
    finally:
        raw.unlink(missing_ok=True)


RECIPES = [make_chain, make_compressed, make_extl2, make_cluster_sizes, make_v2,
           make_zero_clusters, make_raw_backing, make_data_files, make_qcow1,
           make_other_formats, make_partitioned]
# Files kept sparse on disk (qemu's answers were checked to be the same either way).
# (2 MiB-cluster images are made by the tests instead: their metadata alone is 10 MiB.)
SPARSE: set[str] = set()


# --------------------------------------------------------------------------- oracles


def strip_paths(value):
    """Make every path in qemu-img's JSON relative to this folder."""
    prefix = str(HERE) + os.sep
    if isinstance(value, dict):
        return {k: strip_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [strip_paths(v) for v in value]
    if isinstance(value, str):
        if value == str(HERE):
            return "."
        return value.replace(prefix, "")
    return value


def qemu_json(*args: str, ok_codes: tuple[int, ...] = (0,)):
    return strip_paths(json.loads(run("qemu-img", *args, "--output=json", ok_codes=ok_codes)))


def dump_json(name: str, value) -> None:
    text = json.dumps(value, indent=2) + "\n"
    assert str(HERE) not in text, f"absolute path left in {name}"
    (HERE / name).write_text(text)


def dump_map(name: str, entries: list) -> None:
    # one run per line: readable, and diffs show which run changed
    text = "[\n" + ",\n".join("  " + json.dumps(e) for e in entries) + "\n]\n"
    assert str(HERE) not in text, f"absolute path left in {name}"
    (HERE / name).write_text(text)


def raw_sha256(image_name: str, tmpdir: Path, snapshot: str | None = None) -> str:
    out = tmpdir / "convert.raw"
    argv = ["convert", "-O", "raw"]
    if snapshot is not None:
        argv += ["-l", f"snapshot.name={snapshot}"]
    qemu_img(*argv, image_name, str(out))
    try:
        return sha256_file(out)
    finally:
        out.unlink()


def answers(name: str, tmpdir: Path) -> dict:
    """Ask qemu-img about one image; return every oracle text keyed by file name."""
    info = qemu_json("info", name)
    chain = "backing-filename" in info
    if chain:
        info = qemu_json("info", "--backing-chain", name)
    top = info[0] if chain else info
    out = {
        f"{name}.info.json": info,
        f"{name}.map.json": qemu_json("map", name),
        "raw_sha256": raw_sha256(name, tmpdir),
    }
    if top["format"] == "qcow2":
        out[f"{name}.check.json"] = qemu_json("check", name)
    snapshots = top.get("snapshots", [])
    if snapshots:
        out[f"{name}.snapshots.json"] = snapshots
        out["snapshot_sha256"] = {s["name"]: raw_sha256(name, tmpdir, s["name"])
                                  for s in snapshots}
    return out


def comparable(oracle: dict) -> dict:
    """The oracle minus what depends on how the host stores the file."""
    def drop(value):
        if isinstance(value, dict):
            return {k: drop(v) for k, v in value.items() if k != "actual-size"}
        if isinstance(value, list):
            return [drop(v) for v in value]
        return value
    return drop(oracle)


# --------------------------------------------------------------------------- main


# Everything in this folder except the script itself is an output; these patterns
# match all of it (also files of images an older version of the script made).
OUTPUT_PATTERNS = ("*.qcow2", "*.qcow", "*.raw", "*.data", "*.json", "*.sha256",
                   "*.vmdk", "*.vhd", "*.vhdx", "*.vdi", "*.hds", "*.txt",
                   "*-tmp", "README.md")


def owned_files() -> list[Path]:
    """Every file this script writes (from earlier runs too), for the clean-up."""
    paths = {p for pattern in OUTPUT_PATTERNS for p in HERE.glob(pattern)}
    return sorted(p for p in paths if p.is_file() or p.is_symlink())


def write_readme(rows: list[tuple[str, str]]) -> None:
    lines = [
        "# sample_images",
        "",
        "Small disk images made by qemu-img and the answers `qemu-img` (and, for the",
        "partitioned disks, mmls/sfdisk/blkid/fls) give about them, so tests and notebooks",
        "work without those tools. Everything here is made by `make_samples.py` (standard",
        "library + `qemu-img`/`qemu-io`; for the partitioned disks also sfdisk, dosfstools,",
        "mtools, e2fsprogs, ntfs-3g and The Sleuth Kit); do not edit by hand: change the script",
        "and run `python3 sample_images/make_samples.py` (made with "
        f"{QEMU_VERSION}).",
        "",
        "## Files",
        "",
    ]
    lines += [f"- `{name}`: {text}" for name, text in rows]
    lines += [
        "",
        "## Oracle files (beside each image `X`)",
        "",
        "- `X.info.json`: `qemu-img info --output=json`, with `--backing-chain` when `X` has",
        "  a backing file (then a list, top image first; otherwise one object).",
        "- `X.map.json`: `qemu-img map --output=json` (one run per line).",
        "- `X.check.json`: `qemu-img check --output=json` (qcow2 only).",
        "- `X.raw.sha256`: sha256 (hex, one line) of `qemu-img convert -O raw X`.",
        "- `X.snapshots.json`: the `snapshots` list of `qemu-img info` (images with internal",
        "  snapshots), and `X@NAME.raw.sha256` for",
        "  `qemu-img convert -l snapshot.name=NAME -O raw X`.",
        "- `oracles.json`: the index the tests load: image name -> `format` (qemu-img's",
        "  name: `vpc` is VHD), `virtual_size`, `raw_sha256`, `snapshots` (name -> sha256),",
        "  `backing` (relative names, parent first, down to the base), `data_file` (relative",
        "  name or null), `map_reliable` (false where `qemu-img map` cannot be trusted: QEMU's",
        "  VHDX driver has no block status and maps a whole VHDX as data; no such image is",
        "  here now), and for partitioned disks `partitions`: per partition of",
        "  `sfdisk --json` its `index` (Linux numbering: 1-4 primary, 5+ logical), `start`",
        "  and `length` in bytes, and from `blkid -p -o export` on the raw conversion",
        "  `filesystem` (TYPE, e.g. `vfat`, `ext4`, `ntfs`; null for an extended",
        "  partition), `version` (VERSION: `FAT16`/`FAT32` tells the FAT type), `label`,",
        "  `uuid`.",
        "",
        "Partitioned disks (`gpt-fat32-ext4-ntfs.qcow2`, `mbr-logical.qcow2`) also have,",
        "from a raw conversion in a temporary folder (no raw file is kept):",
        "",
        "- `X.mmls.txt`: The Sleuth Kit `mmls` on the raw disk.",
        "- `X.sfdisk.json`: `sfdisk --json` (device and node names made relative).",
        "- `X.pN.fls.txt`: `fls -r -p -o START_SECTOR` of partition N (filesystem",
        "  partitions only). Deleted entries carry `*`; `$MBR`, `$FAT1`, `$FAT2`,",
        "  `$OrphanFiles` are TSK's virtual entries, `$`-names on NTFS are metadata files.",
        "",
        "All paths in these files are relative to this folder.",
        "",
        "## Notes",
        "",
        "- Re-running the script gives byte-identical files except `chain-top.qcow2` and",
        "  its info/snapshots JSON: qcow2 stores the wall-clock time of",
        "  `qemu-img snapshot -c` (`date-sec`, `date-nsec`). The sha256 answers never change.",
        "- `actual-size` in the info JSON is host disk usage, not a property of the image:",
        "  do not compare it. Every file is written densely (no holes) before qemu-img is",
        "  asked, because a git checkout is dense and qemu-img looks at host holes (raw",
        "  files; qcow2 data clusters when its metadata-preallocation heuristic fires).",
        "- There is no 2 MiB-cluster sample: qemu-img gives header, refcount table, refcount",
        "  block, L1 and each L2 table a 2 MiB cluster of their own (10 MiB for a tiny image);",
        "  the tests make such images with qemu-img instead.",
        "- `qemu-img map --output=json` (7.2) gives per run `start`, `length`, `depth`",
        "  (0 = this file, 1 = its backing file, ...), `present`, `zero`, `data` and",
        "  `offset`. There is no `filename` and no `compressed` key: an `offset` at",
        "  depth > 0 is a host offset in that backing file. Runs are merged when the",
        "  next cluster's host offset is contiguous, so one run can span clusters.",
        "- Compressed clusters: `data: true` with no `offset`.",
        "- Zero clusters: `zero: true, data: false`; with an `offset` when the cluster is",
        "  still allocated (written, then zeroed), also for extended-L2 zero subclusters",
        "  inside an allocated cluster.",
        "- Unallocated in the whole chain: `present: false, zero: true` with `depth` =",
        "  the deepest layer (2 for chain-top.qcow2) -- but `depth: 0` past the end of a",
        "  backing file that is shorter than the image (raw-backing.qcow2 after 256 KiB).",
        "- `data_file_raw=on`: qemu-img allocates every cluster at creation, so",
        "  datafile.qcow2 maps never-written ranges as `data: true` with an `offset`.",
        "- Size: the folder must stay under 10 MiB (apparent size). To make room for the",
        "  other formats and the partitioned disks, v2.qcow2 uses 4 KiB clusters,",
        "  zlib/zstd/zero-clusters*/raw-backing.qcow2 16 KiB clusters, and the datafile and",
        "  raw-backing images are 256-512 KiB; the chain-* and extl2* images keep 64 KiB.",
        "- Other formats: vmdk-sparse.vmdk, vmdk-stream.vmdk, vhd-dynamic.vhd,",
        "  vdi-dynamic.vdi and parallels.hds are `qemu-img convert` of one 1 MiB source",
        "  (128 KiB text at 0, 48 KiB random + 16 KiB ramp at 512 KiB, a 0x5a last byte),",
        "  so all read back as the same bytes (VHD pads to its CHS size, 1079296 bytes).",
        "  qemu-img writes a whole block per allocated block: VHD 2 MiB, VDI 1 MiB, so those",
        "  two are ~2 MiB and ~1 MiB whatever the content. There is no VHDX sample: qemu-img",
        "  aligns every VHDX region to 1 MiB, so even an empty 1 MiB VHDX with",
        "  `block_size=1M,log_size=1M` is 8 MiB -- it does not fit; tests make VHDX",
        "  images with qemu-img instead. No `check.json` for these (qcow2 only).",
        "- Partitioned disks: each filesystem is made on its own file (mkfs.fat",
        "  `-s 1 -S 512 --invariant` plus mcopy/mdel; mke2fs `-d` with fixed UUID, hash",
        "  seed and E2FSPROGS_FAKE_TIME; mkntfs `-F -Q -s 512` plus ntfscp), dd'd into the",
        "  raw disk at the partition offset, and the disk is stored with",
        "  `qemu-img convert -c -O qcow2 -o cluster_size=4k`. The same small tree goes into",
        "  every filesystem (README.TXT, a long name with spaces, docs/notes.txt,",
        "  docs/sub/deep.txt, DELETED.TXT -- deleted with mdel on the FAT32 partition only;",
        "  NTFS gets README.TXT and notes.txt at its root). `--invariant` gives every FAT",
        "  the serial 1234-ABCD. mkntfs and ntfscp use random serials/GUIDs and the current",
        "  time, so the two partitioned images, their sha256 and the NTFS uuid change on",
        "  every run (the oracles are remade with them; the FAT and ext answers do not).",
        "- compat=0.10 (v2.qcow2): `write -z` leaves unallocated clusters unallocated and",
        "  writes real zeros into allocated ones; `qemu-img info` still reports",
        "  `compression-type: zlib` for it.",
        "- `qemu-img convert -c -O qcow` (7.2) exits with status 1 and no message after",
        "  writing every cluster; the script accepts that and checks that",
        "  v1-compressed.qcow reads back as the source bytes.",
        "- The compressed bytes in zlib.qcow2, zstd.qcow2 and v1-compressed.qcow depend on",
        "  the zlib/zstd library versions; regenerating elsewhere may change the image",
        "  files (and map offsets), never the raw sha256.",
    ]
    (HERE / "README.md").write_text("\n".join(lines) + "\n")


QEMU_VERSION = ""


def main() -> None:
    global QEMU_VERSION
    QEMU_VERSION = run("qemu-img", "--version").splitlines()[0].strip()

    for path in owned_files():
        path.unlink()
    for recipe in RECIPES:
        recipe()

    images = list(IMAGES)
    for name in images + list(EXTRA_FILES):
        densify(name)

    # Sanity checks of our own: the compressed images hold the source bytes.
    source_sha = hashlib.sha256(COMPRESSION_SOURCE).hexdigest()

    index: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="vdinspect-samples-") as tmp:
        tmpdir = Path(tmp)
        for name in images:
            oracle = answers(name, tmpdir)
            if name in SPARSE:
                sparsify(name)
                again = answers(name, tmpdir)
                assert comparable(again) == comparable(oracle), \
                    f"qemu-img answers differently for sparse {name}"
            for key, value in oracle.items():
                if key.endswith(".map.json"):
                    dump_map(key, value)
                elif key.endswith(".json"):
                    dump_json(key, value)
            (HERE / f"{name}.raw.sha256").write_text(oracle["raw_sha256"] + "\n")
            for snap, digest in oracle.get("snapshot_sha256", {}).items():
                (HERE / f"{name}@{snap}.raw.sha256").write_text(digest + "\n")

            info = oracle[f"{name}.info.json"]
            chain = info if isinstance(info, list) else [info]
            top = chain[0]
            index[name] = {
                "format": top["format"],
                "virtual_size": top["virtual-size"],
                "raw_sha256": oracle["raw_sha256"],
                "snapshots": oracle.get("snapshot_sha256", {}),
                "backing": [layer["filename"] for layer in chain[1:]],
                "data_file": top.get("format-specific", {}).get("data", {})
                                .get("data-file"),
            }
            index[name]["map_reliable"] = top["format"] not in MAP_UNRELIABLE_FORMATS
            if name in PARTITIONED:
                texts, parts = partition_answers(name, tmpdir)
                for key, value in texts.items():
                    if key.endswith(".json"):
                        dump_json(key, value)
                    else:
                        (HERE / key).write_text(value)
                index[name]["partitions"] = parts
            if name in OTHER_FORMATS:
                assert oracle["raw_sha256"] == hashlib.sha256(
                    FORMATS_SOURCE.ljust(top["virtual-size"], b"\0")).hexdigest(), name
            if name in ("zlib.qcow2", "zstd.qcow2", "v1-compressed.qcow"):
                assert oracle["raw_sha256"] == source_sha, name
    dump_json("oracles.json", index)

    write_readme([(n, d) for n, d in IMAGES.items()] + list(EXTRA_FILES.items()) + [
        ("make_samples.py", "the script that makes everything here"),
        ("oracles.json", "index of the oracle answers (see below)"),
    ])

    for path in HERE.iterdir():
        if path.is_file() and path.name != "make_samples.py":
            os.utime(path, (FIXED_MTIME, FIXED_MTIME))

    # Summary.
    print(f"{'image':<26} {'format':<6} {'virtual':>9} {'file':>10} {'on disk':>9}")
    for name in images + list(EXTRA_FILES):
        st = (HERE / name).stat()
        entry = index.get(name)
        print(f"{name:<26} {entry['format'] if entry else 'data':<6} "
              f"{entry['virtual_size'] if entry else '':>9} {st.st_size:>10} "
              f"{st.st_blocks * 512:>9}")
    files = [p for p in HERE.iterdir() if p.is_file()]
    apparent = sum(p.stat().st_size for p in files)
    on_disk = sum(p.stat().st_blocks * 512 for p in files)
    print(f"{len(files)} files, {apparent / MiB:.2f} MiB apparent, "
          f"{on_disk / MiB:.2f} MiB on disk")


if __name__ == "__main__":
    main()
