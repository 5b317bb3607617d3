"""The VMDK reader against qemu-img, real VMware/VirtualBox samples and spec-built variants.

Oracles: ``qemu-img convert -O raw`` (bytes), ``qemu-img map --output=json`` (allocation,
with host offsets in the extent files), the MANIFEST values of ../shared/samples, and for
variants no tool writes, the data the builders in tests/vmdk_builder.py built them from
(cross-checked with qemu-img where QEMU can read the variant).
"""

from __future__ import annotations

import bz2
import hashlib
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

import vdinspect
from tests import vmdk_builder as B
from tests.conftest import SHARED_SAMPLES, needs_qemu, needs_shared
from tests.qemu_tools import create, qemu_img, qemu_map, run
from vdinspect.containers.vmdk import parse_descriptor, probe
from vdinspect.containers.vmdk.descriptor import parse_extent_line
from vdinspect.errors import (
    CorruptImage,
    MissingFile,
    NotRecognized,
    UnsupportedFeature,
    VDInspectError,
)

GRAIN = 64 << 10  # what qemu-img and VMware write
GT_SPAN = 512 * GRAIN  # 32 MiB mapped by one grain table
G = 16  # sectors per grain in the spec-built images (8 KiB), so they stay small
GB = G * 512
MiB = 1 << 20
STROZ = SHARED_SAMPLES / "strozfriedberg-vmdk-rs" / "data"
IOTESTS = SHARED_SAMPLES / "qemu-iotests-v7.2.0" / "sample_images"


# --- qemu and comparison helpers ---------------------------------------------------------


def qemu_io(path, *commands: str, fmt: str = "vmdk") -> None:
    """qemu-io with cache=unsafe: VMDK allocations flush per write, which is slow here."""
    args = ["qemu-io", "-t", "unsafe", "-f", fmt]
    for c in commands:
        args += ["-c", c]
    run(*args, str(path))


def qemu_raw(path, tmp: Path) -> Path:
    """The virtual disk as ``qemu-img convert -O raw`` writes it (a sparse file)."""
    out = tmp / (Path(path).name + ".qemu.raw")
    qemu_img("convert", "-t", "unsafe", "-O", "raw", str(path), str(out))
    return out


def ours(disk):
    """(start, end, kind, layer, host offset, compressed) from our resolved runs."""
    out = []
    for r in disk.runs():
        kind = "data" if r.state in ("data", "backing") else r.state
        out.append((r.start, r.end, kind, r.layer, r.host_offset, r.compressed))
    return out


def theirs(entries, nlayers):
    """qemu-img map rows the same way (depth counts from the top; offset in the extent)."""
    out = []
    for e in entries:
        kind = "data" if e.get("data") else ("zero" if e.get("present") else "unallocated")
        layer = nlayers - 1 - e["depth"] if e.get("present") else None
        out.append((e["start"], e["start"] + e["length"], kind, layer, e.get("offset")))
    return out


def pieces(a, b):
    """Walk two gap-free interval lists together: (start, end, item of a, item of b)."""
    i = j = 0
    pos = 0
    while i < len(a) and j < len(b):
        end = min(a[i][1], b[j][1])
        yield pos, end, a[i], b[j]
        pos = end
        if a[i][1] == end:
            i += 1
        if b[j][1] == end:
            j += 1


def assert_map_matches(disk, entries) -> None:
    n = len(disk.chain.layers)
    a, b = ours(disk), theirs(entries, n)
    assert a[-1][1] == b[-1][1] == disk.size
    for start, end, o, t in pieces(a, b):
        where = f"[{start:#x}, {end:#x})"
        assert o[2] == t[2], f"{where}: ours {o[2]} qemu {t[2]}"
        if o[2] in ("data", "zero"):
            assert o[3] == t[3], f"{where}: layer ours {o[3]} qemu {t[3]}"
        if o[2] == "data" and not o[5] and t[4] is not None:
            assert o[4] + (start - o[0]) == t[4] + (start - t[0]), f"{where}: host offset"


