"""vdinspect.io.OverlaySource: replaced ranges (bytes, zeros, copies) over a base source."""

from __future__ import annotations

import os
import random

from vdinspect.io import NOT_STORED, FileSource, MemorySource, OverlaySource, merge_ranges

K = 1 << 10


class DamagedMemory(MemorySource):
    """Bytes in memory that claim some ranges could not be read."""

    def __init__(self, data: bytes, bad: list[tuple[int, int]]) -> None:
        super().__init__(data, name="damaged")
        self.bad = bad

    def _damage_pairs(self, start, end):
        return [(max(a, start), min(b, end)) for a, b in self.bad if a < end and b > start]


def test_copy_reads_from_elsewhere_and_later_writes_win():
    data = random.Random(1).randbytes(64 * K)
    ov = OverlaySource(MemorySource(data), name="vol (journal replayed)")
    ov.copy(4 * K, 4 * K, 40 * K)  # block 1 <- its committed copy at block 10
    ov.write(4 * K, b"\xc0\x3b\x39\x98")  # an escaped magic put back on top
    ov.copy(12 * K, 1 * K, 2 * K, MemorySource(bytes(range(256)) * 16))
    want = bytearray(data)
    want[4 * K : 8 * K] = data[40 * K : 44 * K]
    want[4 * K : 4 * K + 4] = b"\xc0\x3b\x39\x98"
    want[12 * K : 13 * K] = (bytes(range(256)) * 16)[2 * K : 3 * K]
    assert ov.size == len(data) and ov.name == "vol (journal replayed)"
    assert ov.read(0, ov.size) == bytes(want)
    for off, n in ((4 * K + 2, 9), (4 * K + 4, 4 * K), (12 * K - 5, 1 * K + 10), (7, 33)):
        assert ov.read(off, n) == bytes(want[off : off + n])
        buf = bytearray(n)
        ov.readinto(off, buf)
        assert buf == want[off : off + n]
    assert ov.segments == [(4 * K, 8 * K, False), (12 * K, 13 * K, False)]


def test_overwriting_the_middle_of_a_copy_keeps_both_ends():
    data = bytes(range(256)) * 32
    ov = OverlaySource(MemorySource(data))
    ov.copy(1 * K, 2 * K, 5 * K)
    ov.write(1 * K + 100, None, 50)
    want = bytearray(data)
    want[1 * K : 3 * K] = data[5 * K : 7 * K]
    want[1 * K + 100 : 1 * K + 150] = bytes(50)
    assert ov.read(0, ov.size) == bytes(want)


def test_damage_passes_through_unreplaced_and_copied_bytes_only():
    base = DamagedMemory(bytes(32 * K), [(1 * K, 2 * K), (20 * K, 24 * K)])
    ov = OverlaySource(base)
    ov.write(1 * K + 512, b"x" * 1024)  # covers the end of the first damaged range
    ov.copy(8 * K, 1 * K, 20 * K)  # a copy of damaged bytes is damaged
    ov.write(31 * K, None, 2 * K)  # zeros, growing the source
    got = ov.damaged_ranges()
    assert got == [(1 * K, 512), (8 * K, 1 * K), (20 * K, 4 * K)]
    assert ov.damaged_ranges(8 * K + 100, 200) == [(8 * K + 100, 200)]
    assert merge_ranges([(a, a + n) for a, n in ov.damaged_ranges(30 * K, 3 * K)]) == []


def test_reads_beside_and_across_replacements_match_the_bytes_built():
    """Reads that no replacement touches come straight from the base; reads that touch one,
    or run past the base into a grown end, are filled piece by piece: both equal the
    bytes laid out here by hand, at every offset and length tried."""
    data = random.Random(2).randbytes(48 * K)
    ov = OverlaySource(MemorySource(data))
    ov.write(10 * K, b"r" * (2 * K))
    ov.write(30 * K, None, 1 * K)
    ov.write(48 * K - 100, b"g" * 612)  # past the base's end: the source grows
    ov.extend(50 * K)  # and grows again with zeros no replacement holds
    want = bytearray(data) + bytearray(2 * K)
    want[10 * K : 12 * K] = b"r" * (2 * K)
    want[30 * K : 31 * K] = bytes(1 * K)
    want[48 * K - 100 : 48 * K + 512] = b"g" * 612
    assert ov.size == len(want)
    rnd = random.Random(3)
    edges = [0, 10 * K, 12 * K, 30 * K, 31 * K, 48 * K - 100, 48 * K, 48 * K + 512, len(want)]
    for _ in range(400):
        a = min(rnd.choice(edges) + rnd.randrange(-300, 300), len(want) - 1)
        a = max(a, 0)
        n = rnd.randrange(1, min(9 * K, len(want) - a) + 1)
        assert ov.read(a, n) == bytes(want[a : a + n]), (a, n)
        buf = bytearray(n)
        ov.readinto(a, buf)
        assert buf == want[a : a + n], (a, n)


def test_host_pieces_around_replaced_ranges(tmp_path):
    """A base in a host file with bytes, zeros and copies laid over it by hand: host_pieces
    names the unreplaced bytes and the copies as stretches of the host file, the zeros as
    zeros and only the bytes held in memory as not stored; the pieces read back (pread,
    zeros, the overlay for what is not stored) give the bytes laid out here, and
    host_ranges still gives up on any range holding bytes kept in memory."""
    data = random.Random(4).randbytes(64 * K)
    path = tmp_path / "base.bin"
    path.write_bytes(data)
    base = FileSource(path)
    ov = OverlaySource(base)
    ov.write(8 * K, b"m" * (4 * K))  # in memory: a replayed log sector
    ov.write(20 * K, None, 2 * K)  # zeros
    ov.copy(30 * K, 4 * K, 50 * K)  # the committed copy at 50 KiB, read when asked
    ov.write(31 * K, b"e" * 4)  # an escaped magic on top of the copy
    ov.write(64 * K - 512, b"g" * 1536)  # past the base's end: grows by 1 KiB
    want = bytearray(data) + bytearray(1 * K)
    want[8 * K : 12 * K] = b"m" * (4 * K)
    want[20 * K : 22 * K] = bytes(2 * K)
    want[30 * K : 34 * K] = data[50 * K : 54 * K]
    want[31 * K : 31 * K + 4] = b"e" * 4
    want[64 * K - 512 : 65 * K] = b"g" * 1536
    assert ov.size == len(want)
    pieces = ov.host_pieces(0, ov.size)
    assert pieces == [
        (base, 0, 8 * K), (NOT_STORED, 0, 4 * K), (base, 12 * K, 8 * K), (None, 0, 2 * K),
        (base, 22 * K, 8 * K), (base, 50 * K, 1 * K), (NOT_STORED, 0, 4),
        (base, 51 * K + 4, 3 * K - 4), (base, 34 * K, 30 * K - 512), (NOT_STORED, 0, 1536)]
    rnd = random.Random(5)
    for _ in range(300):
        a = rnd.randrange(ov.size)
        n = rnd.randrange(1, ov.size - a + 1)
        got = ov.host_pieces(a, n)
        assert sum(k for _h, _o, k in got) == n
        out, pos = bytearray(), a
        for h, o, k in got:
            if h is None:
                out += bytes(k)
            elif h is NOT_STORED:
                out += ov.read(pos, k)
            else:
                out += os.pread(h.fd, k, o)
            pos += k
        assert out == want[a : a + n], (a, n)
        memory = any(h is NOT_STORED for h, _o, _k in got)
        assert (ov.host_ranges(a, n) is None) == memory
    base.close()
