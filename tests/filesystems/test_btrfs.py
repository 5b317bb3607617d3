"""Btrfs: images made by mkfs.btrfs --rootdir, read back and compared with btrfs-progs
(``btrfs restore`` for contents and symlink targets, ``btrfs inspect-internal dump-tree``
for inode numbers, directory items and inode fields, ``btrfs-map-logical`` for where tree
blocks lie), never with vdinspect's own output. Shapes mkfs does not write (holes,
prealloc, shared extent ranges, zlib/LZO/zstd extents) are patched into its images from the
documented item layout and checked with ``btrfs restore``; the LZO decoder is checked
against lzop. Real images (subvolumes, snapshots, RAID sets): tests/test_btrfs_samples.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import re
import shutil
import struct
from pathlib import Path

import pandas as pd
import pytest

import vdinspect
from tests.conftest import SHARED_SAMPLES, have
from tests.test_bad_input import traced
from tests.tools import dig_holes, run, sparse_copy, write_sparse  # noqa: F401 (the one way the tests run a tool)
from vdinspect.errors import CorruptImage, VDInspectError
from vdinspect.filesystems.base import FileSystem
from vdinspect.filesystems.btrfs import open_filesystem
from vdinspect.filesystems.btrfs.lzo import LZOError
from vdinspect.filesystems.btrfs.lzo import decompress as lzo_decompress
from vdinspect.io import ByteSource, FileSource, MemorySource, Slice

needs_btrfs = pytest.mark.skipif(not have("mkfs.btrfs", "btrfs"), reason="needs btrfs-progs")
MiB = 1 << 20
SAMPLES = Path(os.environ.get("VDINSPECT_SHARED_SAMPLES", SHARED_SAMPLES))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- the source tree mkfs.btrfs copies -------------------------------------------------

def build_tree(root: Path, nfiles: int = 400) -> None:
    """Files of many shapes: inline-sized, multi-extent, sparse, large, linked."""
    (root / "dir" / "sub" / "deeper").mkdir(parents=True)
    (root / "empty").write_bytes(b"")
    (root / "tiny").write_bytes(b"tiny\n")
    (root / "inline3000").write_bytes(b"i" * 3000)
    (root / "onemeg").write_bytes(hashlib.sha256(b"seed").digest() * (MiB // 32))
    rnd = random.Random(7)
    (root / "random5m").write_bytes(rnd.randbytes(5 * MiB + 123))
    with open(root / "holes", "wb") as f:
        f.write(b"A" * 5000)
        f.seek(MiB)
        f.write(b"B" * 5000)
        f.seek(3 * MiB + 17)
        f.write(b"C")
    with open(root / "sparse_tail", "wb") as f:
        f.truncate(8 * MiB)
    deep = root / "deep" / "/".join(f"d{i}" for i in range(30))
    deep.mkdir(parents=True)
    (deep / "leaf").write_bytes(b"leaf")
    os.symlink("tiny", root / "link_rel")
    os.symlink("/etc/" + "s" * 200, root / "link_long")
    os.link(root / "tiny", root / "dir" / "tinylink")
    (root / "ünïcødé名前").write_bytes(b"unicode")
    for i in range(nfiles):
        (root / "dir" / "sub" / f"f{i:04d}").write_bytes(str(i).encode() * (i % 97 + 1))
    try:
        os.setxattr(root / "tiny", "user.colour", b"blue")
        os.setxattr(root / "dir", "user.note", b"x" * 300)
    except OSError:
        pass  # a host without user xattrs: the xattr test skips


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("btrfs-tree") / "src"
    root.mkdir()
    build_tree(root)
    return root


VARIANTS = {
    "default": [],  # DUP metadata, 16 KiB nodes, crc32c, no-holes
    "single-4k-nodes": ["-m", "single", "--nodesize", "4096"],
    "64k-nodes-dup-data": ["-d", "dup", "--nodesize", "65536"],
    "xxhash": ["--csum", "xxhash"],
    "sha256": ["--csum", "sha256"],
    "blake2": ["--csum", "blake2"],
}


def mkfs(tree: Path, out: Path, opts: list[str], size: int = 128 * MiB) -> Path:
    with open(out, "wb") as f:
        f.truncate(size)
    run("mkfs.btrfs", "-q", "-f", "-L", "vdtest", *opts, "--rootdir", tree, out)
    return out


@pytest.fixture(scope="module")
def images(tree, tmp_path_factory):
    if not have("mkfs.btrfs", "btrfs"):
        pytest.skip("needs btrfs-progs")
    d = tmp_path_factory.mktemp("btrfs-img")
    out = {}
    for name, opts in VARIANTS.items():
        try:
            out[name] = mkfs(tree, d / f"{name}.raw", opts)
        except RuntimeError as e:  # an older btrfs-progs without the option
            out[name] = e
    return out


def image(images, variant) -> Path:
    img = images[variant]
    if isinstance(img, Exception):
        pytest.skip(f"mkfs.btrfs cannot make {variant}: {img}")
    return img


def restored(img: Path, dest: Path) -> dict[str, tuple[str, str]]:
    """``btrfs restore`` of the image: path -> (kind, sha256 or symlink target)."""
    dest.mkdir()
    run("btrfs", "restore", "-S", img, dest)
    out = {}
    for dirpath, dirnames, filenames in os.walk(dest):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            rel = "/" + os.path.relpath(p, dest)
            if os.path.islink(p):
                out[rel] = ("symlink", os.readlink(p))
            elif os.path.isdir(p):
                out[rel] = ("dir", "")
            else:
                out[rel] = ("file", sha(Path(p).read_bytes()))
    return out


def ours(fs) -> dict[str, tuple[str, str]]:
    out = {}
    for e in fs.iter_entries("/"):
        if e.kind == "symlink":
            out[e.path] = ("symlink", e.target)
        elif e.kind == "dir":
            out[e.path] = ("dir", "")
        else:
            out[e.path] = ("file", sha(fs.read(e)))
    return out


_ITEM = re.compile(r"^\s+item \d+ key \((\d+) (\w+) (\d+)\)")


def dump_tree(img: Path, tree: str = "fs") -> dict:
    """dump-tree's INODE_ITEMs (ino -> fields) and DIR_INDEX entries (dir -> name -> ino)."""
    text = run("btrfs", "inspect-internal", "dump-tree", "-t", tree, img)
    inodes: dict[int, dict] = {}
    dirs: dict[int, dict[str, int]] = {}
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = _ITEM.match(line)
        if not m:
            continue
        obj, typ = int(m.group(1)), m.group(2)
        if typ == "INODE_ITEM":
            f = dict(re.findall(r"(\w+) (\d+)", lines[i + 1] + " " + lines[i + 2]))
            inodes[obj] = {k: int(v) for k, v in f.items()}
            inodes[obj]["mode"] = int(re.search(r"mode (\d+)", lines[i + 2]).group(1), 8)
            for t, sec, nsec in re.findall(r"(\w?time) (-?\d+)\.(\d+)",
                                           "\n".join(lines[i + 3:i + 8])):
                inodes[obj][t] = (int(sec), int(nsec))
        elif typ == "DIR_INDEX":
            child = int(re.search(r"location key \((\d+)", lines[i + 1]).group(1))
            name = lines[i + 3].split("name: ", 1)[1]
            dirs.setdefault(obj, {})[name] = child
    return dict(inodes=inodes, dirs=dirs)


