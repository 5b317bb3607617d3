"""Conversion of bytes stored as themselves: copied host file to output (copy_file_range on
one filesystem, sendfile across filesystems, read and written where both are refused),
host-file holes and
all-zero 64 KiB blocks left as holes. Oracles: the raw file qemu-img built each image from
(plus the zeros qemu-io wrote into allocated blocks), `qemu-img compare`, and SEEK_DATA on
the output checked block by block against that raw file."""

from __future__ import annotations

import errno
import json
import os
import random
from pathlib import Path

import pytest

import vdinspect
from tests import qemu_tools as q
from tests.conftest import needs_qemu

pytestmark = needs_qemu

K, M = 1 << 10, 1 << 20
BLOCK = 64 * K
SIZE = 24 * M

FORMATS = [("qcow2", []), ("vmdk", ["subformat=monolithicSparse"]), ("vpc", ["subformat=dynamic"]),
           ("vhdx", []), ("vdi", []), ("parallels", []), ("raw", [])]


def source(path: Path) -> bytes:
    """A sparse raw disk: random pieces of odd lengths at odd offsets, holes between."""
    rnd = random.Random(11)
    data = bytearray(SIZE)
    for _ in range(40):
        at = rnd.randrange(SIZE - 200 * K)
        n = rnd.randrange(1, 200 * K)
        data[at : at + n] = rnd.randbytes(n)
    with open(path, "wb") as f:
        f.truncate(SIZE)
        for at in range(0, SIZE, BLOCK):
            if any(data[at : at + BLOCK]):
                f.seek(at)
                f.write(data[at : at + BLOCK])
    return bytes(data)


@pytest.fixture(scope="module", params=FORMATS, ids=[f for f, _ in FORMATS])
def image(request, tmp_path_factory):
    fmt, opts = request.param
    d = tmp_path_factory.mktemp(fmt)
    src = d / "source.raw"
    data = bytearray(source(src))
    img = d / f"image.{fmt}"
    args = ["convert", "-f", "raw", "-O", fmt] + [x for o in opts for x in ("-o", o)]
    q.qemu_img(*args, str(src), str(img))
    # zeros written into blocks that hold data (the format keeps them allocated), and data
    # where qemu-img left a hole
    q.qemu_io(img, "write -P 0 1m 192k", "write -P 0x5a 5m 4k", "write -P 0 5m 512",
              fmt=fmt)
    data[1 * M : 1 * M + 192 * K] = bytes(192 * K)
    data[5 * M : 5 * M + 4 * K] = b"\x5a" * (4 * K)
    data[5 * M : 5 * M + 512] = bytes(512)
    size = json.loads(q.qemu_img("info", "--output=json", str(img)))["virtual-size"]
    return img, fmt, bytes(data) + bytes(size - len(data))  # VHD: CHS rounds the size up


def data_blocks(path: Path) -> list[bool]:
    """For each 64 KiB block of ``path``: does the file hold data there (SEEK_DATA)?"""
    fd = os.open(path, os.O_RDONLY)
    try:
        out = []
        for at in range(0, os.fstat(fd).st_size, BLOCK):
            try:
                out.append(os.lseek(fd, at, os.SEEK_DATA) < at + BLOCK)
            except OSError:  # ENXIO: only a hole follows
                out.append(False)
        return out
    finally:
        os.close(fd)


def check_output(out: Path, img: Path, fmt: str, data: bytes, written: int) -> None:
    assert out.read_bytes() == data
    q.qemu_img("compare", "-q", "-f", fmt, "-F", "raw", str(img), str(out))
    nonzero = [any(data[a : a + BLOCK]) for a in range(0, len(data), BLOCK)]
    assert data_blocks(out) == nonzero  # zero blocks are holes, the others data
    # every nonzero byte written, no zero block (a block cut by a chunk's edge: in part)
    assert len(data) - data.count(0) <= written <= sum(nonzero) * BLOCK