def raw_data_extents(path) -> list[tuple[int, int]]:
    """Where the (sparse) raw file holds data, from SEEK_DATA/SEEK_HOLE."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        out, pos = [], 0
        while pos < size:
            try:
                s = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                break
            e = os.lseek(fd, s, os.SEEK_HOLE)
            out.append((s, min(e, size)))
            pos = e
        return out
    finally:
        os.close(fd)


def assert_same_bytes(disk, raw_path) -> None:
    """The whole virtual disk equals the raw file qemu-img wrote.

    Small disks are compared whole. For big ones, every range where either side holds data
    (qemu's raw file: SEEK_DATA; ours: data runs) is compared; elsewhere both are zeros.
    """
    size = os.path.getsize(raw_path)
    assert disk.size == size
    with open(raw_path, "rb") as f:
        if size <= 256 * MiB:
            pos = 0
            while pos < size:
                n = min(16 * MiB, size - pos)
                assert disk.read(pos, n) == f.read(n), f"bytes differ in [{pos:#x}, +{n:#x})"
                pos += n
            return
        spans = raw_data_extents(raw_path)
        spans += [(r.start, r.end) for r in disk.runs() if r.state in ("data", "backing")]
        spans.sort()
        merged: list[list[int]] = []
        for s, e in spans:
            if merged and s <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], e)
            else:
                merged.append([s, e])
        assert sum(e - s for s, e in merged) < 256 * MiB
        for s, e in merged:
            f.seek(s)
            assert disk.read(s, e - s) == f.read(e - s), f"bytes differ in [{s:#x}, {e:#x})"


def random_reads(disk, raw_path, points, *, n=200, seed=0, grain=GRAIN) -> None:
    """``n`` reads around grain, grain-table and extent boundaries equal the raw file."""
    rng = random.Random(seed)
    size = disk.size
    with open(raw_path, "rb") as f:
        fd = f.fileno()
        for _ in range(n):
            base = (
                rng.choice(points) if rng.random() < 0.7 else rng.randrange(size // grain) * grain
            )
            off = min(max(0, base + rng.randint(-2 * grain, grain)), size - 1)
            length = rng.randint(1, min(3 * grain + 777, size - off))
            assert disk.read(off, length) == os.pread(fd, length, off), (off, length)


def sha1_of(disk) -> str:
    h = hashlib.sha1()
    pos = 0
    while pos < disk.size:
        n = min(4 * MiB, disk.size - pos)
        h.update(disk.read(pos, n))
        pos += n
    return h.hexdigest().upper()


def sha256_of(disk) -> str:
    h = hashlib.sha256()
    pos = 0
    while pos < disk.size:
        n = min(4 * MiB, disk.size - pos)
        h.update(disk.read(pos, n))
        pos += n
    return h.hexdigest()


def scattered_writes(size: int, seed: int, extra=()) -> tuple[list[str], list[int]]:
    """qemu-io commands writing patterns at shuffled offsets that straddle grain and
    grain-table boundaries; also returns the boundary points for the random reads."""
    rng = random.Random(seed)
    points = [0, GRAIN - 512, 3 * GRAIN + 4096, 7 * GRAIN, size - GRAIN, size - 3 * 512]
    points += [k * GT_SPAN - 4096 for k in range(1, size // GT_SPAN + 1)]
    points += [k * GT_SPAN + GRAIN for k in range(1, size // GT_SPAN + 1)]
    points += list(extra)
    points += [rng.randrange(size // 512) * 512 for _ in range(6)]
    cmds = []
    for i, p in enumerate(points):
        p = max(0, min(p, size - 512)) // 512 * 512
        n = min(rng.choice([512, 4096, GRAIN, 100 << 10, 300 << 10]), size - p)
        cmds.append(f"write -P {0x10 + i % 200:#x} {p} {n}")
    rng.shuffle(cmds)
    return cmds, points


# --- variants written by qemu-img / qemu-io ------------------------------------------------


def make_variant(name: str, d: Path):
    """Create the named variant in ``d``; returns (image path, boundary points)."""
    if name.startswith("streamOptimized"):
        size = 70 * MiB
        src_fmt = "qcow2" if name.endswith("qcow2") else "raw"
        src = create(d / f"src.{src_fmt}", size, src_fmt)
        cmds, points = scattered_writes(size, seed=7)
        qemu_io(src, *cmds, fmt=src_fmt)
        img = d / "stream.vmdk"
        qemu_img(
            "convert",
            "-t",
            "unsafe",
            "-f",
            src_fmt,
            "-O",
            "vmdk",
            "-o",
            "subformat=streamOptimized",
            str(src),
            str(img),
        )
        return img, points
    if name == "chain":
        size = 70 * MiB
        base = create(d / "base.vmdk", size, "vmdk")
        cmds, points = scattered_writes(size, seed=11)
        qemu_io(base, *cmds, fmt="vmdk")
        mid = create(
            d / "mid.vmdk", size, "vmdk", "zeroed_grain=on", backing=base.name, backing_fmt="vmdk"
        )
        qemu_io(
            mid,
            "write -P 0x61 0 64k",
            "write -z 64k 128k",
            f"write -z {GT_SPAN} 64k",
            "write -P 0x62 40000k 10k",
            fmt="vmdk",
        )
        top = create(
            d / "top.vmdk",
            size,
            "vmdk",
            "subformat=twoGbMaxExtentSparse",
            backing=mid.name,
            backing_fmt="vmdk",
        )
        qemu_io(top, "write -P 0x71 32k 64k", f"write -P 0x72 {GT_SPAN - 512} 1k", fmt="vmdk")
        return top, points
    subformat, *opts = name.split("+")
    big = subformat == "twoGbMaxExtentSparse"
    size = (2 << 30) + 5 * MiB if big else 70 * MiB
    options = [f"subformat={subformat}"] + [f"{o}=on" for o in opts]
    img = create(d / f"{subformat}.vmdk", size, "vmdk", *options)
    extra = [(2 << 30) - 3 * GRAIN, (2 << 30) - 4096] if big else []
    cmds, points = scattered_writes(size, seed=len(name), extra=extra)
    if "zeroed_grain" in opts:
        cmds += [
            f"write -z {GRAIN} {2 * GRAIN}",
            f"write -z {10 * GRAIN} {GRAIN}",
            f"write -z {GT_SPAN} {GRAIN}",
            "write -z 5000 10000",
        ]
    qemu_io(img, *cmds, fmt="vmdk")
    return img, points + [2 << 30] if big else points


QEMU_VARIANTS = [
    "monolithicSparse",
    "monolithicSparse+zeroed_grain",
    "monolithicSparse+compat6",
    "monolithicFlat",
    "twoGbMaxExtentSparse+zeroed_grain",
    "twoGbMaxExtentFlat",
    "streamOptimized",
    "streamOptimized-from-qcow2",
    "chain",
]


@needs_qemu
@pytest.mark.parametrize("name", QEMU_VARIANTS)
def test_qemu_variant(name, tmp_path):
    """Bytes, allocation, 200 boundary-crossing reads and info against qemu-img."""
    img, points = make_variant(name, tmp_path)
    raw = qemu_raw(img, tmp_path)
    entries = qemu_map(img, "vmdk")
    info = json.loads(qemu_img("info", "--output=json", "--backing-chain", str(img)))
    with vdinspect.open(img) as disk:
        assert disk.size == info[0]["virtual-size"]
        top = info[0]
        s = disk.info()
        assert s["format"] == "vmdk" and s["virtual_size"] == top["virtual-size"]
        spec = top["format-specific"]["data"]
        assert s["subformat"] == spec["create-type"]
        assert int(s["cid"], 16) == spec["cid"]
        assert int(s["parent_cid"], 16) == spec["parent-cid"]
        assert s["cluster_size"] == top.get("cluster-size")
        assert s["backing_file"] == top.get("backing-filename")
        assert len(disk.layers()) == len(info)
        ext = s["extents"]
        assert [e["size"] for e in ext] == [e["virtual-size"] for e in spec["extents"]]
        if "compat6" in name:
            assert s["hardware_version"] == "6"
        assert_map_matches(disk, entries)
        assert_same_bytes(disk, raw)
        random_reads(disk, raw, points, seed=len(name))
        rows = disk.check()
        assert not (rows["severity"] == "error").any(), rows.to_string()
        st = disk.structures()
        assert len(st) and (st["length"] > 0).all()


@needs_qemu
def test_multi_extent_flat_descriptor(tmp_path):
    """A twoGbMaxExtentFlat-style descriptor: four flat extents at various offsets in two
    files (all RW: QEMU ignores RDONLY extent lines)."""
    rng = random.Random(3)
    files = {"a-f001.vmdk": rng.randbytes(MiB), "a-f002.vmdk": rng.randbytes(3 * MiB)}
    for n, data in files.items():
        (tmp_path / n).write_bytes(data)
    lines = [
        'RW 2048 FLAT "a-f001.vmdk" 0',
        'RW 2048 FLAT "a-f002.vmdk" 2048',
        'RW 1024 FLAT "a-f002.vmdk" 10',
        'RW 7 FLAT "a-f001.vmdk" 1',
    ]
    (tmp_path / "a.vmdk").write_text(B.descriptor(lines, create_type="twoGbMaxExtentFlat"))
    want = (
        files["a-f001.vmdk"]
        + files["a-f002.vmdk"][MiB : 2 * MiB]
        + files["a-f002.vmdk"][5120 : 5120 + 512 * 1024]
        + files["a-f001.vmdk"][512:4096]
    )
    raw = qemu_raw(tmp_path / "a.vmdk", tmp_path)
    assert raw.read_bytes() == want
    with vdinspect.open(tmp_path / "a.vmdk") as disk:
        assert disk.read(0, disk.size) == want
        assert_map_matches(disk, qemu_map(tmp_path / "a.vmdk", "vmdk"))
        assert [e["offset"] for e in disk.info()["extents"]] == [0, MiB, 5120, 512]
        random_reads(disk, raw, [MiB, 2 * MiB, 2 * MiB + 512 * 1024], n=100, grain=4096)


def test_zero_extent_and_missing_extent(tmp_path):
    """ZERO extents read as zeros; a missing extent is MissingFile, damaged when salvaging."""
    data = random.Random(5).randbytes(8192)
    (tmp_path / "x.bin").write_bytes(data)
    lines = ['RW 8 FLAT "x.bin" 0', "RW 100 ZERO", 'RW 8 FLAT "x.bin" 8', 'RW 4 FLAT "gone.bin" 0']
    (tmp_path / "z.vmdk").write_text(B.descriptor(lines, create_type="custom"))
    with pytest.raises(MissingFile) as e:
        vdinspect.open(tmp_path / "z.vmdk")
    assert "gone.bin" in str(e.value) and e.value.structure == "extent 3"
    assert any(p.endswith("gone.bin") for p in e.value.tried)
    with vdinspect.open(tmp_path / "z.vmdk", strict=False) as disk:
        assert disk.size == (8 + 100 + 8 + 4) * 512
        assert disk.read(0, 116 * 512) == data[:4096] + bytes(51200) + data[4096:]
        states = [(r.start, r.state) for r in disk.runs()]
        assert states == [(0, "data"), (4096, "zero"), (55296, "data"), (59392, "damaged")]
        assert disk.read(59392, 2048) == bytes(2048)
        assert any("gone.bin" in m for m in disk.check()["message"])


# --- chains -------------------------------------------------------------------------------


@needs_qemu
def test_cid_mismatch_chain(tmp_path):
    """qemu changes a parent's CID when it is written; the child's parentCID then no longer
    matches (qemu-img refuses to read it). Strict: CorruptImage; salvage: a check() row."""
    p = create(tmp_path / "p.vmdk", 8 * MiB, "vmdk")
    qemu_io(p, "write -P 0x11 0 1M", "write -P 0x12 4M 1M", fmt="vmdk")
    c = create(tmp_path / "c.vmdk", 8 * MiB, "vmdk", backing="p.vmdk", backing_fmt="vmdk")
    qemu_io(c, "write -P 0x22 0 2M", fmt="vmdk")
    want = qemu_raw(c, tmp_path).read_bytes()
    qemu_io(p, "write -P 0x33 0 1M", fmt="vmdk")  # under the child's data: same view
    with pytest.raises(subprocess.CalledProcessError):
        subprocess.run(
            ["qemu-img", "convert", "-O", "raw", str(c), str(tmp_path / "x.raw")],
            check=True,
            capture_output=True,
        )
    with pytest.raises(CorruptImage) as e:
        vdinspect.open(c)
    assert "parentCID" in str(e.value)
    with vdinspect.open(c, strict=False) as disk:
        assert disk.read(0, disk.size) == want
        rows = disk.check()
        assert rows["structure"].str.contains("parentCID").any()


def test_parent_hints_windows_and_posix(tmp_path):
    """parentFileNameHint with Windows separators or a relative POSIX path, from the child."""
    grains = B.grain_data([0, 3], GRAIN)
    cap = 64 * 128
    (tmp_path / "base").mkdir()
    data, _ = B.hosted_sparse(
        cap,
        grains,
        embedded=B.descriptor(
            [f'RW {cap} SPARSE "p.vmdk"'], create_type="monolithicSparse", cid=0xAAAA0001
        ),
    )
    (tmp_path / "base" / "p.vmdk").write_bytes(data)
    child = B.grain_data([3, 5], GRAIN, seed=9)
    want = bytearray(B.expected_disk(cap * 512, grains, GRAIN))
    want[3 * GRAIN : 4 * GRAIN] = child[3]
    want[5 * GRAIN : 6 * GRAIN] = child[5]
    # a Windows relative path, a POSIX relative path, a Windows absolute path (found by its
    # base name next to the child, as when a VM folder was copied elsewhere)
    for n, hint in enumerate(["base\\p.vmdk", "../top/base/p.vmdk", "C:\\VMs\\base\\p.vmdk"]):
        d = tmp_path / "top" if n else tmp_path
        d.mkdir(exist_ok=True)
        if n == 1:
            shutil.copytree(tmp_path / "base", d / "base", dirs_exist_ok=True)
        if n == 2:
            shutil.copy(tmp_path / "base" / "p.vmdk", d / "p.vmdk")
        desc = B.descriptor(
            [f'RW {cap} SPARSE "c{n}.vmdk"'],
            create_type="monolithicSparse",
            parent_cid=0xAAAA0001,
            parent_hint=hint,
        )
        img, _ = B.hosted_sparse(cap, child, embedded=desc)
        (d / f"c{n}.vmdk").write_bytes(img)
        with vdinspect.open(d / f"c{n}.vmdk") as disk:
            assert len(disk.layers()) == 2, hint
            assert disk.layers()["path"][0].endswith("p.vmdk")
            assert disk.read(0, disk.size) == bytes(want)
            assert disk.top.parent_hint.path == hint
            assert disk.top.parent_hint.format == "vmdk"


def test_chain_loop_and_no_parent(tmp_path):
    """A child naming itself (or A -> B -> A) is a CorruptImage; ffffffff means no parent."""
    flat = tmp_path / "f.bin"
    flat.write_bytes(bytes(4096))
    for name, cid, hint, pcid in (
        ("a.vmdk", 1, "b.vmdk", 2),
        ("b.vmdk", 2, "a.vmdk", 1),
        ("self.vmdk", 3, "self.vmdk", 3),
    ):
        text = B.descriptor(
            ['RW 8 FLAT "f.bin" 0'],
            create_type="monolithicSparse",
            cid=cid,
            parent_cid=pcid,
            parent_hint=hint,
        )
        (tmp_path / name).write_text(text)
    for name in ("a.vmdk", "self.vmdk"):
        with pytest.raises(CorruptImage, match="loop"):
            vdinspect.open(tmp_path / name)
    (tmp_path / "n.vmdk").write_text(
        B.descriptor(['RW 8 FLAT "f.bin" 0'], create_type="x", parent_hint="nowhere.vmdk")
    )
    with vdinspect.open(tmp_path / "n.vmdk") as disk:  # parentCID ffffffff: no parent
        assert len(disk.layers()) == 1 and disk.top.parent_hint is None
    # a child whose parentCID is not the parent's CID (the parent changed afterwards)
    (tmp_path / "p.vmdk").write_text(
        B.descriptor(['RW 8 FLAT "f.bin" 0'], create_type="monolithicFlat", cid=0x1111)
    )
    (tmp_path / "c.vmdk").write_text(
        B.descriptor(
            ['RW 8 FLAT "f.bin" 0'],
            create_type="monolithicSparse",
            cid=0x2222,
            parent_cid=0x1112,
            parent_hint="p.vmdk",
        )
    )
    with pytest.raises(CorruptImage, match="parentCID 00001112 does not match the CID 00001111"):
        vdinspect.open(tmp_path / "c.vmdk")
    with vdinspect.open(tmp_path / "c.vmdk", strict=False) as disk:
        assert len(disk.layers()) == 2
        assert disk.check()["structure"].str.contains("parentCID").any()


# --- variants built from the specification --------------------------------------------------


def _descr(name, cap, kind, create_type, **kw):
    return B.descriptor([f'RW {cap} {kind} "{name}"'], create_type=create_type, **kw)


def _check_built(path, want, tmp_path, *, qemu=True, grain=GRAIN, strict=True):
    with vdinspect.open(path, strict=strict) as disk:
        assert disk.size == len(want)
        assert disk.read(0, disk.size) == want
        rng = random.Random(1)
        for _ in range(200):
            off = rng.randrange(len(want))
            n = rng.randint(1, min(3 * grain, len(want) - off))
            assert disk.read(off, n) == want[off : off + n]
        if qemu and shutil.which("qemu-img"):
            assert qemu_raw(path, tmp_path).read_bytes() == want
            assert_map_matches(disk, qemu_map(path, "vmdk"))
        return disk.check(), disk.structures(), disk.info()


def test_cowd_vmfs_sparse(tmp_path):
    """An ESX COWD redo log (vmfsSparse), through its descriptor and opened directly."""
    cap = 3 * 4096 + 77
    grains = B.grain_data([0, 1, 2, 4095, 4096, 8200, cap - 1], 512)
    want = B.expected_disk(cap * 512, grains, 512)
    (tmp_path / "c-delta.vmdk").write_bytes(B.cowd_extent(cap, grains, unclean=1))
    (tmp_path / "c.vmdk").write_text(_descr("c-delta.vmdk", cap, "VMFSSPARSE", "vmfsSparse"))
    rows, st, info = _check_built(tmp_path / "c.vmdk", want, tmp_path, grain=512)
    assert info["subformat"] == "vmfsSparse" and info["cluster_size"] == 512
    assert "COWD header" in set(st["name"]) and "grain table 2" in set(st["name"])
    assert rows["message"].str.contains("unclean shutdown").any()
    _check_built(tmp_path / "c-delta.vmdk", want, tmp_path, qemu=False, grain=512)


def test_sesparse(tmp_path):
    """seSparse: allocated, zero and SCSI-unmapped grain table entries; read-only."""
    cap = 2 * 4096 * 8 + 16
    grains = B.grain_data([0, 3, 4095, 4096, 4097, 8192], 4096)
    (tmp_path / "s-sesparse.vmdk").write_bytes(
        B.sesparse_extent(cap, grains, zero={5, 9000}, unmapped={6})
    )
    (tmp_path / "s.vmdk").write_text(_descr("s-sesparse.vmdk", cap, "SESPARSE", "seSparse"))
    want = B.expected_disk(cap * 512, grains, 4096)
    rows, st, info = _check_built(tmp_path / "s.vmdk", want, tmp_path, grain=4096)
    assert info["subformat"] == "seSparse"
    with vdinspect.open(tmp_path / "s.vmdk") as disk:
        zero = [(r.start, r.length) for r in disk.runs() if r.state == "zero"]
        assert (5 * 4096, 2 * 4096) in zero
    assert not (rows["severity"] == "error").any()


def test_stream_with_markers_and_footer(tmp_path):
    """A VMware-style stream: grain markers, GT/GD markers, GD in the footer (GD_AT_END)."""
    cap = 3 * 512 * G + 10  # four grain tables, the last grain partial
    grains = B.grain_data([0, 1, 7, 511, 512, 1100, 1536], GB)
    want = B.expected_disk(cap * 512, grains, GB)
    desc = _descr("s.vmdk", cap, "SPARSE", "streamOptimized")
    data = B.stream_optimized(cap, grains, embedded=desc, grain_sectors=G)
    (tmp_path / "s.vmdk").write_bytes(data)
    rows, st, info = _check_built(tmp_path / "s.vmdk", want, tmp_path, grain=GB)
    assert {
        "footer",
        "footer marker",
        "end-of-stream marker",
        "grain table marker",
        "grain directory marker",
        "compressed grains",
    } <= set(st["name"])
    assert not len(rows), rows.to_string()
    with vdinspect.open(tmp_path / "s.vmdk") as disk:
        comp = [r for r in disk.runs() if r.compressed]
        assert len(comp) == len(grains) and all(r.state == "data" for r in comp)
        assert all(r.extra[0] == r.start for r in comp)
    # raw deflate instead of zlib streams: still read
    (tmp_path / "r.vmdk").write_bytes(
        B.stream_optimized(cap, grains, raw_deflate=True, grain_sectors=G)
    )
    _check_built(tmp_path / "r.vmdk", want, tmp_path, qemu=False, grain=GB)
    # no footer (an interrupted export): strict refuses, salvage rebuilds from the markers
    cut = data[: len(data) - 3 * 512]
    (tmp_path / "cut.vmdk").write_bytes(cut)
    with pytest.raises(CorruptImage, match="footer"):
        vdinspect.open(tmp_path / "cut.vmdk")
    rows, _, _ = _check_built(
        tmp_path / "cut.vmdk", want, tmp_path, qemu=False, strict=False, grain=GB
    )
    assert rows["structure"].str.contains("footer").any()
    # a stream cut in the middle of its grains: the grains before the cut are recovered
    simple = {0: b"\x11" * GB, 1: b"\x22" * GB, 7: grains[0]}
    half = B.stream_optimized(cap, simple, grain_sectors=G)[: 128 * 512 + 2 * 512]
    (tmp_path / "half.vmdk").write_bytes(half)  # two one-sector grains survive the cut
    with vdinspect.open(tmp_path / "half.vmdk", strict=False) as disk:
        assert disk.read(0, 2 * GB) == simple[0] + simple[1]
        assert [r.state for r in disk.runs()] == ["data", "data", "unallocated"]


def test_redundant_grain_directory_fallback(tmp_path):
    """A destroyed primary GD (garbage or zeroed) or GT: reads come from the redundant copy."""
    cap = 3 * 512 * G
    grains = B.grain_data([0, 2, 600, 1100, 1535], GB)
    want = B.expected_disk(cap * 512, grains, GB)
    data, lay = B.hosted_sparse(cap, grains, grain_sectors=G)
    for how in ("garbage", "zeroed", "gt"):
        buf = bytearray(data)
        if how == "garbage":
            buf[lay["gd"] : lay["gd"] + 12] = b"\xff" * 12
        elif how == "zeroed":
            buf[lay["gd"] : lay["gd"] + 12] = bytes(12)
        else:  # the primary grain table 1 overwritten with garbage
            buf[lay["gt"] + lay["gt_bytes"] : lay["gt"] + 2 * lay["gt_bytes"]] = (
                b"\xfe" * lay["gt_bytes"]
            )
        p = tmp_path / f"{how}.vmdk"
        p.write_bytes(bytes(buf))
        rows, _, _ = _check_built(p, want, tmp_path, qemu=False, grain=GB)
        assert rows["message"].str.contains("redundant").any(), (how, rows.to_string())


@needs_qemu
def test_damaged_primary_gd_of_qemu_image(tmp_path):
    """The same on a qemu-made image: the answer is qemu's read of the undamaged file."""
    img = create(tmp_path / "d.vmdk", 70 * MiB, "vmdk")
    cmds, _ = scattered_writes(70 * MiB, seed=5)
    qemu_io(img, *cmds, fmt="vmdk")
    want = qemu_raw(img, tmp_path).read_bytes()
    h = struct.unpack_from("<4sIIQQQQIQQQ", img.read_bytes())
    gd = h[9] * 512
    with open(img, "r+b") as f:
        f.seek(gd)
        f.write(b"\xff" * 16)
    with vdinspect.open(img) as disk:
        assert disk.read(0, disk.size) == want
        assert disk.check()["message"].str.contains("primary grain directory damaged").any()


def test_check_findings(tmp_path):
    """check(): grains referenced twice, grains inside metadata, GD/RGD disagreement."""
    cap = 2 * 512 * G
    grains = B.grain_data([0, 1, 2, 600], GB)
    desc = _descr("k.vmdk", cap, "SPARSE", "monolithicSparse")
    data, lay = B.hosted_sparse(cap, grains, grain_sectors=G, embedded=desc)
    (tmp_path / "clean.vmdk").write_bytes(data)
    with vdinspect.open(tmp_path / "clean.vmdk") as disk:
        assert disk.check().empty
    first = struct.unpack_from("<I", data, lay["gt"])[0]
    bad = data
    for gt in ("gt", "rgt"):  # both copies agree: grain 1 -> grain 0's sectors, 2 -> the GD
        bad = _patched(bad, lay[gt] + 4, "<I", first)
        bad = _patched(bad, lay[gt] + 8, "<I", lay["gd"] // 512)
    bad = _patched(bad, lay["rgt"] + 4 * 600, "<I", 0)  # grain 600: only in the primary
    (tmp_path / "k.vmdk").write_bytes(bad)
    with vdinspect.open(tmp_path / "k.vmdk") as disk:
        msgs = "\n".join(disk.check()["message"])
    assert f"grain at {first * 512:#x} is referenced by 2" in msgs
    assert "overlap metadata" in msgs and "grain directory" in msgs
    assert "differ from the redundant copy" in msgs


def test_map_reads_metadata_only(tmp_path):
    """Mapping a 2 TiB sparse disk reads the grain directory and the used tables, no data."""
    cap = 1 << 32  # sectors: 2 TiB
    grains = B.grain_data([0, (1 << 40) // GRAIN, (1 << 41) // GRAIN - 1], GRAIN)
    data, lay = B.hosted_sparse(cap, grains, preallocate=False)
    (tmp_path / "big.vmdk").write_bytes(data)
    with vdinspect.open(tmp_path / "big.vmdk") as disk:
        src = disk.top.file
        reads = []
        plain = src._read

        def recording(offset, length):
            reads.append((offset, length))
            return plain(offset, length)

        src._read = recording
        runs = [(r.start, r.length, r.state) for r in disk.runs()]
        tb, end = 1 << 40, 1 << 41
        assert runs == [
            (0, GRAIN, "data"),
            (GRAIN, tb - GRAIN, "unallocated"),
            (tb, GRAIN, "data"),
            (tb + GRAIN, end - 2 * GRAIN - tb, "unallocated"),
            (end - GRAIN, GRAIN, "data"),
        ]
        assert sum(n for _, n in reads) <= 3 * lay["gt_bytes"]
        assert all(off + n <= lay["overhead"] for off, n in reads)
        assert disk.read((1 << 41) - GRAIN, GRAIN) == grains[(1 << 41) // GRAIN - 1]


def test_zeroed_grain_and_unclean_flags(tmp_path):
    cap = 512 * G
    grains = B.grain_data([1, 4], GB)
    desc = _descr("z.vmdk", cap, "SPARSE", "monolithicSparse")
    data, _ = B.hosted_sparse(
        cap, grains, zeroed={2, 4}, unclean=1, embedded=desc, grain_sectors=G
    )  # grain 4: the zeroed entry wins
    (tmp_path / "z.vmdk").write_bytes(data)
    want = bytearray(B.expected_disk(cap * 512, grains, GB))
    want[4 * GB : 5 * GB] = bytes(GB)
    rows, _, info = _check_built(tmp_path / "z.vmdk", bytes(want), tmp_path, grain=GB)
    assert "zeroed-grain GTEs" in info["flags"] and "unclean shutdown" in info["flags"]
    assert rows["message"].str.contains("unclean shutdown").any()
    assert info["extents"][0]["sparse_version"] == 2


def test_windows_1252_descriptor(tmp_path):
    """Descriptors that are not UTF-8 are read as windows-1252 (declared or not)."""
    flat = "dïsk-flat.vmdk"
    data = random.Random(2).randbytes(4096)
    (tmp_path / flat).write_bytes(data)
    for declared in ("windows-1252", "UTF-8"):
        text = B.descriptor(
            [f'RW 8 FLAT "{flat}" 0'],
            create_type="monolithicFlat",
            encoding=declared,
            extra='ddb.comment = "café – ünïcode"',
        )
        p = tmp_path / f"w-{declared}.vmdk"
        p.write_bytes(text.encode("cp1252"))
        with vdinspect.open(p) as disk:
            assert disk.read(0, 4096) == data
            info = disk.info()
            assert info["encoding"] == "cp1252"
            assert info["ddb"]["comment"] == "café – ünïcode"
            assert info["extents"][0]["file"] == flat
    # UTF-8 with a BOM and CRLF line ends
    text = B.descriptor([f'RW 8 FLAT "{flat}" 0'], create_type="monolithicFlat")
    p = tmp_path / "bom.vmdk"
    p.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    assert probe(p.read_bytes())
    with vdinspect.open(p) as disk:
        assert disk.read(0, 4096) == data and disk.info()["encoding"] == "utf-8"


def test_descriptor_parsing_details():
    text = (
        b"# Disk DescriptorFile\nVERSION=1\n  cid = 0000abcd  # trailing comment\n"
        b'PARENTcid="ffffffff"\ncreatetype = "vmfs"\n\n'
        b'RW 4096 VMFS "a b.vmdk"\nrdonly 8 FLAT "c.vmdk" 16 extra1 extra2\nRW 2 ZERO\n'
        b'NOACCESS 10 VMFSRDM "/vmfs/devices/disks/vml.01"\n'
        b'ddb.adapterType = "lsilogic"\nDDB.Geometry.Heads = "64"\n'
    )
    d = parse_descriptor(text)
    assert d.cid == 0xABCD and d.parent_cid == 0xFFFFFFFF and d.create_type == "vmfs"
    assert [(e.access, e.sectors, e.type, e.filename, e.offset) for e in d.extents] == [
        ("RW", 4096, "VMFS", "a b.vmdk", 0),
        ("RDONLY", 8, "FLAT", "c.vmdk", 16),
        ("RW", 2, "ZERO", None, 0),
        ("NOACCESS", 10, "VMFSRDM", "/vmfs/devices/disks/vml.01", 0),
    ]
    assert d.extents[1].fields == ["extra1", "extra2"]
    assert d.ddb == {"adapterType": "lsilogic", "Geometry.Heads": "64"}
    assert d.get("DDB.GEOMETRY.HEADS") == "64"
    assert not probe(b"hello world\n" * 10)
    assert probe(b"# comment\n\nversion=1\nCID=1\n")
    assert probe(b"KDMV\x01\x00\x00\x00") and probe(b"COWD\x01\x00\x00\x00")


# --- bad input ---------------------------------------------------------------------------------


def _patched(data: bytes, offset: int, fmt: str, *values) -> bytes:
    b = bytearray(data)
    struct.pack_into(fmt, b, offset, *values)
    return bytes(b)


@pytest.mark.parametrize(
    "what, offset, fmt, value, exc",
    [
        ("capacity", 12, "<Q", 1 << 60, CorruptImage),
        ("huge capacity", 12, "<Q", 1 << 40, CorruptImage),  # GD would need 2^24+ entries...
        ("grainSize 0", 20, "<Q", 0, CorruptImage),
        ("grainSize absurd", 20, "<Q", 1 << 40, CorruptImage),
        ("numGTEsPerGT 0", 44, "<I", 0, CorruptImage),
        ("numGTEsPerGT absurd", 44, "<I", 1 << 30, CorruptImage),
        ("version 4", 4, "<I", 4, UnsupportedFeature),
        ("compression 7", 77, "<H", 7, UnsupportedFeature),
        ("GD past EOF", 56, "<Q", 1 << 40, CorruptImage),
    ],
)
def test_bad_sparse_headers(tmp_path, what, offset, fmt, value, exc):
    cap = 512 * G
    data, lay = B.hosted_sparse(cap, B.grain_data([0], GB), grain_sectors=G)
    if what == "GD past EOF":  # both directories
        data = _patched(_patched(data, 48, "<Q", 1 << 40), 56, "<Q", 1 << 40)
    else:
        data = _patched(data, offset, fmt, value)
    p = tmp_path / "bad.vmdk"
    p.write_bytes(data)
    tracemalloc.start()
    try:
        with pytest.raises(exc):
            with vdinspect.open(p) as disk:
                disk.runs()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * MiB


def test_entries_past_eof_and_truncation(tmp_path):
    """GD/GT entries past the end of the file, and a file cut short: strict raises when the
    range is read, salvage gives damaged runs and check() rows."""
    cap = 2 * 512 * G
    grains = B.grain_data([0, 1, 2, 600], GB)
    data, lay = B.hosted_sparse(cap, grains, grain_sectors=G)
    want = B.expected_disk(cap * 512, grains, GB)
    cases = {
        # GT 1 in both directories past the end
        "gd": _patched(_patched(data, lay["gd"] + 4, "<I", 1 << 30), lay["rgd"] + 4, "<I", 1 << 30),
        # grain 1's entry past the end in both grain tables
        "gt": _patched(_patched(data, lay["gt"] + 4, "<I", 1 << 30), lay["rgt"] + 4, "<I", 1 << 30),
        "truncated": data[: lay["overhead"] + 2 * GB + 1000],
    }
    for name, blob in cases.items():
        p = tmp_path / f"{name}.vmdk"
        p.write_bytes(blob)
        with pytest.raises(CorruptImage):
            with vdinspect.open(p) as disk:
                disk.read(0, disk.size)
        with vdinspect.open(p, strict=False) as disk:
            got = disk.read(0, disk.size)
            damaged = [(r.start, r.end) for r in disk.runs() if r.state == "damaged"]
            assert damaged, name
            for s, e in damaged:
                assert got[s:e] == bytes(e - s)
            good = bytearray(want)
            for s, e in damaged:
                good[s:e] = bytes(e - s)
            assert got == bytes(good), name
            rows = disk.check()
            assert (rows["severity"] == "error").any(), name
        if shutil.which("qemu-img") and name == "gt":  # qemu's check finds it too
            desc_img, qlay = B.hosted_sparse(
                cap,
                grains,
                grain_sectors=G,
                embedded=_descr("q.vmdk", cap, "SPARSE", "monolithicSparse"),
            )
            good_p, bad_p = tmp_path / "q-good.vmdk", tmp_path / "q-bad.vmdk"
            good_p.write_bytes(desc_img)
            bad_p.write_bytes(_patched(desc_img, qlay["gt"] + 4, "<I", 1 << 30))
            ok = subprocess.run(["qemu-img", "check", str(good_p)], capture_output=True)
            bad = subprocess.run(["qemu-img", "check", str(bad_p)], capture_output=True)
            assert ok.returncode == 0 and bad.returncode != 0 and b"after EOF" in bad.stderr


def test_bad_descriptors(tmp_path):
    (tmp_path / "f.bin").write_bytes(bytes(1024))
    cases = {
        "huge": ('RW 99999999999999999999 FLAT "f.bin" 0', CorruptImage),
        "big": ('RW 4294967296000 SPARSE "f.bin"', CorruptImage),
        "short flat": ('RW 100000 FLAT "f.bin" 0', CorruptImage),
        "not sparse": ('RW 2 SPARSE "f.bin"', CorruptImage),
        "odd type": ('RW 2 HOLOGRAM "f.bin"', UnsupportedFeature),
        "none": ("", CorruptImage),
    }
    for name, (line, exc) in cases.items():
        p = tmp_path / f"{name}.vmdk"
        p.write_text(B.descriptor([line] if line else [], create_type="custom"))
        with pytest.raises(exc):
            vdinspect.open(p)
    with vdinspect.open(tmp_path / "short flat.vmdk", strict=False) as disk:
        assert [r.state for r in disk.runs()] == ["data", "damaged"]
    (tmp_path / "bin.vmdk").write_bytes(os.urandom(4096))
    with pytest.raises(NotRecognized):
        vdinspect.open(tmp_path / "bin.vmdk", format="vmdk")


def test_fuzzed_metadata(tmp_path):
    """Random byte changes in the metadata of each extent kind: only VDInspectErrors escape,
    in both modes, and a damaged image still answers runs, reads, check and structures."""
    cap = 2 * 512 * G + 5
    grains = B.grain_data([0, 1, 2, 600, 1023], GB)
    desc = _descr("x.vmdk", cap, "SPARSE", "monolithicSparse")
    bases = {
        "sparse": B.hosted_sparse(cap, grains, grain_sectors=G, embedded=desc)[0],
        "stream": B.stream_optimized(cap, grains, grain_sectors=G, embedded=desc),
        "cowd": B.cowd_extent(3 * 4096 + 7, B.grain_data([0, 5, 4097], 512)),
        "sesparse": B.sesparse_extent(2 * 4096 * 8, B.grain_data([0, 3, 4097], 4096), zero={5}),
    }
    rng = random.Random(2024)
    for n in range(60):
        name = rng.choice(sorted(bases))
        b = bytearray(bases[name])
        for _ in range(rng.randint(1, 6)):
            r = rng.random()
            lo, hi = (
                (0, 512) if r < 0.4 else ((0, 64 * 512) if r < 0.7 else (len(b) - 3000, len(b)))
            )
            b[rng.randrange(max(0, lo), min(hi, len(b)))] = rng.choice(
                [0, 0xFF, rng.randrange(256)]
            )
        if rng.random() < 0.1:
            b = b[: rng.randrange(len(b))]
        p = tmp_path / f"{n}-{name}.vmdk"
        p.write_bytes(bytes(b))
        for strict in (True, False):
            try:
                with vdinspect.open(p, strict=strict) as disk:
                    disk.runs()
                    disk.read(0, min(disk.size, 1 << 20))
                    disk.check()
                    disk.structures()
                    disk.info()
            except VDInspectError as e:
                assert e.args and str(e)


# --- real samples --------------------------------------------------------------------------------


@needs_shared
@pytest.mark.parametrize(
    "name, sha1",
    [
        ("monolithicSparse.vmdk", "DD2FADE471D68658B2EBBFF7474F5D0A99DA8989"),
        ("twoGbMaxExtentSparse.vmdk", "DD2FADE471D68658B2EBBFF7474F5D0A99DA8989"),
        ("streamOptimized.vmdk", "DD2FADE471D68658B2EBBFF7474F5D0A99DA8989"),
        ("streamOptimizedWithMarkers.vmdk", "B6FD01DD1B93B3589E6D76F7507AF55C589EF69D"),
        ("vmfs_thick.vmdk", "17EAF058191C5F2639D8F983CA7633E4F47087D1"),
    ],
)
def test_vmware_samples(name, sha1):
    with vdinspect.open(STROZ / name) as disk:
        assert sha1_of(disk) == sha1
        if name == "monolithicSparse.vmdk":
            assert sha256_of(disk) == (
                "a3bcf05f07a1c06a3380eeca8571f0efb2b85afafa1e21662b8cad436d1f7727"
            )
        assert not (disk.check()["severity"] == "error").any()
        info = disk.info()
        assert info["subformat"] == name.split(".")[0].replace("WithMarkers", "").replace(
            "vmfs_thick", "vmfs"
        )
        if shutil.which("qemu-img"):
            assert_map_matches(disk, qemu_map(STROZ / name, "vmdk"))


@needs_shared
@needs_qemu
@pytest.mark.parametrize(
    "name, extent",
    [
        ("monolithicFlat.vmdk", "monolithicFlat-flat.vmdk"),
        ("twoGbMaxExtentFlat.vmdk", "twoGbMaxExtentFlat-f001.vmdk"),
    ],
)
def test_vmware_flat_descriptors(name, extent, tmp_path):
    """The flat extents are regenerated from the monolithicSparse's raw, as MANIFEST says."""
    shutil.copy(STROZ / name, tmp_path / name)
    qemu_img("convert", "-O", "raw", str(STROZ / "monolithicSparse.vmdk"), str(tmp_path / extent))
    with vdinspect.open(tmp_path / name) as disk:
        assert sha1_of(disk) == "DD2FADE471D68658B2EBBFF7474F5D0A99DA8989"
        assert disk.info()["subformat"] == name[:-5]
        assert disk.info()["adapter_type"] == "buslogic"


@needs_shared
def test_vmfs_child_without_delta():
    """vmfs_thick-000001.vmdk's COWD delta is absent: MissingFile naming it; salvage opens the
    chain with the child's range damaged over the vmfs parent."""
    child = STROZ / "vmfs_thick-000001.vmdk"
    with pytest.raises(MissingFile) as e:
        vdinspect.open(child)
    assert "vmfs_thick-000001-delta.vmdk" in str(e.value)
    with vdinspect.open(child, strict=False) as disk:
        assert disk.info()["subformat"] == "vmfsSparse"
        assert disk.top.parent_hint.path == "vmfs_thick.vmdk"
        assert len(disk.layers()) == 2
        assert {r.state for r in disk.runs()} == {"damaged"}
        assert disk.check()["message"].str.contains("delta").any()


@needs_shared
def test_iotest_version3(tmp_path):
    """QEMU iotest 059: 512 bytes at i*655360 + i*512 equal 0x30 + i % 10, for i in 0..99."""
    p = tmp_path / "iotest-version3.vmdk"
    p.write_bytes(bz2.decompress((IOTESTS / "iotest-version3.vmdk.bz2").read_bytes()))
    with vdinspect.open(p) as disk:
        assert disk.size == 17179869184
        assert disk.info()["subformat"] == "streamOptimized"
        for i in range(100):
            off = i * 655360 + i * 512
            assert disk.read(off, 512) == bytes([0x30 + i % 10]) * 512, i
        if shutil.which("qemu-img"):
            assert_map_matches(disk, qemu_map(p, "vmdk"))
            raw = qemu_raw(p, tmp_path)
            assert_same_bytes(disk, raw)


@needs_shared
def test_afl9_fuzzed(tmp_path):
    """A fuzzed header with an absurd capacity: a clear error, fast, without a big allocation."""
    p = tmp_path / "afl9.vmdk"
    p.write_bytes(bz2.decompress((IOTESTS / "afl9.vmdk.bz2").read_bytes()))
    tracemalloc.start()
    try:
        for strict in (True, False):
            with pytest.raises(VDInspectError) as e:
                vdinspect.open(p, strict=strict)
            assert e.value.path == str(p) and e.value.structure
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * MiB


@needs_shared
def test_xo_stream_sample():
    with vdinspect.open(SHARED_SAMPLES / "AGPL-xo-vmdk-to-vhd" / "test.vmdk") as disk:
        assert sha256_of(disk) == (
            "bb9f8df61474d25e71fa00722318cd387396ca1736605e1248821cc0de3d3af8"
        )
        info = disk.info()
        assert info["subformat"] == "streamOptimized" and info["extents"][0]["footer"]
        assert info["ddb"]["uuid.image"] == "fd9d3b48-5f27-4c8f-92aa-ed3f683ce09d"
        assert info["uuid"] == "fd9d3b48-5f27-4c8f-92aa-ed3f683ce09d"


@needs_shared
def test_dfvfs_ext2_vmdk():
    with vdinspect.open(SHARED_SAMPLES / "dfvfs" / "test_data" / "ext2.vmdk") as disk:
        assert sha256_of(disk) == (
            "a6c2f0e39afe6c6ab432ca5465349fcefe8dc944398e97b2d957d3f89dbb5d80"
        )


@needs_shared
def test_ms3_win_descriptor():
    """A real twoGbMaxExtentSparse descriptor whose 16 extents are not included."""
    p = SHARED_SAMPLES / "SecurityRonin-vmdk-forensic" / "ms3-win.vmdk"
    d = parse_descriptor(p.read_bytes())
    assert d.create_type == "twoGbMaxExtentSparse" and d.cid == 0x216BC064
    assert [e.sectors for e in d.extents] == [8323072] * 15 + [983040]
    assert [e.filename for e in d.extents] == [f"disk-s{i:03d}.vmdk" for i in range(1, 17)]
    assert d.ddb["virtualHWVersion"] == "13" and d.ddb["geometry.cylinders"] == "7832"
    with pytest.raises(MissingFile) as e:
        vdinspect.open(p)
    assert "disk-s001.vmdk" in str(e.value) and e.value.structure == "extent 0"
    with vdinspect.open(p, strict=False) as disk:
        assert disk.size == (8323072 * 15 + 983040) * 512
        assert {r.state for r in disk.runs()} == {"damaged"}
        assert disk.check()["message"].str.contains("disk-s016.vmdk").any()


@needs_shared
def test_libyal_fragments():
    frag = SHARED_SAMPLES / "libyal-fragments" / "libvmdk"
    d = parse_descriptor((frag / "descriptor_file.1").read_bytes())
    assert d.create_type == "monolithicSparse" and d.cid == 0xFFFFFFFE
    assert d.get("encoding") == "windows-1252" and d.encoding == "cp1252"
    assert [(e.access, e.sectors, e.type, e.filename) for e in d.extents] == [
        ("RW", 16777216, "SPARSE", "test1.vmdk")
    ]
    assert d.ddb["uuid"] == "60 00 C2 99 3c 3b c5 c0-29 99 4b e2 5b 11 a2 45"
    e = parse_extent_line((frag / "extent_values.1").read_text())
    assert (e.access, e.sectors, e.type, e.filename) == ("RW", 16777216, "SPARSE", "test1.vmdk")


# --- the API and the CLI, unchanged --------------------------------------------------------------


@needs_qemu
def test_cli_on_vmdk(tmp_path, capsys):
    """The CLI's verbs on a split sparse VMDK; ``python -m vdinspect`` itself once."""
    from vdinspect.cli import main

    img = create(tmp_path / "c.vmdk", 8 * MiB, "vmdk", "subformat=twoGbMaxExtentSparse")
    qemu_io(img, "write -P 0x5a 1M 100k", fmt="vmdk")
    want = qemu_raw(img, tmp_path).read_bytes()

    def cli(*args) -> str:
        assert main([*args]) == 0
        return capsys.readouterr().out

    runs = json.loads(cli("map", "--json", str(img)))
    assert [r["state"] for r in runs] == ["unallocated", "data", "unallocated"]
    assert runs[1]["host_file"].endswith("c-s001.vmdk") and runs[1]["start"] == MiB
    assert "no problems found" in cli("check", str(img))
    assert "grain table 0" in cli("structures", str(img))
    cli("convert", str(img), str(tmp_path / "out.raw"))
    assert (tmp_path / "out.raw").read_bytes() == want
    r = subprocess.run(
        [sys.executable, "-m", "vdinspect", "info", "--json", str(img)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["format"] == "vmdk" and info["subformat"] == "twoGbMaxExtentSparse"
    assert info["virtual_size"] == 8 * MiB and info["cluster_size"] == GRAIN
    (tmp_path / "c-s001.vmdk").rename(tmp_path / "moved.vmdk")
    assert main(["info", str(img)]) == 1
    err = capsys.readouterr().err
    assert "c-s001.vmdk" in err and len(err.strip().splitlines()) == 1
