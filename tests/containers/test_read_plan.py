"""The fast read path (one table lookup per unit, contiguous host ranges in one pread)
against qemu-img convert -O raw, format by format, with random offsets and lengths (fixed
seed). Each image is written by qemu-img from a sparse raw file; the oracle is qemu-img's
own reading of the image, never the raw source or vdinspect."""

from __future__ import annotations

import json
import random
import struct
import subprocess
from pathlib import Path

import pytest

import vdinspect
from tests import qemu_tools as q
from tests.conftest import needs_qemu

pytestmark = needs_qemu

K, M = 1 << 10, 1 << 20
SIZE = 24 * M

FORMATS = {  # label: (qemu-img -O, -o options)
    "qcow2": ("qcow2", ""),
    "qcow2-extl2": ("qcow2", "extended_l2=on,cluster_size=64k"),
    "qcow2-4k": ("qcow2", "cluster_size=4096"),
    "qcow": ("qcow", ""),
    "vmdk-sparse": ("vmdk", "subformat=monolithicSparse"),
    "vmdk-split": ("vmdk", "subformat=twoGbMaxExtentSparse"),
    "vmdk-flat": ("vmdk", "subformat=monolithicFlat"),
    "vhd-dynamic": ("vpc", "subformat=dynamic"),
    "vhd-fixed": ("vpc", "subformat=fixed"),
    "vhdx": ("vhdx", "block_size=1M"),
    "vdi": ("vdi", ""),
    "parallels": ("parallels", ""),
}


def sparse_source(path: Path, seed: int) -> None:
    """Random pieces of data (some of them zeros), holes between them."""
    rnd = random.Random(seed)
    with open(path, "wb") as f:
        f.truncate(SIZE)
        pos = 0
        while pos < SIZE:
            pos += rnd.choice((0, 4 * K, 60 * K, 300 * K, M))
            if pos >= SIZE:
                break
            n = min(SIZE - pos, rnd.choice((512, 8 * K, 64 * K + 512, 700 * K)))
            f.seek(pos)
            f.write(bytes(n) if rnd.random() < 0.2 else rnd.randbytes(n))
            pos += n


def random_ranges(rnd: random.Random, size: int, n: int) -> list[tuple[int, int]]:
    out = []
    for _ in range(n):
        length = rnd.choice((1, 511, 4 * K, 64 * K + 123, M + 7, 3 * M))
        off = rnd.randrange(size)
        out.append((off, min(length, size - off)))
    return out


def check_reads(disk, oracle: bytes, seed: int, n: int = 200) -> None:
    for off, length in random_ranges(random.Random(seed), len(oracle), n):
        assert disk.read(off, length) == oracle[off : off + length], (off, length)


@pytest.mark.parametrize("label", list(FORMATS))
def test_random_reads_match_qemu(label, tmp_path):
    fmt, opts = FORMATS[label]
    src = tmp_path / "source.raw"
    sparse_source(src, seed=11)
    img = tmp_path / f"image.{label}"
    q.qemu_img("convert", "-O", fmt, *(["-o", opts] if opts else []), str(src), str(img))
    oracle = q.to_raw_bytes(img, tmp_path, fmt=fmt)
    with vdinspect.open(str(img)) as disk:
        top = disk.chain.top
        # the fast path is the one being tested: it answers without the runs
        assert top.plan(0, disk.size) is not None
        assert disk.read(0, disk.size) == oracle
        check_reads(disk, oracle, seed=5)