# --- mkfs.btrfs images against btrfs-progs ------------------------------------------------

@needs_btrfs
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_content_matches_btrfs_restore(images, variant, tmp_path):
    img = image(images, variant)
    want = restored(img, tmp_path / "restore")
    fs = open_filesystem(FileSource(img))
    got = ours(fs)
    assert got == want
    assert len(got) > 400
    assert fs.check_rows() == []
    generic = FileSystem.files(fs)  # the directory-by-directory walk of the base class
    pd.testing.assert_frame_equal(fs.files(), generic)


@needs_btrfs
@pytest.mark.parametrize("variant", ["default", "single-4k-nodes"])
@pytest.mark.parametrize("via", ["file", "partition", "memory"])
def test_inodes_match_dump_tree(images, variant, via, tmp_path):
    """The listing against dump-tree, its leaves taken from the image file's memory map
    (``file``), from the map of a file holding the volume at an offset that is no
    multiple of a page (``partition``, a Slice), and read into buffers (``memory``)."""
    img = image(images, variant)
    dt = dump_tree(img)
    if via == "memory":
        src = MemorySource(img.read_bytes())
    elif via == "file":
        src = FileSource(img)
        assert src.view() is not None
    else:
        big = write_sparse(tmp_path / "at-63-sectors.raw", b"\xa5" * (63 * 512) + img.read_bytes())
        src = Slice(FileSource(big), 63 * 512, img.stat().st_size)
        [(host, at, n)] = src.host_ranges(0, 4096)  # how the volume finds its map
        assert bytes(host.view()[at:at + n]) == img.read_bytes()[:4096]
    fs = open_filesystem(src)
    df = fs.files()
    assert fs.check_rows() == []
    assert len(df) == sum(len(v) for v in dt["dirs"].values())
    by_path = {r.path: r for r in df.itertuples()}
    ino_of = {"/": 256}
    for r in sorted(by_path.values(), key=lambda r: r.path.count("/")):
        parent_ino = ino_of[r.parent]
        assert dt["dirs"][parent_ino][r.name] == r.inode, r.path
        ino_of[r.path] = r.inode
        f = dt["inodes"][r.inode]
        assert (r.size, r.links, r.uid, r.gid, r.mode) == (
            f["size"], f["links"], f["uid"], f["gid"], f["mode"]), r.path
        assert r.allocated == f["nbytes"]
        for col, t in (("modified", "mtime"), ("accessed", "atime"), ("changed", "ctime"),
                       ("created", "otime")):
            sec, nsec = f[t]
            got = getattr(r, col)
            if sec == 0 and nsec == 0:
                assert pd.isna(got), (r.path, col)
            else:
                assert got == pd.Timestamp(sec * 10**9 + nsec, tz="UTC").floor("us"), r.path
    info = fs.info()
    assert info["label"] == "vdtest"
    assert info["nodesize"] == int(re.search(r"nodesize\s+(\d+)", run(
        "btrfs", "inspect-internal", "dump-super", img)).group(1))


