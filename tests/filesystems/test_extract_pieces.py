"""Extraction window by window through ``host_pieces``: stored bytes copied in the kernel
(copy_file_range; sendfile onto another filesystem; read and written when both refuse),
bytes not stored as themselves (compressed QCOW2 clusters, a replayed VHDX log) read, one
question a window. Bytes compared with the tree mke2fs -d was given, debugfs's dump and
qemu-img convert's raw image."""

from __future__ import annotations

import errno
import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

import vdinspect
from tests import vhdx_builder as vb
from tests.conftest import have
from tests.filesystems.test_extract_copy import counting_copy
from tests.tools import run
from vdinspect.filesystems.extract import Extractor
from vdinspect.io import NOT_STORED, mapped

pytestmark = pytest.mark.skipif(not have("mke2fs"), reason="needs mke2fs")
K, M = 1 << 10, 1 << 20
SHM = Path("/dev/shm")


@pytest.fixture(scope="module")
def ext_tree(tmp_path_factory):
    """An ext4 image (mke2fs -d) of big.bin, 64 MiB + 5000 bytes (compressible patterned
    data with random 64 KiB runs, a 3 MiB hole), and small.txt."""
    d = tmp_path_factory.mktemp("extpieces")
    tree = d / "tree"
    tree.mkdir()
    rnd = random.Random(17)
    pattern = bytes(range(256)) * 256  # 64 KiB that deflate shrinks
    with open(tree / "big.bin", "wb") as f:
        for i in range(1024 + 1):
            if 200 <= i < 248:  # 3 MiB hole
                f.seek(64 * K, os.SEEK_CUR)
                continue
            f.write(rnd.randbytes(64 * K) if i % 8 == 3 else pattern)
        f.write(b"tail" * 1250)
    (tree / "small.txt").write_bytes(b"hello\n" * 100)
    img = d / "ext4.img"
    run("mke2fs", "-q", "-F", "-t", "ext4", "-b", "4096", "-d", str(tree), str(img), "96M")
    return img, tree


def debugfs_dump(img: Path, name: str, out: Path) -> bytes | None:
    if not have("debugfs"):
        return None
    subprocess.run(["debugfs", "-R", f"dump /{name} {out}", str(img)], capture_output=True,
                   check=True)
    return out.read_bytes()


def extract(img: Path, dest: Path):
    with vdinspect.open(str(img)) as disk:
        fs = disk.filesystem(disk.filesystem_volumes()[0].key)
        return fs.extract("/", dest)


def check_tree(report, dest: Path, tree: Path, raw: Path) -> None:
    assert not report.skipped and not report.incomplete and not report.damaged
    for name in ("big.bin", "small.txt"):
        got = (dest / name).read_bytes()
        assert got == (tree / name).read_bytes(), name
    dump = debugfs_dump(raw, "big.bin", dest.parent / "debugfs-big.bin")
    if dump is not None:
        assert (dest / "big.bin").read_bytes() == dump
    fd = os.open(dest / "big.bin", os.O_RDONLY)
    try:  # the 3 MiB hole stays a hole on the host
        assert os.lseek(fd, 200 * 64 * K, os.SEEK_DATA) >= 248 * 64 * K
    finally:
        os.close(fd)


def counting_send(monkeypatch) -> list:
    calls: list = []
    real = os.sendfile

    def spy(out_fd, in_fd, offset, count, *args, **kwargs):
        calls.append(count)
        return real(out_fd, in_fd, offset, count, *args, **kwargs)

    monkeypatch.setattr(os, "sendfile", spy)
    return calls


@pytest.mark.skipif(not SHM.is_dir() or not hasattr(os, "sendfile"),
                    reason="needs /dev/shm and os.sendfile")
def test_extract_to_another_filesystem_sends(ext_tree, tmp_path, monkeypatch):
    """From an image on disk to /dev/shm (tmpfs): copy_file_range refuses across
    filesystems, sendfile copies in the kernel; asked once for the image file."""
    img, tree = ext_tree
    if os.stat(SHM).st_dev == os.stat(img).st_dev:
        pytest.skip("/dev/shm is on the image's filesystem here")
    copies = counting_copy(monkeypatch)
    sends = counting_send(monkeypatch)
    dest = Path(os.path.realpath(SHM)) / f"vdinspect-test-{os.getpid()}"
    try:
        report = extract(img, dest / "out")
        check_tree(report, dest / "out", tree, img)
    finally:
        shutil.rmtree(dest, ignore_errors=True)
    assert sends and sum(sends) >= 60 * M
    assert len(copies) <= 1  # refused once (EXDEV), then remembered for the image file


