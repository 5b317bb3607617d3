"""VDI against qemu-img, against images built from VirtualBox's structures, and a real sample.

- Dynamic and fixed (static) images are made by qemu-img / qemu-io; bytes, random reads,
  allocation and virtual size are compared with ``qemu-img convert``, ``map``, ``info`` and
  ``check``.
- tests/vdi_builder.py writes what qemu-img cannot: differencing and undo images and their
  chains in VirtualBox's folder layout, the 400-byte header, version 0 headers, other block
  sizes, extra block data, zero blocks. Its plain images are checked against qemu-img first;
  what a disk must read as comes from the builder's data (over qemu's reading of parents).
- The real VirtualBox 7 image of ../shared/samples is checked against its MANIFEST.md values.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import struct
import tempfile
import uuid as uuidlib
from pathlib import Path

import pytest

import vdinspect
from tests import qemu_tools as q
from tests import vdi_builder as vb
from tests.conftest import SHARED_SAMPLES, needs_qemu, needs_shared
from vdinspect.containers import registry, vdi
from vdinspect.errors import (
    CorruptImage,
    MissingParent,
    NotRecognized,
    UnsupportedFeature,
    VDInspectError,
)
from vdinspect.io import FileSource

K, M, G = 1 << 10, 1 << 20, 1 << 30

# --- qemu-made images ---------------------------------------------------------------------------


def qemu_write(path: Path, writes: list[tuple[int, int]], seed: int) -> None:
    """qemu-io writes of random bytes (through small payload files), in the order given."""
    rng = random.Random(seed)
    args = ["qemu-io", "-f", "vdi"]
    with tempfile.TemporaryDirectory() as tmp:  # a path without spaces for qemu-io's -s
        for k, (off, n) in enumerate(writes):
            p = Path(tmp) / f"payload{k}"
            p.write_bytes(rng.randbytes(n))
            args += ["-c", f"write -q -s {p} {off} {n}"]
        q.run(*args, str(path))


def shuffled_writes(size: int, seed: int, n: int = 10) -> list[tuple[int, int]]:
    """Writes that cross block boundaries, in shuffled order (blocks get shuffled indexes)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        if rng.random() < 0.5:
            b = rng.randrange(0, size // M + 1) * M
            off = max(0, b - rng.randrange(1, 40) * 512)
        else:
            off = rng.randrange(0, size // 512) * 512
        length = min(size - off, rng.choice([512, 4 * K, 37 * 512, 100 * K, 700 * K]))
        if length > 0:
            out.append((off, length))
    rng.shuffle(out)
    return out


QEMU_VARIANTS = {
    # name: (static, size, seed)
    "dyn-5M": (False, 5 * M, 1),
    "dyn-7M+1234": (False, 7 * M + 1234, 2),  # qemu-img rounds the size up to whole sectors
    "static-3M+777": (True, 3 * M + 777, 3),
    "static-2M": (True, 2 * M, 4),
    "dyn-64G": (False, 64 * G, 5),
}
SMALL = [n for n in QEMU_VARIANTS if QEMU_VARIANTS[n][1] < G]


class Built:
    """An image and the raw file qemu-img convert made of it."""

    def __init__(self, path: Path, oracle: Path | None) -> None:
        self.path = path
        self.oracle = oracle
        self.size = json.loads(q.qemu_img("info", "--output=json", str(path)))["virtual-size"]

    def read(self, off: int, n: int) -> bytes:
        if self.oracle is None:  # a sparse disk too big to convert: read it with qemu-io
            return qemu_read(self.path, off, n)
        with open(self.oracle, "rb") as f:
            return os.pread(f.fileno(), n, off)


def qemu_read(path: Path, off: int, n: int) -> bytes:
    """Bytes as qemu reads them (a raw window over the VDI node, converted by qemu-img)."""
    out = path.parent / "qemu-read.raw"
    a, b = off // 512 * 512, -(-(off + n) // 512) * 512  # the raw driver wants whole sectors
    spec = f"driver=raw,offset={a},size={b - a},file.driver=vdi,file.file.filename={path}"
    q.qemu_img("convert", "-O", "raw", "--image-opts", spec, str(out))
    data = out.read_bytes()
    out.unlink()
    return data[off - a : off - a + n]


@pytest.fixture(scope="session")
def qemu_vdis(tmp_path_factory):
    cache: dict[str, Built] = {}

    def get(name: str) -> Built:
        if name not in cache:
            static, size, seed = QEMU_VARIANTS[name]
            d = tmp_path_factory.mktemp(name)
            img = d / f"{name}.vdi"
            q.qemu_img(
                "create", "-q", "-f", "vdi", "-o", f"static={'on' if static else 'off'}",
                str(img), str(size),
            )  # fmt: skip
            writes = shuffled_writes(min(size, 12 * M), seed)
            if size > G:
                writes += [(size - M - 512, 5000), (40 * G + 7 * 512, 2 * M)]
            qemu_write(img, writes, seed)
            oracle = None
            if size < G:
                oracle = d / "oracle.raw"
                q.qemu_img("convert", "-f", "vdi", "-O", "raw", str(img), str(oracle))
            cache[name] = Built(img, oracle)
        return cache[name]

    return get


def random_reads(size: int, block: int, n: int = 200, seed: int = 0):
    """Reads straddling block and sector boundaries, some tiny and unaligned, a few anywhere."""
    rng = random.Random(seed)
    bounds = sorted({0, size, *range(0, min(size, 64 * block), block)})
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


def assert_map_matches_qemu(disk, path: Path) -> None:
    """qemu's data runs are ours at the same host offsets; its other runs (zeros: a VDI
    without a parent reads free blocks as zeros) are unallocated or zero here."""
    theirs = json.loads(q.qemu_img("map", "--output=json", "-f", "vdi", str(path)))
    ours = disk.runs()
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
            assert t["zero"] and o.state in ("unallocated", "zero"), where


@needs_qemu
@pytest.mark.parametrize("name", SMALL)
def test_qemu_whole_disk_bytes(name, qemu_vdis):
    built = qemu_vdis(name)
    with vdinspect.open(built.path) as disk:
        assert disk.info()["format"] == "vdi"
        assert disk.size == built.size
        assert disk.read(0, disk.size) == built.oracle.read_bytes()


@needs_qemu
@pytest.mark.parametrize("name", SMALL)
def test_qemu_random_reads(name, qemu_vdis):
    built = qemu_vdis(name)
    with vdinspect.open(built.path) as disk:
        for off, n in random_reads(disk.size, M, 200, seed=len(name)):
            assert disk.read(off, n) == built.read(off, n), (off, n)


@needs_qemu
@pytest.mark.parametrize("name", list(QEMU_VARIANTS))
def test_qemu_allocation_map(name, qemu_vdis):
    built = qemu_vdis(name)
    with vdinspect.open(built.path) as disk:
        assert_map_matches_qemu(disk, built.path)


@needs_qemu
@pytest.mark.parametrize("name", list(QEMU_VARIANTS))
def test_qemu_info_and_check(name, qemu_vdis):
    built = qemu_vdis(name)
    static = QEMU_VARIANTS[name][0]
    qi = json.loads(q.qemu_img("info", "--output=json", str(built.path)))
    qc = q.qemu_check(built.path)
    assert qc.get("corruptions", 0) == 0
    with vdinspect.open(built.path) as disk:
        info = disk.info()
        assert info["virtual_size"] == qi["virtual-size"]
        assert info["cluster_size"] == qi["cluster-size"] == info["block_size"]
        assert info["subformat"] == ("fixed" if static else "dynamic")
        assert info["banner"] == "<<< QEMU VM Virtual Disk Image >>>"
        assert info["version"] == "1.1" and info["header_size"] == 384
        assert info["lchs_geometry"] is None
        assert uuidlib.UUID(info["uuid"]) == vb.header_uuids(built.path)[0]
        assert info["uuid_modify"] == str(vb.header_uuids(built.path)[1])
        assert info["blocks_allocated"] == info["blocks_in_map"]
        assert disk.layers()["parent_path"].isna().all()
        assert disk.check().empty, disk.check().to_dict("records")
        rows = disk.structures()
        assert rows["name"].tolist()[:3] == ["pre-header", "header", "block map"]
        assert rows.loc[rows["name"] == "block map", "host_offset"].item() == info["offset_blocks"]
        data = rows[rows["name"] == "data"]
        assert data["length"].sum() == info["allocated"]


@needs_qemu
def test_qemu_sparse_64g_runs_from_metadata(qemu_vdis):
    built = qemu_vdis("dyn-64G")
    with vdinspect.open(built.path) as disk:
        runs = disk.runs()
        assert len(runs) < 40
        assert sum(r.length for r in runs if r.state == "data") == disk.top.allocated_blocks * M
        for off, n in [(40 * G + 7 * 512 - 100, 5000), (disk.size - M - 600, M + 600)]:
            assert disk.read(off, n) == built.read(off, n)


@needs_qemu
def test_detected_by_signature_not_name(qemu_vdis, tmp_path):
    built = qemu_vdis("dyn-5M")
    renamed = tmp_path / "disk.img"
    shutil.copyfile(built.path, renamed)
    src = FileSource(renamed)
    try:
        assert registry.detect(src).name == "vdi"
    finally:
        src.close()
    assert vdi.probe(built.path.read_bytes()[:512])
    assert not vdi.probe(b"\0" * 512)


# --- builder images: first checked against qemu-img, then what qemu cannot read ---------------


def built_base(tmp_path: Path, name: str, seed: int, **kw) -> tuple[Path, vb.Vdi]:
    rng = random.Random(seed)
    size = kw.pop("size", 6 * M + 3 * 512)
    bs = kw.get("block_size", M)
    v = vb.Vdi(size=size, blocks=vb.random_blocks(rng, -(-size // bs), bs), shuffle=seed, **kw)
    return vb.write(tmp_path / name, v), v


@needs_qemu
@pytest.mark.parametrize("header", ["1.1", "1.1+"])
def test_builder_layout_agrees_with_qemu(header, tmp_path):
    """The builder's plain images read the same in qemu-img as the builder says."""
    p, v = built_base(tmp_path, "b.vdi", 7, header=header)
    want = vb.expected_bytes(v)
    assert q.to_raw_bytes(p, tmp_path, fmt="vdi") == want
    with vdinspect.open(p) as disk:
        assert disk.read(0, disk.size) == want
        assert_map_matches_qemu(disk, p)
        states = {r.state for r in disk.runs()}
        assert {"data", "zero", "unallocated"} <= states
        assert disk.info()["header_size"] == (400 if header == "1.1+" else 384)
    assert q.qemu_check(p).get("corruptions", 0) == 0


def block_states(v: vb.Vdi) -> list[str]:
    """The state the builder gave each block of the disk."""
    out = []
    for k in range(-(-(v.size & ~511) // v.block_size)):
        d = v.blocks.get(k)
        out.append("unallocated" if d is None else "zero" if isinstance(d, str) else "data")
    return out


BUILDER_VARIANTS = {
    # name: builder keywords (qemu-img reads none of these: it wants 1 MiB blocks, v1.1)
    "block-64K": dict(block_size=64 * K, size=2 * M + 5 * 512),
    "block-4M": dict(block_size=4 * M, size=13 * M, header="1.1"),
    "block-512": dict(block_size=512, size=300 * 512),
    "extra-4K": dict(block_size=64 * K, block_extra=4 * K, size=M + 512),
    "version-0": dict(header="0", block_size=256 * K, size=3 * M),
    "odd-size": dict(size=3 * M + 1000),  # VirtualBox rounds down to whole sectors
    "fixed": dict(image_type=vb.FIXED, size=4 * M, shuffle=None),
    "align-4K": dict(align=4096, size=2 * M, comment=b"made for vdinspect tests \xe2\x9c\x93"),
}


@pytest.mark.parametrize("name", list(BUILDER_VARIANTS))
def test_builder_variants(name, tmp_path):
    kw = dict(BUILDER_VARIANTS[name])
    if kw.get("image_type") == vb.FIXED:
        size, bs = kw["size"], kw.get("block_size", M)
        rng = random.Random(3)
        v = vb.Vdi(blocks={k: rng.randbytes(bs) for k in range(size // bs)}, **kw)
        p = vb.write(tmp_path / "f.vdi", v)
    else:
        p, v = built_base(tmp_path, f"{name}.vdi", len(name), **kw)
    want = vb.expected_bytes(v)
    with vdinspect.open(p) as disk:
        assert disk.size == len(want) == v.size & ~511
        assert disk.read(0, disk.size) == want
        for off, n in random_reads(disk.size, v.block_size, 200, seed=len(name)):
            assert disk.read(off, n) == want[off : off + n], (off, n)
        bs = v.block_size
        states = block_states(v)
        for r in disk.runs():
            for k in range(r.start // bs, -(-r.end // bs)):
                assert r.state == states[k], (k, r)
        info = disk.info()
        assert info["subformat"] == ("fixed" if kw.get("image_type") == vb.FIXED else "dynamic")
        assert info["uuid"] == str(v.uuid_create)
        assert info["block_extra"] == v.block_extra
        assert info["version"] == ("0.2" if v.header == "0" else "1.1")
        if "comment" in kw:
            assert info["description"] == kw["comment"].decode()
        check = disk.check()
        if name == "odd-size":
            assert check["message"].str.contains("not a multiple of 512").any()
            assert (check["severity"] != "error").all()
        else:
            assert check.empty, check.to_dict("records")
        rows = disk.structures()
        assert (rows["name"].str.endswith(" extra")).sum() == (
            len([d for d in v.blocks.values() if not isinstance(d, str)]) if v.block_extra else 0
        )


# --- differencing images ------------------------------------------------------------------------


class Layer:
    """A file of a chain and the bytes the chain must read as when it is the top."""

    def __init__(self, path: Path, want: bytes, v: vb.Vdi | None = None) -> None:
        self.path = path
        self.want = want
        self.v = v
        self.uuid, self.modify = vb.header_uuids(path)


def qemu_parent(path: Path, size: int, seed: int) -> Layer:
    """A dynamic VDI written by qemu-io, with qemu's reading of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    q.qemu_img("create", "-q", "-f", "vdi", str(path), str(size))
    qemu_write(path, shuffled_writes(size, seed), seed)
    return Layer(path, q.to_raw_bytes(path, path.parent, fmt="vdi"))


def diff_over(parent: Layer, path: Path, seed: int, **kw) -> Layer:
    """A differencing image over ``parent`` (linked by its UUIDs unless told otherwise)."""
    rng = random.Random(seed)
    size = len(parent.want)
    kw.setdefault("uuid_linkage", parent.uuid)
    kw.setdefault("uuid_parent_modify", parent.modify)
    kw.setdefault("image_type", vb.DIFF)
    v = vb.Vdi(size=size, blocks=vb.random_blocks(rng, -(-size // M), M), shuffle=seed, **kw)
    p = vb.write(path, v)
    return Layer(p, vb.expected_bytes(v, parent.want), v)


def assert_chain(disk, layers: list[Layer]) -> None:
    """Bytes, layer files, and the layer each run comes from."""
    top = layers[-1]
    assert disk.read(0, disk.size) == top.want
    assert [Path(p).resolve() for p in disk.layers()["path"]] == [x.path.resolve() for x in layers]
    assert disk.layers()["parent_ok"].tolist()[1:] == [True] * (len(layers) - 1)
    assert disk.check().empty, disk.check().to_dict("records")
    for r in disk.runs():
        for k in range(r.start // M, -(-r.end // M)):
            # the layer that answers block k: the topmost whose map entry is not free
            owner = None
            for idx in range(len(layers) - 1, 0, -1):
                if layers[idx].v.blocks.get(k) is not None:
                    owner = idx
                    break
            if owner is None:
                assert r.state in ("backing", "unallocated"), (k, r)
                assert r.layer in (0, None)
            else:
                kind = "zero" if isinstance(layers[owner].v.blocks[k], str) else "data"
                assert r.layer == owner, (k, r)
                assert r.state == (
                    kind if kind == "zero" else "data" if owner == len(layers) - 1 else "backing"
                ), (k, r)


@needs_qemu
def test_diff_beside_parent_found_by_header(tmp_path):
    base = qemu_parent(tmp_path / "base disk.vdi", 6 * M, 11)
    top = diff_over(base, tmp_path / "child.vdi", 12)
    with vdinspect.open(top.path) as disk:
        assert_chain(disk, [base, top])
        info = disk.info()
        assert info["subformat"] == "diff" and info["layers"] == 2
        assert info["parent_uuid"] == str(base.uuid)
        assert info["uuid_parent_modify"] == str(base.modify)
        assert Path(info["parent"]).name == "base disk.vdi"
        hint = disk.top.parent_hint
        assert hint.uuid == str(base.uuid) and hint.path == f"{{{base.uuid}}}.vdi"
        for off, n in random_reads(disk.size, M, 200, seed=5):
            assert disk.read(off, n) == top.want[off : off + n], (off, n)


@needs_qemu
def test_three_deep_chain_in_virtualbox_layout(tmp_path):
    vm = tmp_path / "My VM"
    snaps = vm / "Snapshots"
    base = qemu_parent(vm / "My VM.vdi", 7 * M + 512, 21)
    d1_uuid, d2_uuid = uuidlib.uuid4(), uuidlib.uuid4()
    d1 = diff_over(base, snaps / f"{{{d1_uuid}}}.vdi", 22, uuid_create=d1_uuid)
    d2 = diff_over(d1, snaps / f"{{{d2_uuid}}}.vdi", 23, uuid_create=d2_uuid)
    with vdinspect.open(d2.path) as disk:
        assert_chain(disk, [base, d1, d2])
        assert disk.info()["layers"] == 3
        assert disk.layer(1).read(0, disk.size) == d1.want
        assert disk.layer(0).read(0, disk.size) == base.want
    with vdinspect.open(d1.path) as disk:  # one level up: the base is found by its header
        assert_chain(disk, [base, d1])


@needs_qemu
def test_parent_only_in_snapshots_folder(tmp_path):
    rng = random.Random(31)
    parent_v = vb.Vdi(size=5 * M, blocks=vb.random_blocks(rng, 5, M))
    pp = vb.write(tmp_path / "Snapshots" / f"{{{parent_v.uuid_create}}}.vdi", parent_v)
    parent = Layer(pp, vb.expected_bytes(parent_v), parent_v)
    top = diff_over(parent, tmp_path / "child.vdi", 32)
    with vdinspect.open(top.path) as disk:
        assert_chain(disk, [parent, top])


def test_undo_image_links_like_a_diff(tmp_path):
    rng = random.Random(41)
    pv = vb.Vdi(size=3 * M, blocks=vb.random_blocks(rng, 3, M), header="1.1")
    parent = Layer(vb.write(tmp_path / "base.vdi", pv), vb.expected_bytes(pv), pv)
    top = diff_over(parent, tmp_path / "undo.vdi", 42, image_type=vb.UNDO)
    with vdinspect.open(top.path) as disk:
        assert disk.info()["subformat"] == "undo"
        assert_chain(disk, [parent, top])


def test_uuid_mismatch(tmp_path):
    rng = random.Random(51)
    pv = vb.Vdi(size=2 * M, blocks=vb.random_blocks(rng, 2, M))
    parent = Layer(vb.write(tmp_path / "p.vdi", pv), vb.expected_bytes(pv), pv)
    wanted = uuidlib.uuid4()
    shutil.move(parent.path, tmp_path / f"{{{wanted}}}.vdi")  # right name, wrong identity
    parent.path = tmp_path / f"{{{wanted}}}.vdi"
    top = diff_over(parent, tmp_path / "child.vdi", 52, uuid_linkage=wanted)
    with pytest.raises(CorruptImage) as e:
        vdinspect.open(top.path)
    assert str(wanted) in str(e.value) and str(pv.uuid_create) in str(e.value)
    assert e.value.structure == "header.uuidLinkage"
    with vdinspect.open(top.path, strict=False) as disk:
        assert disk.read(0, disk.size) == top.want  # salvage: read through it anyway
        rows = disk.check()
        assert (rows["structure"] == "header.uuidLinkage").any()
        assert (rows["severity"] == "error").sum() == 1


def test_parent_modified_since_is_a_warning(tmp_path):
    rng = random.Random(61)
    pv = vb.Vdi(size=2 * M, blocks=vb.random_blocks(rng, 2, M))
    parent = Layer(vb.write(tmp_path / "p.vdi", pv), vb.expected_bytes(pv), pv)
    top = diff_over(parent, tmp_path / "c.vdi", 62, uuid_parent_modify=uuidlib.uuid4())
    with vdinspect.open(top.path) as disk:
        assert disk.read(0, disk.size) == top.want
        rows = disk.check()
        assert rows["severity"].tolist() == ["warning"]
        assert rows["structure"].item() == "header.uuidParentModify"


def test_missing_parent(tmp_path):
    rng = random.Random(71)
    link = uuidlib.uuid4()
    v = vb.Vdi(size=3 * M, image_type=vb.DIFF, uuid_linkage=link, blocks={1: rng.randbytes(M)})
    p = vb.write(tmp_path / "vm" / "Snapshots" / f"{{{v.uuid_create}}}.vdi", v)
    vb.write(tmp_path / "vm" / "other.vdi", vb.Vdi(size=M))  # a VDI that is not the parent
    with pytest.raises(MissingParent) as e:
        vdinspect.open(p)
    msg = str(e.value)
    assert str(link) in msg
    tried = e.value.tried
    assert str(tmp_path / "vm" / "Snapshots" / f"{{{link}}}.vdi") in tried
    assert str(tmp_path / "vm" / f"{{{link}}}.vdi") in tried
    assert any(t.startswith(str(tmp_path / "vm" / "*.vdi")) for t in tried)
    with vdinspect.open(p, strict=False) as disk:
        runs = disk.runs()
        assert [r.state for r in runs] == ["damaged", "data", "damaged"]
        assert disk.read(M, M) == v.blocks[1]
        assert disk.read(0, M) == bytes(M)
        assert disk.check()["message"].str.contains("missing").any()


def test_parents_argument(tmp_path):
    rng = random.Random(81)
    pv = vb.Vdi(size=2 * M, blocks=vb.random_blocks(rng, 2, M))
    elsewhere = tmp_path / "elsewhere"
    parent = Layer(vb.write(elsewhere / "parent.vdi", pv), vb.expected_bytes(pv), pv)
    top = diff_over(parent, tmp_path / "top" / "c.vdi", 82)
    with pytest.raises(MissingParent):
        vdinspect.open(top.path)
    for parents in (
        {str(parent.uuid): str(parent.path)},
        {f"{{{parent.uuid}}}.vdi": parent.path},
        str(elsewhere),
        [str(tmp_path / "nothing here.vdi"), parent.path],
    ):
        with vdinspect.open(top.path, parents=parents) as disk:
            assert disk.read(0, disk.size) == top.want, parents


def test_wrong_parent_given_explicitly(tmp_path):
    """A file given as the parent but with another UUID is refused, not silently used."""
    rng = random.Random(91)
    pv = vb.Vdi(size=2 * M, blocks=vb.random_blocks(rng, 2, M))
    parent = Layer(vb.write(tmp_path / "p.vdi", pv), vb.expected_bytes(pv), pv)
    top = diff_over(parent, tmp_path / "c" / "c.vdi", 92)
    other = vb.write(tmp_path / "o" / "o.vdi", vb.Vdi(size=2 * M))
    with pytest.raises(CorruptImage, match="uuidLinkage"):
        vdinspect.open(top.path, parents=str(other))


def test_diff_over_raw_parent_cannot_be_verified(tmp_path):
    rng = random.Random(95)
    base = tmp_path / "base.img"
    base.write_bytes(rng.randbytes(2 * M))
    link = uuidlib.uuid4()
    v = vb.Vdi(size=2 * M, image_type=vb.DIFF, uuid_linkage=link, blocks={0: rng.randbytes(M)})
    p = vb.write(tmp_path / "c.vdi", v)
    with vdinspect.open(p, parents={str(link): str(base)}) as disk:
        assert disk.read(0, disk.size) == vb.expected_bytes(v, base.read_bytes())
        rows = disk.check()
        assert rows["severity"].tolist() == ["info"]


# --- the real VirtualBox 7 sample ---------------------------------------------------------------

VBOX7 = SHARED_SAMPLES / "SharpSevenZip" / "vdi.vdi"


@needs_shared
def test_virtualbox7_sample():
    with vdinspect.open(VBOX7) as disk:
        info = disk.info()
        assert info["format"] == "vdi" and info["subformat"] == "dynamic"
        assert info["banner"] == "<<< Oracle VirtualBox Disk Image >>>"
        assert info["version"] == "1.1" and info["header_size"] == 400
        assert info["image_type"].startswith("normal")
        assert info["offset_blocks"] == 0x100000 and info["offset_data"] == 0x200000
        assert info["disk_size"] == info["virtual_size"] == 1048576
        assert info["block_size"] == 1048576 and info["blocks"] == 1
        assert info["blocks_allocated"] == 0 and info["allocated"] == 0
        assert info["lchs_geometry"] == (0, 0, 0, 512)
        assert uuidlib.UUID(info["uuid"]).version == 4
        h = hashlib.sha256(disk.read(0, disk.size)).hexdigest()
        assert h == "30e14955ebf1352266dc2ff8067e68104607e750abb9d3b36582b8af909fcb58"
        assert [r.state for r in disk.runs()] == ["unallocated"]
        assert disk.check().empty
        assert disk.top.parent_hint is None


# --- bad input ------------------------------------------------------------------------------------


def patch(path: Path, at: int, fmt: str, *values) -> None:
    data = bytearray(path.read_bytes())
    struct.pack_into(fmt, data, at, *values)
    path.write_bytes(bytes(data))


H = 72  # header fields by offset from the file start (VDIHEADER1)
OFF = dict(
    cbHeader=H, u32Type=H + 4, fFlags=H + 8, offBlocks=H + 268, offData=H + 272, cbDisk=H + 296,
    cbBlock=H + 304, cbBlockExtra=H + 308, cBlocks=H + 312, cBlocksAllocated=H + 316,
)  # fmt: skip


def small_image(tmp_path: Path) -> tuple[Path, vb.Vdi]:
    rng = random.Random(101)
    v = vb.Vdi(size=4 * M, blocks={0: rng.randbytes(M), 2: rng.randbytes(M), 3: "zero"})
    return vb.write(tmp_path / "s.vdi", v), v


def test_truncated_files(tmp_path):
    p, v = small_image(tmp_path)
    data = p.read_bytes()
    hdr = vdi.parse_headers(data)[1]
    cuts = [0, 40, 71, 72, 100, 455, hdr.offBlocks + 6, hdr.offData - 1]
    for n in cuts:
        t = tmp_path / f"cut{n}.vdi"
        t.write_bytes(data[:n])
        with pytest.raises(VDInspectError) as e:
            vdinspect.open(t, format="vdi")
        assert isinstance(e.value, CorruptImage | NotRecognized), (n, e.value)
        assert str(t) in str(e.value)
    # data cut short: strict refuses, salvage reads what is there
    n = hdr.offData + M + M // 2
    t = tmp_path / "cut-data.vdi"
    t.write_bytes(data[:n])
    with pytest.raises(CorruptImage, match="past the end of the file") as e:
        vdinspect.open(t)
    assert e.value.structure == "block map"
    with vdinspect.open(t, strict=False) as disk:
        want = vb.expected_bytes(v)
        states = [r.state for r in disk.runs()]
        assert "damaged" in states
        good = [r for r in disk.runs() if r.state != "damaged"]
        for r in good:
            assert disk.read(r.start, r.length) == want[r.start : r.end]
        rows = disk.check()
        assert (rows["severity"] == "error").sum() == 1
        assert rows["message"].str.contains("past the end of the file").all()


@pytest.mark.parametrize(
    "field, value, error, words",
    [
        ("cBlocks", 0xFFFFFFFF, CorruptImage, "block map"),
        ("cBlocks", 0, CorruptImage, "empty disk"),
        ("cbBlock", 1000, CorruptImage, "power of two"),
        ("cbBlock", 0, CorruptImage, "power of two"),
        ("cbDisk", 1 << 62, CorruptImage, "cannot hold"),
        ("cbDisk", 0, CorruptImage, "empty disk"),
        ("u32Type", 7, CorruptImage, "image type"),
        ("cbHeader", 100, CorruptImage, "header size"),
        ("cbHeader", 0xFFFFFFFF, CorruptImage, "header size"),
        ("cbBlockExtra", 1000, CorruptImage, "extra"),
        ("offData", 0x100, CorruptImage, "inside the block map"),
        ("offBlocks", 0x10, CorruptImage, "inside the header"),
        ("offBlocks", 0xFFFFFF00, CorruptImage, "block map of 4 entries .* past the end"),
        ("cBlocksAllocated", 99, CorruptImage, "more than"),
    ],
)
def test_bad_header_values(field, value, error, words, tmp_path):
    p, _ = small_image(tmp_path)
    patch(p, OFF[field], "<Q" if field == "cbDisk" else "<I", value)
    with pytest.raises(error, match=words) as e:
        vdinspect.open(p)
    assert str(p) in str(e.value)


def test_unsupported_version_and_bad_signature(tmp_path):
    p, _ = small_image(tmp_path)
    v3 = tmp_path / "v3.vdi"
    shutil.copyfile(p, v3)
    patch(v3, 68, "<I", 0x00030000)
    with pytest.raises(UnsupportedFeature, match="version 3.0"):
        vdinspect.open(v3)
    patch(p, 64, "<I", 0x12345678)
    with pytest.raises(NotRecognized):
        vdinspect.open(p, format="vdi")
    src = FileSource(p)
    try:
        with pytest.raises(NotRecognized, match="signature"):
            vdi.open_image(src, path=str(p))
    finally:
        src.close()


def test_block_map_entries_past_eof_and_allocated(tmp_path):
    rng = random.Random(102)
    tail = rng.randbytes(M)  # a third stored block the header does not count
    v = vb.Vdi(size=4 * M, blocks={0: rng.randbytes(M), 2: rng.randbytes(M)}, tail=tail)
    p = vb.write(tmp_path / "s.vdi", v)
    hdr = vdi.parse_headers(p.read_bytes())[1]
    # block 1 -> index 2: its data is in the file, but cBlocksAllocated is 2
    beyond = tmp_path / "beyond.vdi"
    shutil.copyfile(p, beyond)
    patch(beyond, hdr.offBlocks + 4, "<I", 2)
    with pytest.raises(CorruptImage, match="not below cBlocksAllocated") as e:
        vdinspect.open(beyond)
    assert e.value.offset == hdr.offBlocks + 4 and e.value.structure == "block map"
    with vdinspect.open(beyond, strict=False) as disk:
        assert disk.read(M, M) == tail  # salvage reads the block where it is
        rows = disk.check()
        assert rows["message"].str.contains("not below cBlocksAllocated").sum() == 1
        assert rows["message"].str.contains("mismatch").sum() == 1
    # block 1 -> index 3, counted by the header: the data lies past the end of the file
    past = tmp_path / "past.vdi"
    shutil.copyfile(p, past)
    patch(past, hdr.offBlocks + 4, "<I", 3)
    patch(past, OFF["cBlocksAllocated"], "<I", 3)
    with pytest.raises(CorruptImage, match="past the end"):
        vdinspect.open(past)
    with vdinspect.open(past, strict=False) as disk:
        assert [r.state for r in disk.runs()][:2] == ["data", "damaged"]
        assert disk.read(M, M) == bytes(M)
        assert disk.read(0, M) == v.blocks[0]
        rows = disk.check()
        msgs = rows.loc[rows["severity"] == "error", "message"].tolist()
        assert len(msgs) == 1 and "past the end" in msgs[0]


def test_v0_header_size_checks(tmp_path):
    v = vb.Vdi(size=2 * M, header="0", blocks={1: b"x" * M})
    p = vb.write(tmp_path / "v0.vdi", v)
    t = tmp_path / "v0-cut.vdi"
    t.write_bytes(p.read_bytes()[:300])
    with pytest.raises(CorruptImage, match="too short for the version 0.2 header"):
        vdinspect.open(t)
    with vdinspect.open(p) as disk:
        assert disk.read(0, disk.size) == vb.expected_bytes(v)
        assert disk.info()["offset_blocks"] == 72 + 348


@needs_qemu
@pytest.mark.parametrize("case", ["duplicate", "too-large", "count-high"])
def test_check_counts_like_qemu_img_check(case, qemu_vdis, tmp_path):
    src = qemu_vdis("dyn-5M").path
    p = tmp_path / f"{case}.vdi"
    shutil.copyfile(src, p)
    hdr = vdi.parse_headers(p.read_bytes())[1]
    bmap = struct.unpack_from(f"<{hdr.cBlocks}I", p.read_bytes(), hdr.offBlocks)
    used = [i for i, e in enumerate(bmap) if e < 0xFFFFFFFE]
    free = [i for i, e in enumerate(bmap) if e == 0xFFFFFFFF]
    if case == "duplicate":
        patch(p, hdr.offBlocks + 4 * free[0], "<I", bmap[used[0]])
    elif case == "too-large":
        patch(p, hdr.offBlocks + 4 * used[-1], "<I", hdr.cBlocks + 5)
    else:
        patch(p, OFF["cBlocksAllocated"], "<I", hdr.cBlocksAllocated + 1)
    qc = q.qemu_check(p)
    with vdinspect.open(p, strict=False) as disk:
        rows = disk.check()
        assert (rows["severity"] == "error").sum() == qc["corruptions"] > 0, rows.to_dict("records")


def exercise(path: Path, strict: bool) -> None:
    """Everything a user might call; only VDInspectError may come out."""
    try:
        with vdinspect.open(path, strict=strict) as disk:
            disk.info()
            disk.allocation()
            disk.check()
            disk.structures()
            disk.layers()
            for off in (0, disk.size // 2, max(0, disk.size - M)):
                disk.read(off, min(M, disk.size - off))
    except VDInspectError:
        pass


VALUES = [0, 1, 2, 3, 4, 511, 512, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF]


def test_fuzzed_fields_fail_cleanly(tmp_path):
    """Header fields and block map entries set to extreme values, strict and salvage."""
    rng = random.Random(2024)
    blocks = {0: rng.randbytes(64 * K), 2: rng.randbytes(64 * K), 3: "zero", 5: b"x" * 100}
    p0 = vb.write(tmp_path / "base.vdi", vb.Vdi(size=512 * K, block_size=64 * K, blocks=blocks))
    data = p0.read_bytes()
    hdr = vdi.parse_headers(data)[1]
    fields = [(68, "<I")] + [(at, "<Q" if f == "cbDisk" else "<I") for f, at in OFF.items()]
    fields += [(hdr.offBlocks + 4 * i, "<I") for i in range(hdr.cBlocks)]
    fields += [(H + 364, "<Q"), (H + 380, "<I")]  # uuidLinkage, uuidParentModify halves
    for k in range(60):
        buf = bytearray(data)
        for at, fmt in rng.sample(fields, rng.choice([1, 1, 2, 3])):
            v = rng.choice(VALUES + [rng.getrandbits(32)])
            if fmt == "<Q" and rng.random() < 0.5:
                v = rng.getrandbits(64)
            struct.pack_into(fmt, buf, at, v)
        p = tmp_path / f"f{k}.vdi"
        p.write_bytes(bytes(buf))
        exercise(p, True)
        exercise(p, False)
