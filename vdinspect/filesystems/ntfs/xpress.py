"""XPRESS Huffman (LZ77+Huffman) decompression, [MS-XCA] 2.1-2.2, as WOF files use it.

Per 64 KiB of output: a table of 512 4-bit code lengths, then a bit stream of 16-bit
little-endian words read MSB first; symbols below 256 are literals, the others a match
length (low 4 bits, with escapes) and the bit count of the match distance.
"""

from __future__ import annotations

import struct

from .huffman import HuffmanError, huffman_table
from .lznt1 import copy_match


class XpressError(ValueError):
    """XPRESS Huffman data that cannot be decoded."""


def _decode_table(lengths: list[int]) -> list[int]:
    """A 2**15-entry table: for each 15-bit prefix, (symbol << 4) | code length."""
    try:
        return huffman_table(lengths, 15, 4)
    except HuffmanError as e:
        raise XpressError(str(e)) from None


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
            copy_match(out, dist, mlen)
            if p > n + 4:
                raise XpressError("compressed data ended early")
    return bytes(out[:size])
