"""NTFS on-disk layouts declared once: the boot sector, the FILE record header and the
attribute record header with its resident and non-resident forms, with their codes.

Declared here, below the filesystem drivers, because both the probe (``probes.py``, which
names a volume's filesystem, label and serial) and the NTFS driver
(``vdinspect.filesystems.ntfs``) read them; the driver re-exports them from its ``boot``
and ``mft`` modules. Facts and field names from the Linux-NTFS project documentation
("Boot sector", "MFT", "Attribute header"), cross-checked with mkntfs and Windows volumes.
"""

from __future__ import annotations

from construct import (
    Bytes,
    Enum,
    FlagsEnum,
    Int8sl,
    Int8ul,
    Int16ul,
    Int32ul,
    Int64sl,
    Int64ul,
    Padding,
    Struct,
)

from ..layout import flag_values, struct_format
from .multisector import MultiSectorHeader
from .signatures import BITLOCKER_OEM, NTFS_OEM, REFS_OEM  # noqa: F401  (here too)

# --- the boot sector -------------------------------------------------------------------


BootSector = Struct(
    "jump" / Bytes(3) * "x86 jump over the BPB",
    "oem_id" / Bytes(8) * '"NTFS    "',
    "bytes_per_sector" / Int16ul * "bytes (256..4096, power of two)",
    "sectors_per_cluster" / Int8ul * "sectors, or 256 - log2(sectors) when above 0x80",
    "reserved_sectors" / Int16ul * "always 0 on NTFS",
    Padding(5),  # FAT fields that must be zero
    "media_descriptor" / Int8ul * "0xF8 for a hard disk",
    Padding(2),
    "sectors_per_track" / Int16ul * "CHS geometry (unused)",
    "number_of_heads" / Int16ul * "CHS geometry (unused)",
    "hidden_sectors" / Int32ul * "sectors before the volume (partition start)",
    Padding(8),
    "total_sectors" / Int64ul * "sectors in the volume, the backup boot sector excluded",
    "mft_lcn" / Int64ul * "first cluster of $MFT",
    "mftmirr_lcn" / Int64ul * "first cluster of $MFTMirr",
    "clusters_per_mft_record" / Int8sl * "clusters, or -log2(bytes) when negative",
    Padding(3),
    "clusters_per_index_record" / Int8sl * "clusters, or -log2(bytes) when negative",
    Padding(3),
    "volume_serial_number" / Int64ul * "the volume serial (blkid prints it as 16 hex digits)",
    "checksum" / Int32ul * "unused (0)",
    "bootstrap" / Bytes(426) * "boot code",
    "end_of_sector_marker" / Int16ul * "0xAA55",
)  # 512 bytes

# --- codes and flags --------------------------------------------------------------------

AttributeType = Enum(
    Int32ul,
    **{
        "$STANDARD_INFORMATION": 0x10,
        "$ATTRIBUTE_LIST": 0x20,
        "$FILE_NAME": 0x30,
        "$OBJECT_ID": 0x40,
        "$SECURITY_DESCRIPTOR": 0x50,
        "$VOLUME_NAME": 0x60,
        "$VOLUME_INFORMATION": 0x70,
        "$DATA": 0x80,
        "$INDEX_ROOT": 0x90,
        "$INDEX_ALLOCATION": 0xA0,
        "$BITMAP": 0xB0,
        "$REPARSE_POINT": 0xC0,
        "$EA_INFORMATION": 0xD0,
        "$EA": 0xE0,
        "$PROPERTY_SET": 0xF0,
        "$LOGGED_UTILITY_STREAM": 0x100,
        "end": 0xFFFFFFFF,
    },
)

RecordFlags = FlagsEnum(Int16ul, IN_USE=0x1, IS_DIRECTORY=0x2, IS_4=0x4, IS_VIEW_INDEX=0x8)
AttributeFlags = FlagsEnum(Int16ul, IS_COMPRESSED=0x0001, IS_ENCRYPTED=0x4000, IS_SPARSE=0x8000)

# --- on-disk structures ----------------------------------------------------------------

FILE_RECORD_MAGIC = b"FILE"  # the magic of an MFT record (MultiSectorHeader.magic)

