"""VHDX on-disk structures, named as Microsoft's open specification [MS-VHDX] names them
(in snake_case: ``SequenceNumber`` is ``sequence_number``).

All numbers are little-endian; GUIDs are Microsoft GUIDs (``uuid.UUID(bytes_le=...)``).
Layout: a 1 MiB header section (file identifier, two headers, two region tables), then
regions the region table places anywhere in the file: the log, the metadata region and the
block allocation table (BAT).
"""

from __future__ import annotations

import uuid
from enum import Enum, IntEnum

from construct import (
    BitsInteger,
    BitStruct,
    Bytes,
    ByteSwapped,
    FlagsEnum,
    Int16ul,
    Int32ul,
    Int64ul,
    Padding,
    Struct,
)

from ...io import crc32c
from ...layout import plain

K, M = 1 << 10, 1 << 20
SIGNATURE = b"vhdxfile"
# the signatures that open each structure (its "signature" field)
HEADER_SIGNATURE = b"head"
REGION_TABLE_SIGNATURE = b"regi"
METADATA_SIGNATURE = b"metadata"
LOG_ENTRY_SIGNATURE = b"loge"
ZERO_DESCRIPTOR_SIGNATURE = b"zero"
DATA_DESCRIPTOR_SIGNATURE = b"desc"
DATA_SECTOR_SIGNATURE = b"data"

# --- header section ------------------------------------------------------------------------

FileIdentifier = Struct(
    "signature" / Bytes(8) * '"vhdxfile"',
    "creator" / Bytes(512) * "UTF-16LE name of the program that made the file, NUL-padded",
)  # at offset 0; the rest of the first 64 KiB is reserved

VhdxHeader = Struct(
    "signature" / Bytes(4) * '"head"',
    "checksum" / Int32ul * "CRC-32C over the 4 KiB header with this field taken as zero",
    "sequence_number" / Int64ul * "the valid header with the higher number is current",
    "file_write_guid" / Bytes(16) * "changed on every open for writing",
    "data_write_guid" / Bytes(16) * "changed before the first guest-visible write of a session",
    "log_guid" / Bytes(16) * "identifies the log entries to replay; all zero = no log",
    "log_version" / Int16ul * "0",
    "version" / Int16ul * "1",
    "log_length" / Int32ul * "bytes, a multiple of 1 MiB",
    "log_offset" / Int64ul * "host offset of the log, a multiple of 1 MiB",
)  # 80 bytes of a 4 KiB structure (the rest reserved); copies at 64 KiB and 128 KiB

RegionTableHeader = Struct(
    "signature" / Bytes(4) * '"regi"',
    "checksum" / Int32ul * "CRC-32C over the 64 KiB table with this field taken as zero",
    "entry_count" / Int32ul * "entries that follow (at most 2047)",
    "reserved" / Int32ul,
)  # 16 bytes; copies at 192 KiB and 256 KiB

RegionTableEntry = Struct(
    "guid" / Bytes(16) * "which region (RegionGuid: BAT, metadata, ...)",
    "file_offset" / Int64ul * "host offset, a multiple of 1 MiB",
    "length" / Int32ul * "bytes, a multiple of 1 MiB",
    "flags" / FlagsEnum(Int32ul, Required=1)
    * "Required: refuse the file if the region is not understood",
)  # 32 bytes

HEADER_OFFSETS = (64 * K, 128 * K)
HEADER_SIZE = 4 * K
REGION_TABLE_OFFSETS = (192 * K, 256 * K)
REGION_TABLE_SIZE = 64 * K
HEADER_SECTION = 1 * M
MAX_TABLE_ENTRIES = 2047  # region table and metadata table entries, at most

# --- metadata region -----------------------------------------------------------------------

MetadataTableHeader = Struct(
    "signature" / Bytes(8) * '"metadata"',
    "reserved" / Int16ul,
    "entry_count" / Int16ul * "entries that follow (at most 2047)",
    Padding(20),
)  # 32 bytes at the start of the metadata region (table: 64 KiB)

MetadataTableEntry = Struct(
    "item_id" / Bytes(16) * "which metadata item (MetadataItemGuid)",
    "offset" / Int32ul * "bytes from the start of the metadata region (>= 64 KiB)",
    "length" / Int32ul * "bytes (at most 1 MiB)",
    "flags" / FlagsEnum(Int32ul, IsUser=1, IsVirtualDisk=2, IsRequired=4)
    * "IsUser: a user item; IsVirtualDisk: describes the disk, not the file; "
    "IsRequired: refuse the file if the item is not understood",
    "reserved2" / Int32ul,
)  # 32 bytes

