"""LVM2 on-disk structures, named as lvm2's lib/format_text/layout.h and lib/label names
them (``label_header``, ``pv_header``, ``disk_locn``, ``mda_header``, ``raw_locn``).

All numbers are little-endian. Checksums are CRC-32 seeded with 0xf597a6cf and without
the final inversion (lvm2's ``calc_crc``).
"""

from __future__ import annotations

import zlib

from construct import Bytes, FlagsEnum, Int32ul, Int64ul, Struct

from ...layout import offset_of

#: what the package re-exports (``vdinspect.volumes.lvm2``): the layouts and their helpers
__all__ = [
    "INITIAL_CRC", "LABEL_ID", "LABEL_TYPE", "MDA_HEADER_SIZE", "MDA_MAGIC", "SECTOR",
    "DiskLocn", "LabelHeader", "MdaHeader", "PvHeader", "PvHeaderExtension", "RawLocn",
    "format_uuid", "is_label", "label_crc", "lvm_crc",
]

SECTOR = 512

LabelHeader = Struct(
    "id" / Bytes(8) * "LABELONE",
    "sector_xl" / Int64ul * "sector number of this label within the PV",
    "crc_xl" / Int32ul * "CRC of bytes 20..511 of this sector",
    "offset_xl" / Int32ul * "offset of the PV header from the start of this sector, bytes",
    "type" / Bytes(8) * "LVM2 001",
)  # 32 bytes

PvHeader = Struct(
    "pv_uuid" / Bytes(32) * "PV uuid, 32 characters without dashes",
    "device_size_xl" / Int64ul * "size of the PV, bytes",
)  # then disk_locn lists: data areas, {0,0}, metadata areas, {0,0}, then an extension

DiskLocn = Struct(
    "offset" / Int64ul * "bytes from the start of the PV",
    "size" / Int64ul * "bytes (0 for a data area: to the end of the PV)",
)  # 16 bytes

PvHeaderExtension = Struct(
    "version" / Int32ul * "extension version (2)",
    "flags" / FlagsEnum(Int32ul, PV_EXT_USED=1) * "PV_EXT_USED: the PV is in use by a VG",
)  # then bootloader area disk_locns, {0,0}

MdaHeader = Struct(
    "checksum_xl" / Int32ul * "CRC of bytes 4..511 of this header",
    "magic" / Bytes(16) * "\\x20LVM2 x[5A%r0N*>",
    "version" / Int32ul * "1",
    "start" / Int64ul * "offset of this metadata area from the start of the PV, bytes",
    "size" / Int64ul * "size of the metadata area, bytes (including this header)",
)  # 40 bytes, then raw_locns up to a zero one

RawLocn = Struct(
    "offset" / Int64ul * "offset of the text from the start of the area, bytes",
    "size" / Int64ul * "length of the text, bytes (including a final NUL)",
    "checksum" / Int32ul * "CRC of the text",
    "flags" / FlagsEnum(Int32ul, RAW_LOCN_IGNORED=1)
    * "RAW_LOCN_IGNORED: this area holds no current copy",
)  # 24 bytes

LABEL_ID = b"LABELONE"
LABEL_TYPE = b"LVM2 001"
LABEL_SCAN_SECTORS = 4  # the label is in one of the first four sectors
MDA_MAGIC = b"\x20LVM2 x[5A%r0N*>"
MDA_HEADER_SIZE = 512
INITIAL_CRC = 0xF597A6CF
RAW_LOCN_IGNORED = 1
MAX_LOCNS = 16  # disk_locn / raw_locn entries read from one list, at most


#: where the label's CRC starts (the bytes after ``crc_xl``) and where ``type`` lies
LABEL_CRC_FROM = offset_of(LabelHeader, "offset_xl")
LABEL_TYPE_AT = offset_of(LabelHeader, "type")
#: the mda_header's CRC covers everything after ``checksum_xl``
MDA_CRC_FROM = offset_of(MdaHeader, "magic")


def lvm_crc(data: bytes, initial: int = INITIAL_CRC) -> int:
    """lvm2's calc_crc: reflected CRC-32, seeded with ``initial``, no final inversion."""
    return zlib.crc32(data, initial ^ 0xFFFFFFFF) ^ 0xFFFFFFFF


def is_label(sector: bytes) -> bool:
    """True when a 512-byte sector starts like an LVM2 label (id and type)."""
    return sector[: len(LABEL_ID)] == LABEL_ID and \
        sector[LABEL_TYPE_AT : LABEL_TYPE_AT + len(LABEL_TYPE)] == LABEL_TYPE


def label_crc(sector: bytes) -> int:
    """The CRC a label sector should hold in ``crc_xl``."""
    return lvm_crc(sector[LABEL_CRC_FROM:])


def format_uuid(raw: str) -> str:
    """A 32-character LVM uuid with lvm2's dashes (6-4-4-4-4-4-6)."""
    cuts = (6, 4, 4, 4, 4, 4, 6)
    out, pos = [], 0
    for c in cuts:
        out.append(raw[pos : pos + c])
        pos += c
    return "-".join(out)
