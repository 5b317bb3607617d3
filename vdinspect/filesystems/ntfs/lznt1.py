"""LZNT1, the compression of NTFS compressed files ([MS-XCA] 2.5).

A compressed buffer is a series of chunks, each decompressing to at most 4096 bytes. A
chunk starts with a 16-bit header: bits 0-11 are the chunk's stored size minus 3 (so the
data is ``(h & 0xFFF) + 1`` bytes), bits 12-14 the signature 3, bit 15 set when the data
is compressed. Compressed data is groups of a flag byte and 8 items: a literal byte
(flag bit 0) or a 16-bit back reference (flag bit 1) whose split between offset and
length depends on how far into the chunk the output is.
"""

from __future__ import annotations

import struct

CHUNK = 4096


class LZNT1Error(ValueError):
    """Compressed data that cannot be decoded."""


def _chunk(data: bytes, pos: int, end: int, out: bytearray) -> None:
    start = len(out)
    while pos < end:
        flags = data[pos]
        pos += 1
        if flags == 0:  # eight literals
            out += data[pos : min(pos + 8, end)]
            pos += 8
            continue
        for bit in range(8):
            if pos >= end:
                break
            if not flags & (1 << bit):
                out.append(data[pos])
                pos += 1
                continue
            if pos + 2 > end:
                raise LZNT1Error("back reference cut off at the end of a chunk")
            token = data[pos] | (data[pos + 1] << 8)
            pos += 2
            done = len(out) - start
            if done == 0:
                raise LZNT1Error("back reference before any output in a chunk")
            # the offset field grows with the output: 4 bits up to 16 bytes, then 1 more bit
            # each time the position doubles (12 length bits at first, 4 at the end)
            shift = 12 - max(0, (done - 1).bit_length() - 4)
            dist = (token >> shift) + 1
            length = (token & ((1 << shift) - 1)) + 3
            if dist > done:
                raise LZNT1Error(f"back reference {dist} bytes behind {done} bytes of output")
            if done + length > CHUNK:
                raise LZNT1Error("back reference runs past the 4096-byte chunk")
            copy_match(out, dist, length)


def copy_match(out: bytearray, dist: int, length: int) -> None:
    """Append an LZ77 back reference: ``length`` bytes from ``dist`` bytes back, the copy
    overlapping its own output when ``dist < length`` (LZNT1, LZX and XPRESS alike; the
    caller has checked ``dist`` against the output)."""
    src = len(out) - dist
    if dist >= length:
        out += out[src : src + length]
    else:
        pattern = bytes(out[src:])
        reps, rest = divmod(length, dist)
        out += pattern * reps + pattern[:rest]


def decompress(data: bytes, size: int) -> bytes:
    """Decompress an LZNT1 buffer into (at most) ``size`` bytes; short output is zero-padded."""
    out = bytearray()
    pos = 0
    n = len(data)
    while pos + 2 <= n and len(out) < size:
        head = struct.unpack_from("<H", data, pos)[0]
        if head == 0:
            break
        clen = (head & 0x0FFF) + 1
        if pos + 2 + clen > n:
            raise LZNT1Error(f"chunk at byte {pos} ({clen} bytes) runs past the buffer")
        if len(out) % CHUNK:
            out += bytes(CHUNK - len(out) % CHUNK)  # a short chunk before another: zeros
        if head & 0x8000:
            _chunk(data, pos + 2, pos + 2 + clen, out)
        else:
            out += data[pos + 2 : pos + 2 + clen]
        pos += 2 + clen
    if len(out) < size:
        out += bytes(size - len(out))
    return bytes(out[:size])
