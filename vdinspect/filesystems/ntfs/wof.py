"""WOF ("Windows Overlay Filter", CompactOS) compressed files and XPRESS Huffman.

A WOF-compressed file carries a reparse point with tag IO_REPARSE_TAG_WOF (0x80000017)
whose data is WOF_EXTERNAL_INFO (version 1, provider 2 = file) then
FILE_PROVIDER_EXTERNAL_INFO_V1 (version 1, algorithm: 0 XPRESS4K, 1 LZX, 2 XPRESS8K,
3 XPRESS16K). The unnamed $DATA holds no data (its size is the uncompressed size); the
named $DATA "WofCompressedData" holds a chunk offset table (one entry per chunk after the
first: u32, or u64 for files of 4 GiB and more) then the chunks, each compressed
independently, or stored as is when compressing did not make it smaller.

XPRESS Huffman (LZ77+Huffman) follows [MS-XCA] 2.1-2.2: per 64 KiB of output, a table of
512 4-bit code lengths, then a bit stream of 16-bit little-endian words read MSB first.
LZX chunks (32 KiB) are decoded by lzx.py.
"""

from __future__ import annotations

import struct

from construct import Int32ul, Struct

from ...errors import CorruptImage, UnsupportedFeature
from ...io import ByteSource, LRUCache
from .lzx import LZXError
from .lzx import decompress as lzx_decompress

WofExternalInfo = Struct(
    "version" / Int32ul * "1",
    "provider" / Int32ul * "1 = WIM-backed, 2 = file (per-file compression)",
)

FileProviderExternalInfoV1 = Struct(
    "version" / Int32ul * "1",
    "algorithm" / Int32ul * "0 XPRESS4K, 1 LZX, 2 XPRESS8K, 3 XPRESS16K",
    "flags" / Int32ul * "0",
)

ALGORITHMS = {
    0: ("xpress4k", 4096),
    1: ("lzx", 32768),
    2: ("xpress8k", 8192),
    3: ("xpress16k", 16384),
}
WOF_STREAM = "WofCompressedData"


class XpressError(ValueError):
    """XPRESS Huffman data that cannot be decoded."""


def _decode_table(lengths: list[int]) -> list[int]:
    """A 2**15-entry table: for each 15-bit prefix, (symbol << 4) | code length."""
    return huffman_table(lengths, 15, 4)


def huffman_table(lengths, bits: int, shift: int) -> list[int]:
    """Canonical Huffman decode table over ``bits``-bit prefixes (codes by length, then
    symbol): entry = (symbol << shift) | length, 0 for prefixes no code uses."""
    table = [0] * (1 << bits)
    pos = 0
    for length, sym in sorted((n, s) for s, n in enumerate(lengths) if n):
        if length > bits:
            raise XpressError(f"code length {length} longer than {bits} bits")
        span = 1 << (bits - length)
        if pos + span > 1 << bits:
            raise XpressError("Huffman code lengths over-subscribe the code space")
        table[pos : pos + span] = [(sym << shift) | length] * span
        pos += span
    return table


def xpress_huffman_decompress(data: bytes, size: int) -> bytes:
    """Decompress an LZ77+Huffman buffer to exactly ``size`` bytes."""
    out = bytearray()
    p = 0
    n = len(data)
    padded = data + b"\0\0\0\0\0\0\0\0"
    u16 = struct.Struct("<H").unpack_from
    while len(out) < size:
        if p + 260 > n:
            raise XpressError(f"Huffman table at byte {p} is cut off")
        lengths = []
        for b in data[p : p + 256]:
            lengths.append(b & 15)
            lengths.append(b >> 4)
        table = _decode_table(lengths)
        p += 256
        cur = (u16(padded, p)[0] << 16) | u16(padded, p + 2)[0]
        p += 4
        extra = 16
        block_end = min(size, len(out) + 65536)
        while len(out) < block_end:
            entry = table[cur >> 17]
            length = entry & 15
            if length == 0:
                raise XpressError(f"invalid Huffman code at byte {p}")
            sym = entry >> 4
            cur = (cur << length) & 0xFFFFFFFF
            extra -= length
            if extra < 0:
                cur |= u16(padded, p)[0] << -extra
                p += 2
                extra += 16
            if sym < 256:
                out.append(sym)
                continue
            sym -= 256
            mlen = sym & 15
            dbits = sym >> 4
            if mlen == 15:
                mlen = padded[p]
                p += 1
                if mlen == 255:
                    mlen = u16(padded, p)[0]
                    p += 2
                    if mlen == 0:
                        mlen = struct.unpack_from("<I", padded, p)[0]
                        p += 4
                    if mlen < 15:
                        raise XpressError(f"bad match length escape at byte {p}")
                    mlen -= 15
                mlen += 15
            mlen += 3
            dist = ((cur >> (32 - dbits)) if dbits else 0) | (1 << dbits)
            cur = (cur << dbits) & 0xFFFFFFFF
            extra -= dbits
            if extra < 0:
                cur |= u16(padded, p)[0] << -extra
                p += 2
                extra += 16
            if dist > len(out):
                raise XpressError(f"match {dist} bytes back with {len(out)} bytes of output")
            mlen = min(mlen, block_end - len(out))
            src = len(out) - dist
            if dist >= mlen:
                out += out[src : src + mlen]
            else:
                pattern = bytes(out[src:])
                reps, rest = divmod(mlen, dist)
                out += pattern * reps + pattern[:rest]
            if p > n + 4:
                raise XpressError("compressed data ended early")
    return bytes(out[:size])