@needs_btrfs
def test_info_matches_dump_super(images):
    img = image(images, "sha256")
    text = run("btrfs", "inspect-internal", "dump-super", img)
    field = dict(re.findall(r"^(\w+)\s+(\S+)", text, re.M))
    info = open_filesystem(FileSource(img)).info()
    assert info["uuid"] == field["fsid"]
    assert info["generation"] == int(field["generation"])
    assert info["sectorsize"] == int(field["sectorsize"])
    assert info["num_devices"] == int(field["num_devices"])
    assert info["csum_type"] == "sha256" and "sha256" in text
    assert info["dirty"] is False
    assert info["size"] == int(field["total_bytes"])


@needs_btrfs
def test_sparse_and_holes(images, tree):
    fs = open_filesystem(FileSource(image(images, "default")))
    src = fs.content(fs.lookup("/sparse_tail"))
    assert src.size == 8 * MiB
    assert fs.read("/sparse_tail") == bytes(8 * MiB)
    assert fs.read("/holes") == (tree / "holes").read_bytes()
    with fs.open("/random5m") as f:
        f.seek(3 * MiB + 5)
        assert f.read(100_000) == (tree / "random5m").read_bytes()[3 * MiB + 5:][:100_000]


@needs_btrfs
def test_xattrs(images, tree):
    try:
        want = os.getxattr(tree / "tiny", "user.colour")
    except OSError:
        pytest.skip("host without user xattrs")
    fs = open_filesystem(FileSource(image(images, "default")))
    assert fs.xattrs("/tiny")["user.colour"] == want
    assert fs.xattrs("/dir")["user.note"] == os.getxattr(tree / "dir", "user.note")


@needs_btrfs
def test_extract_and_hard_links(images, tree, tmp_path):
    fs = open_filesystem(FileSource(image(images, "default")))
    rep = fs.extract("/dir", tmp_path / "out")
    assert not rep.skipped
    out = tmp_path / "out"
    assert (out / "tinylink").read_bytes() == b"tiny\n"
    for i in (0, 123, 399):
        name = f"f{i:04d}"
        assert (out / "sub" / name).read_bytes() == (tree / "dir" / "sub" / name).read_bytes()
    e1, e2 = fs.lookup("/tiny"), fs.lookup("/dir/tinylink")
    assert e1.inode == e2.inode and e1.links == 2


# --- data checksums ------------------------------------------------------------------------

def _physical(img: Path, logical: int) -> list[int]:
    text = run("btrfs-map-logical", "-l", logical, img)
    return [int(x) for x in re.findall(r"physical (\d+)", text)]


def _extent_of(img: Path, ino: int) -> int:
    """The disk_bytenr of a file's first regular extent, from dump-tree."""
    text = run("btrfs", "inspect-internal", "dump-tree", "-t", "fs", img)
    m = re.search(rf"key \({ino} EXTENT_DATA 0\).*?\n.*?\n\s+extent data disk byte (\d+)",
                  text)
    return int(m.group(1))


