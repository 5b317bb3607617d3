"""Audio and video validators: ISO base media files (MP4, MOV, M4A, 3GP, HEIC; top-level
boxes by their sizes) and RIFF files (WAV, AVI, WebP; the RIFF size, its chunks checked)."""

from __future__ import annotations

from ...layout import struct_format
from .reader import Found, Reader
from .structs import BOX, RIFF_CHUNK

_BOX = struct_format(BOX)
_CHUNK = struct_format(RIFF_CHUNK)
_TOP = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"uuid", b"meta", b"pdin",
        b"moof", b"mfra", b"styp", b"sidx", b"ssix", b"prft", b"emsg", b"pnot", b"udta",
        b"junk", b"iinf", b"iloc", b"idat", b"jumb"}
_BRANDS = {b"qt  ": "mov", b"M4A ": "m4a", b"M4B ": "m4a", b"M4V ": "m4v", b"heic": "heic",
           b"heix": "heic", b"mif1": "heic", b"msf1": "heic", b"avif": "avif",
           b"crx ": "cr3", b"3gp4": "3gp", b"3gp5": "3gp", b"3gp6": "3gp", b"3g2a": "3g2"}
_FORMS = {b"WAVE": ("wav", b"fmt "), b"AVI ": ("avi", b"LIST"), b"WEBP": ("webp", None),
          b"RMID": ("rmi", b"data"), b"ACON": ("ani", None)}


def _fourcc(b: bytes) -> bool:
    return len(b) == 4 and all(0x20 <= c < 0x7F for c in b)


#: what a classic QuickTime movie (before ``ftyp`` existed) may start with
_CLASSIC = {b"moov", b"mdat", b"wide", b"pnot"}


def bmff(r: Reader, off: int, max_size: int) -> Found | None:
    """ISO BMFF: ``ftyp`` first (or, for a classic QuickTime movie, ``moov``, ``mdat``,
    ``wide`` or ``pnot``); known top-level boxes follow each other to the end."""
    h = r.unpack(_BOX, off)
    if h is None:
        return None
    classic = h[1] in _CLASSIC
    if classic:
        if h[0] < 8:
            return None
        kind = "mov"
    else:
        brand = r.read(off + 8, 4)
        if h[1] != b"ftyp" or not 12 <= h[0] <= 4096 or not _fourcc(brand):
            return None
        kind = _BRANDS.get(brand, "mp4")
    limit = off + max_size
    pos = off
    seen: set[bytes] = set()
    note = ""
    for _ in range(1 << 16):
        h = r.unpack(_BOX, pos)
        if h is None or h[1] not in _TOP:
            break
        size = h[0]
        if size == 1:
            big = r.read(pos + 8, 8)
            size = int.from_bytes(big, "big") if len(big) == 8 else 0
            if size < 16:
                note = f"bad 64-bit box size at +{pos - off}"
                break
        elif size == 0:
            note = f"the {h[1].decode()} box runs to the end of the file: its end is unknown"
            break
        elif size < 8:
            note = f"bad box size at +{pos - off}"
            break
        if pos + size > limit:
            note = f"the {h[1].decode()} box at +{pos - off} goes past the size limit"
            break
        if h[1] == b"moov" and not _fourcc(r.read(pos + 12, 4)):
            note = "the moov box holds no boxes"
            break
        if not r.read(pos + size - 1, 1):
            note = f"the space ends inside the {h[1].decode()} box"
            break
        seen.add(h[1])
        pos += size
    ok = not note and b"moov" in seen and bool(seen & {b"mdat", b"moof"})
    if classic and not ok:
        return None  # without ftyp only a whole movie is told apart from chance bytes
    if not ok and not note:
        note = "no moov and mdat boxes"
    return Found(pos - off if pos > off else 8, ok, kind, note)


def riff(r: Reader, off: int, max_size: int) -> Found | None:
    """RIFF: 8 + the RIFF size, when the chunks inside fill it exactly."""
    h = r.unpack(_CHUNK, off)
    form = r.read(off + 8, 4)
    if h is None or h[0] != b"RIFF" or h[1] < 4 or not _fourcc(form):
        return None
    kind, needed = _FORMS.get(form, ("riff", None))
    end = off + 8 + h[1]
    if end - off > max_size:
        return Found(12, False, kind, "the RIFF size exceeds the size limit")
    pos = off + 12
    ids: set[bytes] = set()
    for _ in range(1 << 16):
        if pos + 8 > end:
            break
        c = r.unpack(_CHUNK, pos)
        if c is None or not _fourcc(c[0]):
            return Found(pos - off, False, kind, f"bad chunk at +{pos - off}")
        ids.add(c[0])
        pos += 8 + c[1] + (c[1] & 1)
    if pos not in (end, end + 1) or not r.read(end - 1, 1):
        return Found(min(pos, end) - off, False, kind, "the chunks do not fill the RIFF size")
    ok = needed is None or needed in ids
    return Found(end - off, ok, kind, "" if ok else f"no {needed.decode()!r} chunk")
