"""ISO 9660 and UDF, as far as the probe reads them: the volume descriptors of ISO 9660
(ECMA-119), UDF's volume recognition sequence, descriptor tag, anchor and the primary and
logical volume descriptors (ECMA-167 / OSTA UDF), declared once.

Field names of ISO 9660 as the Linux kernel's ``iso_fs.h`` spells them (the supplementary
descriptor's ``escape`` sequences sit where the primary one has unused bytes); UDF's as
ECMA-167 does. Both-endian ISO fields are declared as their two halves. The volume
descriptors start at sector 16 (of 2048 bytes), after the system area.
"""

from __future__ import annotations

from construct import Bytes, Int8sl, Int8ul, Int16ub, Int16ul, Int32ub, Int32ul, Struct

from ..layout import offset_of
from .signatures import (  # noqa: F401  (the places and identifiers, construct-free)
    DESCRIPTOR_SIZE,
    DESCRIPTORS_AT,
    ISO_STANDARD_ID,
    VRS_NSR_IDS,
    VRS_OTHER_IDS,
)

# --- ISO 9660 -----------------------------------------------------------------------------

ISO_VD_PRIMARY, ISO_VD_SUPPLEMENTARY, ISO_VD_END = 1, 2, 255
JOLIET_ESCAPES = (b"%/@", b"%/C", b"%/E")  # UCS-2 level 1, 2, 3

DecDatetime = Struct(
    "digits" / Bytes(16) * "YYYYMMDDhhmmsscc in ASCII digits ('0' x 16 and offset 0: none)",
    "gmt_offset" / Int8sl * "offset from GMT, 15-minute units",
)  # 17 bytes

VolumeDescriptor = Struct(
    "type" / Int8ul * "1 primary, 2 supplementary (Joliet), 255 set terminator",
    "id" / Bytes(5) * "'CD001'",
    "version" / Int8ul * "1",
    "flags" / Int8ul * "supplementary: volume flags; primary: unused",
    "system_id" / Bytes(32) * "system that may use sectors 0-15",
    "volume_id" / Bytes(32) * "volume label (d-characters, or UCS-2 big-endian in Joliet)",
    "unused2" / Bytes(8),
    "volume_space_size" / Int32ul * "logical blocks in the volume (little-endian half)",
    "volume_space_size_be" / Int32ub * "the same, big-endian",
    "escape" / Bytes(32) * "supplementary: escape sequences (Joliet: %/@, %/C, %/E)",
    "volume_set_size" / Int16ul * "discs in the set",
    "volume_set_size_be" / Int16ub,
    "volume_sequence_number" / Int16ul * "this disc's number in the set",
    "volume_sequence_number_be" / Int16ub,
    "logical_block_size" / Int16ul * "bytes per logical block (2048)",
    "logical_block_size_be" / Int16ub,
    "path_table_size" / Int32ul * "bytes",
    "path_table_size_be" / Int32ub,
    "type_l_path_table" / Int32ul * "block of the little-endian path table",
    "opt_type_l_path_table" / Int32ul,
    "type_m_path_table" / Int32ub * "block of the big-endian path table",
    "opt_type_m_path_table" / Int32ub,
    "root_directory_record" / Bytes(34) * "directory record of the root",
    "volume_set_id" / Bytes(128),
    "publisher_id" / Bytes(128),
    "preparer_id" / Bytes(128),
    "application_id" / Bytes(128),
    "copyright_file_id" / Bytes(37),
    "abstract_file_id" / Bytes(37),
    "bibliographic_file_id" / Bytes(37),
    "creation_date" / DecDatetime * "volume creation (blkid's UUID when set)",
    "modification_date" / DecDatetime * "last modification (blkid prefers it)",
    "expiration_date" / DecDatetime,
    "effective_date" / DecDatetime,
    "file_structure_version" / Int8ul * "1",
    "unused4" / Int8ul,
    "application_data" / Bytes(512),
    "unused5" / Bytes(653),
)  # 2048 bytes

# --- UDF ----------------------------------------------------------------------------------

VRS_MAX = 64  # volume structure descriptors looked at
VolumeStructureDescriptor = Struct(
    "StructureType" / Int8ul * "0",
    "StandardIdentifier" / Bytes(5) * "BEA01, NSR02/NSR03, TEA01, CD001...",
    "StructureVersion" / Int8ul * "1",
)  # structure data follows, to 2048 bytes

TAG_PRIMARY_VOLUME, TAG_ANCHOR, TAG_LOGICAL_VOLUME, TAG_TERMINATING = 1, 2, 6, 8
ANCHOR_SECTOR = 256  # the anchor volume descriptor pointer: sector 256 (and N - 256, N)
UDF_BLOCK_SIZES = (2048, 512, 1024, 4096)  # in the order the probe tries them

DescriptorTag = Struct(
    "TagIdentifier" / Int16ul * "1 PVD, 2 AVDP, 6 LVD, 8 terminating descriptor...",
    "DescriptorVersion" / Int16ul * "2 or 3",
    "TagChecksum" / Int8ul * "sum of the tag's other bytes, modulo 256",
    "Reserved" / Int8ul,
    "TagSerialNumber" / Int16ul,
    "DescriptorCRC" / Int16ul * "CRC-16 of the descriptor after the tag",
    "DescriptorCRCLength" / Int16ul * "bytes the CRC covers",
    "TagLocation" / Int32ul * "sector holding this descriptor",
)  # 16 bytes

ExtentAd = Struct(
    "ExtentLength" / Int32ul * "bytes",
    "ExtentLocation" / Int32ul * "first sector",
)

AnchorVolumeDescriptorPointer = Struct(
    "DescriptorTag" / DescriptorTag,
    "MainVolumeDescriptorSequenceExtent" / ExtentAd,
    "ReserveVolumeDescriptorSequenceExtent" / ExtentAd,
)  # 480 reserved bytes follow

PrimaryVolumeDescriptorHead = Struct(
    "DescriptorTag" / DescriptorTag,
    "VolumeDescriptorSequenceNumber" / Int32ul,
    "PrimaryVolumeDescriptorNumber" / Int32ul,
    "VolumeIdentifier" / Bytes(32) * "dstring: the volume's name",
)  # the rest of the 512-byte descriptor is not read

LogicalVolumeDescriptorHead = Struct(
    "DescriptorTag" / DescriptorTag,
    "VolumeDescriptorSequenceNumber" / Int32ul,
    "DescriptorCharacterSet" / Bytes(64) * "charspec",
    "LogicalVolumeIdentifier" / Bytes(128) * "dstring: the label blkid reports",
)  # the rest of the descriptor is not read

TAG_ID_AT = offset_of(DescriptorTag, "TagIdentifier")