FileParameters = Struct(
    "block_size" / Int32ul * "payload block size, bytes (1 MiB..256 MiB, a power of 2)",
    "flags" / FlagsEnum(Int32ul, LeaveBlockAllocated=1, HasParent=2)
    * "LeaveBlockAllocated: a fixed file; HasParent: a differencing file",
)

ParentLocatorHeader = Struct(
    "locator_type" / Bytes(16) * "B04AEFB7-D19E-4A81-B789-25B8E9445913 for a VHDX parent",
    "reserved" / Int16ul,
    "key_value_count" / Int16ul * "key/value entries that follow",
)  # 20 bytes

ParentLocatorEntry = Struct(
    "key_offset" / Int32ul * "bytes from the start of the locator item",
    "value_offset" / Int32ul * "bytes from the start of the locator item",
    "key_length" / Int16ul * "bytes of UTF-16LE",
    "value_length" / Int16ul * "bytes of UTF-16LE",
)  # 12 bytes

METADATA_TABLE_SIZE = 64 * K
MAX_ITEM_LENGTH = 1 * M
ENTRY_SIZE = RegionTableEntry.sizeof()  # region and metadata table entries: 32 bytes
TABLE_HEADER_SIZES = (RegionTableHeader.sizeof(), MetadataTableHeader.sizeof())


def flag(struct: Struct, field: str, name: str) -> int:
    """The value of flag ``name`` of a FlagsEnum field, from its declaration."""
    sc = next(x for x in struct.subcons if x.name == field)
    while not isinstance(sc, FlagsEnum):
        sc = sc.subcon
    return sc.flags[name]


LEAVE_BLOCKS_ALLOCATED = flag(FileParameters, "flags", "LeaveBlockAllocated")
HAS_PARENT = flag(FileParameters, "flags", "HasParent")
REGION_REQUIRED = flag(RegionTableEntry, "flags", "Required")
ITEM_IS_REQUIRED = flag(MetadataTableEntry, "flags", "IsRequired")
# the same layouts with flags read as integers, for the code that computes with them
RegionTableEntryValues = plain(RegionTableEntry)
MetadataTableEntryValues = plain(MetadataTableEntry)
FileParametersValues = plain(FileParameters)


def _guid(text: str) -> bytes:
    return uuid.UUID(text).bytes_le


class RegionGuid(bytes, Enum):
    """Regions the specification defines (members equal, and hash as, their 16 bytes)."""

    BAT = _guid("2DC27766-F623-4200-9D64-115E9BFD4A08")
    METADATA = _guid("8B7CA206-4790-4B9A-B8FE-575F050F886E")


class MetadataItemGuid(bytes, Enum):
    """Metadata items the specification defines (members equal their 16 bytes)."""

    FILE_PARAMETERS = _guid("CAA16737-FA36-4D43-B3B6-33F0AA44E76B")
    VIRTUAL_DISK_SIZE = _guid("2FA54224-CD1B-4876-B211-5DBED83BF4B8")
    PAGE_83_DATA = _guid("BECA12AB-B2E6-4523-93EF-C309E000C746")
    LOGICAL_SECTOR_SIZE = _guid("8141BF1D-A96F-4709-BA47-F233A8FAAB5F")
    PHYSICAL_SECTOR_SIZE = _guid("CDA348C7-445D-4471-9CC9-E9885251C556")
    PARENT_LOCATOR = _guid("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C")


class ParentLocatorType(bytes, Enum):
    """Parent locator types (``ParentLocatorHeader.locator_type``)."""

    VHDX = _guid("B04AEFB7-D19E-4A81-B789-25B8E9445913")