@needs_btrfs
def test_data_checksum_mismatch(images, tmp_path):
    img = tmp_path / "bad.raw"
    sparse_copy(image(images, "default"), img)
    ino = dump_tree(img)["dirs"][256]["onemeg"]
    logical = _extent_of(img, ino) + 8192  # the third sector of the file
    (phys,) = _physical(img, logical)[:1]
    with open(img, "r+b") as f:
        f.seek(phys + 10)
        f.write(b"\xff\xfe")
    strict = open_filesystem(FileSource(img))
    with pytest.raises(CorruptImage, match="checksum"):
        strict.read("/onemeg")
    fs = open_filesystem(FileSource(img), strict=False)
    data = fs.read("/onemeg")
    assert data[8192:12288] == bytes(4096)
    assert fs.damaged_ranges("/onemeg") == [(8192, 4096)]
    rows = fs.check_rows()
    assert any(r["structure"] == "data" and "checksum" in r["message"] for r in rows)
    df = fs.files()
    dmg = dict(zip(df.path, df.damaged))
    assert dmg["/onemeg"] == 4096 and dmg["/tiny"] == 0


# --- extent shapes mkfs.btrfs does not write: patched from the documented item layout ------

#: btrfs_file_extent_item: generation u64, ram_bytes u64, compression u8, encryption u8,
#: other_encoding u16, type u8 (0 inline, 1 regular, 2 prealloc), then disk_bytenr u64,
#: disk_num_bytes u64, offset u64, num_bytes u64 (the Btrfs on-disk format documentation)
FE_TYPE, FE_DISK_BYTENR, FE_OFFSET, FE_NUM_BYTES = 20, 21, 37, 45


def _leaf_items(img: Path, ino: int, typ: str) -> tuple[int, dict[int, int]]:
    """(leaf logical address, {key offset: itemoff}) of an inode's items in dump-tree."""
    leaf, out = None, {}
    for line in run("btrfs", "inspect-internal", "dump-tree", "-t", "fs", img).splitlines():
        m = re.match(r"^leaf (\d+) items", line)
        if m:
            leaf = int(m.group(1))
        m = re.match(rf"^\s+item \d+ key \({ino} {typ} (\d+)\) itemoff (\d+)", line)
        if m:
            out[int(m.group(1))] = int(m.group(2))
            found = leaf
    return found, out


@needs_btrfs
def test_holes_prealloc_and_shared_extent_ranges(tmp_path):
    """A 4 MiB file of four 1 MiB extents, its items then made: a preallocated extent, an
    explicit hole (disk_bytenr 0), and a range 4 KiB into another item's extent (as a
    reflink or a partly overwritten extent leaves), which leaves a 4 KiB NO_HOLES gap.
    The oracle is ``btrfs restore`` of the patched image (and the arithmetic of it)."""
    pytest.importorskip("crc32c")
    src = tmp_path / "t"
    src.mkdir()
    orig = random.Random(5).randbytes(4 * MiB)
    (src / "multi").write_bytes(orig)
    img = mkfs(src, tmp_path / "p.raw", ["-m", "single"], size=200 * MiB)
    ino = dump_tree(img)["dirs"][256]["multi"]
    leaf, items = _leaf_items(img, ino, "EXTENT_DATA")
    assert sorted(items) == [0, MiB, 2 * MiB, 3 * MiB]
    (phys,) = _physical(img, leaf)
    nodesize = 16384
    with open(img, "r+b") as f:
        f.seek(phys)
        block = bytearray(f.read(nodesize))
        at = {k: 101 + v for k, v in items.items()}  # data follows the 101-byte header
        first = struct.unpack_from("<Q", block, at[0] + FE_DISK_BYTENR)[0]
        block[at[0] + FE_TYPE] = 2  # prealloc
        # an explicit hole as the kernel writes one: disk_bytenr and disk_num_bytes 0
        struct.pack_into("<QQ", block, at[MiB] + FE_DISK_BYTENR, 0, 0)
        struct.pack_into("<QQQQ", block, at[2 * MiB] + FE_DISK_BYTENR, first, MiB, 4096,
                         MiB - 4096)
        f.seek(phys)
        f.write(_with_csum(block))
    want = bytes(2 * MiB) + orig[4096:MiB] + bytes(4096) + orig[3 * MiB:]
    out = tmp_path / "restore"
    out.mkdir()
    run("btrfs", "restore", img, out)
    assert (out / "multi").read_bytes() == want
    fs = open_filesystem(FileSource(img))
    assert fs.read("/multi") == want
    f = fs.content(fs.lookup("/multi"))
    assert f.seek_data(0) == 2 * MiB
    # host ranges: prealloc and the hole as zeros (never the prealloc extent's old bytes),
    # the shifted range 4 KiB into the first extent, the NO_HOLES gap as zeros
    pieces = f.host_ranges(0, 4 * MiB)
    assert pieces[0] == (None, 0, 2 * MiB)
    assert b"".join(bytes(k) if h is None else os.pread(h.fd, k, o)
                    for h, o, k in pieces) == want
    with fs.open("/multi") as fh:
        fh.seek(3 * MiB - 100)
        assert fh.read(200) == want[3 * MiB - 100:3 * MiB + 100]


