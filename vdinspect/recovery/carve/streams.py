"""Compressed stream validators: gzip, bzip2 and xz are decompressed with the standard
library (output thrown away, bounded) to find where each stream ends and check its CRC."""

from __future__ import annotations

import bz2
import lzma
import zlib

from ...layout import struct_format
from .reader import Found, Reader
from .structs import GZIP_MEMBER

_GZIP = struct_format(GZIP_MEMBER)
OUT_STEP = 1 << 20  # bytes of output decompressed at a time (memory stays bounded)
MAX_OUT = 4 << 30  # bytes of output followed before a stream is left unvalidated
#: decompressed bytes count against the scan's read budget at this ratio, so a disk of
#: decompression bombs runs out of budget instead of running for hours
OUT_CHARGE = 8


def _zlib_feed(d, data: bytes) -> int:
    out = len(d.decompress(data, OUT_STEP))
    while not d.eof and d.unconsumed_tail:
        out += len(d.decompress(d.unconsumed_tail, OUT_STEP))
    return out


def _other_feed(d, data: bytes) -> int:
    out = len(d.decompress(data, OUT_STEP))
    while not d.eof and not d.needs_input:
        out += len(d.decompress(b"", OUT_STEP))
    return out


def _member_end(r: Reader, pos: int, limit: int, make, feed) -> tuple[int, str]:
    """Where one stream starting at ``pos`` ends (its CRC checked by the decompressor),
    or (-1, why) when it is corrupt, truncated or too big."""
    d = make()
    out = 0
    errors = (zlib.error, OSError, EOFError, lzma.LZMAError, ValueError)
    for at, chunk in r.stream(pos, limit):
        try:
            n = feed(d, chunk)
        except errors as e:
            return -1, f"corrupt stream near +{at - pos}: {e}"
        out += n
        r.charge(n // OUT_CHARGE)
        if d.eof:
            return at + len(chunk) - len(d.unused_data), ""
        if out > MAX_OUT:
            return -1, f"more than {MAX_OUT} bytes of output: not followed further"
    if limit >= r.size:
        return -1, "the space ends inside the stream"
    return -1, "no end of stream within the size limit"


def _streams(r: Reader, off: int, max_size: int, kind: str, magic: bytes, make, feed
             ) -> Found:
    """Members one after another (concatenated gzip/bzip2 streams are one file)."""
    limit = off + max_size
    end, why = _member_end(r, off, limit, make, feed)
    if end < 0:
        return Found(min(r.size, limit) - off if "limit" in why else len(magic), False,
                     kind, why)
    for _ in range(1 << 12):
        if r.read(end, len(magic)) != magic:
            break
        nxt, _why = _member_end(r, end, limit, make, feed)
        if nxt < 0:
            break
        end = nxt
    return Found(end - off, True, kind)


def gzip(r: Reader, off: int, max_size: int) -> Found | None:
    """gzip (RFC 1952): deflate data, then CRC-32 and size checked by zlib."""
    h = r.unpack(_GZIP, off)
    if h is None or h[2] != 8 or h[3] & 0xE0 or h[5] not in (0, 2, 4):
        return None
    return _streams(r, off, max_size, "gz", b"\x1f\x8b\x08",
                    lambda: zlib.decompressobj(16 + zlib.MAX_WBITS), _zlib_feed)


def bzip2(r: Reader, off: int, max_size: int) -> Found | None:
    """bzip2: "BZh" + level, then a block (pi) or the end-of-stream (sqrt pi) magic."""
    h = r.read(off, 10)
    if len(h) < 10 or not 0x31 <= h[3] <= 0x39 or h[4:10] not in (
            b"\x31\x41\x59\x26\x53\x59", b"\x17\x72\x45\x38\x50\x90"):
        return None
    return _streams(r, off, max_size, "bz2", b"BZh", bz2.BZ2Decompressor, _other_feed)


def xz(r: Reader, off: int, max_size: int) -> Found | None:
    """xz: the stream header's CRC-32 first, then lzma decodes (and checks) the rest."""
    h = r.read(off, 12)
    if len(h) < 12 or h[6] != 0 or zlib.crc32(h[6:8]) != int.from_bytes(h[8:12], "little"):
        return None
    return _streams(r, off, max_size, "xz", b"\xfd7zXZ\x00",
                    lambda: lzma.LZMADecompressor(format=lzma.FORMAT_XZ), _other_feed)