BAT_GUID = RegionGuid.BAT
METADATA_GUID = RegionGuid.METADATA
FILE_PARAMETERS_GUID = MetadataItemGuid.FILE_PARAMETERS
VIRTUAL_DISK_SIZE_GUID = MetadataItemGuid.VIRTUAL_DISK_SIZE
PAGE_83_DATA_GUID = MetadataItemGuid.PAGE_83_DATA
LOGICAL_SECTOR_SIZE_GUID = MetadataItemGuid.LOGICAL_SECTOR_SIZE
PHYSICAL_SECTOR_SIZE_GUID = MetadataItemGuid.PHYSICAL_SECTOR_SIZE
PARENT_LOCATOR_GUID = MetadataItemGuid.PARENT_LOCATOR
VHDX_PARENT_LOCATOR_TYPE = ParentLocatorType.VHDX
REGION_NAMES = {BAT_GUID: "BAT", METADATA_GUID: "metadata"}
METADATA_NAMES = {
    FILE_PARAMETERS_GUID: "file parameters",
    VIRTUAL_DISK_SIZE_GUID: "virtual disk size",
    PAGE_83_DATA_GUID: "page 83 data",
    LOGICAL_SECTOR_SIZE_GUID: "logical sector size",
    PHYSICAL_SECTOR_SIZE_GUID: "physical sector size",
    PARENT_LOCATOR_GUID: "parent locator",
}
REQUIRED_ITEMS = (
    FILE_PARAMETERS_GUID,
    VIRTUAL_DISK_SIZE_GUID,
    PAGE_83_DATA_GUID,
    LOGICAL_SECTOR_SIZE_GUID,
    PHYSICAL_SECTOR_SIZE_GUID,
)

# --- block allocation table ----------------------------------------------------------------


class PayloadBlockState(IntEnum):
    """State of a payload block's BAT entry."""

    PAYLOAD_BLOCK_NOT_PRESENT = 0  # never written: zeros, or the parent's data
    PAYLOAD_BLOCK_UNDEFINED = 1  # contents undefined (read as zeros)
    PAYLOAD_BLOCK_ZERO = 2  # reads as zeros
    PAYLOAD_BLOCK_UNMAPPED = 3  # unmapped (trimmed): zeros or anything
    PAYLOAD_BLOCK_UNMAPPED_V095 = 5  # the value draft 0.95 of the specification used
    PAYLOAD_BLOCK_FULLY_PRESENT = 6  # data at FileOffsetMB
    PAYLOAD_BLOCK_PARTIALLY_PRESENT = 7  # sectors marked in the sector bitmap are here


class SectorBitmapState(IntEnum):
    """State of a sector bitmap block's BAT entry (differencing files)."""

    SB_BLOCK_NOT_PRESENT = 0
    SB_BLOCK_PRESENT = 6


def _bat_entry(state_doc: str) -> ByteSwapped:
    # a little-endian 64-bit word: byte-swapped, its bits run from bit 63 down to bit 0
    return ByteSwapped(BitStruct(
        "file_offset_mb" / BitsInteger(44) * "host offset of the block, MiB (bits 20..63)",
        "reserved" / BitsInteger(17) * "bits 3..19, zero",
        "state" / BitsInteger(3) * state_doc,
    ))


PayloadBatEntry = _bat_entry("PayloadBlockState (bits 0..2)")
SectorBitmapBatEntry = _bat_entry("SectorBitmapState (bits 0..2)")


def _bit_fields(entry: ByteSwapped) -> dict[str, tuple[int, int]]:
    """(shift, width) of each field of a byte-swapped BitStruct, from its declaration."""
    fields = entry.subcon.subcon.subcons
    out: dict[str, tuple[int, int]] = {}
    shift = sum(sc.sizeof() for sc in fields)
    for sc in fields:
        shift -= sc.sizeof()
        out[sc.name] = (shift, sc.sizeof())
    return out


_BAT_BITS = _bit_fields(PayloadBatEntry)
BAT_STATE_MASK = (1 << _BAT_BITS["state"][1]) - 1  # fast path: entry & mask is the state
BAT_OFFSET_SHIFT = _BAT_BITS["file_offset_mb"][0]  # entry >> shift is FileOffsetMB
BAT_ENTRY_SIZE = PayloadBatEntry.sizeof()
BAT_ENTRY_DTYPE = f"<u{BAT_ENTRY_SIZE}"  # numpy view of a BAT (little-endian entries)

