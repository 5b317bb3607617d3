"""``io.ZstdSource`` on frames written here from RFC 8878 (frame header, RLE and raw
blocks), checked against the zstandard decoder and the bytes they stand for."""

from __future__ import annotations

import pytest

import vdinspect
from vdinspect.io import MemorySource
from vdinspect.io import zstdsource as zs

zstandard = pytest.importorskip("zstandard")


def frame(blocks: list[tuple[int, bytes, int]], *, content_size: int | None = None) -> bytes:
    """A zstd frame: magic; Frame_Header_Descriptor (FCS flag 3 = 8 bytes when a size is
    given, else 0); Window_Descriptor 0x58 (Exponent 11: a 2 MiB window); then blocks
    (type, payload, regenerated size), each behind a 3-byte little-endian Block_Header:
    Last_Block bit 0, Block_Type bits 1-2, Block_Size bits 3-23."""
    fhd = 0xC0 if content_size is not None else 0x00
    out = bytearray(b"\x28\xb5\x2f\xfd" + bytes([fhd, 0x58]))
    if content_size is not None:
        out += content_size.to_bytes(8, "little")
    for k, (btype, payload, size) in enumerate(blocks):
        last = k == len(blocks) - 1
        out += (int(last) | btype << 1 | size << 3).to_bytes(3, "little") + payload
    return bytes(out)


def rle(byte: int, n: int) -> tuple[int, bytes, int]:
    return (1, bytes([byte]), n)


def raw(data: bytes) -> tuple[int, bytes, int]:
    return (0, data, len(data))


def test_hand_made_frames_decode_as_zstandard_does(tmp_path):
    one = frame([rle(0x41, 1000), raw(b"hello"), rle(0x42, 70000)])
    two = frame([raw(b"xyz"), rle(0, 5)], content_size=8)
    want = b"A" * 1000 + b"hello" + b"B" * 70000 + b"xyz" + bytes(5)
    reader = zstandard.ZstdDecompressor().stream_reader(one + two, read_across_frames=True)
    assert reader.read(1 << 20) == want  # the spec reading agrees with libzstd's
    with zs.spool_folder(tmp_path):
        z = zs.ZstdSource(MemorySource(one), limit=1 << 20)  # one frame: spooled
        assert z.mode == "spool" and z.read(0, z.size) == want[:71005]
        z.close()
        z = zs.ZstdSource(MemorySource(one + two), limit=1 << 20)  # the first size counted
        assert z.mode == "frames" and z.read(0, z.size) == want
        assert [f.content_size for f in z.frames] == [71005, 8]
        z.close()
        sized = frame([rle(0x41, 1000), raw(b"hello"), rle(0x42, 70000)], content_size=71005)
        z = zs.ZstdSource(MemorySource(sized + two), limit=1 << 20)
        assert z.mode == "frames" and z.read(0, z.size) == want
        assert z.read(70990, 20) == want[70990:71010]  # across the two frames
        z.close()
    assert list(tmp_path.iterdir()) == []


def test_cut_and_trailing_data_are_damage(tmp_path):
    good = frame([rle(0x41, 1000), raw(b"hello")])
    with zs.spool_folder(tmp_path):
        with pytest.raises(vdinspect.CorruptImage, match="cut short"):
            zs.ZstdSource(MemorySource(good[:-2]), limit=1 << 20)
        with pytest.raises(vdinspect.CorruptImage, match="no zstd frame"):
            zs.ZstdSource(MemorySource(good + b"junk" * 2000), limit=1 << 20)
        z = zs.ZstdSource(MemorySource(good + b"junk" * 2000), limit=1 << 20, salvage=True)
        assert z.read(0, z.size) == b"A" * 1000 + b"hello" and "no zstd frame" in z.damage[1]
        with pytest.raises(vdinspect.CorruptImage, match="reserved bit"):
            zs.ZstdSource(MemorySource(good[:4] + b"\x08" + good[5:]), limit=1 << 20)
        with pytest.raises(vdinspect.CorruptImage, match="more than 4096 bytes"):
            zs.ZstdSource(MemorySource(frame([rle(0, 100000)])), limit=4096)


def test_many_tiny_blocks_stop_the_walk_not_the_read(tmp_path, monkeypatch):
    """A stream of 200,000 one-byte RLE blocks: over the block budget the index is given
    up and the stream is spooled whole, still read right."""
    data = frame([rle(k % 251, 3) for k in range(200_000)])
    want = b"".join(bytes([k % 251]) * 3 for k in range(200_000))
    monkeypatch.setattr(zs, "MAX_BLOCKS", 50_000)
    with zs.spool_folder(tmp_path):
        frames, damage, complete = zs.walk_frames(MemorySource(data), 10, 50_000)
        assert (frames, damage, complete) == ([], None, False)
        z = zs.ZstdSource(MemorySource(data), limit=1 << 30)
        assert z.mode == "spool" and z.read(0, z.size) == want
        z.close()
