"""Document and archive validators: PDF (header to the last %%EOF whose startxref points
at an xref), ZIP and the formats built on it (local headers to the end of the central
directory; docx/xlsx/pptx/odt/... named from the members) and SQLite (page size × count)."""

from __future__ import annotations

import re

from ...layout import struct_format
from ...units import is_pow2
from .reader import Found, Reader
from .structs import SQLITE_HEADER, ZIP64_END, ZIP64_LOCATOR, ZIP_CENTRAL, ZIP_END, ZIP_LOCAL

_LOCAL = struct_format(ZIP_LOCAL)
_CENTRAL = struct_format(ZIP_CENTRAL)
_END = struct_format(ZIP_END)
_END64 = struct_format(ZIP64_END)
_LOCATOR = struct_format(ZIP64_LOCATOR)
_SQLITE = struct_format(SQLITE_HEADER)
_STARTXREF = re.compile(rb"startxref\s+(\d{1,15})\s*$")
_PREV = re.compile(rb"/Prev\s+(\d{1,15})")
_OBJ = re.compile(rb"\d{1,10}\s+\d{1,5}\s+obj\b")
_METHODS = {0, 1, 6, 8, 9, 12, 14, 93, 95, 98, 99}
MAX_CD = 64 << 20  # bytes of central directory read to check it and name the type
_ODF = {b"application/vnd.oasis.opendocument.text": "odt",
        b"application/vnd.oasis.opendocument.spreadsheet": "ods",
        b"application/vnd.oasis.opendocument.presentation": "odp",
        b"application/vnd.oasis.opendocument.graphics": "odg",
        b"application/epub+zip": "epub"}


def pdf(r: Reader, off: int, max_size: int) -> Found | None:
    """PDF: ends at the last %%EOF of the chain of updates whose startxref points at an
    ``xref`` table or an xref stream object inside the file."""
    if not re.match(rb"%PDF-\d\.\d", r.read(off, 8)):
        return None
    limit = off + max_size
    best = None
    prev_xref = None
    pos = off + 8
    for _ in range(256):
        e = r.find(b"%%EOF", pos, limit)
        if e < 0:
            break
        tail = r.read(max(off, e - 1024), e - max(off, e - 1024))
        m = _STARTXREF.search(tail)
        x = int(m.group(1)) if m else 0
        target = r.read(off + x, 32) if 0 < x < e - off else b""
        if not (target.startswith(b"xref") or _OBJ.match(target)):
            if best is not None:
                break
            pos = e + 5  # an %%EOF without a usable startxref (linearised first part)
            continue
        if best is not None:
            # an update names the section before it (/Prev); else nothing but another
            # document's header may come between
            link = _PREV.findall(tail)
            if not (link and int(link[-1]) == prev_xref) and 0 <= r.find(b"%PDF-", pos, e):
                break
        end = e + 5
        eol = r.read(end, 2)
        end += 2 if eol == b"\r\n" else 1 if eol[:1] in (b"\r", b"\n") else 0
        best = pos = end
        prev_xref = x
        # an incremental update starts right after: an object, an xref, a comment; slack
        # (zeros, another file's bytes) ends the document without a search for more
        ahead = r.read(end, 64).lstrip(b" \t\r\n")
        if not ahead or ahead[:1] not in b"0123456789%x":
            break
    if best is None:
        return Found(8, False, "pdf", "no %%EOF with a startxref pointing at an xref")
    return Found(best - off, True, "pdf")


def _walk_locals(r: Reader, off: int, limit: int) -> int:
    """How far the local headers lead while each states its compressed size."""
    pos = off
    for _ in range(1 << 16):
        h = r.unpack(_LOCAL, pos)
        if h is None or h[0] != 0x04034B50 or h[2] & 8:
            break
        nxt = pos + _LOCAL.size + h[9] + h[10] + h[7]
        if nxt > limit:
            break
        pos = nxt
    return max(pos - off, _LOCAL.size)


def _zip_type(r: Reader, off: int, first, names: list[bytes]) -> str:
    """docx/xlsx/pptx from the OOXML part names, odt/ods/... from an ODF mimetype member."""
    if first[9] == 8 and first[3] == 0 and r.read(off + _LOCAL.size, 8) == b"mimetype":
        kind = r.read(off + _LOCAL.size + 8 + first[10], min(first[7], 80))
        if kind in _ODF:
            return _ODF[kind]
    if b"[Content_Types].xml" in names:
        for prefix, kind in ((b"word/", "docx"), (b"xl/", "xlsx"), (b"ppt/", "pptx")):
            if any(n.startswith(prefix) for n in names):
                return kind
    if b"AndroidManifest.xml" in names:
        return "apk"
    if b"META-INF/MANIFEST.MF" in names:
        return "jar"
    return "zip"


