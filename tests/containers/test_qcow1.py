"""QCOW version 1 reader against qemu-img / qemu-io (bytes, allocation map, bad input)."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import struct
import subprocess
import zlib

import pytest

if not (shutil.which("qemu-img") and shutil.which("qemu-io")):
    pytest.skip("qemu-img and qemu-io are needed", allow_module_level=True)

from vdinspect.containers import qcow  # noqa: E402
from vdinspect.containers.base import DAMAGED, DATA, UNALLOCATED  # noqa: E402
from vdinspect.errors import (  # noqa: E402
    CorruptImage,
    EncryptedImage,
    NotRecognized,
    VDInspectError,
)
from vdinspect.io import FileSource  # noqa: E402

pytestmark = pytest.mark.needs_qemu

MiB = 1 << 20
PLAIN_SIZE = 64 * MiB + 1536  # the last 4 KiB cluster is partial


# -- helpers ------------------------------------------------------------------------------
def sh(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def qemu_write(path, writes) -> None:
    """Apply (pattern, offset, length) writes with qemu-io, in the order given."""
    cmds = []
    for pattern, off, n in writes:
        cmds += ["-c", f"write -P {pattern:#x} {off} {n}"]
    sh("qemu-io", "-f", "qcow", *cmds, str(path))


def qemu_raw(path, tmp) -> bytes:
    out = os.path.join(tmp, os.path.basename(path) + ".qemu.raw")
    sh("qemu-img", "convert", "-f", "qcow", "-O", "raw", str(path), out)
    with open(out, "rb") as f:
        return f.read()


def qemu_map(path) -> list[dict]:
    return json.loads(sh("qemu-img", "map", "-f", "qcow", "--output=json", str(path)))


def qemu_data(path) -> list[tuple[int, int]]:
    """Ranges qemu says this image itself stores (data:true at depth 0), neighbours joined."""
    out: list[list[int]] = []
    for m in qemu_map(path):
        if m["data"] and m["depth"] == 0:
            if out and out[-1][0] + out[-1][1] == m["start"]:
                out[-1][1] += m["length"]
            else:
                out.append([m["start"], m["length"]])
    return [tuple(r) for r in out]


def our_data(runs, end=None) -> list[tuple[int, int]]:
    """DATA ranges, neighbours joined (cut at ``end``: raw ``_runs`` may overhang)."""
    out: list[list[int]] = []
    for r in runs:
        if r.state == DATA:
            length = r.length if end is None else min(r.end, end) - r.start
            if out and out[-1][0] + out[-1][1] == r.start:
                out[-1][1] += length
            else:
                out.append([r.start, length])
    return [tuple(r) for r in out]


def open_qcow(path, strict=True):
    path = str(path)
    return qcow.open_image(FileSource(path), path=path, strict=strict)


def sha256(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def header_of(path) -> dict:
    """Our own minimal decode of the header with struct (independent of the reader)."""
    with open(path, "rb") as f:
        b = f.read(48)
    names = (
        "magic version backing_file_offset backing_file_size mtime size cluster_bits "
        "l2_bits padding crypt_method l1_table_offset"
    ).split()
    return dict(zip(names, struct.unpack(">4sIQIIQBBHIQ", b)))


def l2_tables(path) -> list[tuple[int, int]]:
    """(L1 index, L2 table offset) for every L1 entry in use, decoded with struct."""
    h = header_of(path)
    shift = h["cluster_bits"] + h["l2_bits"]
    n = -(-h["size"] >> shift)
    with open(path, "rb") as f:
        f.seek(h["l1_table_offset"])
        l1 = struct.unpack(f">{n}Q", f.read(8 * n))
    return [(i, off) for i, off in enumerate(l1) if off]


def l2_entries(path, l2_offset) -> list[int]:
    h = header_of(path)
    n = 1 << h["l2_bits"]
    with open(path, "rb") as f:
        f.seek(l2_offset)
        return list(struct.unpack(f">{n}Q", f.read(8 * n)))


def patched(src, dst, edits=(), truncate=None) -> str:
    """Copy ``src`` to ``dst`` and apply (offset, bytes) edits / a truncation to the copy."""
    shutil.copyfile(src, dst)
    with open(dst, "r+b") as f:
        for off, data in edits:
            f.seek(off)
            f.write(data)
        if truncate is not None:
            f.truncate(truncate)
    return str(dst)


def check_runs_shape(img, runs, start, end) -> None:
    pos = start
    for r in runs:
        assert r.start == pos and r.length > 0
        pos = r.end
    assert pos == end


# -- the images, made by qemu -------------------------------------------------------------
@pytest.fixture(scope="module")
def images(tmp_path_factory):
    d = tmp_path_factory.mktemp("qcow1")
    rnd = random.Random(20240611)

    # 1. plain image, 4 KiB clusters, 2 MiB per L2 table; writes out of order, some
    #    crossing L2 boundaries, some not cluster-aligned, some overwriting others
    plain = d / "plain.qcow"
    sh("qemu-img", "create", "-q", "-f", "qcow", str(plain), str(PLAIN_SIZE))
    writes = [
        (0xA1, 40 * MiB + 512, 300 * 1024),
        (0xB2, 2 * MiB - 6 * 1024, 12 * 1024),  # across the first L2 boundary
        (0xC3, 7 * 512, 512),
        (0xD4, PLAIN_SIZE - 2048, 2048),  # the partial last cluster
        (0xE5, 6 * MiB - 512, 4 * MiB + 1024),  # spans three L2 tables
        (0xF6, 40 * MiB + 100 * 1024, 8 * 1024),  # overwrites part of the first write
    ]
    for _ in range(24):
        off = rnd.randrange(0, PLAIN_SIZE // 512 - 1) * 512
        n = min(rnd.randrange(1, 400) * 512, PLAIN_SIZE - off)
        writes.append((rnd.randrange(1, 256), off, n))
    qemu_write(plain, writes[:3])
    qemu_write(plain, writes[3:])

    # 2. compressed image from a raw file with compressible, incompressible and zero parts
    src = d / "mixed.raw"
    buf = bytearray(8 * MiB)
    for i in range(40):
        off = rnd.randrange(0, len(buf) - 70000)
        n = rnd.randrange(1, 70000)
        if i % 3 == 0:
            buf[off : off + n] = rnd.randbytes(n)
        else:
            buf[off : off + n] = bytes([i + 1]) * n
    src.write_bytes(bytes(buf))
    compressed = d / "compressed.qcow"
    # qemu-img 7.x ends a compressed convert with a zero-length "EOF" compressed write that
    # the qcow driver refuses, so it exits 1 after writing every cluster; accept that, and
    # let qemu-img compare vouch for the result.
    rc = subprocess.run(
        ["qemu-img", "convert", "-q", "-c", "-f", "raw", "-O", "qcow", str(src), str(compressed)],
        capture_output=True,
    ).returncode
    assert rc in (0, 1)
    sh("qemu-img", "compare", "-q", "-f", "raw", "-F", "qcow", str(src), str(compressed))

    # 3. an overlay on a raw backing file (qemu then uses 512-byte clusters, 4096-entry L2)
    base = d / "base.raw"
    bbuf = bytearray(6 * MiB)
    for _ in range(30):
        off = rnd.randrange(0, len(bbuf) - 50000)
        n = rnd.randrange(1, 50000)
        bbuf[off : off + n] = rnd.randbytes(n)
    base.write_bytes(bytes(bbuf))
    overlay = d / "overlay.qcow"
    sh(
        "qemu-img",
        "create",
        "-q",
        "-f",
        "qcow",
        "-b",
        "base.raw",
        "-F",
        "raw",
        str(overlay),
        str(6 * MiB),
    )
    owrites = [
        (0x5A, 5 * MiB, 700),
        (0x3C, 1 * MiB + 512, 64 * 1024),
        (0x77, 0, 1024),
        (0x11, 2 * MiB - 1536, 3072),
    ]
    for _ in range(20):
        off = rnd.randrange(0, 6 * MiB // 512 - 1) * 512
        owrites.append((rnd.randrange(1, 256), off, rnd.randrange(1, 200) * 512))
    qemu_write(overlay, owrites)

    paths = dict(plain=plain, compressed=compressed, overlay=overlay, base=base)
    raws = {k: qemu_raw(paths[k], d) for k in ("plain", "compressed", "overlay")}
    return dict(dir=d, paths=paths, raw=raws)


IMAGES = ["plain", "compressed", "overlay"]


# -- reading good images ------------------------------------------------------------------
def test_probe(images, tmp_path):
    for name in IMAGES:
        with open(images["paths"][name], "rb") as f:
            assert qcow.probe(f.read(4096))
    q2 = tmp_path / "v2.qcow2"
    sh("qemu-img", "create", "-q", "-f", "qcow2", str(q2), "1M")
    assert not qcow.probe(q2.read_bytes()[:4096])
    assert not qcow.probe(b"QFI\xfb")
    assert not qcow.probe(bytes(512))


@pytest.mark.parametrize("name", IMAGES)
def test_header_and_info(images, name):
    path = images["paths"][name]
    img = open_qcow(path)
    qi = json.loads(sh("qemu-img", "info", "-f", "qcow", "--output=json", str(path)))
    assert img.format == "qcow"
    assert img.size == qi["virtual-size"] == header_of(path)["size"]
    assert img.cluster_size == qi["cluster-size"]
    assert img.header.version == 1 and img.header.magic == b"QFI\xfb"
    info = img.info_fields()
    assert info["version"] == 1 and info["cluster_size"] == img.cluster_size
    assert info["l2_bits"] == header_of(path)["l2_bits"]
    assert info["encrypted"] is False and info["mtime"] is None  # qemu writes mtime 0
    if name == "overlay":
        assert info["backing_file"] == qi["backing-filename"] == "base.raw"
        assert img.parent_hint.path == "base.raw"
    else:
        assert info["backing_file"] is None and img.parent_hint is None
    img.close()


@pytest.mark.parametrize("name", ["plain", "compressed"])
def test_whole_disk_matches_qemu(images, name):
    img = open_qcow(images["paths"][name])
    assert img.read(0, img.size) == images["raw"][name]


@pytest.mark.parametrize("name", ["plain", "compressed"])
def test_random_reads_match_qemu(images, name):
    img = open_qcow(images["paths"][name])
    raw = images["raw"][name]
    cs = img.cluster_size
    span = cs << img.header.l2_bits
    rnd = random.Random(name)
    for i in range(200):
        unit = span if i % 2 else cs  # around L2 boundaries, then cluster boundaries
        edge = rnd.randrange(0, img.size // unit + 1) * unit
        off = max(0, min(img.size - 1, edge - rnd.randrange(0, 3 * cs)))
        n = rnd.randrange(1, min(4 * cs, img.size - off) + 1)
        assert img.read(off, n) == raw[off : off + n], (off, n)


@pytest.mark.parametrize("name", IMAGES)
def test_runs_match_qemu_map(images, name):
    path = images["paths"][name]
    img = open_qcow(path)
    runs = img.runs()
    check_runs_shape(img, runs, 0, img.size)
    assert {r.state for r in runs} <= {DATA, UNALLOCATED}
    assert our_data(runs) == qemu_data(path)
    # the raw _runs, before merging, say the same
    assert our_data(img._runs(0, img.size), img.size) == our_data(runs)
    # a window in the middle
    a, b = img.size // 3 + 123, img.size // 2 - 77
    sub = img.runs(a, b - a)
    check_runs_shape(img, sub, a, b)
    expect = [
        (max(s, a), min(s + n, b) - max(s, a)) for s, n in qemu_data(path) if s < b and s + n > a
    ]
    assert our_data(sub) == expect


def test_plain_runs_have_qemus_host_offsets(images):
    """Uncompressed runs: same (start, length, host offset) as qemu-img map, joined alike."""
    path = images["paths"]["plain"]
    img = open_qcow(path)
    ours = [(r.start, r.length, r.host_offset) for r in img.runs() if r.state == DATA]
    theirs = [(m["start"], m["length"], m["offset"]) for m in qemu_map(path) if m["data"]]
    assert ours == theirs
    assert all(r.host_file == str(path) and not r.compressed for r in img.runs() if r.state == DATA)
    # contiguous clusters come back as one run
    assert max(n for _, n, _ in ours) >= MiB
    assert len(ours) < sum(-(-n // img.cluster_size) for _, n, _ in ours)


def test_compressed_runs(images):
    path = images["paths"]["compressed"]
    img = open_qcow(path)
    cs = img.cluster_size
    runs = img.runs()
    comp = [r for r in runs if r.compressed]
    plain = [r for r in runs if r.state == DATA and not r.compressed]
    assert comp and plain  # random parts could not be compressed: qemu stored them plain
    file_size = os.path.getsize(path)
    for r in comp:
        vstart, csize = r.extra
        assert r.state == DATA and r.length == min(cs, img.size - r.start)
        assert vstart == r.start and 0 < csize < cs
        assert r.host_offset + csize <= file_size
        with open(path, "rb") as f:
            f.seek(r.host_offset)
            data = zlib.decompressobj(-12).decompress(f.read(csize))
        assert img._read_compressed(r) == data
        assert data[: r.length] == images["raw"]["compressed"][r.start : r.end]
    # qemu reports compressed data without a host offset
    by_start = {m["start"]: m for m in qemu_map(path)}
    assert all("offset" not in by_start[r.start] for r in comp if r.start in by_start)


def test_overlay_on_backing_file(images):
    path = images["paths"]["overlay"]
    img = open_qcow(path)
    assert img.cluster_size == 512 and img.header.l2_bits == 12
    base = images["paths"]["base"].read_bytes()
    own = img.read(0, img.size)
    composed = bytearray(img.size)
    for r in img.runs():
        src = own if r.state == DATA else base
        composed[r.start : r.end] = src[r.start : r.end]
    assert bytes(composed) == images["raw"]["overlay"]
    assert our_data(img.runs()) == qemu_data(path)
    # unallocated parts read as zeros from the image alone
    for r in img.runs():
        if r.state == UNALLOCATED:
            assert own[r.start : r.end] == bytes(r.length)


@pytest.mark.parametrize("name", IMAGES)
def test_structures_and_clean_check(images, name):
    path = images["paths"][name]
    img = open_qcow(path)
    h = header_of(path)
    rows = img.structure_rows()
    assert set(rows[0]) == {"name", "host_file", "host_offset", "length", "description"}
    names = [r["name"] for r in rows]
    assert names[0] == "header" and rows[0]["length"] == 48
    l1 = next(r for r in rows if r["name"] == "L1 table")
    assert l1["host_offset"] == h["l1_table_offset"]
    assert l1["length"] == 8 * -(-h["size"] >> (h["cluster_bits"] + h["l2_bits"]))
    tables = l2_tables(path)
    assert sorted(r["host_offset"] for r in rows if r["name"] == "L2 table") == sorted(
        off for _, off in tables
    )
    assert ("backing file name" in names) == (name == "overlay")
    # every structure inside the file, none overlapping another
    size = os.path.getsize(path)
    spans = sorted((r["host_offset"], r["host_offset"] + r["length"]) for r in rows)
    assert all(0 <= s < e <= size for s, e in spans)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    # data cluster rows add up to the clusters qemu says hold data
    data_bytes = sum(r["length"] for r in rows if r["name"] == "data clusters")
    plain_clusters = sum(1 for _, off in tables for e in l2_entries(path, off) if e and not e >> 63)
    assert data_bytes == plain_clusters * img.cluster_size
    comp_rows = [r for r in rows if r["name"] == "compressed clusters"]
    assert bool(comp_rows) == (name == "compressed")
    assert img.check_rows() == []


# -- bad input ----------------------------------------------------------------------------
def test_short_header(images, tmp_path):
    p = patched(images["paths"]["plain"], tmp_path / "short.qcow", truncate=20)
    for strict in (True, False):
        with pytest.raises(CorruptImage) as e:
            open_qcow(p, strict=strict)
        assert e.value.path == p and e.value.structure == "header"


@pytest.mark.parametrize(
    "edit, error, structure, offset",
    [
        ((36, struct.pack(">I", 1)), EncryptedImage, "header.crypt_method", 36),  # AES
        ((36, struct.pack(">I", 2)), CorruptImage, "header.crypt_method", 36),  # unknown
        ((32, b"\x08"), CorruptImage, "header.cluster_bits", 32),
        ((32, b"\x11"), CorruptImage, "header.cluster_bits", 32),
        ((33, b"\x20"), CorruptImage, "header.l2_bits", 33),
        ((24, struct.pack(">Q", 1 << 63)), CorruptImage, "header.size", 24),  # absurd L1
        ((24, struct.pack(">Q", 1 << 45)), CorruptImage, "L1 table", 48),  # 16 Mi entries
        ((40, struct.pack(">Q", 1 << 62)), CorruptImage, "L1 table", 1 << 62),  # past EOF
        ((4, struct.pack(">I", 2)), NotRecognized, "header.version", 4),  # QCOW2's version
        ((0, b"QFI\xfc"), NotRecognized, "header.magic", 0),
    ],
)
def test_bad_header_fields(images, tmp_path, edit, error, structure, offset):
    p = patched(images["paths"]["plain"], tmp_path / "bad.qcow", [edit])
    for strict in (True, False) if structure.startswith("header") else (True,):
        with pytest.raises(error) as e:
            open_qcow(p, strict=strict)
        assert type(e.value) is error
        assert (e.value.path, e.value.structure, e.value.offset) == (p, structure, offset)
        assert p in str(e.value) and f"{offset:#x}" in str(e.value)


def test_absurd_l1_in_salvage_mode(images, tmp_path):
    """A size whose L1 table would run far past EOF: damaged, but answered quickly."""
    small = tmp_path / "small.qcow"
    sh("qemu-img", "create", "-q", "-f", "qcow", str(small), "1M")
    qemu_write(small, [(0x42, 4096, 8192)])
    raw = qemu_raw(small, tmp_path)
    p = patched(small, tmp_path / "huge.qcow", [(24, struct.pack(">Q", 1 << 45))])
    with pytest.raises(CorruptImage) as e:
        open_qcow(p)
    assert e.value.structure == "L1 table" and e.value.offset == 48
    img = open_qcow(p, strict=False)
    assert img.size == 1 << 45
    runs = img.runs()
    check_runs_shape(img, runs, 0, img.size)
    assert runs[-1].state == DAMAGED and runs[-1].end == 1 << 45
    assert img.read(0, MiB) == raw  # the L1 entry that exists still works
    assert any(f["structure"] == "L1 table" and f["severity"] == "error" for f in img.check_rows())


def test_backing_name_too_long(images, tmp_path):
    src = images["paths"]["overlay"]
    p = patched(src, tmp_path / "name.qcow", [(16, struct.pack(">I", 5000))])
    with pytest.raises(CorruptImage) as e:
        open_qcow(p)
    assert e.value.structure == "backing file name"
    img = open_qcow(p, strict=False)
    assert img.parent_hint is None
    assert [f["structure"] for f in img.check_rows()] == ["backing file name"]


def _first_data_entry(path, compressed=False):
    """(L1 index, L2 offset, entry index, entry) of the first (compressed) data cluster."""
    for i, off in l2_tables(path):
        for j, e in enumerate(l2_entries(path, off)):
            if e and bool(e >> 63) == compressed:
                return i, off, j, e
    raise AssertionError("no such entry")


def test_l2_entry_past_eof(images, tmp_path):
    src = images["paths"]["plain"]
    i, l2, j, _ = _first_data_entry(src)
    bogus = 1 << 40
    p = patched(src, tmp_path / "l2.qcow", [(l2 + 8 * j, struct.pack(">Q", bogus))])
    img = open_qcow(p)
    h = header_of(p)
    vstart = (i << (h["cluster_bits"] + h["l2_bits"])) + (j << h["cluster_bits"])
    with pytest.raises(CorruptImage) as e:
        img.read(vstart, 10)
    assert e.value.offset == bogus and e.value.structure == "data cluster"
    assert e.value.path == p
    with pytest.raises(CorruptImage):
        img.runs()
    raw = images["raw"]["plain"]
    assert img.read(vstart + img.cluster_size, 4096) == raw[vstart + 4096 : vstart + 8192]

    sal = open_qcow(p, strict=False)
    runs = sal.runs()
    check_runs_shape(sal, runs, 0, sal.size)
    damaged = [r for r in runs if r.state == DAMAGED]
    assert [(r.start, r.length) for r in damaged] == [(vstart, sal.cluster_size)]
    data = sal.read(0, sal.size)
    assert data[vstart : vstart + 4096] == bytes(4096)
    assert data[:vstart] == raw[:vstart] and data[vstart + 4096 :] == raw[vstart + 4096 :]
    rows = sal.check_rows()
    assert any(r["host_offset"] == bogus and r["severity"] == "error" for r in rows)
    assert open_qcow(p, strict=False).check_rows() == rows  # check() alone finds it as well


def test_l1_entry_past_eof(images, tmp_path):
    src = images["paths"]["plain"]
    i, _ = l2_tables(src)[0]
    off = header_of(src)["l1_table_offset"] + 8 * i
    p = patched(src, tmp_path / "l1.qcow", [(off, struct.pack(">Q", 1 << 50))])
    img = open_qcow(p)
    with pytest.raises(CorruptImage) as e:
        img.read(0, img.size)
    assert e.value.structure == "L2 table" and e.value.offset == 1 << 50
    sal = open_qcow(p, strict=False)
    span = sal.cluster_size << sal.header.l2_bits
    assert [(r.start, r.length) for r in sal.runs() if r.state == DAMAGED] == [(i * span, span)]
    assert sal.read(i * span, span) == bytes(span)
    assert any(r["structure"] == "L2 table" for r in sal.check_rows())


def test_truncated_file(images, tmp_path):
    src = images["paths"]["plain"]
    raw = images["raw"]["plain"]
    cut = os.path.getsize(src) - 3 * 4096 - 100
    p = patched(src, tmp_path / "cut.qcow", truncate=cut)
    img = open_qcow(p)
    with pytest.raises(CorruptImage):
        img.read(0, img.size)
    sal = open_qcow(p, strict=False)
    runs = sal.runs()
    check_runs_shape(sal, runs, 0, sal.size)
    assert any(r.state == DAMAGED for r in runs)
    data = sal.read(0, sal.size)
    for r in runs:
        want = bytes(r.length) if r.state == DAMAGED else raw[r.start : r.end]
        assert data[r.start : r.end] == want
    rows = sal.check_rows()
    assert rows and all(set(r) == {"severity", "structure", "host_offset", "message"} for r in rows)


def test_bad_compressed_data(images, tmp_path):
    src = images["paths"]["compressed"]
    i, l2, j, e = _first_data_entry(src, compressed=True)
    h = header_of(src)
    cb = h["cluster_bits"]
    host = e & ((1 << (63 - cb)) - 1)
    csize = (e >> (63 - cb)) & ((1 << cb) - 1)
    vstart = (i << (cb + h["l2_bits"])) + (j << cb)
    p = patched(src, tmp_path / "z.qcow", [(host, b"\xff" * csize)])
    with pytest.raises(CorruptImage) as err:
        open_qcow(p).read(vstart, 1)
    assert err.value.structure == "compressed cluster" and err.value.offset == host
    sal = open_qcow(p, strict=False)
    assert sal.read(vstart, 1 << cb) == bytes(1 << cb)
    assert any(r["structure"] == "compressed cluster" for r in sal.check_rows())
    # compressed length pointing past EOF
    big = (1 << 63) | (((1 << cb) - 1) << (63 - cb)) | (os.path.getsize(src) - 10)
    q = patched(src, tmp_path / "z2.qcow", [(l2 + 8 * j, struct.pack(">Q", big))])
    with pytest.raises(CorruptImage):
        open_qcow(q).read(vstart, 1)
    assert [r.state for r in open_qcow(q, strict=False).runs(vstart, 1)] == [DAMAGED]


def test_cluster_referenced_twice(images, tmp_path):
    src = images["paths"]["plain"]
    _, l2, j, e = _first_data_entry(src)
    entries = l2_entries(src, l2)
    k = next(k for k in range(len(entries)) if not entries[k])
    p = patched(src, tmp_path / "dup.qcow", [(l2 + 8 * k, struct.pack(">Q", e))])
    img = open_qcow(p)
    rows = img.check_rows()
    assert any("referenced twice" in r["message"] and r["host_offset"] == e for r in rows)
    # misaligned data cluster
    q = patched(src, tmp_path / "odd.qcow", [(l2 + 8 * j, struct.pack(">Q", e + 100))])
    rows = open_qcow(q).check_rows()
    assert any(r["host_offset"] == e + 100 and "aligned" in r["message"] for r in rows)


def test_fuzzed_images_raise_only_vdinspect_errors(images, tmp_path):
    """Random byte flips in the metadata and truncations: only VDInspectError, bounded work."""
    rnd = random.Random(7)
    for name in ("overlay", "compressed"):
        src = images["paths"][name]
        size = os.path.getsize(src)
        meta = [(0, 48)] + [(off, 8 << header_of(src)["l2_bits"]) for _, off in l2_tables(src)]
        meta.append((header_of(src)["l1_table_offset"], 64))
        for n in range(120):
            edits = []
            for _ in range(rnd.randrange(1, 6)):
                start, length = rnd.choice(meta)
                off = start + rnd.randrange(0, length)
                edits.append((off, bytes([rnd.randrange(256)])))
            cut = rnd.randrange(0, size) if n % 10 == 0 else None
            p = patched(src, tmp_path / f"fuzz-{name}-{n}.qcow", edits, truncate=cut)
            digest = sha256(p)
            for strict in (True, False):
                try:
                    img = open_qcow(p, strict=strict)
                except VDInspectError:
                    continue
                try:
                    img.check_rows()
                    img.structure_rows()
                    img.info_fields()
                    runs = img.runs()
                    check_runs_shape(img, runs, 0, img.size)
                    if img.size <= 64 * MiB:
                        img.read(0, img.size)
                    else:
                        img.read(0, min(img.size, MiB))
                except VDInspectError:
                    assert strict, "salvage mode raised"
                img.close()
            assert sha256(p) == digest
            os.remove(p)  # keep the temporary folder small
