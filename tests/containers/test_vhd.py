"""VHD against qemu-img, against disks built from the spec, and against real samples.

- Fixed and dynamic images are made by qemu-img / qemu-io (``-f vpc``); bytes, random reads,
  allocation and virtual size are compared with ``qemu-img convert``, ``map`` and ``info``.
- Differencing disks, partly set sector bitmaps, other block sizes and damaged files are
  built by tests/vhd_builder.py; what they must read as comes from the builder's own data.
- Real images (Hyper-V, Virtual PC, Disk2VHD, Windows, QEMU, AFL) come from
  ../shared/samples with the values of its MANIFEST.md.
"""

from __future__ import annotations

import bz2
import hashlib
import json
import os
import random
import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest

import vdinspect
from tests import qemu_tools as q
from tests import vhd_builder as vb
from tests.conftest import SHARED_SAMPLES, needs_qemu, needs_shared
from tests.tools import write_sparse
from vdinspect.containers import registry, vhd
from vdinspect.errors import CorruptImage, MissingParent, NotRecognized, VDInspectError
from vdinspect.io import FileSource

K, M, G = 1 << 10, 1 << 20, 1 << 30
BLOCK = 2 * M


# --- qemu-made images ---------------------------------------------------------------------------


def qemu_create(path: Path, size: int, subformat: str, force: bool) -> Path:
    opts = f"subformat={subformat},force_size={'on' if force else 'off'}"
    q.qemu_img("create", "-q", "-f", "vpc", "-o", opts, str(path), str(size))
    return path


def qemu_write(path: Path, writes: list[tuple[int, int]], seed: int) -> None:
    """qemu-io writes of random bytes (through small payload files), in the order given."""
    rng = random.Random(seed)
    args = ["qemu-io", "-f", "vpc"]
    for k, (off, n) in enumerate(writes):
        p = path.parent / f"{path.name}.payload{k}"
        p.write_bytes(rng.randbytes(n))
        args += ["-c", f"write -q -s {p} {off} {n}"]
    q.run(*args, str(path))
    for k in range(len(writes)):
        (path.parent / f"{path.name}.payload{k}").unlink()


