"""WOF ("Windows Overlay Filter", CompactOS) compressed files.

A WOF-compressed file carries a reparse point with tag IO_REPARSE_TAG_WOF (0x80000017)
whose data is WOF_EXTERNAL_INFO (version 1, provider 2 = file) then
FILE_PROVIDER_EXTERNAL_INFO_V1 (version 1, algorithm: 0 XPRESS4K, 1 LZX, 2 XPRESS8K,
3 XPRESS16K). The unnamed $DATA holds no data (its size is the uncompressed size); the
named $DATA "WofCompressedData" holds a chunk offset table (one entry per chunk after the
first: u32, or u64 for files of 4 GiB and more) then the chunks, each compressed
independently, or stored as is when compressing did not make it smaller.

Chunks are decoded by xpress.py (XPRESS Huffman, [MS-XCA] 2.1-2.2) and lzx.py (LZX).
"""

from __future__ import annotations

import struct

from construct import Enum, Int32ul, Struct

from ...errors import CorruptImage, UnsupportedFeature
from ...io import ByteSource, LRUCache
from ...layout import flag_values, struct_format
from .lzx import LZXError
from .lzx import decompress as lzx_decompress
from .xpress import XpressError, xpress_huffman_decompress

WofExternalInfo = Struct(
    "Version" / Int32ul * "1",
    "Provider" / Enum(Int32ul, WIM=1, FILE=2) * "1 = WIM-backed, 2 = file (per-file compression)",
)  # WOF_EXTERNAL_INFO, 8 bytes

FileProviderExternalInfoV1 = Struct(
    "Version" / Int32ul * "1",
    "Algorithm" / Enum(Int32ul, XPRESS4K=0, LZX=1, XPRESS8K=2, XPRESS16K=3)
    * "0 XPRESS4K, 1 LZX, 2 XPRESS8K, 3 XPRESS16K",
    "Flags" / Int32ul * "0",
)  # FILE_PROVIDER_EXTERNAL_INFO_V1, 12 bytes

PROVIDER_FILE = flag_values(WofExternalInfo.Provider)["FILE"]
#: algorithm code -> (name, chunk size in bytes)
CHUNK_SIZES = {"XPRESS4K": 4096, "LZX": 32768, "XPRESS8K": 8192, "XPRESS16K": 16384}
ALGORITHMS = {
    code: (name.lower(), CHUNK_SIZES[name])
    for name, code in flag_values(FileProviderExternalInfoV1.Algorithm).items()
}
_EXTERNAL = struct_format(WofExternalInfo)
_PROVIDER = struct_format(FileProviderExternalInfoV1)
WOF_STREAM = "WofCompressedData"


def parse_wof_reparse(data: bytes) -> tuple[int, int]:
    """(provider, algorithm) from a WOF reparse buffer (after the 8-byte reparse header)."""
    if len(data) < _EXTERNAL.size:
        raise ValueError(f"WOF reparse data shorter than {_EXTERNAL.size} bytes")
    _version, provider = _EXTERNAL.unpack_from(data, 0)
    if provider != PROVIDER_FILE or len(data) < _EXTERNAL.size + _PROVIDER.size:
        return provider, -1
    _v, algorithm, _flags = _PROVIDER.unpack_from(data, _EXTERNAL.size)
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
