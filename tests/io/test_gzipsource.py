"""GzipSource: a gzip stream read in place with random access, against the real ``gzip``
tool's output (single and concatenated members) and the bytes it compressed."""

from __future__ import annotations

import random

import pytest

from tests.conftest import have
from tests.tools import run
from vdinspect.errors import CorruptImage
from vdinspect.io import MemorySource
from vdinspect.io import gzipsource as gz

pytestmark = pytest.mark.skipif(not have("gzip"), reason="gzip missing")


def sample(seed: int) -> bytes:
    rnd = random.Random(seed)
    return b"".join(bytes([rnd.randrange(4)]) * rnd.randrange(1, 4000)
                    + rnd.randbytes(rnd.randrange(300)) for _ in range(3000))


def gzip_tool(data: bytes, tmp_path, name: str) -> bytes:
    p = tmp_path / name
    p.write_bytes(data)
    run("gzip", "-f", "-6", p)
    return (tmp_path / (name + ".gz")).read_bytes()


def test_random_and_forward_reads(tmp_path, monkeypatch):
    monkeypatch.setattr(gz, "MIN_STEP", 1 << 20)  # many checkpoints on a small stream
    data = sample(1)
    cut = len(data) // 3
    stream = gzip_tool(data[:cut], tmp_path, "a") + gzip_tool(data[cut:], tmp_path, "b")
    src = gz.GzipSource(MemorySource(stream), limit=len(data))
    assert src.size == len(data) and len(src.points) > 3
    rnd = random.Random(7)
    for _ in range(100):
        a = rnd.randrange(len(data))
        n = min(rnd.randrange(3 << 20), len(data) - a)
        assert src.read(a, n) == data[a:a + n]
    got = b"".join(src.read(p, min(50_000, len(data) - p)) for p in range(0, len(data), 50_000))
    assert got == data


def test_bounds_and_damage(tmp_path):
    data = sample(2)
    stream = gzip_tool(data, tmp_path, "c")
    with pytest.raises(CorruptImage, match="more than"):
        gz.GzipSource(MemorySource(stream), limit=len(data) - 1)
    cut = MemorySource(stream[: len(stream) // 2])
    with pytest.raises(CorruptImage, match="truncated"):
        gz.GzipSource(cut, limit=len(data))
    part = gz.GzipSource(cut, limit=len(data), salvage=True)
    assert part.damage is not None and 0 < part.size < len(data)
    assert part.read(0, part.size) == data[: part.size]
    bad = bytearray(stream)
    bad[len(bad) // 2] ^= 0xFF
    with pytest.raises(CorruptImage):
        gz.GzipSource(MemorySource(bytes(bad)), limit=len(data))