@pytest.mark.parametrize("base_fmt", ["qcow2", "vmdk", "vdi", "raw"])
def test_chain_reads_match_qemu(base_fmt, tmp_path):
    """A QCOW2 top over a base of another format: holes of the top read the base."""
    src = tmp_path / "source.raw"
    sparse_source(src, seed=12)
    base = tmp_path / "base.img"
    q.qemu_img("convert", "-O", base_fmt, str(src), str(base))
    top = tmp_path / "top.qcow2"
    q.create(top, SIZE, "qcow2", backing="base.img", backing_fmt=base_fmt)
    rnd = random.Random(3)
    cmds = []
    for _ in range(40):
        off = rnd.randrange(SIZE // 512) * 512
        n = min(rnd.choice((512, 4 * K, 100 * K)), SIZE - off)
        cmds.append(f"write -q -P {rnd.randrange(256)} {off} {n}" if rnd.random() < 0.8
                    else f"write -q -z {off} {n}")
    q.qemu_io(top, *cmds)
    oracle = q.to_raw_bytes(top, tmp_path)
    with vdinspect.open(str(top)) as disk:
        assert disk.chain.plan(0, disk.size) is not None
        assert disk.read(0, disk.size) == oracle
        check_reads(disk, oracle, seed=6)


# --- compressed units inflated ahead by a thread pool ---------------------------------------


def compressed_image(tmp_path, fmt: str) -> Path:
    """Compressed clusters (QCOW2, QCOW: zlib) or grains (VMDK streamOptimized)."""
    src = tmp_path / "source.raw"
    sparse_source(src, seed=13)
    img = tmp_path / f"compressed.{fmt}"
    if fmt == "vmdk":
        q.qemu_img("convert", "-O", "vmdk", "-o", "subformat=streamOptimized", str(src), str(img))
    elif fmt == "qcow":
        # qemu-img 7.x ends a compressed qcow convert with a zero-length write the driver
        # refuses (exit 1 after every cluster is written): qemu-img compare vouches for it
        r = subprocess.run(["qemu-img", "convert", "-q", "-c", "-f", "raw", "-O", "qcow",
                            str(src), str(img)], capture_output=True)
        assert r.returncode in (0, 1)
        q.qemu_img("compare", "-q", "-f", "raw", "-F", "qcow", str(src), str(img))
    else:
        q.qemu_img("convert", "-c", "-O", fmt, str(src), str(img))
    return img


@pytest.mark.parametrize("fmt", ["qcow2", "qcow", "vmdk"])
@pytest.mark.parametrize("workers", [1, 4])
def test_inflate_ahead_matches_qemu(fmt, workers, tmp_path):
    img = compressed_image(tmp_path, fmt)
    oracle = q.to_raw_bytes(img, tmp_path)
    out = tmp_path / "out.raw"
    with vdinspect.open(str(img)) as disk:
        assert disk.chain.top.runs().compressed.sum() > 10
        disk.chain.top.workers = workers
        assert disk.read(0, disk.size) == oracle  # one large read: many units at once
        check_reads(disk, oracle, seed=7, n=60)
        disk.to_raw(out, workers=workers)
    assert out.read_bytes() == oracle


def corrupt_compressed_cluster(path: Path, index: int) -> None:
    """Garble the data of guest cluster ``index`` (compressed, in the first L2 table), found
    from the QCOW2 specification's header, L1 and L2 layout."""
    data = bytearray(path.read_bytes())
    cluster_bits = struct.unpack_from(">I", data, 20)[0]
    l1_off = struct.unpack_from(">Q", data, 40)[0]
    l2_off = struct.unpack_from(">Q", data, l1_off)[0] & 0x00FFFFFFFFFFFE00
    entry = struct.unpack_from(">Q", data, l2_off + 8 * index)[0]
    assert entry >> 62 & 1, "a compressed cluster"
    host = entry & ((1 << (62 - (cluster_bits - 8))) - 1)
    data[host : host + 32] = b"\xff" * 32
    path.write_bytes(bytes(data))


def test_damaged_compressed_cluster_with_workers(tmp_path):
    img = tmp_path / "c.qcow2"
    q.create(img, 4 * M)
    q.qemu_io(img, *(f"write -q -c -P {0x41 + k} {k * 64 * K} 64k" for k in range(8)))
    corrupt_compressed_cluster(img, 5)
    with vdinspect.open(str(img)) as disk:
        disk.chain.top.workers = 4
        with pytest.raises(vdinspect.errors.CorruptImage, match="compressed cluster"):
            disk.read(0, 8 * 64 * K)
    with vdinspect.open(str(img), strict=False) as disk:
        disk.chain.top.workers = 4
        got = disk.read(0, 8 * 64 * K)
        for k in range(8):
            piece = got[k * 64 * K : (k + 1) * 64 * K]
            assert piece == (bytes(64 * K) if k == 5 else bytes([0x41 + k]) * (64 * K))
        rows = disk.check()
        assert (rows.message.str.contains("compressed cluster") & (rows.severity == "error")).any()


# --- small reads: one table lookup and one pread (Image.locate) ------------------------------


@pytest.mark.parametrize("label", list(FORMATS))
def test_small_reads_match_qemu(label, tmp_path):
    """Reads of 1 byte to 4 KiB, aligned and not, some across unit boundaries, through
    read() and readinto(), against qemu-img's reading of the image."""
    fmt, opts = FORMATS[label]
    src = tmp_path / "source.raw"
    sparse_source(src, seed=14)
    img = tmp_path / f"image.{label}"
    q.qemu_img("convert", "-O", fmt, *(["-o", opts] if opts else []), str(src), str(img))
    oracle = q.to_raw_bytes(img, tmp_path, fmt=fmt)
    rnd = random.Random(8)
    located = 0
    with vdinspect.open(str(img)) as disk:
        for _ in range(600):
            length = rnd.choice((1, 512, 4 * K, 4 * K, 3000))
            off = rnd.randrange(len(oracle) - length)
            if rnd.random() < 0.5:
                off -= off % length
            located += disk.chain.locate(off, length) is not None
            assert disk.read(off, length) == oracle[off : off + length], (off, length)
            buf = bytearray(length)
            disk.readinto(off, buf)
            assert buf == oracle[off : off + length], (off, length)
    if label != "qcow":  # QCOW v1 has no one-lookup path: its plan answers every read
        assert located > 300  # most small reads took the one-lookup path under test


@pytest.mark.parametrize("fmt", ["qcow2", "vmdk", "vdi", "parallels"])
def test_small_read_past_cut_file(fmt, tmp_path):
    """A data unit cut off by the end of the file: a small read of it raises in strict
    mode and reads as zeros, reported, in salvage mode (the one-lookup path keeps this)."""
    img = tmp_path / f"whole.{fmt}"
    q.create(img, 8 * M, fmt)
    q.qemu_io(img, "write -q -P 0x5a 0 4M", fmt=fmt)
    with vdinspect.open(str(img)) as disk:
        runs = [r for r in disk.chain.top.runs() if r.state == "data"]
        last = max(runs, key=lambda r: r.host_offset + r.length)
        # the guest offset of the last host byte's unit, then cut the file inside it
        guest = last.end - 4 * K
        host_end = last.host_offset + last.length
    cut = tmp_path / f"cut-short.{fmt}"
    cut.write_bytes(img.read_bytes()[: host_end - 2 * K])
    img = cut
    with pytest.raises(vdinspect.errors.CorruptImage):  # at open (VDI) or at the read
        with vdinspect.open(str(img)) as disk:
            disk.read(guest, 4 * K)
    with vdinspect.open(str(img), strict=False) as disk:
        got = disk.read(guest, 4 * K)
        assert got[: 2 * K] == b"\x5a" * (2 * K) and got[2 * K :] == bytes(2 * K)
        assert disk.damaged_ranges(guest, 4 * K) == [(guest + 2 * K, 2 * K)]


# --- VHD differencing: blocks partly present by their sector bitmaps -----------------------


def test_vhd_differencing_reads_match_qemu(tmp_path):
    """A differencing VHD (written from the spec by tests/vhd_builder: full, empty,
    scattered and stretched sector bitmaps, unallocated blocks) over a qemu-written dynamic
    parent, read at random through the one-lookup path and the plan. qemu-img cannot open
    the chain (vpc has no backing files) and reads a block's data area whatever its bitmap
    says, so the oracle is qemu-img convert of each file, merged sector by sector by the
    bitmaps the builder wrote: a set bit reads the child, a clear one the parent."""
    import numpy as np

    from tests import vhd_builder as vb

    src = tmp_path / "source.raw"
    sparse_source(src, seed=15)
    parent = tmp_path / "parent.vhd"
    q.qemu_img("convert", "-O", "vpc", "-o", "subformat=dynamic", str(src), str(parent))
    parent_raw = q.to_raw_bytes(parent, tmp_path, fmt="vpc")
    size = len(parent_raw)
    pid = vb.FOOTER.unpack(parent.read_bytes()[:512])[15]  # the footer's unique id
    block = 512 * K
    rng = np.random.default_rng(15)
    kinds = ["runs", "full", None, "sparse", "empty", "runs", None, "full"]
    blocks = {i: vb.random_block(rng, block, kinds[i % len(kinds)])
              for i in range(-(-size // block)) if kinds[i % len(kinds)] is not None}
    child = tmp_path / "child.vhd"
    vb.build_dynamic(child, size=size, blocks=blocks, block_size=block,
                     parent=vb.Parent(pid, locators=[vb.w2ru(".\\parent.vhd")]))
    child_raw = np.frombuffer(q.to_raw_bytes(child, tmp_path, fmt="vpc"), dtype=np.uint8)
    present = np.zeros(-(-size // 512), dtype=bool)
    for i, b in blocks.items():
        s = i * block // 512
        present[s : s + len(b.bitmap)] = b.bitmap[: len(present) - s]
    mask = np.repeat(present, 512)[:size]
    oracle = np.where(mask, child_raw, np.frombuffer(parent_raw, dtype=np.uint8)).tobytes()
    assert 0 < mask.mean() < 1
    rnd = random.Random(16)
    located = partial = 0
    with vdinspect.open(str(child)) as disk:
        assert len(disk.layers()) == 2
        top = disk.chain.top
        for _ in range(800):
            length = rnd.choice((1, 512, 4 * K, 4 * K, 3000, 70 * K, M + 5))
            off = rnd.randrange(size - length)
            if rnd.random() < 0.5:
                off -= off % min(length, 4 * K)
            located += disk.chain.locate(off, length) is not None
            partial += top.plan(off, off + length) is not None and not mask[off:off + length].all() \
                and mask[off:off + length].any()
            assert disk.read(off, length) == oracle[off : off + length], (off, length)
            buf = bytearray(length)
            disk.readinto(off, buf)
            assert buf == oracle[off : off + length], (off, length)
        assert disk.read(0, size) == oracle
    assert located > 300 and partial > 50  # both fast paths answered, bitmaps mixed


# --- sequential 1 MiB reads: block boundaries, holes, the last partial block ----------------

ODD_SIZE = 13 * M + 300 * K  # not a whole number of blocks of any of these formats

SEQUENTIAL = {  # label: (qemu-img -f, create options)
    "vhd-dynamic": ("vpc", "subformat=dynamic"),
    "vhdx": ("vhdx", "block_size=1M"),
    "vdi": ("vdi", "static=off"),
    "parallels": ("parallels", "cluster_size=1M"),
}


@pytest.mark.parametrize("label", list(SEQUENTIAL))
def test_sequential_reads_match_qemu(label, tmp_path):
    """1 MiB steps from 0 and from an odd start (each step across a block boundary), the
    last partial block alone, through read() and readinto() into a slice of a larger
    buffer, against qemu-img convert -O raw of an image qemu-io wrote: data in some blocks
    (one write across a boundary, one to the very end), others never written."""
    fmt, opts = SEQUENTIAL[label]
    img = tmp_path / f"odd.{label}"
    q.create(img, ODD_SIZE, fmt, opts)
    size = json.loads(q.qemu_img("info", "--output=json", str(img)))["virtual-size"]
    q.qemu_io(img, f"write -q -P 0x61 {size - 900 * K} {900 * K}",
              f"write -q -P 0x62 {M - 700} 5000", f"write -q -P 0x63 {3 * M} {2 * M + 512}",
              f"write -q -P 0x64 {7 * M + 4 * K} {300 * K}", fmt=fmt)
    oracle = q.to_raw_bytes(img, tmp_path, fmt=fmt)
    assert len(oracle) == size and oracle.count(0) < size - 3 * M and oracle[-1] == 0x61
    with vdinspect.open(str(img)) as disk:
        assert disk.size == size
        top = disk.chain.top
        for first in (0, 333, M - 1):
            for off in range(first, size, M):
                n = min(M, size - off)
                assert top.plan(off, off + n) is not None  # the fast path, not the runs
                assert disk.read(off, n) == oracle[off : off + n], (first, off)
                buf = bytearray(n + 17)
                disk.readinto(off, memoryview(buf)[9 : 9 + n])
                assert buf[9 : 9 + n] == oracle[off : off + n] and buf[:9] == bytes(9), off
        unit = {"vhd-dynamic": 2 * M}.get(label, M)
        tail = size - size // unit * unit
        assert 0 < tail < unit
        assert disk.read(size - tail, tail) == oracle[-tail:]


@pytest.mark.parametrize("label", list(SEQUENTIAL))
def test_host_ranges_match_qemu(label, tmp_path):
    """Where the bytes lie in the host file (what extraction copies with copy_file_range):
    the host file's bytes at each stretch, zeros for the gaps, equal qemu-img's reading.
    A VHDX whose log replayed nothing reads the file itself, so it answers too."""
    fmt, opts = SEQUENTIAL[label]
    img = tmp_path / f"img.{label}"
    q.create(img, 9 * M, fmt, opts)
    q.qemu_io(img, f"write -q -P 0x71 {M - 3 * K} {2 * M}", f"write -q -P 0x72 {5 * M} 4k",
              fmt=fmt)
    oracle = q.to_raw_bytes(img, tmp_path, fmt=fmt)
    host = img.read_bytes()
    with vdinspect.open(str(img)) as disk:
        for off, n in ((0, len(oracle)), (M - 5 * K, 2 * M + 9), (5 * M - 1, 4 * K + 2)):
            got = disk.host_ranges(off, n)
            assert got is not None, (off, n)
            pieces = b"".join(bytes(k) if src is None else host[h : h + k]
                              for src, h, k in got)
            assert pieces == oracle[off : off + n], (off, n)
