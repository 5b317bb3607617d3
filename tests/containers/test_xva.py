"""XenServer XVA exports built from the format's description (tests/containers/
xva_builder.py); reads are compared with the raw bytes they were built from, the disks
made by qemu-io and mkfs.ext4 (listing compared with debugfs where present)."""

from __future__ import annotations

import os
import sys

import pytest

import vdinspect
from tests.conftest import have
from tests.containers.xva_builder import CHUNK, build_xva
from tests.tools import run


def disk_bytes(size: int, pattern: dict[int, int]) -> bytes:
    buf = bytearray(size)
    for off, byte in pattern.items():
        buf[off:off + 4096] = bytes([byte]) * 4096
    return bytes(buf)


@pytest.fixture
def two_disks():
    a = disk_bytes(5 * CHUNK + 4096, {0: 1, 3 * CHUNK + 512: 2, 5 * CHUNK: 3})
    b = bytearray(os.urandom(2 * CHUNK))
    return a, bytes(b)


def test_xva_reads_back_what_it_was_built_from(tmp_path, two_disks):
    a, b = two_disks
    p = tmp_path / "vm.xva"
    build_xva(p, "web01", [("Ref:7", "system", a), ("Ref:9", "data", b)])
    with vdinspect.open(p) as d:
        info = d.info()
        assert (info["format"], info["vm_name"], info["disk_name"]) == ("xva", "web01", "system")
        assert d.size == len(a) and d.read(0, d.size) == a
        assert (info["cpus"], info["memory"]) == (2, 1 << 30)
        runs = [(r.start, r.length, r.state) for r in d.runs()]
        # chunks 1, 2 and 4 are zeros and left out: they read as unallocated
        assert (CHUNK, 2 * CHUNK, "unallocated") in runs
        assert (4 * CHUNK, CHUNK, "unallocated") in runs
        c = d.check()
        assert not (c.severity == "error").any()
        assert "3 chunk checksums match, 0 do not" in set(c.message)
    with vdinspect.open(p, disk=1) as d:
        assert d.read(0, d.size) == b
    with vdinspect.open(p, disk="data") as d:
        assert d.info()["disk_ref"] == "Ref:9"
    with pytest.raises(vdinspect.InvalidArgument):
        vdinspect.open(p, disk=2)


def test_keepalive_chunk_takes_a_number_not_a_place(tmp_path, two_disks):
    a, _b = two_disks
    p = tmp_path / "vm.xva"
    build_xva(p, "web01", [("Ref:7", "system", a)], keepalive_after=0)
    with vdinspect.open(p) as d:
        assert d.read(0, d.size) == a


def test_damaged_chunk(tmp_path, two_disks):
    a, _b = two_disks
    p = tmp_path / "vm.xva"
    build_xva(p, "web01", [("Ref:7", "system", a)], corrupt_chunk=3)
    with vdinspect.open(p) as d, pytest.raises(vdinspect.CorruptImage, match="checksum"):
        d.read(3 * CHUNK, 4096)
    with vdinspect.open(p, strict=False) as d:
        c = d.check()
        assert (c.severity == "error").sum() == 1 and "2 chunk checksums match, 1 do not" in \
            set(c.message)
        runs = [(r.start, r.length, r.state) for r in d.runs()]
        assert (3 * CHUNK, CHUNK, "damaged") in runs
        assert d.read(3 * CHUNK, CHUNK) == bytes(CHUNK)  # what could not be trusted: zeros
        assert d.read(0, 4096) == a[:4096]
        assert d.damaged_ranges() == [(3 * CHUNK, CHUNK)]


@pytest.mark.skipif(not have("xxhsum"), reason="xxhsum missing")
def test_xxhash_checksums(tmp_path, two_disks, monkeypatch):
    """Newer exports write ``.xxhash`` (XXH64, upper-case hex, as xxhsum computes it)."""
    pytest.importorskip("xxhash")
    a, _b = two_disks
    p = tmp_path / "vm.xva"
    build_xva(p, "web01", [("Ref:7", "system", a)], sums="xxhash")
    with vdinspect.open(p) as d:
        assert d.read(0, d.size) == a
        assert "3 chunk checksums match, 0 do not" in set(d.check().message)
    bad = tmp_path / "bad.xva"
    build_xva(bad, "web01", [("Ref:7", "system", a)], sums="xxhash", corrupt_chunk=3)
    with vdinspect.open(bad, strict=False) as d:
        c = d.check()
        assert any("XXH64" in m for m in c[c.severity == "error"].message)
        assert (3 * CHUNK, CHUNK, "damaged") in [(r.start, r.length, r.state) for r in d.runs()]
    monkeypatch.setitem(sys.modules, "xxhash", None)  # without the optional package
    with vdinspect.open(bad) as d:
        assert any("not verified" in m for m in d.check().message)


@pytest.mark.skipif(not have("mkfs.ext4", "debugfs"), reason="mkfs.ext4/debugfs missing")
def test_ext4_inside_an_xva(tmp_path):
    src = tmp_path / "content"
    src.mkdir()
    (src / "hello.txt").write_text("hello from xen\n")
    img = tmp_path / "fs.img"
    img.write_bytes(bytes(8 * CHUNK))
    run("mkfs.ext4", "-q", "-F", "-d", src, img)
    data = img.read_bytes()
    p = tmp_path / "vm.xva"
    build_xva(p, "db", [("Ref:3", "root", data)])
    with vdinspect.open(p) as d:
        assert d.read(0, d.size) == data
        fs = d.filesystem()
        names = set(fs.files().name)
    listed = run("debugfs", "-R", "ls -l /", img)
    assert "hello.txt" in names and "hello.txt" in listed


def test_truncated_xva(tmp_path, two_disks):
    a, _b = two_disks
    p = tmp_path / "vm.xva"
    build_xva(p, "web01", [("Ref:7", "system", a)])
    data = p.read_bytes()
    cut = tmp_path / "cut.xva"
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(vdinspect.CorruptImage):
        vdinspect.open(cut)
    with vdinspect.open(cut, strict=False) as d:
        assert d.read(0, 4096) == a[:4096]
        assert (d.check().severity == "error").any()


@pytest.mark.skipif(not have("gzip"), reason="gzip missing")
def test_compressed_export(tmp_path, two_disks):
    """``xe vm-export compress=true``: the whole tar gzipped (here by the gzip tool)."""
    a, b = two_disks
    p = tmp_path / "vm.xva"
    build_xva(p, "web01", [("Ref:7", "system", a), ("Ref:9", "data", b)])
    run("gzip", "-n", p)
    gz = tmp_path / "vm.xva.gz"
    with vdinspect.open(gz) as d:
        assert d.info()["format"] == "xva" and d.read(0, d.size) == a
        assert "3 chunk checksums match, 0 do not" in set(d.check().message)
    with vdinspect.open(gz, disk=1) as d:
        assert d.read(0, d.size) == b
    cut = tmp_path / "cut.xva.gz"
    cut.write_bytes(gz.read_bytes()[: gz.stat().st_size // 2])
    with pytest.raises(vdinspect.CorruptImage):
        vdinspect.open(cut)
