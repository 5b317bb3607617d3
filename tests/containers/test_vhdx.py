"""VHDX against independent oracles.

- qemu-img / qemu-io write dynamic and fixed VHDX files; the expected bytes come from
  ``qemu-img convert -O raw`` (and ``qemu-img dd``), sizes from ``qemu-img info``, coverage
  from ``qemu-img map``; host offsets are checked by reading the host file directly.
- Real samples from ../shared/samples (Hyper-V, Disk2VHD, a QEMU file with a pending log;
  libyal structure fragments) against the values in its MANIFEST.md.
- What no tool here writes (differencing files with partially present blocks, 4096-byte
  sectors, pending logs, damaged headers and region tables) is built by tests/vhdx_builder.py
  from the specification's structures; reads are checked against the data it was built from.
"""

from __future__ import annotations

import bz2
import hashlib
import json
import os
import random
import struct
import uuid
from pathlib import Path

import numpy as np
import pytest

import vdinspect
from tests import qemu_tools as q
from tests import vhdx_builder as vb
from tests.conftest import SHARED_SAMPLES, needs_qemu, needs_shared, sha256_file
from tests.test_sample_images import classify_qemu, pieces
from tests.tools import sparse_copy, write_sparse
from vdinspect.containers import registry
from vdinspect.containers import vhdx as V
from vdinspect.errors import CorruptImage, NotRecognized, UnsupportedFeature, VDInspectError
from vdinspect.io import FileSource, MemorySource, checksums

K, M = 1 << 10, 1 << 20
IOTESTS = SHARED_SAMPLES / "qemu-iotests-v7.2.0" / "sample_images"
LIBVHDI = SHARED_SAMPLES / "libyal-fragments" / "libvhdi"


def open_vhdx(path, **kw):
    """Open through the public API: the format is detected from the file's magic."""
    disk = vdinspect.open(path, **kw)
    assert disk.top.format == "vhdx"
    return disk


def image_of(data: bytes, strict: bool = True) -> V.VhdxImage:
    return V.VhdxImage(MemorySource(data, name="<built>"), path="<built>", strict=strict)


def random_reads(rng: random.Random, size: int, boundaries: list[int], n: int = 200):
    """(offset, length) pairs, most of them crossing one of ``boundaries``."""
    out = []
    for i in range(n):
        if boundaries and i % 4:
            b = rng.choice(boundaries)
            off = max(0, b - rng.randrange(1, 70 * K))
        else:
            off = rng.randrange(size)
        length = min(size - off, rng.randrange(1, 200 * K))
        if length > 0:
            out.append((off, length))
    return out


def disk_sha256(disk, step: int = 32 * M) -> str:
    """sha256 of the virtual disk; ranges whose runs say zero are hashed as zeros unread."""
    h = hashlib.sha256()
    zero = bytes(step)
    for r in disk.runs():
        for pos in range(r.start, r.end, step):
            n = min(step, r.end - pos)
            h.update(zero[:n] if r.state in ("zero", "unallocated") else disk.read(pos, n))
    return h.hexdigest()


def guid_text(raw: bytes) -> str:
    return "{" + str(uuid.UUID(bytes_le=raw)).upper() + "}"


# --- CRC-32C and the overlay -------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 9, 4095, 4096, 8 * K + 3, 64 * K, 200 * K + 17])
def test_crc32c_matches_plain_table(n):
    data = random.Random(n).randbytes(n)
    assert V.crc32c(data) == vb.crc32c(data)


def test_crc32c_check_value():
    assert V.crc32c(b"123456789") == vb.crc32c(b"123456789") == 0xE3069283
    big = random.Random(3).randbytes(300 * K)
    assert checksums.crc32c_pure(big) == vb.crc32c(big)


@pytest.mark.parametrize("n", [0, 5, 4096, 8 * K + 3, 200 * K + 17])
def test_crc32c_chains_and_fallback_agrees(n):
    data = random.Random(n).randbytes(n)
    cut = n // 3
    whole = vb.crc32c(data)
    assert V.crc32c(data[cut:], V.crc32c(data[:cut])) == whole
    assert checksums.crc32c_pure(data[cut:], checksums.crc32c_pure(data[:cut])) == whole
    assert checksums.crc32c_pure(data) == whole


def test_overlay_source_writes_in_order():
    base = MemorySource(bytes(range(256)) * 64)  # 16 KiB
    ov = V.OverlaySource(base)
    ov.write(100, b"A" * 50)
    ov.write(120, None, 10)
    ov.write(16 * K + 4 * K, b"B" * 8)  # past the end of the base file
    ov.write(140, b"C" * 20)
    want = bytearray(bytes(range(256)) * 64)
    want[100:150] = b"A" * 50
    want[120:130] = bytes(10)
    want[140:160] = b"C" * 20
    want += bytes(4 * K) + b"B" * 8
    assert ov.size == len(want)
    assert ov.read(0, ov.size) == bytes(want)
    for off in (0, 99, 125, 150, 16 * K - 3):
        assert ov.read(off, 40) == bytes(want[off : off + 40])
    assert ov.segments == [
        (100, 120, False),
        (120, 130, True),
        (130, 160, False),
        (20 * K, 20 * K + 8, False),
    ]


# --- qemu-made images ------------------------------------------------------------------


QEMU_CASES = [
    # subformat, block_size, log_size, block_state_zero, virtual size
    ("dynamic", "1M", "1M", "on", 40 * M + 3 * 512),
    ("dynamic", "8M", "4M", "off", 70 * M),
    ("dynamic", "32M", "1M", "on", 100 * M + 512),
    ("fixed", "1M", "1M", "off", 24 * M),
    ("fixed", "8M", "4M", "on", 40 * M),
    ("fixed", "32M", "1M", "off", 64 * M),
]