def shuffled_writes(size: int, seed: int, n: int = 12) -> list[tuple[int, int]]:
    """Writes that cross sector and block boundaries, in shuffled order."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        if rng.random() < 0.5:  # around a block boundary
            b = rng.randrange(0, size // BLOCK + 1) * BLOCK
            off = max(0, b - rng.randrange(1, 40) * 512)
        else:
            off = rng.randrange(0, size // 512) * 512
        length = min(size - off, rng.choice([512, 1536, 4 * K, 37 * 512, 100 * K, 700 * K]))
        if length > 0:
            out.append((off, length))
    rng.shuffle(out)
    return out


QEMU_VARIANTS = {
    # name: (subformat, force_size, size, seed)
    "dyn-5000000": ("dynamic", False, 5_000_000, 1),
    "dyn-force-5000000": ("dynamic", True, 5_000_000, 2),
    "dyn-9M+1234": ("dynamic", False, 9 * M + 1234, 3),
    "dyn-force-9M+1234": ("dynamic", True, 9 * M + 1234, 4),
    "dyn-force-4M": ("dynamic", True, 4 * M, 5),
    "fixed-3M+777": ("fixed", False, 3 * M + 777, 6),
    "fixed-force-3M+777": ("fixed", True, 3 * M + 777, 7),
    "fixed-1M": ("fixed", False, M, 8),
    "dyn-140G": ("dynamic", False, 140 * G, 9),  # past the CHS limit: current_size rules
}
SMALL = [n for n in QEMU_VARIANTS if QEMU_VARIANTS[n][2] < G]


class Built:
    """An image and the raw file qemu-img convert made of it."""

    def __init__(self, path: Path, oracle: Path) -> None:
        self.path = path
        self.oracle = oracle
        self.size = oracle.stat().st_size

    def read(self, off: int, n: int) -> bytes:
        with open(self.oracle, "rb") as f:
            return os.pread(f.fileno(), n, off)


def convert(path: Path, out: Path) -> Path:
    q.qemu_img("convert", "-f", "vpc", "-O", "raw", str(path), str(out))
    return out


@pytest.fixture(scope="session")
def qemu_variants(tmp_path_factory):
    cache: dict[str, Built] = {}

    def get(name: str) -> Built:
        if name not in cache:
            sub, force, size, seed = QEMU_VARIANTS[name]
            d = tmp_path_factory.mktemp(name)
            img = qemu_create(d / f"{name}.vhd", size, sub, force)
            writes = shuffled_writes(min(size, 12 * M), seed)
            if size > G:
                writes += [(size - 3 * M - 512, 5000), (130 * G + 7 * 512, 3 * M)]
            qemu_write(img, writes, seed)
            cache[name] = Built(img, convert(img, d / "oracle.raw"))
        return cache[name]

    return get


def qemu_info(path: Path, *opts: str) -> dict:
    if opts:
        spec = ",".join(["driver=vpc", *opts, f"file.filename={path}"])
        return json.loads(q.qemu_img("info", "--output=json", "--image-opts", spec))
    return json.loads(q.qemu_img("info", "--output=json", "-f", "vpc", str(path)))


def qemu_map(path: Path) -> list[dict]:
    return json.loads(q.qemu_img("map", "--output=json", "-f", "vpc", str(path)))


def boundaries(size: int, block: int) -> list[int]:
    out = {0, size}
    out.update(range(0, size, block) if size // block < 4096 else range(0, 4096 * block, block))
    rng = random.Random(size)
    out.update(rng.randrange(0, size // 512) * 512 for _ in range(64))
    return sorted(out)


def random_reads(size: int, block: int, n: int = 200, seed: int = 0):
    """Reads straddling block and sector boundaries, some tiny and unaligned, a few anywhere."""
    rng = random.Random(seed)
    bounds = boundaries(size, block)
    for i in range(n):
        if i % 10 == 9:
            off = rng.randrange(size)
            length = rng.randrange(0, min(size - off, 3 * block) + 1)
        else:
            b = rng.choice(bounds)
            span = rng.choice([3, 700, 5000, block // 2, block + 1000])
            off = max(0, b - rng.randrange(1, span + 1))
            length = min(size, b + rng.randrange(1, span + 1)) - off
        yield off, length


def assert_whole_disk(disk, expect) -> None:
    """Every byte, in 4 MiB reads (``expect`` is bytes or a Built)."""
    size = len(expect) if isinstance(expect, bytes) else expect.size
    assert disk.size == size
    for pos in range(0, size, 4 * M):
        n = min(4 * M, size - pos)
        want = expect[pos : pos + n] if isinstance(expect, bytes) else expect.read(pos, n)
        assert disk.read(pos, n) == want, f"4 MiB chunk at {pos:#x}"


def assert_map_matches_qemu(disk, path: Path) -> None:
    """qemu's data runs are ours at the same host offsets; its zero (unallocated) runs are
    our unallocated ones. (qemu ignores sector bitmaps; qemu-img writes them all ones.)"""
    theirs = qemu_map(path)
    ours = disk.runs()
    assert ours[0].start == theirs[0]["start"] == 0
    assert ours[-1].end == theirs[-1]["start"] + theirs[-1]["length"] == disk.size
    cuts = sorted({r.start for r in ours} | {t["start"] for t in theirs} | {disk.size})
    i = j = 0
    for a, b in zip(cuts[:-1], cuts[1:]):
        while ours[i].end <= a:
            i += 1
        while theirs[j]["start"] + theirs[j]["length"] <= a:
            j += 1
        o, t = ours[i], theirs[j]
        where = f"[{a:#x}, {b:#x}) ours={o.state} qemu={t}"
        if t["data"]:
            assert o.state == "data", where
            assert o.host_offset + (a - o.start) == t["offset"] + (a - t["start"]), where
        else:
            assert t["zero"] and o.state == "unallocated", where


# --- qemu variants: bytes, reads, map, info -----------------------------------------------------


@needs_qemu
@pytest.mark.parametrize("name", SMALL)
def test_qemu_whole_disk_bytes(name, qemu_variants):
    built = qemu_variants(name)
    with vdinspect.open(built.path) as disk:
        assert disk.info()["format"] == "vhd"
        assert_whole_disk(disk, built)


@needs_qemu
@pytest.mark.parametrize("name", list(QEMU_VARIANTS))
def test_qemu_random_reads(name, qemu_variants):
    built = qemu_variants(name)
    with vdinspect.open(built.path) as disk:
        assert disk.size == built.size
        for off, n in random_reads(disk.size, BLOCK, 200, seed=len(name)):
            assert disk.read(off, n) == built.read(off, n), (off, n)


@needs_qemu
@pytest.mark.parametrize("name", list(QEMU_VARIANTS))
def test_qemu_allocation_map(name, qemu_variants):
    built = qemu_variants(name)
    with vdinspect.open(built.path) as disk:
        assert_map_matches_qemu(disk, built.path)


@needs_qemu
@pytest.mark.parametrize("name", list(QEMU_VARIANTS))
def test_qemu_info(name, qemu_variants):
    built = qemu_variants(name)
    sub, force, size, _ = QEMU_VARIANTS[name]
    qi = qemu_info(built.path)
    with vdinspect.open(built.path) as disk:
        info = disk.info()
        assert info["virtual_size"] == qi["virtual-size"]
        assert info["cluster_size"] == qi.get("cluster-size")
        assert info["subformat"] == sub == info["disk_type"]
        assert info["creator_application"] == ("qem2" if force else "qemu")
        assert info["size_current"] >= size
        assert info["size_rule"] == ("current_size" if force or size > 127 * G else "chs")
        assert disk.check().empty, disk.check().to_dict("records")
        assert 0 < (disk.info()["created"] - vhd.EPOCH).total_seconds()
        assert uuid.UUID(info["uuid"])
        rows = disk.structures()
        assert rows["name"].iloc[-1] == "footer"
        assert rows["host_offset"].iloc[-1] == built.path.stat().st_size - 512
        if sub == "dynamic":
            top = disk.top
            assert set(rows["name"]) >= {"footer copy", "dynamic disk header", "BAT"}
            assert (rows["name"].str.endswith(" data")).sum() == top.allocated_blocks


@needs_qemu
def test_qemu_fixed_detected_by_its_footer(qemu_variants):
    built = qemu_variants("fixed-3M+777")
    src = FileSource(built.path)
    try:
        assert registry.detect(src).name == "vhd"
    finally:
        src.close()
    with vdinspect.open(built.path, format="vhd") as disk:
        assert disk.info()["subformat"] == "fixed"
        runs = disk.runs()
        assert len(runs) == 1 and runs[0].host_offset == 0 and runs[0].state == "data"


@needs_qemu
def test_qemu_sparse_140g_runs_from_metadata(qemu_variants):
    built = qemu_variants("dyn-140G")
    with vdinspect.open(built.path) as disk:
        top = disk.top
        assert top.size_rule == "current_size" and top.info_fields()["geometry"] == (65535, 16, 255)
        runs = disk.runs()
        assert len(runs) < 20
        assert sum(r.length for r in runs if r.state == "data") == top.allocated_blocks * BLOCK


# --- the two size rules, against qemu's reading of patched footers ------------------------------


def patch_footers(path: Path, **fields) -> None:
    """Rewrite footer fields in the footer and its copy, fixing both checksums."""
    data = bytearray(path.read_bytes())
    places = [len(data) - 512] + ([0] if data[:8] == b"conectix" else [])
    for at in places:
        f = vhd.HardDiskFooter.parse(bytes(data[at : at + 512]))
        for k, v in fields.items():
            if k == "geometry":
                f.disk_geometry = dict(cylinders=v[0], heads=v[1], sectors_per_track=v[2])
            else:
                f[k] = v
        data[at : at + 512] = vb.with_checksum(vhd.HardDiskFooter.build(f), 64)
    path.write_bytes(bytes(data))


CREATORS = [b"vpc ", b"vs  ", b"qemu", b"qem2", b"win ", b"d2v ", b"CTXS", b"tap\0"]


@needs_qemu
@pytest.mark.parametrize("sub", ["dynamic", "fixed"])
def test_size_rule_follows_creator_like_qemu(sub, tmp_path):
    size = 5 * M + 7 * 512  # the spec's CHS for this rounds down: the two rules differ
    geom = vb.spec_geometry(size // 512)
    assert geom[0] * geom[1] * geom[2] * 512 < size
    for creator in CREATORS:
        img = qemu_create(tmp_path / f"{creator.hex()}-{sub}.vhd", size, sub, True)
        qemu_write(img, [(size - 4096, 4096)], 1)
        patch_footers(img, creator_application=creator, geometry=geom)
        qi = qemu_info(img)
        with vdinspect.open(img) as disk:
            info = disk.info()
            assert info["virtual_size"] == qi["virtual-size"], creator
            assert info["size_chs"] == geom[0] * geom[1] * geom[2] * 512
            assert info["size_current"] == size
            assert info["size_rule"] == (
                "chs" if creator in (b"vpc ", b"vs  ", b"qemu") else "current_size"
            )
        for rule in ("chs", "current_size"):
            forced = qemu_info(img, f"force_size_calc={rule}")["virtual-size"]
            with vhd.open_vhd(img, size_rule=rule) as im:
                assert im.size == forced, (creator, rule)
    # the largest geometry always means current_size, even for Virtual PC or when forced
    img = qemu_create(tmp_path / f"max-{sub}.vhd", size, sub, True)
    patch_footers(img, creator_application=b"vpc ")
    with vhd.open_vhd(img, size_rule="chs") as im:
        assert im.size == size == qemu_info(img, "force_size_calc=chs")["virtual-size"]


def test_size_rule_helper_rejects_unknown_rule(tmp_path):
    p = tmp_path / "f.vhd"
    vb.build_fixed(p, bytes(4096))
    with pytest.raises(vdinspect.InvalidArgument):
        vhd.open_vhd(p, size_rule="bogus")


# --- disks built from the spec: dynamic with bitmaps, differencing chains -----------------------


def build_random_dynamic(
    path: Path, size: int, block_size: int, seed: int, kinds, parent: vb.Parent | None = None, **kw
):
    rng = np.random.default_rng(seed)
    nblocks = -(-size // block_size)
    blocks = {}
    for i in range(nblocks):
        kind = kinds[i % len(kinds)]
        if kind is not None:
            blocks[i] = vb.random_block(rng, block_size, kind)
    order = list(blocks)
    random.Random(seed).shuffle(order)
    layout = vb.build_dynamic(
        path, size=size, blocks=blocks, block_size=block_size, parent=parent, host_order=order, **kw
    )
    return blocks, layout


@pytest.mark.parametrize(
    "block_size, size", [(4096, 61 * 4096 + 1536), (512 * K, 3 * M + 512), (2 * M, 5 * M)]
)
def test_dynamic_bitmaps_decide_each_sector(block_size, size, tmp_path):
    """Clear bits read as zeros though their data area holds garbage (the d2v case)."""
    kinds = ["runs", None, "sparse", "full", "empty", "runs"]
    p = tmp_path / "d.vhd"
    blocks, _ = build_random_dynamic(p, size, block_size, block_size, kinds)
    want = vb.expected_bytes(size, blocks, block_size)
    with vdinspect.open(p) as disk:
        assert disk.info()["subformat"] == "dynamic"
        assert disk.info()["block_size"] == block_size
        assert_whole_disk(disk, want)
        for off, n in random_reads(size, block_size, 200, seed=3):
            assert disk.read(off, n) == want[off : off + n], (off, n)
        assert disk.check().empty, disk.check().to_dict("records")
        top = disk.top
        # runs are coalesced from the bitmaps: one data run per stretch of set bits
        for i, b in blocks.items():
            lo, hi = i * block_size, min(size, (i + 1) * block_size)
            runs = top.runs(lo, hi - lo)
            bits = b.bitmap[: -(-(hi - lo) // 512)]
            assert sum(r.state == "data" for r in runs) == vb.bit_runs(bits)
            assert {r.state for r in runs} <= {"data", "unallocated"}


@needs_qemu
@pytest.mark.parametrize("block_size", [4 * K, 64 * K, 1 * M])
def test_dynamic_other_block_sizes_match_qemu(block_size, tmp_path):
    """All-ones bitmaps: qemu (which ignores bitmaps) is a second oracle for the layout.

    (Below 4 KiB blocks qemu takes the bitmap to be 0 bytes long, against the spec's
    padding to a whole sector, so it is no oracle there; the builder tests cover those.)"""
    size = 3 * M + 1024
    p = tmp_path / "b.vhd"
    build_random_dynamic(p, size, block_size, 11, ["full", None, "full", "full", None])
    built = Built(p, convert(p, tmp_path / "b.raw"))
    with vdinspect.open(p) as disk:
        assert_whole_disk(disk, built)
        assert_map_matches_qemu(disk, p)
        assert disk.info()["virtual_size"] == qemu_info(p)["virtual-size"]


@needs_qemu
def test_differencing_over_qemu_parent(tmp_path):
    size = 7 * M + 512
    parent = qemu_create(tmp_path / "parent.vhd", size, "dynamic", True)
    qemu_write(parent, shuffled_writes(size, 21, 10), 21)
    parent_raw = convert(parent, tmp_path / "parent.raw").read_bytes()
    pid = vhd.HardDiskFooter.parse(parent.read_bytes()[:512]).unique_id
    child = tmp_path / "child.vhd"
    info = vb.Parent(
        pid, name=str(parent), locators=[vb.w2ku(str(parent)), vb.w2ru(".\\parent.vhd")]
    )
    blocks, _ = build_random_dynamic(
        child, size, BLOCK, 22, ["runs", "sparse", None, "full"], parent=info
    )
    want = vb.expected_bytes(size, blocks, BLOCK, parent=parent_raw)
    with vdinspect.open(child) as disk:
        assert [os.path.basename(p) for p in disk.layers()["path"]] == ["parent.vhd", "child.vhd"]
        assert disk.layers()["parent_ok"].tolist()[1]
        assert_whole_disk(disk, want)
        for off, n in random_reads(size, BLOCK, 200, seed=5):
            assert disk.read(off, n) == want[off : off + n], (off, n)
        # who answers each sector: the child where its bit is set, else the parent's data
        pmap = qemu_map(parent)
        sectors = np.zeros(size // 512, dtype=np.int8)  # 0 none, 1 parent, 2 child
        for e in pmap:
            if e["data"]:
                sectors[e["start"] // 512 : (e["start"] + e["length"]) // 512] = 1
        for i, b in blocks.items():
            s = i * BLOCK // 512
            bits = b.bitmap[: max(0, min(BLOCK // 512, size // 512 - s))]
            sectors[s : s + len(bits)][bits] = 2
        for r in disk.runs():
            got = {None: 0, 0: 1, 1: 2}[r.layer]
            span = sectors[r.start // 512 : r.end // 512]
            assert (span == got).all(), (r, np.unique(span))
            assert r.state == {0: "unallocated", 1: "backing", 2: "data"}[got]
        info_ = disk.info()
        assert info_["parent_uuid"] == str(uuid.UUID(bytes=pid))
        assert [loc["platform"] for loc in info_["parent_locators"]] == ["W2ku", "W2ru"]
        assert disk.check().empty, disk.check().to_dict("records")


def test_differencing_chain_of_built_disks(tmp_path):
    """fixed base <- differencing (512 KiB blocks) <- differencing (4 KiB blocks)."""
    size = 2 * M + 3 * 512
    rng = np.random.default_rng(7)
    base_data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    base_id = uuid.uuid4().bytes
    vb.build_fixed(tmp_path / "base.vhd", base_data, unique_id=base_id, creator=b"win ")
    mid_id = uuid.uuid4().bytes
    mid_blocks, _ = build_random_dynamic(
        tmp_path / "mid.vhd",
        size,
        512 * K,
        8,
        ["sparse", "runs", None, "full", "empty"],
        parent=vb.Parent(base_id, name="base.vhd", locators=[vb.w2ru(".\\base.vhd")]),
        unique_id=mid_id,
        creator=b"win ",
    )
    top_blocks, _ = build_random_dynamic(
        tmp_path / "top.vhd",
        size,
        4096,
        9,
        ["runs", None, "sparse", None, None, "full"],
        parent=vb.Parent(mid_id, locators=[vb.macx(str(tmp_path / "mid.vhd"))]),
        creator=b"win ",
    )
    mid_view = vb.expected_bytes(size, mid_blocks, 512 * K, parent=base_data)
    want = vb.expected_bytes(size, top_blocks, 4096, parent=mid_view)
    with vdinspect.open(tmp_path / "top.vhd") as disk:
        assert len(disk.layers()) == 3
        assert disk.layers()["subformat"].tolist() == ["fixed", "differencing", "differencing"]
        assert_whole_disk(disk, want)
        for off, n in random_reads(size, 4096, 200, seed=9):
            assert disk.read(off, n) == want[off : off + n], (off, n)
        assert disk.layer(1).read(0, size) == mid_view
        assert disk.check().empty, disk.check().to_dict("records")


def test_parent_found_by_relative_locator_in_another_folder(tmp_path):
    (tmp_path / "parents").mkdir()
    (tmp_path / "kids").mkdir()
    data = bytes(range(256)) * 4096
    pid = uuid.uuid4().bytes
    vb.build_fixed(tmp_path / "parents" / "p.vhd", data, unique_id=pid)
    blocks = {0: vb.Block(np.zeros(2048, dtype=bool), bytes(M))}
    blocks[0].bitmap[5] = True
    vb.build_dynamic(
        tmp_path / "kids" / "c.vhd",
        size=len(data),
        block_size=M,
        blocks=blocks,
        parent=vb.Parent(
            pid,
            name="C:\\nowhere\\p.vhd",
            locators=[vb.w2ku("C:\\nowhere\\p.vhd"), vb.w2ru("..\\parents\\p.vhd")],
        ),
    )
    # ..\parents leaves the image's folder: followed only inside a folder the caller allows
    with pytest.raises(MissingParent, match="outside the image's folder"):
        vdinspect.open(tmp_path / "kids" / "c.vhd")
    with vdinspect.open(tmp_path / "kids" / "c.vhd", search=tmp_path) as disk:
        assert os.path.realpath(disk.layers()["path"][0]) == str(tmp_path / "parents" / "p.vhd")
        want = bytearray(data)
        want[5 * 512 : 6 * 512] = bytes(512)
        assert disk.read(0, len(data)) == bytes(want)


def test_missing_parent_names_every_locator(tmp_path):
    pid = uuid.uuid4().bytes
    vb.build_dynamic(
        tmp_path / "c.vhd",
        size=M,
        blocks={},
        parent=vb.Parent(
            pid,
            name="D:\\vm\\gone.vhd",
            locators=[vb.w2ku("D:\\vm\\gone.vhd"), vb.w2ru(".\\sub\\gone-too.vhd")],
        ),
    )
    with pytest.raises(MissingParent) as e:
        vdinspect.open(tmp_path / "c.vhd")
    tried = " ".join(e.value.tried)
    assert "gone.vhd" in tried and "sub/gone-too.vhd" in tried
    with vdinspect.open(tmp_path / "c.vhd", strict=False) as disk:
        assert {r.state for r in disk.runs()} == {"damaged"}
        assert (disk.check()["structure"] == "parent").any()


def test_parent_uuid_mismatch(tmp_path):
    data = os.urandom(M)
    vb.build_fixed(tmp_path / "p.vhd", data, unique_id=uuid.uuid4().bytes)
    vb.build_dynamic(
        tmp_path / "c.vhd",
        size=M,
        blocks={},
        parent=vb.Parent(uuid.uuid4().bytes, name="p.vhd", time_stamp=12345),
    )
    with pytest.raises(CorruptImage) as e:
        vdinspect.open(tmp_path / "c.vhd")
    assert e.value.structure == "dynamic disk header.parent_unique_id"
    with vdinspect.open(tmp_path / "c.vhd", strict=False) as disk:
        assert disk.read(0, M) == data
        rows = disk.check()
        bad = rows[rows["structure"] == "dynamic disk header.parent_unique_id"]
        assert len(bad) == 1 and bad["severity"].iloc[0] == "error" and bad["layer"].iloc[0] == 1
        assert (rows["structure"] == "dynamic disk header.parent_time_stamp").any()


def test_parent_locators_in_sectors_and_header_name_only(tmp_path):
    pid = uuid.uuid4().bytes
    vb.build_fixed(tmp_path / "p.vhd", bytes(M), unique_id=pid)
    vb.build_dynamic(
        tmp_path / "c.vhd",
        size=M,
        blocks={},
        parent=vb.Parent(pid, locators=[vb.w2ru(".\\p.vhd")], space_in_sectors=True),
    )
    vb.build_dynamic(tmp_path / "n.vhd", size=M, blocks={}, parent=vb.Parent(pid, name="p.vhd"))
    for name in ("c.vhd", "n.vhd"):
        with vdinspect.open(tmp_path / name) as disk:
            assert len(disk.layers()) == 2, name
            assert disk.check().empty, disk.check().to_dict("records")
    with vdinspect.open(tmp_path / "c.vhd") as disk:
        rows = disk.structures()
        loc = rows[rows["name"] == "parent locator W2ru"]
        assert loc["length"].iloc[0] == 512


def test_old_511_byte_footer_and_saved_state(tmp_path):
    data = os.urandom(3 * M)
    p = tmp_path / "old.vhd"
    vb.build_fixed(p, data, old_footer=True, saved_state=1, creator=b"vs  ")
    with vdinspect.open(p) as disk:  # found by its footer, one byte short
        info = disk.info()
        assert info["format"] == "vhd" and info["subformat"] == "fixed"
        assert info["saved_state"] and "saved state" in info["flags"]
        # Virtual Server sizes by geometry, which the spec rounds down from 3 MiB
        c, h, s = vb.spec_geometry(len(data) // 512)
        assert info["size_rule"] == "chs" and disk.size == c * h * s * 512 < len(data)
        assert disk.read(0, disk.size) == data[: disk.size]
        rows = disk.check()
        assert set(rows["severity"]) == {"info"}
        assert disk.structures()["length"].iloc[-1] == 511


# --- bad input ----------------------------------------------------------------------------------


@pytest.fixture
def small_dynamic(tmp_path):
    """A built dynamic disk (2 blocks of 64 KiB allocated), its layout and its bytes."""
    size = 256 * K
    rng = np.random.default_rng(1)
    blocks = {0: vb.random_block(rng, 64 * K, "full"), 2: vb.random_block(rng, 64 * K, "runs")}
    p = tmp_path / "small.vhd"
    layout = vb.build_dynamic(p, size=size, blocks=blocks, block_size=64 * K, creator=b"win ")
    return p, layout, vb.expected_bytes(size, blocks, 64 * K)


def patched(src: Path, dst: Path, at: int, data: bytes) -> Path:
    b = bytearray(src.read_bytes())
    b[at : at + len(data)] = data
    dst.write_bytes(bytes(b))
    return dst


def patch_header(src: Path, dst: Path, layout: vb.Layout, **fields) -> Path:
    b = bytearray(src.read_bytes())
    at = layout.header_offset
    h = vhd.DynamicDiskHeader.parse(bytes(b[at : at + 1024]))
    for k, v in fields.items():
        h[k] = v
    b[at : at + 1024] = vb.with_checksum(vhd.DynamicDiskHeader.build(h), 36)
    dst.write_bytes(bytes(b))
    return dst


def test_bat_entry_past_end_of_file(small_dynamic, tmp_path):
    p, layout, want = small_dynamic
    bad = patched(p, tmp_path / "bat.vhd", layout.bat_offset + 4, (0x100000).to_bytes(4, "big"))
    with pytest.raises(CorruptImage) as e:
        vdinspect.open(bad)
    assert e.value.structure == "BAT" and e.value.offset == layout.bat_offset + 4
    with vdinspect.open(bad, strict=False) as disk:
        assert disk.read(0, 64 * K) == want[: 64 * K]
        states = {r.start: r.state for r in disk.runs()}
        assert states[64 * K] == "damaged"
        assert (disk.check()["structure"] == "BAT").any()


@pytest.mark.parametrize("mte", [0x7FFFFFFF, 0x40000001, 0xFFFFFFFF])
def test_absurd_max_table_entries(mte, small_dynamic, tmp_path):
    p, layout, want = small_dynamic
    bad = patch_header(p, tmp_path / "mte.vhd", layout, max_table_entries=mte)
    with pytest.raises(CorruptImage, match="Max Table Entries too large"):
        vdinspect.open(bad)
    with vdinspect.open(bad, strict=False) as disk:  # the entries that are in the file
        assert disk.read(0, 64 * K) == want[: 64 * K]
        assert (disk.check()["structure"] == "dynamic disk header.max_table_entries").any()


@pytest.mark.parametrize("bs", [0, 3, 1000, 256])
def test_bad_block_size(bs, small_dynamic, tmp_path):
    p, layout, _ = small_dynamic
    bad = patch_header(p, tmp_path / "bs.vhd", layout, block_size=bs)
    for strict in (True, False):
        with pytest.raises(CorruptImage) as e:
            vdinspect.open(bad, strict=strict)
        assert e.value.structure == "dynamic disk header.block_size"


def test_page_table_too_small(small_dynamic, tmp_path):
    p, layout, want = small_dynamic
    bad = patch_header(p, tmp_path / "pt.vhd", layout, max_table_entries=2)
    with pytest.raises(CorruptImage, match="page table too small"):
        vdinspect.open(bad)
    with vdinspect.open(bad, strict=False) as disk:
        assert disk.read(0, 128 * K) == want[: 128 * K]
        assert disk.runs(128 * K)[0].state == "damaged"


def test_truncated_dynamic(small_dynamic, tmp_path):
    p, layout, want = small_dynamic
    cut = tmp_path / "cut.vhd"
    cut.write_bytes(p.read_bytes()[: layout.block_offsets[2] + 512 + 10 * K + 100])
    with pytest.raises(CorruptImage):
        vdinspect.open(cut)
    with vdinspect.open(cut, strict=False) as disk:
        assert disk.read(0, 128 * K + 10 * K) == want[: 128 * K + 10 * K]
        top = disk.top
        damaged = [r for r in top.runs() if r.state == "damaged"]
        assert damaged and all(r.start >= 128 * K + 10 * K for r in damaged)
        assert disk.top.info_fields()["footer_from_copy"]


def test_footer_destroyed_uses_copy(small_dynamic, tmp_path):
    p, layout, want = small_dynamic
    bad = patched(p, tmp_path / "nofooter.vhd", layout.footer_offset, bytes(512))
    with pytest.raises(CorruptImage, match="copy at offset 0 is intact") as e:
        vdinspect.open(bad)
    assert e.value.structure == "footer"
    with vdinspect.open(bad, strict=False) as disk:
        assert disk.read(0, len(want)) == want
        rows = disk.check()
        assert (rows["structure"] == "footer").any()
    # a damaged (not missing) footer: a flipped reserved byte breaks its checksum
    bad2 = patched(p, tmp_path / "badsum.vhd", layout.footer_offset + 100, b"\x01")
    with pytest.raises(CorruptImage, match="damaged"):
        vdinspect.open(bad2)
    with vdinspect.open(bad2, strict=False) as disk:
        assert disk.read(0, len(want)) == want


@needs_qemu
def test_checksums_like_qemu(small_dynamic, tmp_path):
    """A bad footer checksum: qemu refuses, so do we (strict); salvage reads the disk."""
    p, layout, want = small_dynamic
    for at, what in [(0, "footer"), (layout.header_offset, "dynamic disk header")]:
        bad = patched(p, tmp_path / f"sum{at}.vhd", at + 200, b"\x07")
        if what == "footer":
            bad = patched(bad, bad, layout.footer_offset + 200, b"\x07")
            with pytest.raises(RuntimeError, match="checksum"):
                qemu_info(bad)
        with pytest.raises(CorruptImage, match="checksum") as e:
            vdinspect.open(bad)
        assert e.value.structure == what
        with vdinspect.open(bad, strict=False) as disk:
            assert disk.read(0, len(want)) == want
            assert (disk.check()["structure"] == what).any()


def test_footer_copy_differs(small_dynamic, tmp_path):
    p, layout, want = small_dynamic
    b = bytearray(p.read_bytes())
    f = vhd.HardDiskFooter.parse(bytes(b[:512]))
    f.time_stamp += 1
    b[:512] = vb.with_checksum(vhd.HardDiskFooter.build(f), 64)
    (tmp_path / "copy.vhd").write_bytes(bytes(b))
    with vdinspect.open(tmp_path / "copy.vhd") as disk:
        assert disk.read(0, len(want)) == want
        rows = disk.check()
        assert rows["structure"].tolist() == ["footer copy"]
        assert "time_stamp" in rows["message"].iloc[0]


def test_overlapping_blocks_reported(small_dynamic, tmp_path):
    p, layout, _ = small_dynamic
    first = layout.block_offsets[0] // 512
    bad = patched(p, tmp_path / "ov.vhd", layout.bat_offset + 4, first.to_bytes(4, "big"))
    bad = patched(bad, bad, layout.bat_offset + 12, (layout.bat_offset // 512).to_bytes(4, "big"))
    # blocks at an impossible place: strict refuses, salvage reads them as damaged
    with pytest.raises(CorruptImage, match="impossible place; 2 such entries"):
        vdinspect.open(bad)
    with vdinspect.open(bad, strict=False) as disk:
        msgs = " | ".join(disk.check()["message"])
        assert "overlaps another block" in msgs
        assert "overlaps the BAT" in msgs or "overlaps the dynamic disk header" in msgs
        assert "2 BAT entries put their blocks at an impossible place" in msgs
        damaged = [(r.start, r.end) for r in disk.runs() if r.state == "damaged"]
        bs = disk.top.block_size
        assert damaged == [(bs, 2 * bs), (3 * bs, 4 * bs)]


def test_bad_cookie_and_header_offset(small_dynamic, tmp_path):
    p, layout, _ = small_dynamic
    bad = patched(p, tmp_path / "ck.vhd", layout.header_offset, b"cxsparsX")
    with pytest.raises(CorruptImage, match="cxsparse"):
        vdinspect.open(bad)
    bad = tmp_path / "off.vhd"
    shutil.copy(p, bad)
    patch_footers(bad, data_offset=1 << 40)
    with pytest.raises(CorruptImage, match="past the end"):
        vdinspect.open(bad, strict=False)


def test_fixed_truncated_and_tiny_files(tmp_path):
    p = tmp_path / "f.vhd"
    vb.build_fixed(p, bytes(range(256)) * 64)
    data = p.read_bytes()
    short = tmp_path / "short.vhd"
    ft = vhd.HardDiskFooter.parse(data[-512:])
    ft.current_size = 1 * M
    short.write_bytes(data[:-512] + vb.with_checksum(vhd.HardDiskFooter.build(ft), 64))
    with pytest.raises(CorruptImage, match="truncated"):
        vdinspect.open(short, format="vhd")
    with vdinspect.open(short, strict=False) as disk:
        assert disk.size == M and disk.read(0, 16 * K) == data[: 16 * K]
        assert disk.runs(16 * K)[0].state == "damaged"
    for n in (0, 100, 600):
        tiny = tmp_path / f"tiny{n}.vhd"
        tiny.write_bytes(b"conectix" + bytes(max(0, n - 8)) if n else b"")
        with pytest.raises(VDInspectError):
            vdinspect.open(tiny, format="vhd")
    with pytest.raises(NotRecognized):
        vdinspect.open(tmp_path / "tiny0.vhd", format="vhd")


def test_mutated_images_fail_cleanly(tmp_path):
    """Random damage to a differencing disk: a VDInspectError or a readable disk, never
    another exception, in both modes (a seeded fuzz over header, BAT, blocks and footer)."""
    rng = np.random.default_rng(3)
    pid = uuid.uuid4().bytes
    vb.build_fixed(
        tmp_path / "p.vhd", rng.integers(0, 256, 256 * K, dtype=np.uint8).tobytes(), unique_id=pid
    )
    blocks = {
        i: vb.random_block(rng, 64 * K, k) for i, k in [(0, "full"), (2, "runs"), (3, "sparse")]
    }
    vb.build_dynamic(
        tmp_path / "c.vhd",
        size=256 * K,
        blocks=blocks,
        block_size=64 * K,
        parent=vb.Parent(pid, name="p.vhd", locators=[vb.w2ru(".\\p.vhd")]),
    )
    base = (tmp_path / "c.vhd").read_bytes()
    r = random.Random(5)
    values = [b"\xff\xff\xff\xff", bytes(4), b"\x7f\xff\xff\xff", b"\x00\x00\x10\x00"]
    for it in range(80):
        b = bytearray(base)
        for _ in range(r.randint(1, 5)):
            lo, hi = r.choice([(0, 512), (512, 1536), (1536, 4096), (len(b) - 512, len(b))])
            pos = r.randrange(lo, min(hi, len(b)))
            if r.random() < 0.6:
                b[pos] = r.randrange(256)
            elif r.random() < 0.85:
                b[pos : pos + 4] = r.choice(values)
            else:
                del b[pos:]
                break
        f = tmp_path / f"m{it}.vhd"
        f.write_bytes(bytes(b))
        for strict in (True, False):
            try:
                with vdinspect.open(f, strict=strict) as disk:
                    disk.read(0, min(disk.size, 4 * M))
                    disk.check(), disk.structures(), disk.info(), disk.allocation()
            except VDInspectError:
                pass


def test_probe_functions():
    assert vhd.probe(b"conectix" + bytes(504))
    assert not vhd.probe(b"cxsparse")
    assert vhd.probe_tail(bytes(1) + b"conectix" + bytes(504))
    assert vhd.probe_tail(bytes(2) + b"conectix" + bytes(503))  # a 511-byte footer
    assert not vhd.probe_tail(bytes(513))


# --- real samples -------------------------------------------------------------------------------


def sha256_of(disk) -> str:
    h = hashlib.sha256()
    for pos in range(0, disk.size, 4 * M):
        h.update(disk.read(pos, min(4 * M, disk.size - pos)))
    return h.hexdigest()


def unpack(name: str, tmp_path: Path) -> Path:
    src = SHARED_SAMPLES / "qemu-iotests-v7.2.0" / "sample_images" / f"{name}.bz2"
    with bz2.open(src, "rb") as fin:
        return write_sparse(tmp_path / name, fin)  # keep the copy sparse


DFVFS = SHARED_SAMPLES / "dfvfs" / "test_data"


@needs_shared
@pytest.mark.parametrize(
    "name, auto, forced, rule",
    [
        ("hyperv2012r2-dynamic.vhd", 136365211648, 136363130880, "chs"),
        ("virtualpc-dynamic.vhd", 136363130880, 136365211648, "current_size"),
    ],
)
def test_sample_size_rules(name, auto, forced, rule, tmp_path):
    p = unpack(name, tmp_path)
    with vdinspect.open(p) as disk:
        assert disk.size == auto
        assert [r.state for r in disk.runs()] == ["unallocated"]
        assert disk.read(auto - 4096, 4096) == bytes(4096)
        assert disk.check().empty
    with vhd.open_vhd(p, size_rule=rule) as im:
        assert im.size == forced


@needs_shared
def test_sample_d2v_zerofilled(tmp_path):
    p = unpack("d2v-zerofilled.vhd", tmp_path)
    with vdinspect.open(p) as disk:
        info = disk.info()
        assert info["virtual_size"] == 263454720 and info["creator_application"] == "d2v"
        assert info["geometry"] == (65535, 16, 255)
        top = disk.top
        assert top.allocated_blocks == 126
        # every block is allocated with an all-ones bitmap and zero data (qemu's iotest 146
        # maps each 2 MiB block as data; MANIFEST.md's "bitmaps cleared" does not hold)
        runs = disk.runs()
        assert {r.state for r in runs} == {"data"}
        assert all(r.start % (2 * M) == 0 for r in runs)
        assert sha256_of(disk) == (
            "1ba076be94a8a64541c25aae8d5a5f8b0da758c3797af597e03acb431ff8d143"
        )


@needs_shared
@pytest.mark.parametrize(
    "path, size, sub, raw_sha256",
    [
        (
            SHARED_SAMPLES / "ImHex-Patterns" / "vhd.hexpat.vhd",
            3145728,
            "fixed",
            "3fbc23df8e7b632ea7948cde80925b326a0869e784040aebbaeac5b69e3d1f7b",
        ),
        (
            DFVFS / "ext2.vhd",
            4212736,
            "dynamic",
            "870be7ae16c1fa8faab05c6eb9205dc9a7ae35c5f552c5cf8a267c0bc6a5cb99",
        ),
    ],
)
def test_sample_raw_sha256(path, size, sub, raw_sha256):
    with vdinspect.open(path) as disk:
        info = disk.info()
        assert (info["format"], info["subformat"], info["virtual_size"]) == ("vhd", sub, size)
        assert disk.check().empty, disk.check().to_dict("records")
        assert sha256_of(disk) == raw_sha256
        if sub == "fixed":
            assert info["creator_application"] == "win" and info["geometry"] == (90, 4, 17)
            assert info["size_chs"] == 90 * 4 * 17 * 512 and info["size_rule"] == "current_size"
            assert disk.read(0x1B8, 4) == (0x12CE1D39).to_bytes(4, "little")  # disk signature


@needs_shared
def test_sample_image_vhd_bad_checksum():
    with pytest.raises(CorruptImage, match="checksum"):
        vdinspect.open(DFVFS / "image.vhd")
    with vdinspect.open(DFVFS / "image.vhd", strict=False) as disk:
        assert disk.size == 104448
        assert sha256_of(disk) == (
            "c6db12a7db548e193c29420c1b4533e4708b20c5033db5cc29ef075d48316d25"
        )
        assert (disk.check()["structure"] == "footer").any()


@needs_shared
def test_sample_image_differential(tmp_path):
    with pytest.raises(CorruptImage):
        vdinspect.open(DFVFS / "image-differential.vhd")
    with vdinspect.open(DFVFS / "image-differential.vhd", strict=False) as disk:
        assert len(disk.layers()) == 2
        assert os.path.basename(disk.layers()["path"][0]) == "image.vhd"
        info = disk.info()
        assert info["parent_name"] == "image.vhd"
        assert info["parent_uuid"] == "d49c5c80-350a-4a89-898a-5ad6d10f6578"
        assert sha256_of(disk) == (
            "c6db12a7db548e193c29420c1b4533e4708b20c5033db5cc29ef075d48316d25"
        )
        rows = disk.check()
        assert set(rows[rows["layer"] == 1]["structure"]) >= {"footer", "dynamic disk header"}


@needs_shared
def test_sample_fat_differential_missing_parent():
    p = DFVFS / "fat-differential.vhd"
    with pytest.raises(MissingParent) as e:
        vdinspect.open(p)
    tried = e.value.tried
    assert any(t.endswith("test_data/./fat-parent.vhd") for t in tried)  # W2ru
    assert any("Projects/dfvfs/test_data/fat-parent.vhd" in t for t in tried)  # W2ku
    im = vhd.open_vhd(p)
    try:
        assert im.subformat == "differencing"
        h = im.dynamic_header
        assert (h.table_offset, h.max_table_entries, h.block_size) == (0x2000, 2, 2 * M)
        assert str(im.parent_unique_id) == "5fa21a55-f394-aa4d-9958-1951a67d5540"
        assert im.parent_name == "C:\\Projects\\dfvfs\\test_data\\fat-parent.vhd"
        locs = [(loc.platform, loc.path, loc.host_offset, loc.space) for loc in im.locators]
        assert locs == [
            ("W2ku", "C:\\Projects\\dfvfs\\test_data\\fat-parent.vhd", 0x1000, 4096),
            ("W2ru", ".\\fat-parent.vhd", 0x3000, 0x10000),
        ]
        assert im.bat.tolist() == [0x9F, 0xFFFFFFFF]
        runs = [r for r in im.runs() if r.state == "data"]
        assert sum(r.length for r in runs) == 18 * 512
        # sectors 134, 143, 152-159, 184-185, 188, 190-192, 194, 196: 8 stretches
        assert [(r.start // 512, r.length // 512) for r in runs] == [
            (134, 1),
            (143, 1),
            (152, 8),
            (184, 2),
            (188, 1),
            (190, 3),
            (194, 1),
            (196, 1),
        ]
        info = im.info_fields()
        assert info["creator_application"] == "win" and info["creator_version"] == "10.0"
        assert info["creator_host_os"] == "Wi2k"
        assert im.check_rows() == []
    finally:
        im.close()
    with vdinspect.open(p, strict=False) as disk:
        states = {r.state for r in disk.runs()}
        assert states == {"data", "damaged"}


@needs_shared
def test_sample_afl5_fails_fast(tmp_path):
    p = unpack("afl5.img", tmp_path)
    with pytest.raises(CorruptImage, match=r"Max Table Entries too large \(1073741825\)"):
        vdinspect.open(p)
    with vdinspect.open(p, strict=False) as disk:
        assert disk.size == 34816
        assert {r.state for r in disk.runs()} == {"damaged"}


@needs_shared
def test_libvhdi_fragments():
    d = SHARED_SAMPLES / "libyal-fragments" / "libvhdi"
    foot = (d / "file_footer.1").read_bytes()
    assert vhd.probe(foot)
    f = vhd.HardDiskFooter.parse(foot)
    assert f.creator_application == b"vpc " and f.creator_host_os == b"Wi2k"
    assert f.checksum == vhd.vhd_checksum(foot, vhd.FOOTER_CHECKSUM_AT)
    assert f.disk_type == vhd.DIFFERENCING and f.data_offset == 512
    head = (d / "dynamic_disk_header.1").read_bytes()
    h = vhd.DynamicDiskHeader.parse(head)
    assert h.cookie == b"cxsparse"
    assert h.checksum == vhd.vhd_checksum(head, vhd.HEADER_CHECKSUM_AT)
    assert h.block_size == 2 * M and h.block_size & (h.block_size - 1) == 0