FileRecordHeader = Struct(
    *MultiSectorHeader.subcons,
    "lsn" / Int64ul * "$LogFile sequence number of the last change",
    "sequence_number" / Int16ul * "bumped each time the record is freed",
    "link_count" / Int16ul * "hard links (indexed $FILE_NAME attributes)",
    "attrs_offset" / Int16ul * "offset of the first attribute, bytes",
    "flags" / RecordFlags * "in use, directory, in $Extend (IS_4), view index",
    "bytes_in_use" / Int32ul * "used bytes of the record",
    "bytes_allocated" / Int32ul * "record size, bytes",
    "base_mft_record" / Int64ul * "file reference of the base record (0 in a base record)",
    "next_attr_instance" / Int16ul * "next attribute id to hand out",
)  # 42 bytes; NTFS 3.1 adds 2 reserved bytes and the record's own number (u32 at 0x2C)

FileRecordHeader31 = Struct(
    *FileRecordHeader.subcons,
    Padding(2),
    "mft_record_number" / Int32ul * "this record's own number (NTFS 3.1; 3.0 has none)",
)  # 48 bytes; the update sequence array follows (usa_ofs 0x30)

AttributeHeader = Struct(
    "type" / AttributeType * "attribute type code (0xFFFFFFFF ends the list)",
    "length" / Int32ul * "bytes of this attribute record",
    "non_resident" / Int8ul * "0 resident, 1 non-resident",
    "name_length" / Int8ul * "UTF-16 units of the attribute name",
    "name_offset" / Int16ul * "offset of the name, bytes",
    "flags" / AttributeFlags * "compressed, encrypted, sparse",
    "instance" / Int16ul * "attribute id, unique within the file",
)  # 16 bytes; then the resident or non-resident form

ResidentForm = Struct(
    "value_length" / Int32ul * "bytes of the value",
    "value_offset" / Int16ul * "offset of the value from the attribute's start, bytes",
    "resident_flags" / Int8ul * "1 = indexed (a $FILE_NAME named by a directory index)",
    Padding(1),
)  # 8 bytes, at offset 16

NonResidentForm = Struct(
    "lowest_vcn" / Int64sl * "first cluster (VCN) of the value this record maps",
    "highest_vcn" / Int64sl * "last VCN mapped here (-1 for an empty value)",
    "mapping_pairs_offset" / Int16ul * "offset of the runlist from the attribute's start",
    "compression_unit" / Int8ul * "log2 of clusters per compression unit (0: none)",
    Padding(5),
    "allocated_size" / Int64ul * "bytes of the clusters allocated (first piece only)",
    "data_size" / Int64ul * "bytes of the value (first piece only)",
    "initialized_size" / Int64ul * "bytes written; the rest reads as zeros (first piece)",
)  # 48 bytes, at offset 16

CompressedSize = Struct(
    "compressed_size" / Int64ul * "bytes of clusters actually allocated (compressed/sparse)",
)  # 8 bytes after the non-resident form, present when compressed or sparse


def cluster_sectors(value: int) -> int:
    """Sectors per cluster from ``sectors_per_cluster``: the value itself up to 0x80, above
    that 2 ** (256 - value) (how large clusters are stored)."""
    return 1 << (256 - value) if value > 0x80 else value


def record_size(value: int, cluster_size: int) -> int:
    """Bytes of an MFT or index record from the boot sector's ``clusters_per_*_record``:
    positive = clusters, negative = 2**-value bytes (0 when the value is absurd)."""
    return value * cluster_size if value > 0 else 1 << -value if -31 < value < 0 else 0


_ATTRS_AT = struct_format(FileRecordHeader, "attrs_offset")
_ATTR = struct_format(AttributeHeader, "type", "length", "non_resident")
_VALUE = struct_format(ResidentForm, "value_length", "value_offset")
_FORM_AT = AttributeHeader.sizeof()  # the resident or non-resident form follows the header
_AT = flag_values(AttributeType)
MAX_ATTRIBUTES = 64  # attributes looked at in one record before giving up


def volume_name(record: bytes | bytearray) -> str | None:
    """The resident ``$VOLUME_NAME`` of a FILE record (fixups applied: ``$Volume``, record
    3), or None when the record has none or its attribute list is inconsistent."""
    (pos,) = _ATTRS_AT.unpack_from(record)
    for _ in range(MAX_ATTRIBUTES):
        if pos + _FORM_AT > len(record):
            return None
        atype, alen, non_resident = _ATTR.unpack_from(record, pos)
        if atype == _AT["end"] or alen < _FORM_AT or pos + alen > len(record):
            return None
        if atype == _AT["$VOLUME_NAME"] and non_resident == 0:
            vlen, voff = _VALUE.unpack_from(record, pos + _FORM_AT)
            if voff + vlen > alen:
                return None
            return bytes(record[pos + voff : pos + voff + vlen]).decode("utf-16-le", "replace")
        pos += alen
    return None
