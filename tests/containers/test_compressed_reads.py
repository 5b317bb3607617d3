"""Large reads over compressed units (zlib QCOW2, streamOptimized VMDK, and a QCOW2 overlay
on a compressed base) inflate the units in tasks on the shared pool; 4 KiB reads stay in
the calling thread. Oracle: the bytes `qemu-img convert -O raw` writes for each image."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

import vdinspect
from tests import qemu_tools as q
from tests.conftest import needs_qemu
from vdinspect.containers import base

pytestmark = needs_qemu

K, M = 1 << 10, 1 << 20
CS = 64 * K


def text_raw(path: Path, clusters: int, seed: int = 4) -> None:
    """Compressible clusters (letters of a small alphabet), every seventh one zeros."""
    rnd = random.Random(seed)
    out = bytearray()
    for k in range(clusters):
        out += bytes(CS) if k % 7 == 2 else bytes(rnd.choice(b"abcdefg") for _ in range(512)) * (CS // 512)
    path.write_bytes(out)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    d = tmp_path_factory.mktemp("compressed")
    src = d / "source.raw"
    text_raw(src, 96)
    zq = d / "z.qcow2"
    q.qemu_img("convert", "-c", "-f", "raw", "-O", "qcow2", str(src), str(zq))
    sv = d / "s.vmdk"
    q.qemu_img("convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized",
               str(src), str(sv))
    top = d / "top.qcow2"
    q.create(top, 96 * CS, "qcow2", backing=zq, backing_fmt="qcow2")
    q.qemu_io(top, "write -q -P 0x33 100k 70k", "write -q -P 0x44 2m 64k", fmt="qcow2")
    return {name: (p, q.to_raw_bytes(p, d)) for name, p in
            (("zlib-qcow2", zq), ("stream-vmdk", sv), ("overlay-on-zlib", top))}


@pytest.fixture
def pool_calls(monkeypatch):
    """How many times the inflating pool was asked for (a task handed to another thread)."""
    calls = []
    real = base.inflate_pool

    def spy(workers):
        calls.append(workers)
        return real(workers)

    monkeypatch.setattr(base, "inflate_pool", spy)
    return calls


@pytest.mark.parametrize("name", ["zlib-qcow2", "stream-vmdk", "overlay-on-zlib"])
def test_large_reads_inflate_in_tasks(images, name, pool_calls):
    path, want = images[name]
    with vdinspect.open(str(path)) as disk:
        for img in disk.chain.layers:
            img.workers = 2
        assert disk.read(0, disk.size) == want
        assert pool_calls  # units handed to the pool
        buf = bytearray(3 * M + 123)
        disk.readinto(5 * K + 7, buf)
        assert bytes(buf) == want[5 * K + 7 : 5 * K + 7 + len(buf)]


@pytest.mark.parametrize("name", ["zlib-qcow2", "stream-vmdk", "overlay-on-zlib"])
def test_small_reads_stay_in_the_calling_thread(images, name, pool_calls):
    path, want = images[name]
    rnd = random.Random(9)
    with vdinspect.open(str(path)) as disk:
        for img in disk.chain.layers:
            img.workers = 2
        for _ in range(200):
            off = rnd.randrange(len(want) - 8 * K)
            n = rnd.choice([512, 4 * K, 8 * K])
            assert disk.read(off, n) == want[off : off + n]
    assert not pool_calls