def qemu_ops(rng: random.Random, size: int, bs: int, folder: Path):
    """Shuffled qemu-io writes: random data, patterns, zero writes; and the blocks they hit."""
    ops = []
    written = set()
    for i in range(14):
        off = rng.randrange(0, size - 512) & ~511
        if i % 3 == 0:  # straddle a block boundary
            b = rng.randrange(1, max(2, size // bs)) * bs
            off = max(0, b - rng.randrange(1, 64) * 512)
        length = min(size - off, rng.randrange(1, 600) * 512)
        kind = i % 4
        if kind == 0:
            p = folder / f"payload-{i}.bin"
            p.write_bytes(rng.randbytes(length))
            ops.append(f"write -q -s {p} {off} {length}")
        elif kind == 3:
            ops.append(f"write -q -z {off} {length}")
        else:
            ops.append(f"write -q -P {rng.randrange(1, 256):#x} {off} {length}")
        if kind != 3:
            written.update(range(off // bs, (off + length - 1) // bs + 1))
    rng.shuffle(ops)
    return ops, written


@needs_qemu
@pytest.mark.parametrize("sub, bsz, log, zero, size", QEMU_CASES)
def test_qemu_made(tmp_path, sub, bsz, log, zero, size):
    img = tmp_path / f"{sub}.vhdx"
    q.create(
        img,
        size,
        "vhdx",
        f"subformat={sub},block_size={bsz},log_size={log},block_state_zero={zero}",
    )
    bs = int(bsz[:-1]) * M
    rng = random.Random(f"{sub}{bsz}{log}{zero}")
    ops, written = qemu_ops(rng, size, bs, tmp_path)
    q.qemu_io(img, *ops, fmt="vhdx")
    raw = q.to_raw_bytes(img, tmp_path, fmt="vhdx")
    info = json.loads(q.qemu_img("info", "--output=json", str(img)))
    entries = q.qemu_map(img, fmt="vhdx")
    with open_vhdx(img) as disk:
        top = disk.top
        i = disk.info()
        assert i["virtual_size"] == info["virtual-size"] == size
        assert i["cluster_size"] == info["cluster-size"] == bs
        assert i["subformat"] == sub
        assert i["creator"].startswith("QEMU")
        assert i["logical_sector_size"] == 512 and i["log_length"] == int(log[:-1]) * M
        assert disk.read(0, disk.size) == raw
        for off, n in random_reads(rng, size, list(range(bs, size, bs))):
            assert disk.read(off, n) == raw[off : off + n], (off, n)
        # coverage: qemu-img map (vhdx has no block status: one present range)
        ours = [(r.start, r.end, r.state) for r in disk.runs()]
        theirs = classify_qemu(entries, 1)
        assert ours[0][0] == 0 and ours[-1][1] == theirs[-1][1] == size
        for _s, _e, o, t in pieces(ours, theirs):
            assert t[2] in ("data", "zero") and o[2] in ("data", "zero", "unallocated")
        # allocation: blocks qemu wrote data to are data; host offsets hold the bytes
        with open(img, "rb") as f:
            for r in disk.runs():
                blocks = set(range(r.start // bs, (r.end - 1) // bs + 1))
                if r.state == "data":
                    f.seek(r.host_offset)
                    assert f.read(r.length) == raw[r.start : r.end]
                else:
                    assert not blocks & written, (r, sorted(blocks & written))
                    assert raw[r.start : r.end].count(0) == r.length
        assert disk.check().empty
        names = list(disk.structures()["name"])
        assert names[:5] == [
            "file identifier",
            "header 1",
            "header 2",
            "region table 1",
            "region table 2",
        ]
        assert "BAT" in names and "metadata: page 83 data" in names
        assert top.log_replay is None


def holes_free_extents(path: Path) -> list[tuple[int, int]]:
    """(offset, length) of the data extents of a sparse file (SEEK_DATA / SEEK_HOLE)."""
    out = []
    fd = os.open(path, os.O_RDONLY)
    try:
        size, pos = os.fstat(fd).st_size, 0
        while pos < size:
            try:
                s = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                break
            e = os.lseek(fd, s, os.SEEK_HOLE)
            out.append((s, e - s))
            pos = e
    finally:
        os.close(fd)
    return out


@needs_qemu
def test_qemu_chunk_boundary(tmp_path):
    """1 MiB blocks: a sector bitmap entry sits after every 4096 payload entries."""
    img = tmp_path / "big.vhdx"
    size = 4100 * M
    q.create(img, size, "vhdx", "block_size=1M")
    q.qemu_io(
        img,
        "write -q -P 0x5a 4094M 3M",
        "write -q -P 0x11 0 64k",
        "write -q -P 0x22 4099M 4k",
        fmt="vhdx",
    )
    out = tmp_path / "big.raw"
    q.qemu_img("convert", "-f", "vhdx", "-O", "raw", str(img), str(out))
    extents = holes_free_extents(out)  # where qemu wrote non-zero data (sparse output)
    assert extents
    with open_vhdx(img) as disk:
        runs = disk.runs()
        data = [(r.start, r.end) for r in runs if r.state == "data"]
        assert data == [(0, 1 * M), (4094 * M, 4097 * M), (4099 * M, 4100 * M)]
        with open(out, "rb") as f:
            for s, n in extents:  # every byte qemu found non-zero, we read the same
                f.seek(s)
                assert any(a <= s and s + n <= b for a, b in data)
                assert disk.read(s, n) == f.read(n)
        for r in runs:
            if r.state != "data":
                assert r.state in ("zero", "unallocated")
        rng = random.Random(4096)
        lo = 4093 * M  # 200 reads around the first chunk boundary (4 GiB)
        with open(out, "rb") as f:
            for off, n in random_reads(rng, 7 * M, [M, 3 * M, 4 * M, 6 * M]):
                f.seek(lo + off)
                assert disk.read(lo + off, n) == f.read(n), (lo + off, n)
        for a, b in data:  # and inside our data runs, outside qemu's extents: zeros
            chunk = disk.read(a, b - a)
            mask = np.zeros(b - a, dtype=bool)
            for s, n in extents:
                lo, hi = max(a, s), min(b, s + n)
                if lo < hi:
                    mask[lo - a : hi - a] = True
            assert not np.frombuffer(chunk, np.uint8)[~mask].any()
        top = disk.top
        assert top.chunk_ratio == 4096
        assert top.bat_entries == 4100 + 4099 // 4096


@needs_qemu
def test_registry_detects_vhdx(tmp_path):
    img = q.create(tmp_path / "d.vhdx", "8M", "vhdx")
    src = FileSource(img)
    try:
        assert registry.detect(src).name == "vhdx"
    finally:
        src.close()


# --- real samples ------------------------------------------------------------------------


def unpack(name: str, tmp_path: Path) -> Path:
    """Decompress a sample into tmp_path, leaving holes where it is all zeros."""
    with bz2.open(IOTESTS / name) as fin:
        return write_sparse(tmp_path / name.removesuffix(".bz2"), fin)


@pytest.fixture(scope="module")
def dirty_log_sample(tmp_path_factory) -> Path:
    return unpack("iotest-dirtylog-10G-4M.vhdx.bz2", tmp_path_factory.mktemp("dirtylog"))


@needs_shared
def test_sample_hyperv_dynamic_1g(tmp_path):
    path = unpack("iotest-dynamic-1G.vhdx.bz2", tmp_path)
    with open_vhdx(path) as disk:
        i = disk.info()
        assert i["virtual_size"] == 1 << 30 and i["block_size"] == 32 * M
        assert i["subformat"] == "dynamic"
        assert i["creator"] == "Microsoft Windows 6.2.9200.16384"
        assert disk.read(0, 33 * M) == b"\xa5" * (33 * M)
        assert disk.read(33 * M, 33 * M) == b"\x96" * (33 * M)
        assert disk.read(66 * M, 4 * M) == bytes(4 * M)
        assert disk_sha256(disk) == (
            "d3d112d8dab7fd360609f7d5a7b769904b7a2a7d7b6b8c535f65a23293c05478"
        )
        assert disk.check().empty


@needs_shared
def test_sample_disk2vhd(tmp_path):
    path = unpack("test-disk2vhd.vhdx.bz2", tmp_path)
    with open_vhdx(path) as disk:
        i = disk.info()
        assert i["virtual_size"] == 268435456
        assert i["cluster_size"] == i["block_size"] == 2097152
        assert i["creator"] == "d2v"
        mbr = disk.read(0, 512)
        assert mbr[510:] == b"\x55\xaa" and mbr[446 + 4] == 0x06
        assert struct.unpack_from("<II", mbr, 446 + 8) == (128, 518144)
        assert disk_sha256(disk) == (
            "96d964042be9b58dda1725567abfb0cf9fd8380e2118754afa979c2ad445938a"
        )


@needs_shared
def test_sample_dirty_log_replayed_in_memory(dirty_log_sample):
    path = dirty_log_sample
    before = sha256_file(path)
    with open_vhdx(path) as disk:
        top = disk.top
        assert disk.size == 10 << 30
        assert disk.read(0, 18 * M) == b"\xa5" * (18 * M)
        assert top.log_replay["entries"] == 1 and top.log_replay["data_sectors"] == 1
        rows = disk.check()
        info = rows[rows["structure"] == "log"]
        assert len(info) == 1 and "replayed 1 log entries" in info["message"].iloc[0]
        assert "log replayed in memory" in disk.info()["flags"]
        assert all(r.state == "unallocated" for r in disk.runs(18 * M))
        assert any(r["name"].startswith("log entry") for _, r in disk.structures().iterrows())
    assert sha256_file(path) == before


@needs_shared
@needs_qemu
def test_sample_dirty_log_matches_qemu_replay(dirty_log_sample, tmp_path):
    """qemu-img check -r all replays the log on a copy; we read the original the same."""
    path = dirty_log_sample
    copy = tmp_path / "replayed.vhdx"
    sparse_copy(path, copy)
    q.run("qemu-img", "check", "-r", "all", str(copy))
    first = tmp_path / "first.raw"
    q.qemu_img("dd", "-f", "vhdx", "-O", "raw", f"if={copy}", f"of={first}", "bs=1M", "count=40")
    with open_vhdx(path) as disk, open_vhdx(copy) as done:
        assert done.top.log_replay is None
        assert disk.read(0, 40 * M) == first.read_bytes()
        ours = [(r.start, r.length, r.state) for r in disk.runs()]
        assert ours == [(r.start, r.length, r.state) for r in done.runs()]


@needs_shared
def test_libvhdi_file_identifier_and_header_fragments():
    ident = (LIBVHDI / "file_identifier.1").read_bytes()
    assert V.probe(ident)
    fi = V.FileIdentifier.parse(ident)
    assert V.utf16_text(fi.creator) == "Microsoft Windows 10.0.19041.0"
    blk = (LIBVHDI / "image_header.1").read_bytes()
    h = V.VhdxHeader.parse(blk)
    assert h.signature == b"head" and h.version == 1 and h.log_version == 0
    assert (h.log_offset, h.log_length) == (1 * M, 1 * M)
    assert V.checksum_ok(blk) and vb.with_crc(blk) == blk


@needs_shared
def test_libvhdi_region_table_fragments():
    rt = (LIBVHDI / "region_table.1").read_bytes()
    full = rt + bytes(64 * K - len(rt))  # the table's checksum covers 64 KiB
    assert V.checksum_ok(full)
    rh = V.RegionTableHeader.parse(rt)
    assert rh.signature == b"regi" and rh.entry_count == 2
    got = {
        V.REGION_NAMES[e.guid]: (e.file_offset, e.length, e.flags)
        for e in (V.RegionTableEntryValues.parse(rt[16 + 32 * i :]) for i in range(2))
    }
    assert got == {"BAT": (3 * M, 1 * M, 1), "metadata": (2 * M, 1 * M, 1)}
    assert V.RegionTableHeader.parse((LIBVHDI / "region_table_header.1").read_bytes()) == rh
    e = V.RegionTableEntry.parse((LIBVHDI / "region_table_entry.1").read_bytes())
    assert e.guid == V.BAT_GUID and e.file_offset == 3 * M
    assert e.flags.Required  # the declared view names the flags


@needs_shared
def test_libvhdi_metadata_and_parent_locator_fragments():
    mh = V.MetadataTableHeader.parse((LIBVHDI / "metadata_table_header.1").read_bytes())
    assert mh.signature == b"metadata" and mh.entry_count == 5
    raw = (LIBVHDI / "metadata_table_entry.1").read_bytes()
    me = V.MetadataTableEntryValues.parse(raw)
    assert V.METADATA_NAMES[me.item_id] == "file parameters"
    assert (me.offset, me.length, me.flags) == (64 * K, 8, 4)
    named = V.MetadataTableEntry.parse(raw).flags
    assert named.IsRequired and not named.IsUser and not named.IsVirtualDisk
    ph = V.ParentLocatorHeader.parse((LIBVHDI / "parent_locator_header.1").read_bytes())
    assert ph.locator_type == V.VHDX_PARENT_LOCATOR_TYPE and ph.key_value_count == 5
    pe = V.ParentLocatorEntry.parse((LIBVHDI / "parent_locator_entry.1").read_bytes())
    # "parent_linkage" (14 UTF-16 units) -> "{GUID}" (38 units)
    assert (pe.key_offset, pe.value_offset, pe.key_length, pe.value_length) == (
        0x50,
        0x6C,
        2 * len("parent_linkage"),
        2 * 38,
    )
    # the libvhdi folder also holds VHD fragments: those are not VHDX
    assert not V.probe((LIBVHDI / "file_footer.1").read_bytes())
    assert not V.probe((LIBVHDI / "dynamic_disk_header.1").read_bytes())


# --- built images: variants no tool here writes -----------------------------------------


def fill(rng, b: vb.VhdxBuilder, ks, states=None):
    for k in ks:
        b.put(k, rng.randbytes(b.block_size))


@pytest.mark.parametrize("lss", [512, 4096])
def test_built_dynamic_states(lss, tmp_path):
    rng = random.Random(lss)
    b = vb.VhdxBuilder(
        virtual_size=12 * M + 3 * lss, block_size=1 * M, logical_sector=lss, seed=lss
    )
    b.put(0, rng.randbytes(M))
    b.put(1, rng.randbytes(M))
    b.put(5, rng.randbytes(300 * K))
    b.put(12, rng.randbytes(3 * lss))  # the short last block
    b.state(2, vb.ZERO)
    b.state(3, vb.UNMAPPED)
    b.state(4, vb.UNDEFINED)
    path = tmp_path / "d.vhdx"
    path.write_bytes(b.build())
    want = b.expected(0, b.virtual_size)
    with open_vhdx(path) as disk:
        assert disk.info()["logical_sector_size"] == lss
        assert disk.info()["physical_sector_size"] == 4096
        assert disk.read(0, disk.size) == want
        for off, n in random_reads(rng, disk.size, list(range(M, disk.size, M))):
            assert disk.read(off, n) == want[off : off + n]
        st = {k: disk.runs(k * M, 1)[0].state for k in range(13)}
        assert st == {
            0: "data",
            1: "data",
            2: "zero",
            3: "unallocated",
            4: "unallocated",
            5: "data",
            6: "unallocated",
            7: "unallocated",
            8: "unallocated",
            9: "unallocated",
            10: "unallocated",
            11: "unallocated",
            12: "data",
        }
        assert disk.info()["subformat"] == "dynamic"
        assert disk.check().empty


def test_built_fixed_subformat():
    rng = random.Random(9)
    b = vb.VhdxBuilder(virtual_size=4 * M, leave_blocks_allocated=True)
    for k in range(4):
        b.put(k, rng.randbytes(M))
    img = image_of(b.build())
    assert img.subformat == "fixed" and img.read(0, img.size) == b.expected(0, 4 * M)
    b.state(2, vb.NOT_PRESENT)
    assert image_of(b.build()).subformat == "dynamic"


def make_parent(kind: str, tmp_path: Path, size: int, lss: int = 512):
    """A parent VHDX (qemu-made or built) and a reader of its expected bytes."""
    p = tmp_path / "parent.vhdx"
    if kind == "qemu":
        q.create(p, size, "vhdx", "block_size=1M")
        q.qemu_io(
            p,
            "write -q -P 0x61 0 3M",
            "write -q -P 0x62 5M 2M",
            "write -q -P 0x63 11M 100k",
            fmt="vhdx",
        )
        raw = q.to_raw_bytes(p, tmp_path, fmt="vhdx")
    else:
        rng = random.Random(77)
        pb = vb.VhdxBuilder(virtual_size=size, logical_sector=lss, seed=5)
        for k in (0, 1, 2, 5, 6, 11):
            pb.put(k, rng.randbytes(M))
        p.write_bytes(pb.build())
        raw = pb.expected(0, size)
    return p, raw


def child_builder(parent: Path, size: int, lss: int, rng, **locator) -> vb.VhdxBuilder:
    b = vb.VhdxBuilder(virtual_size=size, has_parent=True, logical_sector=lss, seed=11)
    dwg = vb.read_data_write_guid(parent)
    b.locator = dict(parent_linkage=guid_text(dwg))
    b.locator.update(locator or dict(relative_path=".\\" + parent.name))
    spb = M // lss
    b.put(0, rng.randbytes(M))
    b.partial(1, rng.randbytes(M), [i % 3 == 0 for i in range(spb)])
    b.partial(2, rng.randbytes(M), [rng.random() < 0.5 for _ in range(spb)])
    b.partial(5, rng.randbytes(M), [True] * 7 + [False] * (spb - 7))
    b.partial(6, rng.randbytes(M), [False] * spb)
    b.partial(8, rng.randbytes(M), [True] * spb)
    b.state(9, vb.ZERO)
    b.state(11, vb.NOT_PRESENT)
    return b


@pytest.mark.parametrize(
    "kind, lss", [pytest.param("qemu", 512, marks=needs_qemu), ("built", 512), ("built", 4096)]
)
def test_differencing_partially_present(kind, lss, tmp_path):
    size = 14 * M
    parent, praw = make_parent(kind, tmp_path, size, lss)
    rng = random.Random(f"{kind}{lss}")
    b = child_builder(parent, size, lss, rng)
    child = tmp_path / "child.avhdx"
    child.write_bytes(b.build())
    want = b.expected(0, size, parent=lambda o, n: praw[o : o + n])
    with open_vhdx(child) as disk:
        assert len(disk.layers()) == 2
        top = disk.top
        assert top.subformat == "differencing" and top.has_parent
        assert disk.info()["parent_locator"]["relative_path"] == ".\\parent.vhdx"
        assert disk.read(0, size) == want
        for off, n in random_reads(
            rng, size, [k * M + s * lss for k in range(12) for s in (0, 1, 7, 9)]
        ):
            assert disk.read(off, n) == want[off : off + n]
        # layer labels, sector by sector, from what the child was built with
        for r in disk.runs(1 * M, 9 * M):
            for pos in range(r.start, r.end, lss):
                k, s = pos // M, (pos % M) // lss
                blk = b.blocks.get(k)
                if blk is not None and blk.state == vb.FULLY_PRESENT:
                    assert (r.state, r.layer) == ("data", 1)
                elif blk is not None and blk.state == vb.PARTIALLY_PRESENT and blk.present[s]:
                    assert (r.state, r.layer) == ("data", 1), (pos, r)
                elif blk is not None and blk.state == vb.ZERO:
                    assert (r.state, r.layer) == ("zero", 1)
                else:
                    assert r.layer in (0, None), (pos, r)
        own = disk.runs(own_layer=1)
        assert {r.state for r in own} == {"data", "unallocated", "zero"}
        assert disk.check().empty
        names = list(disk.structures()["name"])
        assert "sector bitmap block 0" in names and "metadata: parent locator" in names


@pytest.mark.parametrize(
    "locator",
    [
        dict(absolute_win32_path="C:\\VMs\\Disks\\parent.vhdx"),
        dict(volume_path="\\\\?\\Volume{4d1a2b3c-0000-0000-0000-100000000000}\\VMs\\parent.vhdx"),
        dict(
            relative_path="..\\elsewhere\\parent.vhdx", absolute_win32_path="D:\\old\\parent.vhdx"
        ),
    ],
)
def test_parent_found_by_other_locator_keys(locator, tmp_path):
    parent, praw = make_parent("built", tmp_path, 14 * M)
    b = child_builder(parent, 14 * M, 512, random.Random(1), **locator)
    child = tmp_path / "child.avhdx"
    child.write_bytes(b.build())
    with open_vhdx(child) as disk:
        assert [os.path.basename(p) for p in disk.layers()["path"]] == [
            "parent.vhdx",
            "child.avhdx",
        ]
        assert disk.read(0, 14 * M) == b.expected(0, 14 * M, parent=lambda o, n: praw[o : o + n])
    hint = image_of(b.build()).parent_hint
    assert hint.format == "vhdx" and "parent.vhdx" in [hint.path] + hint.alternatives


def test_parent_data_write_guid_mismatch(tmp_path):
    parent, praw = make_parent("built", tmp_path, 14 * M)
    b = child_builder(parent, 14 * M, 512, random.Random(2))
    b.locator["parent_linkage"] = guid_text(uuid.uuid4().bytes)
    child = tmp_path / "child.avhdx"
    child.write_bytes(b.build())
    with pytest.raises(CorruptImage, match="DataWriteGuid"):
        open_vhdx(child)
    with open_vhdx(child, strict=False) as disk:
        rows = disk.check()
        assert (
            rows["message"].str.contains("DataWriteGuid") & (rows["severity"] == "error")
        ).sum() == 1
        assert disk.read(0, 14 * M) == b.expected(0, 14 * M, parent=lambda o, n: praw[o : o + n])


def test_parent_linkage2_accepted(tmp_path):
    parent, _ = make_parent("built", tmp_path, 14 * M)
    b = child_builder(parent, 14 * M, 512, random.Random(3))
    b.locator["parent_linkage2"] = b.locator["parent_linkage"]
    b.locator["parent_linkage"] = guid_text(uuid.uuid4().bytes)
    child = tmp_path / "child.avhdx"
    child.write_bytes(b.build())
    with open_vhdx(child) as disk:
        assert disk.check().empty


def test_chunk_boundary_differencing_built(tmp_path):
    """Chunk 1 (4 GiB on) has its own sector bitmap block; BAT entries interleave."""
    size = 4 * 1024 * M + 3 * M
    rng = random.Random(4)
    pb = vb.VhdxBuilder(virtual_size=size, seed=2)
    pb.put(4095, rng.randbytes(M))
    pb.put(4096, rng.randbytes(M))
    parent = tmp_path / "p.vhdx"
    parent.write_bytes(pb.build())
    b = vb.VhdxBuilder(virtual_size=size, has_parent=True, seed=3)
    b.locator = dict(
        parent_linkage=guid_text(vb.read_data_write_guid(parent)), relative_path="p.vhdx"
    )
    b.partial(4095, rng.randbytes(M), [i % 2 == 0 for i in range(2048)])
    b.partial(4097, rng.randbytes(M), [i < 100 for i in range(2048)])
    b.put(4098, rng.randbytes(M))
    child = tmp_path / "c.avhdx"
    child.write_bytes(b.build())
    lo = 4094 * M

    def praw(o, n):
        return pb.expected(o, n)

    with open_vhdx(child) as disk:
        assert disk.top.chunk_ratio == 4096 and disk.top.bat_entries == 2 * 4097
        assert disk.read(lo, 5 * M) == b.expected(lo, 5 * M, parent=praw)
        for off, n in random_reads(rng, 5 * M, [M, 2 * M, 3 * M, 4 * M], 60):
            assert disk.read(lo + off, n) == b.expected(lo + off, n, parent=praw)
        assert [r.state for r in disk.runs(0, lo)] == ["unallocated"]
        names = list(disk.structures()["name"])
        assert "sector bitmap block 0" in names and "sector bitmap block 1" in names


# --- pending logs --------------------------------------------------------------------------


def log_image(truncate=True, wrap=False, stale=True, tail_index=0, fill=0xEE):
    rng = random.Random(21)
    b = vb.VhdxBuilder(virtual_size=16 * M, log_length=2 * M, seed=4)
    b.put(1, rng.randbytes(M // 2))  # second half zeros
    b.put(3, rng.randbytes(M))
    b.put(7, rng.randbytes(M))
    lay = b.layout()
    where = lay["where"]
    last = max(where.values())
    k_last = next(k for (kind, k), off in where.items() if off == last)
    bat = lay["bat"]
    entries = [
        [("data", bat)],  # the whole BAT sector: before replay, no block is mapped
        [("zero", where[("pb", 1)] + M // 2, M // 2)],  # stale garbage -> zeros
        [("data", where[("pb", 3)] + i * 4 * K) for i in range(0, 64)],
        [("data", last + i * 4 * K) for i in range(256)],  # beyond the truncated end
    ]
    start = 2 * M - 12 * K if wrap else 40 * K
    seqs = [dict(start=start, seq=1000, entries=entries, tail_index=tail_index)]
    if stale:  # an older sequence elsewhere whose writes must not be applied
        seqs.append(
            dict(
                start=1400 * K,
                seq=500,
                apply=False,
                entries=[[("raw", where[("pb", 3)], b"\x77" * 4096)], [("raw", bat, bytes(4096))]],
            )
        )
    data = b.with_log(seqs, truncate_to=last if truncate else None, stale=fill)
    return b, data, k_last, entries


@pytest.mark.parametrize(
    "truncate, wrap, stale", [(True, False, True), (False, True, True), (True, True, False)]
)
def test_pending_log_replayed(truncate, wrap, stale, tmp_path):
    b, data, k_last, entries = log_image(truncate, wrap, stale)
    path = tmp_path / "pending.vhdx"
    path.write_bytes(data)
    before = sha256_file(path)
    with open_vhdx(path) as disk:
        top = disk.top
        assert disk.read(0, disk.size) == b.expected(0, b.virtual_size)
        r = top.log_replay
        assert r["entries"] == 4 and r["first_sequence"] == 1000 and r["last_sequence"] == 1003
        assert r["data_sectors"] == 1 + 64 + 256 and r["zero_ranges"] == 1
        rows = disk.check()
        msg = rows[rows["structure"] == "log"]["message"].iloc[0]
        assert "replayed 4 log entries" in msg and "the file is unchanged" in msg
        assert top.info_fields()["log_replayed"] == 4
        assert (disk.runs(k_last * M, 1)[0].state, disk.runs(2 * M, 1)[0].state) == (
            "data",
            "unallocated",
        )
        if truncate:
            assert top.host.size > top.file.size
    assert sha256_file(path) == before


def test_pending_log_tail_in_the_middle():
    """Entries before the head's tail are already flushed: only tail..head is replayed."""
    b, data, _, _ = log_image(truncate=False, wrap=False, stale=False, tail_index=1, fill=0)
    img = image_of(data)
    assert img.log_replay["entries"] == 3 and img.log_replay["first_sequence"] == 1001
    # the BAT sector write (entry 0) is not replayed: the on-disk BAT is stale (all zero)
    assert img.read(0, img.size) == bytes(img.size)


def test_log_without_valid_sequence_reports_nothing_replayed():
    b = vb.VhdxBuilder(virtual_size=4 * M)
    b.put(0, b"x" * 100)
    data = bytearray(b.build(log_guid=uuid.uuid4().bytes))
    img = image_of(bytes(data))
    assert img.log_replay is None and img.read(0, 100) == b"x" * 100
    assert any("nothing to replay" in r["message"] for r in img.check_rows())


def test_log_entry_with_wrong_guid_or_crc_is_ignored():
    b, data, _, _ = log_image(truncate=False, wrap=False, stale=False)
    lay = b.layout()
    at = lay["log"] + 40 * K + 100  # inside the first entry's descriptor sector
    broken = data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]
    img = image_of(broken)
    # the first entry fails its CRC; the rest still chain, but the head's tail points
    # at the broken entry, so no valid active sequence remains
    assert img.log_replay is None


# --- damaged headers and region tables ------------------------------------------------------


def small_builder():
    rng = random.Random(31)
    b = vb.VhdxBuilder(virtual_size=6 * M)
    b.put(0, rng.randbytes(M))
    b.put(4, rng.randbytes(M))
    return b


@pytest.mark.parametrize("bad", [1, 2])
def test_one_bad_header_falls_back(bad):
    b = small_builder()
    img = image_of(b.build(corrupt_header=bad))
    assert img.current_header == 2 - bad  # 0-based: the other one
    assert img.read(0, img.size) == b.expected(0, b.virtual_size)
    rows = img.check_rows()
    assert any(r["structure"] == f"header {bad}" and "CRC-32C" in r["message"] for r in rows)
    assert any("falling back" in r["message"] for r in rows)
    assert img.data_write_guid == str(uuid.UUID(bytes_le=b.data_write_guid))


def test_higher_sequence_header_wins():
    img = image_of(small_builder().build())
    assert img.current_header == 1 and img.check_rows() == []
    assert img.header.sequence_number == 8


def test_both_headers_bad():
    b = small_builder()
    data = b.build(corrupt_header=1)
    data = data[: 128 * K + 200] + b"\x01" + data[128 * K + 201 :]
    with pytest.raises(CorruptImage, match="neither header"):
        image_of(data)
    img = image_of(data, strict=False)
    assert img.read(0, img.size) == b.expected(0, b.virtual_size)
    assert any(r["severity"] == "error" for r in img.check_rows())


@pytest.mark.parametrize("bad", [1, 2])
def test_one_bad_region_table_falls_back(bad):
    b = small_builder()
    img = image_of(b.build(corrupt_region_table=bad))
    assert img.current_region_table == 2 - bad
    assert img.read(0, img.size) == b.expected(0, b.virtual_size)
    assert any(r["structure"] == f"region table {bad}" for r in img.check_rows())


def test_both_region_tables_bad():
    data = bytearray(small_builder().build(corrupt_region_table=1))
    data[256 * K + 100] ^= 0xFF
    with pytest.raises(CorruptImage, match="region table"):
        image_of(bytes(data))


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cut",
    [0, 7, 100, 64 * K + 10, 130 * K, 300 * K, 1 * M - 1, 1 * M + 5, 2 * M + 100, 3 * M + 4 * K],
)
def test_truncated_files(cut):
    b = small_builder()
    data = b.build()[:cut]
    with pytest.raises(VDInspectError):
        img = image_of(data)
        img.read(0, img.size)


def test_truncated_payload_block_is_damaged(tmp_path):
    b = small_builder()
    data = b.build()
    lay = b.layout()
    last = max(lay["where"].values())
    path = tmp_path / "t.vhdx"
    path.write_bytes(data[: last - 1 * M])  # the last payload block is gone entirely
    k_last = next(k for (_, k), off in lay["where"].items() if off == last)
    with pytest.raises(CorruptImage, match="past the end of the file"):
        with open_vhdx(path) as disk:
            disk.read(0, disk.size)
    with open_vhdx(path, strict=False) as disk:
        runs = disk.runs(k_last * M, M)
        assert [r.state for r in runs] == ["damaged"]
        rows = disk.check()
        assert (rows["severity"] == "error").any()


@needs_qemu
def test_bat_entry_past_eof_agrees_with_qemu_check(tmp_path):
    b = small_builder()
    b.bat_overrides[2] = vb.FULLY_PRESENT | (900 << 20)  # block 2 at 900 MiB
    path = tmp_path / "bad.vhdx"
    path.write_bytes(b.build())
    qc = q.qemu_check(path)
    with open_vhdx(path, strict=False) as disk:
        rows = disk.check()
        errors = rows[rows["severity"] == "error"]
        assert len(errors) == qc.get("corruptions", 1) == 1
        assert "past the end of the file" in errors["message"].iloc[0]
        assert disk.runs(2 * M, 1)[0].state == "damaged"
        assert disk.read(0, M) == b.expected(0, M)


def test_overlapping_bat_entries():
    b = small_builder()
    lay = b.layout()
    b.put(2, b"y" * 10)
    off = lay["where"][("pb", 0)]
    b.bat_overrides[2] = vb.FULLY_PRESENT | off  # block 2 shares block 0's host block
    img = image_of(b.build())
    msgs = [r["message"] for r in img.check_rows()]
    assert any("overlaps another block" in m for m in msgs)
    b.bat_overrides[2] = vb.FULLY_PRESENT | (lay["bat"])  # a block on top of the BAT
    assert any("overlaps the BAT region" in r["message"] for r in image_of(b.build()).check_rows())


def patch(data: bytes, off: int, raw: bytes, crc_block: tuple[int, int] | None = None) -> bytes:
    d = bytearray(data)
    d[off : off + len(raw)] = raw
    if crc_block:
        s, n = crc_block
        d[s : s + n] = vb.with_crc(bytes(d[s : s + n]))
    return bytes(d)


def meta_patch(field: str, value: bytes):
    b = small_builder()
    data = b.build()
    meta = b.layout()["meta"]
    at = {
        "count": meta + 10,
        "item0_len": meta + 32 + 20,
        "item0_off": meta + 32 + 16,
        "vsize": meta + 64 * K + 8,
        "bsize": meta + 64 * K,
        "lss": meta + 64 * K + 32,
        "sig": meta,
    }[field]
    return patch(data, at, value)


@pytest.mark.parametrize(
    "field, value, exc, match",
    [
        ("count", struct.pack("<H", 0xFFFF), CorruptImage, "metadata entries"),
        ("item0_len", struct.pack("<I", 0xFFFFFFF0), CorruptImage, "outside the metadata region"),
        ("item0_off", struct.pack("<I", 0x7FFFFFFF), CorruptImage, "outside the metadata region"),
        ("vsize", struct.pack("<Q", 1 << 63), CorruptImage, "virtual disk size"),
        ("bsize", struct.pack("<I", 3 * M), CorruptImage, "block size"),
        ("lss", struct.pack("<I", 1000), CorruptImage, "logical sector size"),
        ("sig", b"metadatx", CorruptImage, "signature"),
    ],
)
def test_absurd_metadata(field, value, exc, match):
    with pytest.raises(exc, match=match):
        image_of(meta_patch(field, value), strict=False)


def test_unknown_required_metadata_item():
    b = small_builder()
    data = b.build()
    meta = b.layout()["meta"]
    data = patch(data, meta + 32, uuid.uuid4().bytes_le)  # file parameters -> unknown, required
    with pytest.raises(UnsupportedFeature, match="required metadata item"):
        image_of(data)


def test_absurd_parent_locator(tmp_path):
    parent, _ = make_parent("built", tmp_path, 14 * M)
    b = child_builder(parent, 14 * M, 512, random.Random(5))
    data = b.build()
    meta = b.layout()["meta"]
    # find the parent locator item's offset from the table (6th entry)
    off = struct.unpack_from("<I", data, meta + 32 + 5 * 32 + 16)[0]
    with pytest.raises(CorruptImage, match="parent locator"):
        image_of(patch(data, meta + off + 18, struct.pack("<H", 0xFFFF)))
    with pytest.raises(CorruptImage, match="parent locator entry 0"):
        image_of(patch(data, meta + off + 20, struct.pack("<I", 0x7FFFFFFF)))


@pytest.mark.parametrize("what", ["count", "offset", "length", "missing_bat"])
def test_absurd_region_table(what):
    b = small_builder()
    data = b.build()
    rt = 192 * K
    raw = {
        "count": (rt + 8, struct.pack("<I", 5000)),
        "offset": (rt + 16 + 16, struct.pack("<Q", 1 << 40)),
        "length": (rt + 16 + 24, struct.pack("<I", 0xFFF00000)),
        "missing_bat": (rt + 16, uuid.uuid4().bytes_le + bytes(12) + bytes(4)),
    }[what]
    data = patch(data, raw[0], raw[1], crc_block=(rt, 64 * K))
    data = patch(data, 256 * K, data[rt : rt + 64 * K])  # both copies alike
    with pytest.raises(CorruptImage):
        image_of(data, strict=False)


def log_bytes_patch(data: bytes, b: vb.VhdxBuilder, entries: list[bytes]) -> bytes:
    lay = b.layout()
    d = bytearray(data)
    pos = lay["log"]
    for e in entries:
        d[pos : pos + len(e)] = e
        pos += len(e)
    return bytes(d)


def test_absurd_log_entries():
    b = small_builder()
    g = uuid.uuid4().bytes
    data = b.build(log_guid=g)
    # 1. headers claiming absurd lengths / descriptor counts: ignored, nothing replayed
    hdr = struct.pack("<4sIIIQII16sQQ", b"loge", 0, 0xFFFFF000, 0, 5, 0xFFFFFFFF, 0, g, 0, 0)
    img = image_of(log_bytes_patch(data, b, [hdr + bytes(4 * K - len(hdr))]))
    assert img.log_replay is None
    # 2. every log sector a valid-looking entry claiming the whole log: the scan gives up
    whole = struct.pack("<4sIIIQII16sQQ", b"loge", 0, b.log_length, 0, 9, 0, 0, g, 0, 0)
    sector = whole + bytes(4 * K - len(whole))
    flood = log_bytes_patch(data, b, [sector] * (b.log_length // (4 * K)))
    with pytest.raises(CorruptImage, match="log"):
        image_of(flood)
    assert image_of(flood, strict=False).log_replay is None
    # 3. a chain whose head's tail points at itself: one entry replayed, no loop
    e1 = vb.log_entry(7, 0, g, [("zero", 5 * M, 4 * K)], 0, 0)
    e2 = vb.log_entry(8, len(e1), g, [("zero", 5 * M, 4 * K)], 0, 0)
    img = image_of(log_bytes_patch(data, b, [e1, e2]))
    assert img.log_replay["entries"] == 1 and img.log_replay["first_sequence"] == 8
    # 4. a write at an absurd file offset
    e = vb.log_entry(3, 0, g, [("zero", 1 << 60, 4 * K)], 0, 0)
    with pytest.raises(CorruptImage, match="absurd"):
        image_of(log_bytes_patch(data, b, [e]))
    # 5. a FlushedFileOffset larger than the file: the file was truncated
    e = vb.log_entry(3, 0, g, [("zero", 5 * M, 4 * K)], 1 << 40, 0)
    with pytest.raises(CorruptImage, match="truncated"):
        image_of(log_bytes_patch(data, b, [e]))


def test_log_region_outside_file():
    b = small_builder()
    data = bytearray(b.build(log_guid=uuid.uuid4().bytes))
    for off in (64 * K, 128 * K):
        blk = bytearray(data[off : off + 4 * K])
        struct.pack_into("<Q", blk, 72, 1 << 40)
        data[off : off + 4 * K] = vb.with_crc(bytes(blk))
    with pytest.raises(CorruptImage, match="log"):
        image_of(bytes(data))


def test_not_a_vhdx():
    with pytest.raises(NotRecognized):
        image_of(b"conectix" + bytes(2 * M))
    assert not V.probe(b"vhdxfil")
