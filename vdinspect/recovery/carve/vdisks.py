"""Virtual disk headers found by content: QCOW/QCOW2, VHD (a dynamic disk's leading footer
copy), VMDK sparse extents and VDI. Only the header is checked and carved here; the
extent of the whole image is worked out by the image scan, which follows its tables."""

from __future__ import annotations

from ...layout import struct_format
from ...units import human
from .reader import Found, Reader
from .structs import QCOW_HEADER, VDI_PRE_HEADER, VHD_FOOTER, VMDK_SPARSE_HEADER

_QCOW = struct_format(QCOW_HEADER)
_VHD = struct_format(VHD_FOOTER)
_VDI = struct_format(VDI_PRE_HEADER)
_VMDK = struct_format(VMDK_SPARSE_HEADER)
_NOTE = "{what}, {size} virtual: only the header is carved (its extent: an image scan)"


def qcow(r: Reader, off: int, max_size: int) -> Found | None:
    """QCOW (v1) and QCOW2 (v2, v3): version, cluster bits, the header's own length."""
    h = r.unpack(_QCOW, off)
    if h is None or h[0] != b"QFI\xfb" or h[1] not in (1, 2, 3):
        return None
    if h[1] >= 2 and not 9 <= h[4] <= 21:
        return None
    length = {1: 48, 2: 72}.get(h[1])
    if length is None:
        length = int.from_bytes(r.read(off + 100, 4), "big")  # v3 header_length
        if not 104 <= length <= 4096:
            return None
    kind = "qcow2" if h[1] >= 2 else "qcow"
    return Found(length, False, kind, _NOTE.format(what=f"{kind} v{h[1]}", size=human(h[5])))


def vhd(r: Reader, off: int, max_size: int) -> Found | None:
    """VHD: a dynamic disk starts with a copy of its footer, pointing at the dynamic header."""
    h = r.unpack(_VHD, off)
    if h is None or h[0] != b"conectix" or h[2] != 0x00010000 or h[3] != 512:
        return None
    if r.read(off + 512, 8) != b"cxsparse":
        return None
    return Found(512 + 1024, False, "vhd", _NOTE.format(what="dynamic VHD", size=human(h[9])))


def vmdk(r: Reader, off: int, max_size: int) -> Found | None:
    """VMDK hosted sparse extent header (KDMV)."""
    h = r.unpack(_VMDK, off)
    if h is None or h[0] != b"KDMV" or h[1] not in (1, 2, 3) or not h[4] or h[4] & (h[4] - 1):
        return None
    return Found(512, False, "vmdk", _NOTE.format(what="VMDK sparse extent",
                                                  size=human(h[3] * 512)))


def vdi(r: Reader, off: int, max_size: int) -> Found | None:
    """VirtualBox VDI: the text banner, the signature and a known version."""
    h = r.unpack(_VDI, off)
    if h is None or h[1] != 0xBEDA107F or h[2] not in (0x00010001, 0x00000001):
        return None
    return Found(512, False, "vdi", _NOTE.format(what="VDI", size="?"))
