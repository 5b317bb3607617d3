"""Picture validators: JPEG (markers and segment lengths, scans to EOI), PNG (chunk lengths
and CRC-32s to IEND) and GIF (blocks and sub-blocks to the trailer)."""

from __future__ import annotations

import re
import zlib

from ...layout import struct_format
from .reader import STREAM, Found, Reader
from .structs import GIF_IMAGE, GIF_SCREEN, JPEG_SEGMENT, PNG_CHUNK, PNG_IHDR

_SEG = struct_format(JPEG_SEGMENT)
_PNG_CHUNK = struct_format(PNG_CHUNK)
_IHDR = struct_format(PNG_IHDR)
_GIF_SCREEN = struct_format(GIF_SCREEN)
_GIF_IMAGE = struct_format(GIF_IMAGE)

#: a marker inside entropy-coded data: 0xFF then neither a stuffed 0, a restart nor fill
_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
#: what may follow SOI: APPn, DQT, DHT, SOFn, DRI, COM
_FIRST = set(range(0xE0, 0xF0)) | {0xDB, 0xC4, 0xDD, 0xFE} | _SOF


def _next_marker(r: Reader, pos: int, limit: int) -> int:
    """Where the marker ending a scan's entropy-coded data starts (-1: none before limit)."""
    keep = b""  # a 0xFF ending the last piece may start a marker
    for at, piece in r.stream(pos, limit):
        chunk = keep + piece
        m = _MARKER.search(chunk)
        if m:
            return at - len(keep) + m.start()
        keep = chunk[-1:]
    return -1


def jpeg(r: Reader, off: int, max_size: int) -> Found | None:
    """JPEG/JFIF/Exif: segments by their lengths, each scan to the marker after it."""
    limit = off + max_size
    pos = off + 2
    sof = sos = False
    first = True
    while pos < limit:
        head = r.read(pos, 4)
        if len(head) < 2 or head[0] != 0xFF:
            if first:
                return None
            return Found(pos - off, False, "jpg", f"no marker where one belongs (+{pos - off})")
        code = head[1]
        if first and code not in _FIRST:
            return None
        if code == 0xFF:  # fill byte
            pos += 1
            continue
        if code == 0xD9:
            ok = sof and sos
            return Found(pos + 2 - off, ok, "jpg", "" if ok else "EOI before a frame and scan")
        if code == 0x01 or 0xD0 <= code <= 0xD7:
            pos += 2
            continue
        if len(head) < 4:
            break
        length = _SEG.unpack(head)[1]
        if length < 2 or code == 0xD8:
            if first:
                return None
            return Found(pos - off, False, "jpg", f"bad segment at +{pos - off}")
        first = False
        sof = sof or code in _SOF
        pos += 2 + length
        if code == 0xDA:
            sos = True
            nxt = _next_marker(r, pos, limit)
            if nxt < 0:
                break
            pos = nxt
    return Found(min(pos, limit) - off, False, "jpg", "no end of image (EOI) found")


def png(r: Reader, off: int, max_size: int) -> Found | None:
    """PNG: IHDR first, every chunk's CRC-32 checked, up to IEND."""
    limit = off + max_size
    pos = off + 8
    first = True
    while pos < limit:
        h = r.unpack(_PNG_CHUNK, pos)
        if h is None:
            break
        length, ctype = h
        if not ctype.isalpha() or length > 0x7FFFFFFF or pos + 12 + length > limit:
            if first:
                return None
            return Found(pos - off, False, "png", f"bad chunk header at +{pos - off}")
        if first:
            if ctype != b"IHDR" or length != 13:
                return None
            w, hgt, depth, colour, *_ = _IHDR.unpack(r.read(pos + 8, 13).ljust(13, b"\0"))
            if not (w and hgt and depth in (1, 2, 4, 8, 16) and colour in (0, 2, 3, 4, 6)):
                return None
            first = False
        crc = zlib.crc32(ctype)
        at, left = pos + 8, length
        while left:
            piece = r.read(at, min(STREAM, left))
            if not piece:
                return Found(pos - off, False, "png", "the space ends inside a chunk")
            crc = zlib.crc32(piece, crc)
            at += len(piece)
            left -= len(piece)
        stored = r.read(at, 4)
        if len(stored) < 4 or int.from_bytes(stored, "big") != crc:
            return Found(pos - off, False, "png",
                         f"CRC mismatch in {ctype.decode()} at +{pos - off}")
        pos = at + 4
        if ctype == b"IEND":
            return Found(pos - off, True, "png")
    return Found(min(pos, limit) - off, False, "png", "no IEND chunk found")


def _sub_blocks(r: Reader, pos: int, limit: int) -> int:
    """The position after a chain of data sub-blocks (-1 when it runs past ``limit``)."""
    while pos < limit:
        n = r.read(pos, 1)
        if not n:
            return -1
        pos += 1 + n[0]
        if n[0] == 0:
            return pos
    return -1


def gif(r: Reader, off: int, max_size: int) -> Found | None:
    """GIF87a/89a: screen descriptor, colour tables, images and extensions to 0x3B."""
    limit = off + max_size
    h = r.unpack(_GIF_SCREEN, off)
    if h is None or h[0] not in (b"GIF87a", b"GIF89a") or not h[1] or not h[2]:
        return None
    pos = off + _GIF_SCREEN.size
    if h[3] & 0x80:
        pos += 3 << ((h[3] & 7) + 1)
    images = 0
    while pos < limit:
        b = r.read(pos, 2)
        if not b:
            break
        if b[0] == 0x3B:
            ok = images > 0
            return Found(pos + 1 - off, ok, "gif", "" if ok else "trailer before any image")
        if b[0] == 0x21 and len(b) == 2:
            pos = _sub_blocks(r, pos + 2, limit)
        elif b[0] == 0x2C:
            d = r.unpack(_GIF_IMAGE, pos)
            if d is None:
                break
            pos += _GIF_IMAGE.size
            if d[5] & 0x80:
                pos += 3 << ((d[5] & 7) + 1)
            code = r.read(pos, 1)
            if not code or not 2 <= code[0] <= 12:
                return Found(pos - off, False, "gif", f"bad LZW code size at +{pos - off}")
            pos = _sub_blocks(r, pos + 1, limit)
            images += 1
        else:
            if images == 0 and pos == off + _GIF_SCREEN.size:
                return None
            return Found(pos - off, False, "gif", f"unknown block at +{pos - off}")
        if pos < 0:
            break
    return Found(max(pos, off + _GIF_SCREEN.size) - off if pos > 0 else _GIF_SCREEN.size,
                 False, "gif", "no trailer found")