def test_extract_when_the_kernel_refuses_both(ext_tree, tmp_path, monkeypatch):
    """copy_file_range and sendfile both refused: read and written, the same bytes and
    holes, each asked once."""
    img, tree = ext_tree
    asked: list = []

    def refuse(*args, **kwargs):
        asked.append(args)
        raise OSError(errno.EINVAL, "refused")

    monkeypatch.setattr(os, "copy_file_range", refuse)
    monkeypatch.setattr(os, "sendfile", refuse)
    report = extract(img, tmp_path / "out")
    check_tree(report, tmp_path / "out", tree, img)
    assert len(asked) == 2


def count_host_questions(monkeypatch) -> list:
    """Every host_ranges/host_pieces question asked of a file's mapped bytes."""
    asked: list = []
    for name in ("host_ranges", "host_pieces"):
        real = getattr(mapped.MappedSource, name)

        def spy(self, offset, length, real=real, name=name):
            asked.append((name, offset, length))
            return real(self, offset, length)

        monkeypatch.setattr(mapped.MappedSource, name, spy)
    return asked


@pytest.mark.skipif(not have("qemu-img"), reason="needs qemu-img")
def test_compressed_qcow2_asked_once_a_window(ext_tree, tmp_path, monkeypatch):
    """qemu-img convert -c: every data cluster compressed. The 64 MiB file is asked about
    once per 64 MiB window (it was asked again after every 1 MiB read), and its bytes are
    the tree's."""
    img, tree = ext_tree
    qcow = tmp_path / "c.qcow2"
    run("qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", str(img), str(qcow))
    asked = count_host_questions(monkeypatch)
    copies = counting_copy(monkeypatch)
    report = extract(qcow, tmp_path / "out")
    check_tree(report, tmp_path / "out", tree, img)
    size = (tree / "big.bin").stat().st_size
    small = (tree / "small.txt").stat().st_size
    big = [a for a in asked if a[2] != small]
    windows = -(-size // Extractor.COPY)
    assert len(big) == windows == 2, asked  # 64 MiB + 69 KiB: two windows
    assert not copies  # nothing is stored as itself


@pytest.mark.skipif(not have("qemu-img", "qemu-io", "debugfs"),
                    reason="needs qemu-img, qemu-io and debugfs")
def test_partly_compressed_qcow2_copies_the_stored_clusters(ext_tree, tmp_path, monkeypatch):
    """Clusters rewritten by qemu-io after qemu-img convert -c are stored as themselves:
    within one window they are copied in the kernel and the compressed ones around them
    read; the bytes are debugfs's dump of qemu-img's raw image of the result."""
    img, _tree = ext_tree
    qcow = tmp_path / "mixed.qcow2"
    run("qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", str(img), str(qcow))
    blocks = run("debugfs", "-R", "bmap /big.bin 16", str(img)).split()
    phys = int(blocks[-1]) * 4096  # file offset 64 KiB
    run("qemu-io", "-f", "qcow2", "-c", f"write -P 0x5a {phys} {M}", str(qcow))
    raw = tmp_path / "mixed.raw"
    run("qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(qcow), str(raw))
    copies = counting_copy(monkeypatch)
    with vdinspect.open(str(qcow)) as disk:
        fs = disk.filesystem(disk.filesystem_volumes()[0].key)
        src = fs.content(fs.lookup("/big.bin"))
        pieces = src.host_pieces(0, 4 * M)
        kinds = [h is NOT_STORED for h, _o, _n in pieces]
        assert True in kinds and False in kinds
        assert sum(n for _h, _o, n in pieces) == 4 * M
        report = fs.extract("/big.bin", tmp_path / "out")
    assert not report.skipped and not report.damaged
    got = (tmp_path / "out" / "big.bin").read_bytes()
    assert got == debugfs_dump(raw, "big.bin", tmp_path / "dump.bin")
    assert got[64 * K:64 * K + M] == b"\x5a" * M
    assert M in copies or sum(copies) >= M  # the rewritten clusters went through the kernel


def vhdx_of(raw: bytes, sectors: list[int]) -> tuple[bytes, vb.VhdxBuilder]:
    """A VHDX (tests/vhdx_builder.py, from [MS-VHDX]) holding ``raw`` whose pending log
    carries the final bytes of the 4 KiB ``sectors`` (virtual offsets) of data blocks: on
    disk those sectors hold stale bytes until the log is replayed."""
    b = vb.VhdxBuilder(virtual_size=len(raw), log_length=2 * M, seed=3)
    for k in range(len(raw) // b.block_size):
        part = raw[k * b.block_size:(k + 1) * b.block_size]
        if any(part):
            b.put(k, part)
    where = b.layout()["where"]
    bs = b.block_size
    entry = [("data", where[("pb", v // bs)] + v % bs) for v in sectors]
    data = b.with_log([dict(start=40 * K, seq=100, entries=[entry])])
    return data, b


def test_vhdx_log_replayed_pieces_around_replayed_sectors(ext_tree, tmp_path, monkeypatch):
    """An ext4 volume in a VHDX whose log replays sectors of big.bin: those sectors are
    read (replayed in memory), the unreplaced data blocks around them copied in the
    kernel; the extracted bytes are the tree's (and qemu's, where qemu can replay a copy)."""
    img, tree = ext_tree
    raw = img.read_bytes()
    blocks = run("debugfs", "-R", "bmap /big.bin 0", str(img)).split() if have("debugfs") \
        else None
    if not blocks:
        pytest.skip("needs debugfs")
    start = int(blocks[-1]) * 4096
    sectors = [start + 4096 * i for i in (1, 2, 40, 300)]
    data, _b = vhdx_of(raw, sectors)
    path = tmp_path / "logged.vhdx"
    path.write_bytes(data)
    assert data[0:8] == b"vhdxfile"
    with vdinspect.open(str(path)) as disk:
        pieces = disk.host_pieces(start, M + 4096 * 300)
        assert disk.host_ranges(start, M) is None  # a replayed sector inside
        stale = [(h, n) for h, _o, n in pieces if h is NOT_STORED]
        assert sum(n for _h, n in stale) == 4 * 4096
        assert sum(n for _h, _o, n in pieces) == M + 4096 * 300
        got = b"".join(bytes(n) if h is None else disk.read(start + sum(
            m for _h, _o, m in pieces[:i]), n) if h is NOT_STORED else os.pread(h.fd, n, o)
            for i, (h, o, n) in enumerate(pieces))
        assert got == raw[start:start + M + 4096 * 300]
    copies = counting_copy(monkeypatch)
    report = extract(path, tmp_path / "out")
    check_tree(report, tmp_path / "out", tree, img)
    assert copies
    if have("qemu-img"):  # qemu replays the log of a writable copy when it opens it
        work = tmp_path / "qemu.vhdx"
        shutil.copyfile(path, work)
        out = tmp_path / "qemu.raw"
        done = subprocess.run(["qemu-img", "check", "-r", "all", "-f", "vhdx", str(work)],
                              capture_output=True)
        if done.returncode == 0:
            run("qemu-img", "convert", "-f", "vhdx", "-O", "raw", str(work), str(out))
            assert out.read_bytes()[:len(raw)] == raw


def _ntfs(img: Path, src: Path) -> None:
    run("mkntfs", "-F", "-Q", "-q", str(img))
    run("ntfscp", str(img), str(src), "data.bin")


def _fat(img: Path, src: Path) -> None:
    run("mkfs.fat", "-F", "32", str(img))
    run("mcopy", "-i", str(img), str(src), "::/data.bin")


@pytest.mark.skipif(not have("qemu-img", "qemu-io"), reason="needs qemu-img and qemu-io")
@pytest.mark.parametrize("kind, tools", [("ntfs", ("mkntfs", "ntfscp")),
                                         ("fat", ("mkfs.fat", "mcopy"))])
def test_runs_of_a_partly_compressed_qcow2(kind, tools, tmp_path, monkeypatch):
    """An NTFS or FAT32 file (ntfscp, mcopy wrote it) in a QCOW2 made by qemu-img convert
    -c, every other MiB of the disk then rewritten uncompressed with its own bytes by
    qemu-io (the disk reads the same): the runs answer pieces of both kinds, the stored
    ones go through the kernel, and the bytes are the ones given to the tool."""
    if not have(*tools):
        pytest.skip(f"needs {' and '.join(tools)}")
    img = tmp_path / f"{kind}.img"
    with open(img, "wb") as f:
        f.truncate(64 * M)
    rnd = random.Random(12)
    data = b"".join(rnd.randbytes(4 * K) + bytes(range(256)) * 48 for _ in range(400))
    src = tmp_path / "data.bin"
    src.write_bytes(data)
    (_ntfs if kind == "ntfs" else _fat)(img, src)
    qcow = tmp_path / f"{kind}.qcow2"
    run("qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", str(img), str(qcow))
    raw = img.read_bytes()
    cmds = []
    for k in range(0, 64, 2):
        seg = tmp_path / f"seg{k}.bin"
        seg.write_bytes(raw[k * M:(k + 1) * M])
        cmds += ["-c", f"write -s {seg} {k * M} {M}"]
    run("qemu-io", "-f", "qcow2", *cmds, str(qcow))
    copies = counting_copy(monkeypatch)
    with vdinspect.open(str(qcow)) as disk:
        fs = disk.filesystem(disk.filesystem_volumes()[0].key)
        content = fs.content(fs.lookup("/data.bin"))
        pieces = content.host_pieces(0, content.size)
        assert sum(n for _h, _o, n in pieces) == content.size == len(data)
        assert {h is NOT_STORED for h, _o, _n in pieces} == {True, False}
        report = fs.extract("/data.bin", tmp_path / "out")
    assert not report.skipped and not report.damaged and not report.incomplete
    assert (tmp_path / "out" / "data.bin").read_bytes() == data
    assert copies