def places(tmp_path: Path) -> list[Path]:
    """Output folders: the test's own (same filesystem as the image: copy_file_range)
    and /dev/shm when it is another filesystem (copy_file_range refuses: sendfile)."""
    out = [tmp_path]
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and os.stat(shm).st_dev != os.stat(tmp_path).st_dev:
        out.append(shm)
    return out


@pytest.mark.parametrize("chunk", [8 * M, 3 * BLOCK + 5 * K])
def test_stored_bytes_copied_with_holes(image, chunk, tmp_path):
    img, fmt, data = image
    for folder in places(tmp_path):
        out = folder / f"vdinspect-test-{os.getpid()}-{fmt}.raw"
        try:
            with vdinspect.open(str(img)) as disk:
                assert disk.host_ranges(0, disk.size) is not None  # the path under test
                written = disk.to_raw(out, chunk=chunk)
            check_output(out, img, "raw" if fmt == "raw" else fmt, data, written)
        finally:
            out.unlink(missing_ok=True)


@pytest.mark.parametrize("refused", [("copy_file_range",), ("copy_file_range", "sendfile")])
def test_kernel_refusing_the_copy(image, refused, tmp_path, monkeypatch):
    """Where the kernel will not copy (no copy_file_range; no sendfile either), the bytes
    are copied the next way, asked once per host file, and come out the same."""
    img, fmt, data = image
    calls = []

    def refuse(*args):
        calls.append(args)
        raise OSError(errno.ENOSYS, "not here")

    for name in refused:
        monkeypatch.setattr(os, name, refuse)
    out = tmp_path / "out.raw"
    with vdinspect.open(str(img)) as disk:
        written = disk.to_raw(out)
    check_output(out, img, fmt, data, written)
    assert len(calls) == len(refused)  # each way asked once, then the next one used


def test_overlay_host_ranges(tmp_path):
    """An overlay (VHDX log replay) answers host ranges for what it does not hold in
    memory: the base's bytes, copies of the base, zeros; None over replaced bytes."""
    from vdinspect.io import FileSource, OverlaySource

    p = tmp_path / "base.bin"
    p.write_bytes(bytes(range(256)) * 64)  # 16 KiB
    base = FileSource(str(p))
    try:
        ov = OverlaySource(base)
        ov.write(4096, None, 1024)           # zeros over [4096, 5120)
        ov.copy(8192, 512, 0)                # [8192, 8704) reads as base [0, 512)
        ov.write(12288, b"held in memory")   # bytes kept in memory
        ov.extend(20480)                     # 4 KiB of zeros past the base
        assert ov.host_ranges(0, 8704) == [(base, 0, 4096), (None, 0, 1024),
                                           (base, 5120, 3072), (base, 0, 512)]
        assert ov.host_ranges(16000, 4480) == [(base, 16000, 384), (None, 0, 4096)]
        assert ov.host_ranges(12000, 1000) is None
    finally:
        base.close()


def test_data_spans_of_a_sparse_host_file(tmp_path):
    """Where a host file holds data, asked piece by piece in any order (the remembered
    extent of the conversion) and at once: the stretches written, the rest holes."""
    from vdinspect.disk.export import RawOutput
    from vdinspect.io import FileSource

    p = tmp_path / "host.bin"
    written = [(0, 4 * K), (64 * K, 68 * K), (M, M + 8 * K), (2 * M - 4 * K, 2 * M)]
    with open(p, "wb") as f:
        f.truncate(2 * M)
        for a, b in written:
            f.seek(a)
            f.write(b"\x01" * (b - a))
    if data_blocks(p) != [any(a < e and s < b for s, e in written) for a in range(0, 2 * M, BLOCK)
                          for b in [a + BLOCK]]:
        pytest.skip("this filesystem does not report holes")
    src = FileSource(str(p))
    out = RawOutput(-1)
    rnd = random.Random(5)
    try:
        asks = [(0, 2 * M)] + [tuple(sorted(rnd.sample(range(2 * M + 1), 2))) for _ in range(300)]
        for a, b in asks:
            want = [(max(a, s), min(b, e)) for s, e in written if s < b and a < e]
            assert src.data_spans(a, b - a) == want
            assert out.data_spans(src, a, b) == want
    finally:
        src.close()
