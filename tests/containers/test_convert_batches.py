"""Conversion in chunks: compressed QCOW2 clusters inflated in tasks of many (one coalesced
read each), runs cut at chunk boundaries, zero blocks left as holes. The oracle is the raw
file the image was made from (qemu-img convert -c wrote the image) and qemu-img compare."""

from __future__ import annotations

import os
import random
import struct
import zlib
from pathlib import Path

import pytest

import vdinspect
from tests import qemu_tools as q
from tests.conftest import needs_qemu

pytestmark = needs_qemu

K, M = 1 << 10, 1 << 20
CS = 64 * K


def source_raw(path: Path, clusters: int, tail: int, seed: int = 3) -> bytes:
    """``clusters`` 64 KiB clusters and ``tail`` bytes more: compressible text, every
    fifth cluster zeros, one cluster of random bytes (stored uncompressed by qemu-img)."""
    rnd = random.Random(seed)
    out = bytearray()
    for k in range(clusters):
        if k % 5 == 3:
            out += bytes(CS)
        elif k == 7:
            out += rnd.randbytes(CS)
        else:
            out += bytes(rnd.choice(b"abcdefgh") for _ in range(256)) * (CS // 256)
    out += bytes(rnd.choice(b"xyz") for _ in range(tail))
    path.write_bytes(out)
    return bytes(out)


def l2_entries(path: Path) -> list[tuple[int, int]]:
    """(guest cluster, L2 entry) of every allocated entry of the first L2 table, read from
    the header, L1 and L2 layout of the QCOW2 specification."""
    data = path.read_bytes()
    cluster_bits = struct.unpack_from(">I", data, 20)[0]
    l1_off = struct.unpack_from(">Q", data, 40)[0]
    l2_off = struct.unpack_from(">Q", data, l1_off)[0] & 0x00FFFFFFFFFFFE00
    n = (1 << cluster_bits) // 8
    return [(k, e) for k, e in enumerate(struct.unpack_from(f">{n}Q", data, l2_off)) if e]


def compressed_host(entry: int, cluster_bits: int = 16) -> tuple[int, int]:
    """A compressed L2 entry's host offset and stored bytes (specification: x = 62 -
    (cluster_bits - 8) offset bits, then the count of additional 512-byte sectors)."""
    x = 62 - (cluster_bits - 8)
    host = entry & ((1 << x) - 1)
    sectors = (entry >> x) & ((1 << (cluster_bits - 8)) - 1)
    return host, (sectors + 1) * 512 - (host & 511)


@pytest.fixture(scope="module")
def zimage(tmp_path_factory):
    d = tmp_path_factory.mktemp("zlib")
    src = d / "source.raw"
    data = source_raw(src, 41, 3 * K)  # the last cluster is cut by the end of the disk
    img = d / "z.qcow2"
    q.qemu_img("convert", "-c", "-f", "raw", "-O", "qcow2", str(src), str(img))
    return img, data


@pytest.mark.parametrize("workers", [1, 2, 3])
@pytest.mark.parametrize("chunk", [8 * M, 3 * CS + 5 * K, 1 * M + 512])
def test_compressed_convert_in_chunks(zimage, workers, chunk, tmp_path):
    img, data = zimage
    comp = [k for k, e in l2_entries(img) if e >> 62 & 1]
    assert len(comp) > 20 and (len(data) - 1) // CS in comp  # the last cluster too
    out = tmp_path / "out.raw"
    with vdinspect.open(str(img)) as disk:
        written = disk.to_raw(out, chunk=chunk, workers=workers)
    assert out.read_bytes() == data
    q.qemu_img("compare", "-q", "-F", "raw", str(img), str(out))
    zero = sum(CS for k in range(41) if k % 5 == 3)
    assert written == len(data) - zero  # the zero clusters are holes, never written
    if hasattr(os, "SEEK_DATA"):
        fd = os.open(out, os.O_RDONLY)
        try:  # the first zero cluster (3) is a hole in the output
            assert os.lseek(fd, 3 * CS, os.SEEK_DATA) >= 4 * CS
        finally:
            os.close(fd)


def test_compressed_cluster_running_past_end_of_file(tmp_path):
    """The last compressed cluster's sector count reaching past the end of the file (the
    file cut just after its deflate stream, found by zlib): read to the end of the file."""
    img = tmp_path / "c.qcow2"
    q.create(img, 2 * M)
    q.qemu_io(img, *(f"write -q -c -P {0x30 + k} {k * CS} 64k" for k in range(12)))
    entries = dict(l2_entries(img))
    hosts = {k: compressed_host(e) for k, e in entries.items()}
    last = max(hosts, key=lambda k: hosts[k][0])
    h, stored = hosts[last]
    raw = img.read_bytes()
    d = zlib.decompressobj(-15)
    held = raw[h : h + stored]
    assert d.decompress(held, CS) == bytes([0x30 + last]) * CS
    end = h + len(held) - len(d.unused_data)  # where the deflate stream stops
    if h + stored <= end:
        pytest.skip("the deflate stream fills its sectors: nothing reaches past the end")
    cut = tmp_path / "cut.qcow2"  # (qemu-io may already end the file there)
    cut.write_bytes(raw[:end])
    out = tmp_path / "out.raw"
    with vdinspect.open(str(cut)) as disk:
        disk.to_raw(out, workers=2)
    want = b"".join(bytes([0x30 + k]) * CS for k in range(12)) + bytes(2 * M - 12 * CS)
    assert out.read_bytes() == want


def test_corrupt_compressed_cluster_in_a_batch(zimage, tmp_path):
    """A garbled cluster among many: strict mode raises naming it; salvage mode writes
    zeros there, the rest as stored, and check() reports it."""
    img, data = zimage
    bad = tmp_path / "bad.qcow2"
    raw = bytearray(img.read_bytes())
    comp = [(k, e) for k, e in l2_entries(img) if e >> 62 & 1]
    k, e = comp[len(comp) // 2]
    h, _stored = compressed_host(e)
    raw[h : h + 32] = b"\xff" * 32
    bad.write_bytes(bytes(raw))
    out = tmp_path / "out.raw"
    for workers in (1, 3):
        with vdinspect.open(str(bad)) as disk:
            with pytest.raises(vdinspect.errors.CorruptImage, match=f"{h:#x}"):
                disk.to_raw(out, workers=workers)
        assert not out.exists() and not list(tmp_path.glob("*.vdinspect-part"))
        with vdinspect.open(str(bad), strict=False) as disk:
            disk.to_raw(out, workers=workers)
            rows = disk.check()
        got = out.read_bytes()
        assert got[k * CS : (k + 1) * CS] == bytes(CS)
        assert got[: k * CS] == data[: k * CS] and got[(k + 1) * CS :] == data[(k + 1) * CS :]
        assert ((rows.severity == "error") & rows.message.str.contains(f"{h:#x}")).any()
        out.unlink()


@pytest.mark.parametrize("fmt", ["qcow2", "vmdk", "vdi", "parallels"])
def test_large_read_of_units_in_a_row(fmt, tmp_path):
    """Reads of many data units whose host bytes follow each other (one piece, one pread):
    the bytes qemu-io wrote; the same read over a file cut short inside the last unit
    raises in strict mode and reads zeros there, reported, in salvage mode."""
    img = tmp_path / f"whole.{fmt}"
    q.create(img, 8 * M, fmt)
    q.qemu_io(img, "write -q -P 0x5a 0 4M", "write -q -P 0x6b 4M 1M", fmt=fmt)
    want = b"\x5a" * (4 * M) + b"\x6b" * M + bytes(3 * M)
    with vdinspect.open(str(img)) as disk:
        assert disk.read(0, 8 * M) == want
        for off, n in ((0, M), (4 * K + 17, 3 * M), (4 * M - 512, 2 * M)):
            assert disk.read(off, n) == want[off : off + n]
        runs = [r for r in disk.chain.top.runs() if r.state == "data"]
        host_end = max(r.host_offset + r.length for r in runs)
        last = max(runs, key=lambda r: r.host_offset + r.length)
        guest_end = last.end
    cut = tmp_path / f"cut.{fmt}"
    cut.write_bytes(img.read_bytes()[: host_end - 2 * K])
    lo = guest_end - M
    with pytest.raises(vdinspect.errors.CorruptImage):
        with vdinspect.open(str(cut)) as disk:
            disk.read(lo, M)
    with vdinspect.open(str(cut), strict=False) as disk:
        got = disk.read(lo, M)
        assert got[: M - 2 * K] == want[lo : guest_end - 2 * K]
        assert got[M - 2 * K :] == bytes(2 * K)
        assert disk.damaged_ranges(lo, M) == [(guest_end - 2 * K, 2 * K)]


def test_convert_workers_option(zimage, tmp_path):
    """The CLI's --workers reaches to_raw; a bad count is a bad call."""
    import subprocess
    import sys

    img, data = zimage
    out = tmp_path / "cli.raw"
    subprocess.run([sys.executable, "-m", "vdinspect", "convert", "--workers", "2", str(img),
                    str(out)], check=True, capture_output=True)
    assert out.read_bytes() == data
    with vdinspect.open(str(img)) as disk:
        for bad in (0, -1, 1.5):
            with pytest.raises(vdinspect.errors.InvalidArgument):
                disk.to_raw(tmp_path / "x.raw", workers=bad)
        with pytest.raises(vdinspect.errors.InvalidArgument):
            disk.to_raw(tmp_path / "x.raw", chunk=0)