FE_RAM_BYTES, FE_COMPRESSION = 8, 16


def _lzo_btrfs(plain: bytes, tmp: Path) -> bytes:
    """``plain`` in Btrfs's LZO framing, each 4 KiB piece compressed by lzop: a 4-byte
    total length, then (4-byte length, LZO1X data) segments whose headers never straddle
    a 4 KiB sector (zeros pad to the next sector instead)."""
    out = bytearray(4)
    for k in range(0, len(plain), 4096):
        (tmp / "piece").write_bytes(plain[k:k + 4096])
        run("lzop", "-1", "-f", "-o", tmp / "piece.lzo", tmp / "piece")
        ((data, n, compressed),) = _lzop_blocks((tmp / "piece.lzo").read_bytes())
        assert compressed and n == min(4096, len(plain) - k), (k, n, compressed, len(data))
        if 4096 - len(out) % 4096 < 4:
            out += bytes(4096 - len(out) % 4096)
        out += struct.pack("<I", len(data)) + data
    struct.pack_into("<I", out, 0, len(out))
    return bytes(out)


def _csum_slots(img: Path) -> dict[int, tuple[int, int]]:
    """Where each data sector's crc32c is stored: sector logical -> (leaf, byte in leaf)."""
    out, leaf = {}, None
    for line in run("btrfs", "inspect-internal", "dump-tree", "-t", "csum", img).splitlines():
        m = re.match(r"^leaf (\d+) items", line)
        if m:
            leaf = int(m.group(1))
        m = re.match(r"^\s+item \d+ key \(EXTENT_CSUM EXTENT_CSUM (\d+)\) itemoff (\d+) "
                     r"itemsize (\d+)", line)
        if m:
            base, off, size = map(int, m.groups())
            for k in range(size // 4):
                out[base + k * 4096] = (leaf, 101 + off + 4 * k)
    return out


@needs_btrfs
@pytest.mark.skipif(not have("lzop"), reason="needs lzop")
def test_compressed_extents_patched_in(tmp_path):
    """Three 128 KiB files whose single extents are replaced by zlib, LZO (Btrfs framing
    around lzop's LZO1X) and zstd data, with the item's compression field and the data
    checksums updated; ``btrfs restore`` of the result is the oracle."""
    crc32c = pytest.importorskip("crc32c")
    zstandard = pytest.importorskip("zstandard")
    import zlib

    src = tmp_path / "t"
    src.mkdir()
    rnd = random.Random(11)
    words = [rnd.randbytes(rnd.randint(2, 9)).hex().encode() for _ in range(40)]
    plain = {}
    for name in ("zlib", "lzo", "zstd"):
        text = b" ".join(rnd.choice(words) for _ in range(40000))[:128 * 1024]
        plain[name] = text
        (src / name).write_bytes(text)
    img = mkfs(src, tmp_path / "c.raw", ["-m", "single"], size=200 * MiB)
    inos = dump_tree(img)["dirs"][256]
    slots = _csum_slots(img)
    leaves: dict[int, bytearray] = {}

    def leaf(logical: int) -> bytearray:
        if logical not in leaves:
            with open(img, "rb") as f:
                f.seek(_physical(img, logical)[0])
                leaves[logical] = bytearray(f.read(16384))
        return leaves[logical]

    codes = {"zlib": 1, "lzo": 2, "zstd": 3}
    with open(img, "r+b") as f:
        for name, code in codes.items():
            packed = {"zlib": lambda b: zlib.compress(b, 6),
                      "lzo": lambda b: _lzo_btrfs(b, tmp_path),
                      "zstd": lambda b: zstandard.ZstdCompressor().compress(b)}[name](
                plain[name])
            assert len(packed) < 120 * 1024
            packed += bytes(128 * 1024 - len(packed))
            lf, items = _leaf_items(img, inos[name], "EXTENT_DATA")
            assert list(items) == [0]
            block = leaf(lf)
            at = 101 + items[0]
            disk = struct.unpack_from("<Q", block, at + FE_DISK_BYTENR)[0]
            block[at + FE_COMPRESSION] = code
            f.seek(_physical(img, disk)[0])
            f.write(packed)
            for k in range(0, len(packed), 4096):
                cl, pos = slots[disk + k]
                struct.pack_into("<I", leaf(cl), pos, crc32c.crc32c(packed[k:k + 4096]))
        for logical, block in leaves.items():
            f.seek(_physical(img, logical)[0])
            f.write(_with_csum(block))
    out = tmp_path / "restore"
    out.mkdir()
    run("btrfs", "restore", img, out)
    fs = open_filesystem(FileSource(img))
    for name, code in codes.items():
        assert (out / name).read_bytes() == plain[name]
        e = fs.lookup("/" + name)
        assert [p.codec for p in fs.content(e).pieces] == [code]
        assert fs.read(e) == plain[name]
        assert fs.content(e).host_ranges(0, e.size) is None  # decoded: never copied raw
    assert fs.check_rows() == []


@needs_btrfs
def test_dup_second_copies_used(images, tree, tmp_path):
    """DUP metadata and data: the first copy of an FS-tree leaf and of a data sector are
    damaged; the reader takes the second copies (btrfs-map-logical says where they are)."""
    img = tmp_path / "dup.raw"
    sparse_copy(image(images, "64k-nodes-dup-data"), img)
    leaf = int(re.search(r"^leaf (\d+) items", run(
        "btrfs", "inspect-internal", "dump-tree", "-t", "fs", img), re.M).group(1))
    ino = dump_tree(img)["dirs"][256]["onemeg"]
    data = _extent_of(img, ino)
    for logical in (leaf, data):
        copies = _physical(img, logical)
        assert len(copies) == 2
        with open(img, "r+b") as f:
            f.seek(copies[0] + 200)
            f.write(b"\xde\xad" * 8)
    fs = open_filesystem(FileSource(img))
    assert fs.read("/onemeg") == (tree / "onemeg").read_bytes()
    got, want = ours(fs), restored(img, tmp_path / "restore")
    # btrfs restore does not check data checksums: it copies the damaged first copy
    assert want.pop("/onemeg") != got.pop("/onemeg")
    assert got == want  # the leaf's items, from its second copy
    warned = {r["host_offset"] for r in fs.check_rows() if r["severity"] == "warning"}
    assert {leaf, data} <= warned


# --- partitioned and wrapped ----------------------------------------------------------------

@needs_btrfs
@pytest.mark.skipif(not have("qemu-img", "sfdisk"), reason="needs qemu-img and sfdisk")
def test_gpt_qcow2_and_cli(images, tree, tmp_path, capsys):
    img = image(images, "default")
    disk = tmp_path / "disk.raw"
    size = img.stat().st_size
    with open(disk, "wb") as f:
        f.truncate(size + 4 * MiB)
    run("sfdisk", "-q", disk, input=b"label: gpt\n2048,,L\n")
    with open(img, "rb") as src, open(disk, "r+b") as dst:
        dst.seek(2048 * 512)
        shutil.copyfileobj(src, dst, MiB)
    dig_holes(disk)
    q = tmp_path / "disk.qcow2"
    run("qemu-img", "convert", "-O", "qcow2", disk, q)
    with vdinspect.open(q) as d:
        parts = d.partitions()
        assert "btrfs" in set(parts.filesystem.dropna())
        fs = d.filesystem(1)
        assert fs.read("/onemeg") == (tree / "onemeg").read_bytes()
    from vdinspect.cli import main

    assert main(["ls", "-r", "--part", "1", str(q), "/dir/sub"]) == 0
    out = capsys.readouterr().out
    assert "f0399" in out


# --- hostile input ---------------------------------------------------------------------------

class Patched(ByteSource):
    """An image with some blocks replaced, without copying it (the hostile trials)."""

    def __init__(self, base: bytes, patches: dict[int, bytes]) -> None:
        self.base, self.patches, self.size, self.name = base, patches, len(base), "patched"

    def _read(self, offset: int, length: int) -> bytes:
        out = bytearray(self.base[offset:offset + length])
        for at, blob in self.patches.items():
            a, b = max(at, offset), min(at + len(blob), offset + length)
            if a < b:
                out[a - offset:b - offset] = blob[a - at:b - at]
        return bytes(out)


def _with_csum(block: bytearray) -> bytes:
    import crc32c

    struct.pack_into("<I", block, 0, crc32c.crc32c(bytes(block[32:])))
    return bytes(block)


def _leaves(img: Path) -> list[int]:
    text = run("btrfs", "inspect-internal", "dump-tree", img)
    return sorted({int(x) for x in re.findall(r"^(?:leaf|node) (\d+)", text, re.M)})


@needs_btrfs
@pytest.mark.slow
def test_hostile_mutations_stay_bounded(tree, tmp_path):
    pytest.importorskip("crc32c")
    small = tmp_path / "t"
    small.mkdir()
    (small / "d").mkdir()
    for i in range(60):
        (small / "d" / f"n{i}").write_bytes(bytes([i]) * (i * 100))
    os.symlink("d/n1", small / "l")
    img = mkfs(small, tmp_path / "small.raw", ["-m", "single", "--nodesize", "4096"],
               size=128 * MiB)
    clean = img.read_bytes()
    blocks = []
    for b in _leaves(img):
        try:
            blocks.append((b, _physical(img, b)[0]))
        except (RuntimeError, IndexError):
            continue  # a block btrfs-map-logical does not place (system chunk)
    assert len(blocks) >= 3
    rnd = random.Random(18)
    for trial in range(120):
        what = trial % 3
        if what == 2:  # a tree block's header and item headers, or anywhere (item data)
            at = rnd.choice(blocks)[1]
            size, span = 4096, rnd.choice((600, 4096))
        else:  # superblock fields, or the sys_chunk_array (checksum fixed)
            at, size = 0x10000, 4096
            span = 0x32B + 200
        block = bytearray(clean[at:at + size])
        for _ in range(rnd.randint(1, 5)):
            if what == 1:
                block[0x32B + rnd.randrange(0, 97)] = rnd.randrange(256)
            else:
                block[0x40 + rnd.randrange(0, span - 0x40)] = rnd.randrange(256)
        src = Patched(clean, {at: _with_csum(block)})
        # every fourth trial under the project's memory bound (tracemalloc is slow)
        guard = traced(f"trial {trial}") if trial % 4 == 0 else contextlib.nullcontext()
        with guard:
            for strict in (True, False):
                try:
                    fs = open_filesystem(src, strict=strict)
                    for e in fs.iter_entries("/"):
                        if e.kind == "file":
                            fs.read(e)
                    fs.files()
                    fs.check_rows()
                except VDInspectError:
                    pass


@needs_btrfs
def test_node_pointing_twice_at_one_child(tmp_path):
    """A node whose last key pointer is made to name the first child's block (what a
    hostile image does to repeat a subtree): the child's keys do not start at that
    pointer's key, so it is refused: strict mode raises, salvage lists each entry once."""
    pytest.importorskip("crc32c")
    src = tmp_path / "t"
    src.mkdir()
    for i in range(300):
        (src / f"file{i:03d}").write_bytes(b"x" * 10)
    img = mkfs(src, tmp_path / "n.raw", ["-m", "single", "--nodesize", "4096"])
    text = run("btrfs", "inspect-internal", "dump-tree", "-t", "fs", img)
    node = int(re.search(r"^node (\d+) level 1", text, re.M).group(1))
    (phys,) = _physical(img, node)
    with open(img, "r+b") as f:
        f.seek(phys)
        block = bytearray(f.read(4096))
        # key pointers follow the 101-byte header: 17-byte key, blockptr u64, generation u64
        first_child = struct.unpack_from("<Q", block, 101 + 17)[0]
        nritems = struct.unpack_from("<I", block, 96)[0]  # header: ... owner u64, nritems
        last = 101 + 33 * (nritems - 1)
        struct.pack_into("<Q", block, last + 17, first_child)
        f.seek(phys)
        f.write(_with_csum(block))
    strict = open_filesystem(FileSource(img))
    with pytest.raises(CorruptImage, match="outside the range"):
        for i in range(300):
            strict.stat(f"/file{i:03d}")
    fs = open_filesystem(FileSource(img), strict=False)
    df = fs.files()
    assert df.path.is_unique and len(df) <= 300
    assert any("outside the range" in r["message"] for r in fs.check_rows())


@needs_btrfs
def test_primary_superblock_destroyed_uses_mirror(images, tree, tmp_path):
    img = tmp_path / "m.raw"
    sparse_copy(image(images, "single-4k-nodes"), img)
    with open(img, "r+b") as f:
        f.seek(0x10000)
        f.write(bytes(4096))
    text = run("btrfs", "inspect-internal", "dump-super", "-s", "1", img)
    gen = int(re.search(r"^generation\s+(\d+)", text, re.M).group(1))
    fs = open_filesystem(FileSource(img))
    assert fs.info()["superblock"] == 0x4000000 and fs.info()["generation"] == gen
    assert fs.read("/onemeg") == (tree / "onemeg").read_bytes()
    assert any(r["host_offset"] == 0x4000000 for r in fs.check_rows())


def test_not_btrfs():
    with pytest.raises(VDInspectError):
        open_filesystem(MemorySource(bytes(1 << 20)))


# --- LZO against lzop --------------------------------------------------------------------

def _lzop_blocks(blob: bytes) -> list[tuple[bytes, int, bool]]:
    """The blocks of an .lzo file (lzop's container: header, then blocks of uncompressed
    length, compressed length, checksums, data) as (data, length, LZO1X-compressed)."""
    assert blob[:9] == b"\x89LZO\x00\r\n\x1a\n"
    pos = 9
    version, _lib, = struct.unpack_from(">HH", blob, pos)
    pos += 4
    if version >= 0x0940:
        pos += 2  # version needed
    pos += 1  # method
    if version >= 0x0940:
        pos += 1  # level
    (flags,) = struct.unpack_from(">I", blob, pos)
    pos += 4
    if flags & 0x800:
        pos += 4  # filter
    pos += 8  # mode, mtime low
    if version >= 0x0940:
        pos += 4  # mtime high
    pos += 1 + blob[pos]  # name
    pos += 4  # header checksum
    out = []
    while True:
        (dst_len,) = struct.unpack_from(">I", blob, pos)
        pos += 4
        if dst_len == 0:
            return out
        (src_len,) = struct.unpack_from(">I", blob, pos)
        pos += 4
        pos += 4 * bool(flags & 0x101)  # checksum of the uncompressed data
        if src_len < dst_len:
            pos += 4 * bool(flags & 0x202)  # checksum of the compressed data
        out.append((blob[pos:pos + src_len], dst_len, src_len < dst_len))
        pos += src_len


@pytest.mark.skipif(not have("lzop"), reason="needs lzop")
@pytest.mark.parametrize("level", ["-1", "-9"])
def test_lzo1x_matches_lzop(tmp_path, level):
    rnd = random.Random(3)
    words = [rnd.randbytes(rnd.randint(1, 12)) for _ in range(300)]
    plain = b"".join(rnd.choice(words) for _ in range(60000)) + bytes(70000) + rnd.randbytes(
        5000) + b"ab" * 9000
    src = tmp_path / "p"
    src.write_bytes(plain)
    run("lzop", level, "-f", "-o", tmp_path / "p.lzo", src)
    blocks = _lzop_blocks((tmp_path / "p.lzo").read_bytes())
    assert sum(c for _d, _n, c in blocks) >= 2
    got = b"".join(lzo_decompress(d, n) if c else d for d, n, c in blocks)
    assert got == plain
    data, n, _c = next(b for b in blocks if b[2])
    with pytest.raises(LZOError):
        lzo_decompress(data[: len(data) // 2], n)
    with pytest.raises(LZOError):
        lzo_decompress(data, n // 2)  # more output than allowed


@needs_btrfs
def test_lost_inode_items_are_named_not_extracted_empty(tmp_path):
    """Nothing lost silently (issue 16): a zeroed FS-tree leaf takes the INODE_ITEMs of
    some files with it (which ones: dump-tree of the intact image). Their names still list,
    with a note; extraction skips them as unreadable instead of writing empty files, and
    the CLI exits 1."""
    src = tmp_path / "src"
    (src / "big").mkdir(parents=True)
    for i in range(300):
        (src / "big" / f"file-with-a-long-name-{i}.txt").write_text(f"{i}\n")
    img = mkfs(src, tmp_path / "b.raw", ["-m", "single", "--nodesize", "4096"])
    text = run("btrfs", "inspect-internal", "dump-tree", "-t", "fs", img)
    leaves = re.split(r"^(?=leaf \d+)", text, flags=re.M)
    # a leaf holding inode items and no directory items (the names stay readable)
    by_leaf = {int(m.group(1)): set(map(int, re.findall(r"key \((\d+) INODE_ITEM 0\)", part)))
               for part in leaves if (m := re.match(r"leaf (\d+)", part))
               and "DIR_INDEX" not in part and "DIR_ITEM" not in part}
    leaf, inodes = max(by_leaf.items(), key=lambda kv: len(kv[1]))
    assert inodes
    bad = tmp_path / "bad.raw"
    data = bytearray(img.read_bytes())
    at = _physical(img, leaf)[0]
    data[at:at + 4096] = bytes(4096)
    write_sparse(bad, data)
    from vdinspect.cli import main as cli_main
    from vdinspect.io import FileSource

    fs = open_filesystem(FileSource(bad), strict=False)
    df = fs.files()
    noted = set(df[df["note"].fillna("").str.contains("no INODE_ITEM")]["inode"])
    assert noted == inodes - {256}  # the names whose items went with the leaf
    report = fs.extract("/", tmp_path / "out")
    assert len([w for _p, w in report.skipped if "no INODE_ITEM" in w]) == len(noted)
    assert cli_main(["extract", "--salvage", str(bad), "/", str(tmp_path / "out2")]) == 1
