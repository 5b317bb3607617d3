"""Extraction host file to host file in the kernel (``os.copy_file_range``) where a file's
bytes are stored as themselves (a raw image, QCOW2 data clusters): the same bytes as the
tree mke2fs -d was given and as icat reads, holes kept, and the read-and-write path when
the host refuses the copy."""

from __future__ import annotations

import errno
import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

import vdinspect
from tests.conftest import have
from tests.tools import run

pytestmark = pytest.mark.skipif(not have("mke2fs") or not hasattr(os, "copy_file_range"),
                                reason="needs mke2fs and os.copy_file_range")
K, M = 1 << 10, 1 << 20


@pytest.fixture(scope="module")
def ext_raw(tmp_path_factory):
    """An ext4 image of a tree: big.bin (data, a 2 MiB hole, data, an unaligned tail) and
    small.txt."""
    d = tmp_path_factory.mktemp("extcopy")
    tree = d / "tree"
    tree.mkdir()
    rnd = random.Random(11)
    with open(tree / "big.bin", "wb") as f:
        f.write(rnd.randbytes(3 * M))
        f.seek(5 * M)
        f.write(rnd.randbytes(M + 1234))
    (tree / "small.txt").write_bytes(b"hello\n" * 100)
    img = d / "ext4.img"
    run("mke2fs", "-q", "-F", "-t", "ext4", "-b", "4096", "-d", str(tree), str(img), "32M")
    return img, tree


def counting_copy(monkeypatch) -> list:
    calls: list = []
    real = os.copy_file_range

    def spy(src, dst, count, offset_src=None, offset_dst=None):
        calls.append(count)
        return real(src, dst, count, offset_src, offset_dst)

    monkeypatch.setattr(os, "copy_file_range", spy)
    return calls


def icat_bytes(img: Path, name: str) -> bytes | None:
    if not have("fls", "icat"):
        return None
    listing = run("fls", "-p", str(img))
    ino = next(line.split()[1].rstrip(":") for line in listing.splitlines()
               if line.endswith("\t" + name))
    return subprocess.run(["icat", str(img), ino], capture_output=True, check=True).stdout


def extract_checked(img: Path, tree: Path, dest: Path, oracle_img: Path) -> None:
    with vdinspect.open(str(img)) as disk:
        fs = disk.filesystem(disk.filesystem_volumes()[0].key)
        report = fs.extract("/", dest)
    assert not report.skipped and not report.incomplete
    for name in ("big.bin", "small.txt"):
        got = (dest / name).read_bytes()
        assert got == (tree / name).read_bytes()
        icat = icat_bytes(oracle_img, name)
        if icat is not None:
            assert got == icat
    fd = os.open(dest / "big.bin", os.O_RDONLY)
    try:  # the hole stays a hole on the host
        assert os.lseek(fd, 3 * M, os.SEEK_DATA) >= 4 * M
    finally:
        os.close(fd)


def test_extract_copies_in_the_kernel_from_a_raw_image(ext_raw, tmp_path, monkeypatch):
    img, tree = ext_raw
    calls = counting_copy(monkeypatch)
    extract_checked(img, tree, tmp_path / "out", img)
    assert calls  # the copy went through copy_file_range


@pytest.mark.skipif(not have("qemu-img"), reason="needs qemu-img")
def test_extract_copies_through_qcow2_clusters(ext_raw, tmp_path, monkeypatch):
    img, tree = ext_raw
    qcow = tmp_path / "ext4.qcow2"
    run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(img), str(qcow))
    calls = counting_copy(monkeypatch)
    extract_checked(qcow, tree, tmp_path / "out", img)
    assert calls


def test_extract_falls_back_when_the_host_refuses(ext_raw, tmp_path, monkeypatch):
    img, tree = ext_raw
    calls: list = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise OSError(errno.EXDEV, "cross-device")

    monkeypatch.setattr(os, "copy_file_range", refuse)
    extract_checked(img, tree, tmp_path / "out", img)
    assert len(calls) == 1  # asked once, then read and written


