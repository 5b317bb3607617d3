"""``Concat.readinto`` fills the buffer from each member in place; every window equals the
members' bytes joined (the oracle) and the plain ``read``."""

from __future__ import annotations

import random

import pytest

import vdinspect
from vdinspect.io import Concat, FileSource, MemorySource, Slice, Zero


def test_concat_readinto_equals_joined_bytes(tmp_path):
    rng = random.Random(7)
    blob = rng.randbytes(5000)
    (tmp_path / "f.bin").write_bytes(blob)
    with FileSource(tmp_path / "f.bin") as f:
        pieces = [MemorySource(b"abc"), Zero(0), Slice(f, 100, 1000), Zero(77),
                  MemorySource(b""), f, MemorySource(rng.randbytes(33))]
        oracle = b"abc" + blob[100:1100] + bytes(77) + blob + pieces[-1].read(0, 33)
        c = Concat(pieces)
        assert c.size == len(oracle)
        cases = [(0, c.size), (0, 0), (c.size, 0), (2, 2), (3, 1000), (1000, 200)]
        cases += [(a, rng.randrange(0, c.size - a + 1))
                  for a in (rng.randrange(c.size) for _ in range(200))]
        for off, n in cases:
            buf = bytearray(n)
            c.readinto(off, buf)
            assert bytes(buf) == oracle[off:off + n] == c.read(off, n)
        big = memoryview(bytearray(c.size + 8))[4:-4]  # a view inside a larger buffer
        c.readinto(0, big)
        assert big.tobytes() == oracle


def test_concat_readinto_refuses_past_the_end():
    c = Concat([MemorySource(b"12345"), MemorySource(b"678")])
    with pytest.raises(vdinspect.InvalidArgument):
        c.readinto(6, bytearray(3))
    with pytest.raises(vdinspect.InvalidArgument):
        c.readinto(-1, bytearray(1))