def zipfile(r: Reader, off: int, max_size: int) -> Found | None:
    """ZIP: from the first local header to the end of central directory record (and its
    comment); the record must place the central directory, and so the archive's start,
    exactly here, and every central entry must be where it says."""
    first = r.unpack(_LOCAL, off)
    if first is None or first[1] > 100 or first[3] not in _METHODS or not 0 < first[9] <= 4096:
        return None
    limit = off + max_size
    pos = off + _LOCAL.size
    for _ in range(16):
        e = r.find(b"PK\x05\x06", pos, limit)
        if e < 0:
            break
        end = r.unpack(_END, e)
        if end is None:
            break
        _sig, disk, _cdd, _n_here, entries, cd_size, cd_offset, comment = end
        cd_end = e  # where the central directory ends: the end record, or zip64's
        z64 = _zip64(r, e)  # a writer may add the zip64 records before they are needed
        if z64 is not None:
            entries, cd_size, cd_offset, cd_end = z64
        elif entries == 0xFFFF or cd_size == 0xFFFFFFFF or cd_offset == 0xFFFFFFFF:
            pos = e + 4  # saturated values and no zip64 records: not followed
            continue
        cd_start = cd_end - cd_size
        base = cd_start - cd_offset
        if disk != 0 or cd_start < off:
            pos = e + 4  # not a record for this archive
            continue
        if base > off:
            break  # a later archive's record: this one has none
        if base < off:
            return None  # a member of an archive that starts earlier
        names = []
        at = cd_start
        if cd_size > MAX_CD:
            return Found(e + _END.size + comment - off, False, "zip", "central directory too big "
                         "to check")
        for _ in range(entries):
            h = r.unpack(_CENTRAL, at)
            if h is None or h[0] != 0x02014B50 or cd_offset <= h[16] != 0xFFFFFFFF:
                return Found(e + _END.size + comment - off, False, "zip",
                             f"bad central directory entry at +{at - off}")
            names.append(r.read(at + _CENTRAL.size, h[10]))
            at += _CENTRAL.size + h[10] + h[11] + h[12]
        if at != cd_end:
            return Found(e + _END.size + comment - off, False, "zip",
                         "central directory size does not match its entries")
        return Found(e + _END.size + comment - off, True, _zip_type(r, off, first, names))
    return Found(_walk_locals(r, off, limit), False, "zip", "no end of central directory "
                 "record for this archive")


def _zip64(r: Reader, e: int) -> tuple[int, int, int, int] | None:
    """(entries, cd_size, cd_offset, where the zip64 end record starts) from the zip64
    locator just before the end record at ``e`` and the record just before it."""
    loc = r.unpack(_LOCATOR, e - _LOCATOR.size)
    if loc is None or loc[0] != 0x07064B50 or loc[1] != 0:
        return None
    z = e - _LOCATOR.size - _END64.size  # the record without extensible data
    rec = r.unpack(_END64, z)
    if rec is None or rec[0] != 0x06064B50 or rec[4] != 0:
        return None
    _sig, _size, _made, _need, _disk, _cdd, _here, entries, cd_size, cd_offset = rec
    if z - cd_size - cd_offset + loc[2] != z:  # the locator must name this record
        return None
    return entries, cd_size, cd_offset, z


def sqlite(r: Reader, off: int, max_size: int) -> Found | None:
    """SQLite 3: page size × the in-header page count, when the header says it is valid."""
    h = r.unpack(_SQLITE, off)
    if h is None or h[0] != b"SQLite format 3\0":
        return None
    page = 65536 if h[1] == 1 else h[1]
    if page < 512 or not is_pow2(page) or h[5] != 64 or h[6] != 32 or h[7] != 32:
        return None
    change, count, encoding, valid_for = h[8], h[9], h[16], h[21]
    if count and valid_for == change:
        length = page * count
        if length > max_size:
            where = "searched space" if off + length > r.size else "size limit"
            return Found(page, False, "sqlite", f"{count} pages of {page} bytes run past "
                         f"the {where}")
        btree = r.read(off + _SQLITE.size, 1)  # page 1's b-tree header follows
        last = r.read(off + length - 1, 1)
        ok = btree in (b"\x0d", b"\x05") and encoding in (1, 2, 3) and bool(last)
        return Found(length, ok, "sqlite", "" if ok else "page 1 is not a b-tree page")
    return Found(page, False, "sqlite", "the page count in the header is not valid "
                 "(an old writer): only page 1 is certain")