def test_host_ranges_read_back_the_same_bytes(ext_raw):
    """Every piece host_ranges names, read from its host file (zeros for None), gives
    the bytes read() gives, for ranges over data, the hole and the tail."""
    img, _tree = ext_raw
    rnd = random.Random(5)
    with vdinspect.open(str(img)) as disk:
        fs = disk.filesystem(disk.filesystem_volumes()[0].key)
        src = fs.content(fs.lookup("/big.bin"))
        for _ in range(40):
            off = rnd.randrange(src.size)
            n = rnd.randrange(1, src.size - off + 1)
            pieces = src.host_ranges(off, n)
            assert pieces is not None and sum(k for _h, _o, k in pieces) == n
            got = b"".join(bytes(k) if h is None else os.pread(h.fd, k, o)
                           for h, o, k in pieces)
            assert got == src.read(off, n), (off, n)


def test_no_host_ranges_for_compressed_clusters(ext_raw, tmp_path):
    """Compressed QCOW2 clusters are not stored as themselves: the extractor reads them."""
    if not have("qemu-img"):
        pytest.skip("needs qemu-img")
    img, tree = ext_raw
    qcow = tmp_path / "ext4-c.qcow2"
    run("qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", str(img), str(qcow))
    with vdinspect.open(str(qcow)) as disk:
        fs = disk.filesystem(disk.filesystem_volumes()[0].key)
        src = fs.content(fs.lookup("/big.bin"))
        assert src.host_ranges(0, src.size) is None
    out = tmp_path / "out"
    extract_checked(qcow, tree, out, img)
    shutil.rmtree(out)


@pytest.mark.skipif(not have("qemu-img"), reason="needs qemu-img")
def test_extract_copies_through_a_backing_chain(ext_raw, tmp_path, monkeypatch):
    """An overlay holding nothing over the raw image: every byte comes from the layer
    below, still copied host file to host file."""
    img, tree = ext_raw
    base = tmp_path / "base.img"  # beside the overlay: a parent name is followed there
    shutil.copyfile(img, base)
    top = tmp_path / "top.qcow2"
    run("qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.img", "-F", "raw", str(top))
    calls = counting_copy(monkeypatch)
    extract_checked(top, tree, tmp_path / "out", img)
    assert calls


@pytest.mark.skipif(not have("mkntfs", "ntfscp"), reason="needs mkntfs and ntfscp")
def test_extract_copies_ntfs_runs(tmp_path, monkeypatch):
    """An NTFS file (ntfscp wrote it) is copied run by run in the kernel: the bytes given
    to ntfscp, and icat's."""
    img = tmp_path / "ntfs.img"
    with open(img, "wb") as f:
        f.truncate(64 * M)
    run("mkntfs", "-F", "-Q", "-q", str(img))
    data = random.Random(4).randbytes(5 * M + 777)
    src = tmp_path / "data.bin"
    src.write_bytes(data)
    run("ntfscp", str(img), str(src), "data.bin")
    calls = counting_copy(monkeypatch)
    with vdinspect.open(str(img)) as disk:
        fs = disk.filesystem(disk.filesystem_volumes()[0].key)
        content = fs.content(fs.lookup("/data.bin"))
        pieces = content.host_ranges(0, content.size)
        assert pieces and sum(k for _h, _o, k in pieces) == content.size
        report = fs.extract("/data.bin", tmp_path / "out")
    assert not report.skipped and not report.incomplete
    got = (tmp_path / "out" / "data.bin").read_bytes()
    assert got == data and calls
    icat = icat_bytes(img, "data.bin")
    if icat is not None:
        assert got == icat


@pytest.mark.skipif(not have("mkfs.fat", "mcopy"), reason="needs mkfs.fat and mtools")
def test_extract_copies_fat_cluster_runs(tmp_path, monkeypatch):
    """A FAT32 file (mcopy wrote it) is copied cluster run by run in the kernel: the bytes
    given to mcopy."""
    img = tmp_path / "fat.img"
    with open(img, "wb") as f:
        f.truncate(64 * M)
    run("mkfs.fat", "-F", "32", str(img))
    data = random.Random(6).randbytes(3 * M + 99)
    src = tmp_path / "data.bin"
    src.write_bytes(data)
    run("mcopy", "-i", str(img), str(src), "::/data.bin")
    calls = counting_copy(monkeypatch)
    with vdinspect.open(str(img)) as disk:
        fs = disk.filesystem(disk.filesystem_volumes()[0].key)
        report = fs.extract("/data.bin", tmp_path / "out")
    assert not report.skipped and not report.incomplete
    assert (tmp_path / "out" / "data.bin").read_bytes() == data and calls
