"""LZO1X decompression in plain Python, and the framing Btrfs wraps around it.

LZO1X (Markus Oberhumer's format, as the Linux kernel's ``lzo1x_decompress_safe`` reads
it) is a byte-oriented LZ77: each instruction byte says how many literals to copy and/or
where a match lies, with four match forms (M1..M4) told apart by the byte's range and the
state left by the previous instruction. No permissive Python binding exists (python-lzo
is GPL), and the decoder is short.

Btrfs stores an LZO extent as a 4-byte little-endian total length, then segments, each a
4-byte little-endian length and an LZO1X stream decoding to at most one sector; a segment
header never straddles a sector boundary (the writer pads to the next sector instead).
"""

from __future__ import annotations

import struct


class LZOError(ValueError):
    """Malformed LZO data."""


M2_MAX_OFFSET = 0x0800
MAX_RUN = 1 << 24  # a run of zero bytes longer than this is garbage, not data


def _count(data: bytes, ip: int, base: int) -> tuple[int, int]:
    """A length continued in zero bytes (255 each) and a final byte added to ``base``."""
    start = ip
    n = len(data)
    while ip < n and data[ip] == 0:
        ip += 1
    if ip >= n:
        raise LZOError("input ends inside a length")
    zeros = ip - start
    if zeros * 255 > MAX_RUN:
        raise LZOError("length run too long")
    return zeros * 255 + base + data[ip], ip + 1


def decompress(data: bytes, limit: int) -> bytes:
    """Decode one LZO1X stream, producing at most ``limit`` bytes (more is an error)."""
    out = bytearray()
    n = len(data)
    ip = 0
    state = 0
    if n == 0:
        raise LZOError("empty input")

    def literals(t: int) -> None:
        nonlocal ip
        if ip + t > n:
            raise LZOError("literal run past the end of the input")
        if len(out) + t > limit:
            raise LZOError("output larger than expected")
        out.extend(data[ip:ip + t])
        ip += t

    if data[0] > 17:
        t = data[0] - 17
        ip = 1
        literals(t)
        state = t if t < 4 else 4
    while True:
        if ip >= n:
            raise LZOError("input ends without the end marker")
        t = data[ip]
        ip += 1
        if t < 16:
            if state == 0:
                if t == 0:
                    t, ip = _count(data, ip, 15)
                literals(t + 3)
                state = 4
                continue
            if ip >= n:
                raise LZOError("input ends inside a match")
            nxt = t & 3
            if state != 4:  # M1 after a short literal run: 2 bytes, near
                dist = 1 + (t >> 2) + (data[ip] << 2)
                length = 2
            else:  # M1 after a long literal run: 3 bytes, 2 KiB back at least
                dist = 1 + M2_MAX_OFFSET + (t >> 2) + (data[ip] << 2)
                length = 3
            ip += 1
        elif t >= 64:  # M2
            if ip >= n:
                raise LZOError("input ends inside a match")
            nxt = t & 3
            dist = 1 + ((t >> 2) & 7) + (data[ip] << 3)
            ip += 1
            length = (t >> 5) + 1
        elif t >= 32:  # M3
            length = t & 31
            if length == 0:
                length, ip = _count(data, ip, 31)
            length += 2
            if ip + 2 > n:
                raise LZOError("input ends inside a match")
            (word,) = struct.unpack_from("<H", data, ip)
            ip += 2
            dist = 1 + (word >> 2)
            nxt = word & 3
        else:  # M4 (16..31), or the end marker
            length = t & 7
            if length == 0:
                length, ip = _count(data, ip, 7)
            length += 2
            if ip + 2 > n:
                raise LZOError("input ends inside a match")
            (word,) = struct.unpack_from("<H", data, ip)
            ip += 2
            dist = ((t & 8) << 11) + (word >> 2)
            nxt = word & 3
            if dist == 0:
                return bytes(out)  # end of stream
            dist += 0x4000
        pos = len(out) - dist
        if pos < 0:
            raise LZOError("match reaches before the start of the output")
        if len(out) + length > limit:
            raise LZOError("output larger than expected")
        if dist >= length:
            out.extend(out[pos:pos + length])
        else:  # overlapping: the last ``dist`` bytes repeat
            piece = bytes(out[pos:])
            out.extend((piece * (length // dist + 1))[:length])
        state = nxt
        if nxt:
            literals(nxt)


def decompress_btrfs(data: bytes, ram_bytes: int, sectorsize: int) -> bytes:
    """Decode a Btrfs LZO extent (total length, then sector-aligned segments)."""
    if len(data) < 4:
        raise LZOError("extent shorter than its length header")
    (total,) = struct.unpack_from("<I", data, 0)
    if total > len(data) or total < 4:
        raise LZOError(f"total length {total} does not fit the {len(data)}-byte extent")
    out = []
    have = 0
    pos = 4
    while pos < total and have < ram_bytes:
        left = sectorsize - pos % sectorsize
        if left < 4:  # a segment header never straddles a sector
            pos += left
            if pos >= total:
                break
        if pos + 4 > total:
            raise LZOError("segment header past the total length")
        (seg,) = struct.unpack_from("<I", data, pos)
        pos += 4
        if seg == 0 or pos + seg > total:
            raise LZOError(f"segment of {seg} bytes at {pos - 4} past the total length")
        piece = decompress(data[pos:pos + seg], sectorsize)
        out.append(piece)
        have += len(piece)
        pos += seg
    return b"".join(out)[:ram_bytes]
