"""``host_pieces``: host ranges that name what is not stored as itself instead of giving up,
for a file's mapped runs (holes, lost runs) and a concatenation of sources that can and
cannot say; checked against the bytes laid out here by hand."""

from __future__ import annotations

import os
import random

from vdinspect.io import (
    NOT_STORED,
    Concat,
    FileSource,
    MemorySource,
    Slice,
    Zero,
    stored_only,
)
from vdinspect.io.mapped import MappedSource

K = 1 << 10


def read_pieces(src, pieces, pos: int) -> bytes:
    """The bytes the pieces name: pread from the host file, zeros, the source itself where
    they are not stored."""
    out = bytearray()
    for h, o, k in pieces:
        if h is None:
            out += bytes(k)
        elif h is NOT_STORED:
            out += src.read(pos, k)
        else:
            out += os.pread(h.fd, k, o)
        pos += k
    return bytes(out)


def test_mapped_runs_holes_and_lost_runs(tmp_path):
    dev_bytes = random.Random(8).randbytes(64 * K)
    path = tmp_path / "dev.bin"
    path.write_bytes(dev_bytes)
    dev = FileSource(path)
    # file [0, 8K) at dev 40K; hole [8K, 12K); lost [12K, 16K); [16K, 20K) at dev 4K; hole
    src = MappedSource(dev, 24 * K, [0, 16 * K], [8 * K, 20 * K], [40 * K, 4 * K],
                       lost=[(12 * K, 16 * K)], name="f")
    want = dev_bytes[40 * K:48 * K] + bytes(8 * K) + dev_bytes[4 * K:8 * K] + bytes(4 * K)
    assert src.read(0, src.size) == want
    assert src.host_pieces(0, src.size) == [
        (dev, 40 * K, 8 * K), (None, 0, 4 * K), (NOT_STORED, 0, 4 * K), (dev, 4 * K, 4 * K),
        (None, 0, 4 * K)]
    rnd = random.Random(9)
    for _ in range(200):
        a = rnd.randrange(src.size)
        n = rnd.randrange(1, src.size - a + 1)
        got = src.host_pieces(a, n)
        assert sum(k for _h, _o, k in got) == n
        assert read_pieces(src, got, a) == want[a:a + n], (a, n)
        lost = a < 16 * K and a + n > 12 * K
        assert (src.host_ranges(a, n) is None) == lost
        if not lost:
            assert stored_only(got) == src.host_ranges(a, n)
    dev.close()


def test_concat_of_sources_that_can_and_cannot_say(tmp_path):
    host_bytes = random.Random(10).randbytes(16 * K)
    path = tmp_path / "host.bin"
    path.write_bytes(host_bytes)
    host = FileSource(path)
    mem = random.Random(11).randbytes(3 * K)  # MemorySource: no host ranges at all
    src = Concat([Slice(host, 2 * K, 4 * K), MemorySource(mem), Zero(5 * K),
                  Slice(host, 6 * K, 2 * K), Slice(host, 8 * K, 1 * K)])
    want = host_bytes[2 * K:6 * K] + mem + bytes(5 * K) + host_bytes[6 * K:9 * K]
    assert src.host_pieces(0, src.size) == [
        (host, 2 * K, 4 * K), (NOT_STORED, 0, 3 * K), (None, 0, 5 * K), (host, 6 * K, 3 * K)]
    assert src.host_ranges(0, src.size) is None
    for a, n in ((0, src.size), (3 * K, 2 * K), (5 * K, 7 * K), (12 * K, 3 * K)):
        assert read_pieces(src, src.host_pieces(a, n), a) == want[a:a + n]
    host.close()
