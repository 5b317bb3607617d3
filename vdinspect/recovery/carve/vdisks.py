"""Virtual disk headers found by content: QCOW/QCOW2, VHD (a dynamic disk's leading footer
copy), VMDK sparse extents and VDI. Only the header is checked and carved here; the
extent of the whole image is worked out by the image scan, which follows its tables."""

from __future__ import annotations

from construct import Struct

from ...containers.qcow.structs import QcowHeader
from ...containers.qcow2.structs import QCowHeader, QCowHeaderV3
from ...containers.vdi.structs import Header1, PreHeader
from ...containers.vhd.structs import DynamicDiskHeader, HardDiskFooter
from ...containers.vmdk.structs import SparseExtentHeader
from ...layout import offset_of, struct_format
from ...units import human, is_pow2
from .reader import Found, Reader

# the formats' own declarations (containers/*/structs.py), read here field by field
QCOW2_HEADER = Struct(*QCowHeader.subcons, *QCowHeaderV3.subcons)  # version 3's 104 bytes
_QCOW1 = struct_format(QcowHeader, "magic", "version", "size")
_QCOW2 = struct_format(QCOW2_HEADER, "magic", "version", "cluster_bits", "size")
_QCOW2_V2_SIZE = offset_of(QCOW2_HEADER, "incompatible_features")
_QCOW2_LENGTH = struct_format(QCOW2_HEADER, "header_length")
_VHD = struct_format(HardDiskFooter, "cookie", "file_format_version", "data_offset",
                     "current_size")
_VDI = struct_format(Struct(*PreHeader.subcons, *Header1.subcons[:1]))  # + cbHeader
_VMDK = struct_format(SparseExtentHeader, "magicNumber", "version", "capacity", "grainSize")
VMDK_SPARSE_HEADER_SECTOR = 512  # a hosted sparse extent header occupies one sector
_NOTE = "{what}, {size} virtual: only the header is carved (its extent: an image scan)"


def qcow(r: Reader, off: int, max_size: int) -> Found | None:
    """QCOW (v1) and QCOW2 (v2, v3): version, cluster bits, the header's own length."""
    h = r.unpack(_QCOW2, off)
    if h is None or h[0] != b"QFI\xfb" or h[1] not in (1, 2, 3):
        return None
    if h[1] == 1:
        length, size = QcowHeader.sizeof(), r.unpack(_QCOW1, off)[2]
    else:
        if not 9 <= h[2] <= 21:
            return None
        length, size = _QCOW2_V2_SIZE, h[3]
        if h[1] == 3:
            v3 = r.unpack(_QCOW2_LENGTH, off)
            length = v3[0] if v3 else 0
            if not QCOW2_HEADER.sizeof() <= length <= 1 << 16:
                return None
    kind = "qcow2" if h[1] >= 2 else "qcow"
    return Found(length, False, kind, _NOTE.format(what=f"{kind} v{h[1]}", size=human(size)))


def vhd(r: Reader, off: int, max_size: int) -> Found | None:
    """VHD: a dynamic disk starts with a copy of its footer, pointing at the dynamic header."""
    h = r.unpack(_VHD, off)
    if h is None or h[0] != b"conectix" or h[1] != 0x00010000 or not 0 < h[2] <= 1 << 20:
        return None
    if r.read(off + h[2], 8) != b"cxsparse":
        return None
    return Found(h[2] + DynamicDiskHeader.sizeof(), False, "vhd",
                 _NOTE.format(what="dynamic VHD", size=human(h[3])))


def vmdk(r: Reader, off: int, max_size: int) -> Found | None:
    """VMDK hosted sparse extent header (KDMV)."""
    h = r.unpack(_VMDK, off)
    if h is None or h[0] != b"KDMV" or h[1] not in (1, 2, 3) or not is_pow2(h[3]):
        return None
    return Found(VMDK_SPARSE_HEADER_SECTOR, False, "vmdk",
                 _NOTE.format(what="VMDK sparse extent", size=human(h[2] * 512)))


def vdi(r: Reader, off: int, max_size: int) -> Found | None:
    """VirtualBox VDI: the text banner, the signature, a known version, the header size."""
    h = r.unpack(_VDI, off)
    if h is None or h[1] != 0xBEDA107F or h[2] not in (0x00010001, 0x00000001):
        return None
    if not 0 < h[3] <= 4096:
        return None
    return Found(_VDI.size + h[3], False, "vdi", _NOTE.format(what="VDI", size="?"))