def parse_wof_reparse(data: bytes) -> tuple[int, int]:
    """(provider, algorithm) from a WOF reparse buffer (after the 8-byte reparse header)."""
    if len(data) < 8:
        raise ValueError("WOF reparse data shorter than 8 bytes")
    version, provider = struct.unpack_from("<II", data, 0)
    if provider != 2 or len(data) < 16:
        return provider, -1
    _v, algorithm = struct.unpack_from("<II", data, 8)
    return provider, algorithm


class WofSource(ByteSource):
    """The uncompressed bytes of a WOF file-provider compressed file."""

    def __init__(self, stream: ByteSource, size: int, algorithm: int, name: str = "<wof>"):
        if algorithm not in ALGORITHMS:
            raise UnsupportedFeature(
                f"WOF compression algorithm {algorithm} is unknown",
                path=name,
                structure="WOF reparse point",
            )
        self.algo, self.chunk = ALGORITHMS[algorithm]
        self.stream = stream
        self.size = size
        self.name = name
        self.nchunks = (size + self.chunk - 1) // self.chunk
        width = 8 if size >= 1 << 32 else 4
        table_len = max(0, self.nchunks - 1) * width
        if table_len > stream.size:
            raise CorruptImage(
                f"chunk table ({table_len} bytes) is larger than the stream",
                path=name,
                structure=WOF_STREAM,
                offset=0,
            )
        raw = stream.read(0, table_len)
        fmt = "<Q" if width == 8 else "<I"
        offs = [0] + [struct.unpack_from(fmt, raw, i)[0] for i in range(0, table_len, width)]
        offs.append(stream.size - table_len)
        for a, b in zip(offs, offs[1:]):
            if b < a:
                raise CorruptImage(
                    "chunk offsets are not increasing", path=name, structure=WOF_STREAM, offset=0
                )
        self.base = table_len
        self.offsets = offs
        self.cache: LRUCache[bytes] = LRUCache(16)

    def _chunk_bytes(self, i: int) -> bytes:
        def load() -> bytes:
            want = min(self.chunk, self.size - i * self.chunk)
            a, b = self.offsets[i], self.offsets[i + 1]
            raw = self.stream.read(self.base + a, b - a)
            if len(raw) == want:
                return raw
            try:
                if self.algo == "lzx":
                    return lzx_decompress(raw, want)
                return xpress_huffman_decompress(raw, want)
            except (XpressError, LZXError) as e:
                raise CorruptImage(
                    f"chunk {i}: {e}", path=self.name, structure=WOF_STREAM, offset=self.base + a
                ) from None

        return self.cache.get(i, load)

    def _damage_pairs(self, start: int, end: int) -> list[tuple[int, int]]:
        """Whole chunks whose compressed bytes (or the chunk table) are damaged."""
        bad = self.stream._damage_pairs(0, self.stream.size)
        if not bad:
            return []
        if any(a < self.base for a, _b in bad):
            return [(start, end)]  # the chunk table itself: no chunk can be trusted
        out = []
        for i in range(start // self.chunk, (end - 1) // self.chunk + 1):
            a, b = self.base + self.offsets[i], self.base + self.offsets[i + 1]
            if any(x < b and y > a for x, y in bad):
                out.append((max(start, i * self.chunk), min(end, (i + 1) * self.chunk)))
        return out

    def _read(self, offset: int, length: int) -> bytes:
        parts = []
        while length > 0:
            i, within = divmod(offset, self.chunk)
            data = self._chunk_bytes(i)
            piece = data[within : within + length]
            parts.append(piece)
            offset += len(piece)
            length -= len(piece)
        return b"".join(parts)