PAYLOAD_BLOCK_NOT_PRESENT = int(PayloadBlockState.PAYLOAD_BLOCK_NOT_PRESENT)
PAYLOAD_BLOCK_UNDEFINED = int(PayloadBlockState.PAYLOAD_BLOCK_UNDEFINED)
PAYLOAD_BLOCK_ZERO = int(PayloadBlockState.PAYLOAD_BLOCK_ZERO)
PAYLOAD_BLOCK_UNMAPPED = int(PayloadBlockState.PAYLOAD_BLOCK_UNMAPPED)
PAYLOAD_BLOCK_UNMAPPED_V095 = int(PayloadBlockState.PAYLOAD_BLOCK_UNMAPPED_V095)
PAYLOAD_BLOCK_FULLY_PRESENT = int(PayloadBlockState.PAYLOAD_BLOCK_FULLY_PRESENT)
PAYLOAD_BLOCK_PARTIALLY_PRESENT = int(PayloadBlockState.PAYLOAD_BLOCK_PARTIALLY_PRESENT)
SB_BLOCK_NOT_PRESENT = int(SectorBitmapState.SB_BLOCK_NOT_PRESENT)
SB_BLOCK_PRESENT = int(SectorBitmapState.SB_BLOCK_PRESENT)
RESERVED_STATE = 4  # the one 3-bit state no version of the specification gives a meaning

SECTOR_BITMAP_BLOCK = 1 * M
SECTORS_PER_CHUNK = 1 << 23  # sectors one 1 MiB sector bitmap block describes
MAX_VIRTUAL_SIZE = 64 << 40  # the specification's limit: 64 TiB

# --- log -----------------------------------------------------------------------------------

LogEntryHeader = Struct(
    "signature" / Bytes(4) * '"loge"',
    "checksum" / Int32ul * "CRC-32C over the whole entry with this field taken as zero",
    "entry_length" / Int32ul * "bytes, a multiple of 4 KiB",
    "tail" / Int32ul * "log offset of the oldest entry still needed (start of the sequence)",
    "sequence_number" / Int64ul * "entries of a sequence count up by one; never 0",
    "descriptor_count" / Int32ul * "descriptors that follow this header",
    "reserved" / Int32ul,
    "log_guid" / Bytes(16) * "must equal the header's LogGuid",
    "flushed_file_offset" / Int64ul * "file size when the entry was written (before it)",
    "last_file_offset" / Int64ul * "file size the entry needs (after it)",
)  # 64 bytes; descriptors follow, 32 bytes each, filling whole 4 KiB sectors

ZeroDescriptor = Struct(
    "signature" / Bytes(4) * '"zero"',
    "reserved" / Int32ul,
    "zero_length" / Int64ul * "bytes to zero, a multiple of 4 KiB",
    "file_offset" / Int64ul * "host offset, a multiple of 4 KiB",
    "sequence_number" / Int64ul * "the entry's sequence number",
)

DataDescriptor = Struct(
    "signature" / Bytes(4) * '"desc"',
    "trailing_bytes" / Bytes(4) * "last 4 bytes of the 4 KiB sector",
    "leading_bytes" / Bytes(8) * "first 8 bytes of the 4 KiB sector",
    "file_offset" / Int64ul * "host offset, a multiple of 4 KiB",
    "sequence_number" / Int64ul * "the entry's sequence number",
)

DataSector = Struct(
    "signature" / Bytes(4) * '"data"',
    "sequence_high" / Int32ul * "high 32 bits of the sequence number",
    "data" / Bytes(4084) * "bytes 8..4091 of the sector to write",
    "sequence_low" / Int32ul * "low 32 bits of the sequence number",
)  # 4 KiB, one per data descriptor, after the descriptor sectors

LOG_SECTOR = 4 * K
LOG_ENTRY_HEADER_SIZE = LogEntryHeader.sizeof()
DESCRIPTOR_SIZE = ZeroDescriptor.sizeof()  # both descriptor kinds: 32 bytes
assert DESCRIPTOR_SIZE == DataDescriptor.sizeof() and DataSector.sizeof() == LOG_SECTOR


# --- shared helpers ------------------------------------------------------------------------


def checksum_ok(block: bytes, at: int = 4) -> bool:
    """True when the CRC-32C stored at ``at`` matches ``block`` with that field zeroed."""
    if len(block) < at + 4:
        return False
    stored = int.from_bytes(block[at : at + 4], "little")
    return crc32c(block[:at] + bytes(4) + block[at + 4 :]) == stored


def guid_str(raw: bytes) -> str:
    """A Microsoft GUID from its 16 on-disk bytes, as lowercase text."""
    return str(uuid.UUID(bytes_le=bytes(raw)))


def utf16_text(raw: bytes) -> str:
    """UTF-16LE text up to its first NUL."""
    text = bytes(raw).decode("utf-16-le", "replace")
    return text.split("\0", 1)[0]
