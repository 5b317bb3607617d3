"""exFAT on-disk layouts, named as Microsoft's exFAT file system specification names them.

The main boot sector, and the 32-byte directory entries: the File entry set (File,
Stream Extension, File Name), and the Allocation Bitmap, Up-case Table, Volume Label and
Volume GUID entries of the root directory. The boot sector, the label entry, the entry
types and the volume flags are declared in :mod:`vdinspect.volumes.exfat_layout` (the
probe reads them too) and re-exported here. Entry types, volume flags, secondary flags and
file attributes are ``Enum``/``FlagsEnum``; the fast paths (``struct`` formats of the
File and Stream Extension entries, the checksum's skipped bytes, the File Name slice)
come from these declarations.
"""

from __future__ import annotations

import enum

from construct import Bytes, Enum, FlagsEnum, Int8ul, Int16ul, Int32ul, Int64ul, Struct

from ...layout import field_slice, fields, offset_of, scalar_dtype, struct_format
from ...volumes.exfat_layout import (
    EXFAT_NAME,
    FILE_SYSTEM_NAME,
    MAX_CLUSTER_SHIFT,
    MAX_SECTOR_SHIFT,
    MIN_SECTOR_SHIFT,
    BootSector,
    EntryType,
    VolumeFlags,
    VolumeLabelEntry,
    boot_sector_problem,
    volume_label_text,
)


class SecondaryFlags(enum.IntFlag):
    """GeneralSecondaryFlags of a Stream Extension entry."""

    AllocationPossible = 0x01
    NoFatChain = 0x02  # the clusters are contiguous; the FAT holds no chain for them


class FileAttributes(enum.IntFlag):
    ReadOnly = 0x01
    Hidden = 0x02
    System = 0x04
    Directory = 0x10
    Archive = 0x20


FatEntry = Int32ul * "next cluster: 0 free, 0xFFFFFFF7 bad, 0xFFFFFFFF end of chain"
NameUnit = Int16ul * "one UTF-16 code unit of a name (FileName, VolumeLabel, up-case table)"
BootChecksum = Int32ul * "one repeat of the boot checksum (sector 11 is filled with them)"

FileEntry = Struct(
    "EntryType" / Enum(Int8ul, EntryType) * "0x85 (0x05 deleted)",
    "SecondaryCount" / Int8ul * "secondary entries that follow (2..18)",
    "SetChecksum" / Int16ul * "checksum of the whole set, these two bytes excluded",
    "FileAttributes" / FlagsEnum(Int16ul, FileAttributes) * "R, H, S, directory, archive",
    "Reserved1" / Int16ul * "zero",
    "CreateTimestamp" / Int32ul * "date<<16 | time, as FAT packs them",
    "LastModifiedTimestamp" / Int32ul * "date<<16 | time",
    "LastAccessedTimestamp" / Int32ul * "date<<16 | time",
    "Create10msIncrement" / Int8ul * "0..199 units of 10 ms",
    "LastModified10msIncrement" / Int8ul * "0..199 units of 10 ms",
    "CreateUtcOffset" / Int8ul * "bit 7 valid; bits 0-6 signed 15-minute steps",
    "LastModifiedUtcOffset" / Int8ul * "as above",
    "LastAccessedUtcOffset" / Int8ul * "as above",
    "Reserved2" / Bytes(7) * "zero",
)  # 32 bytes

StreamExtensionEntry = Struct(
    "EntryType" / Enum(Int8ul, EntryType) * "0xC0 (0x40 deleted)",
    "GeneralSecondaryFlags" / FlagsEnum(Int8ul, SecondaryFlags) * "AllocationPossible, NoFatChain",
    "Reserved1" / Int8ul * "zero",
    "NameLength" / Int8ul * "name length in UTF-16 units (1..255)",
    "NameHash" / Int16ul * "hash of the up-cased name",
    "Reserved2" / Int16ul * "zero",
    "ValidDataLength" / Int64ul * "bytes written; the rest reads as zeros",
    "Reserved3" / Int32ul * "zero",
    "FirstCluster" / Int32ul * "first cluster (0 = no clusters)",
    "DataLength" / Int64ul * "size in bytes",
)  # 32 bytes

FileNameEntry = Struct(
    "EntryType" / Enum(Int8ul, EntryType) * "0xC1 (0x41 deleted)",
    "GeneralSecondaryFlags" / Int8ul * "zero",
    "FileName" / Bytes(30) * "15 UTF-16 units",
)

AllocationBitmapEntry = Struct(
    "EntryType" / Enum(Int8ul, EntryType) * "0x81",
    "BitmapFlags" / Int8ul * "bit 0: 0 = first bitmap, 1 = second (TexFAT)",
    "Reserved" / Bytes(18) * "zero",
    "FirstCluster" / Int32ul * "first cluster of the bitmap",
    "DataLength" / Int64ul * "bytes (ceil(ClusterCount / 8))",
)

UpcaseTableEntry = Struct(
    "EntryType" / Enum(Int8ul, EntryType) * "0x82",
    "Reserved1" / Bytes(3) * "zero",
    "TableChecksum" / Int32ul * "checksum of the table's bytes",
    "Reserved2" / Bytes(12) * "zero",
    "FirstCluster" / Int32ul * "first cluster of the table",
    "DataLength" / Int64ul * "bytes",
)

VolumeGuidEntry = Struct(
    "EntryType" / Enum(Int8ul, EntryType) * "0xA0",
    "SecondaryCount" / Int8ul * "0",
    "SetChecksum" / Int16ul * "checksum of this entry",
    "GeneralPrimaryFlags" / Int16ul * "zero",
    "VolumeGuid" / Bytes(16) * "GUID (Windows byte order)",
    "Reserved" / Bytes(10) * "zero",
)

ENTRY_SIZE = FileEntry.sizeof()  # every directory entry is 32 bytes
BOOT_REGION_SECTORS = 12  # boot sector, 8 extended, OEM parameters, reserved, checksum
CHECKSUM_SECTOR = 11  # the last sector of a boot region holds the checksum
IN_USE = 0x80  # EntryType bit 7: the entry is in use

# the fast paths: integers for the hot loops
T_END, T_BITMAP, T_UPCASE, T_LABEL, T_FILE, T_GUID, T_STREAM, T_NAME = (int(t) for t in (
    EntryType.END_OF_DIRECTORY, EntryType.ALLOCATION_BITMAP, EntryType.UPCASE_TABLE,
    EntryType.VOLUME_LABEL, EntryType.FILE, EntryType.VOLUME_GUID, EntryType.STREAM_EXTENSION,
    EntryType.FILE_NAME))
FLAG_NO_FAT_CHAIN = int(SecondaryFlags.NoFatChain)
VOL_ACTIVE_FAT, VOL_DIRTY, VOL_MEDIA_FAILURE = (
    int(VolumeFlags.ActiveFat), int(VolumeFlags.VolumeDirty), int(VolumeFlags.MediaFailure)
)
ATTR_DIRECTORY = int(FileAttributes.Directory)
FILE_ENTRY = struct_format(FileEntry)
STREAM_ENTRY = struct_format(StreamExtensionEntry)
FILE_NAME = field_slice(FileNameEntry, "FileName")
SECONDARY_COUNT = offset_of(FileEntry, "SecondaryCount")
SET_CHECKSUM_AT = offset_of(FileEntry, "SetChecksum")
CHECKSUM_DTYPE = scalar_dtype(BootChecksum)
NAME_UNIT_DTYPE = scalar_dtype(NameUnit)

# bytes the checksums skip: VolumeFlags and PercentInUse may change without a new
# checksum; a set's checksum does not cover its own SetChecksum field
BOOT_CHECKSUM_SKIP = frozenset(
    off + k
    for name, off, n in fields(BootSector)
    if name in ("VolumeFlags", "PercentInUse")
    for k in range(n)
)
SET_CHECKSUM_SKIP = frozenset(range(field_slice(FileEntry, "SetChecksum").start,
                                    field_slice(FileEntry, "SetChecksum").stop))
#: byte offset of each boot sector field (for findings and quick checks)
BOOT_AT = {name: off for name, off, _ in fields(BootSector)}
MUST_BE_ZERO = field_slice(BootSector, "MustBeZero")
BOOT_SIGNATURE = field_slice(BootSector, "BootSignature")

__all__ = [
    "AllocationBitmapEntry", "BootChecksum", "BootSector", "EntryType", "FatEntry",
    "FileAttributes", "FileEntry", "FileNameEntry", "NameUnit", "SecondaryFlags",
    "StreamExtensionEntry", "UpcaseTableEntry", "VolumeFlags", "VolumeGuidEntry",
    "VolumeLabelEntry", "boot_sector_problem", "EXFAT_NAME", "FILE_SYSTEM_NAME",
    "MAX_CLUSTER_SHIFT", "MAX_SECTOR_SHIFT", "MIN_SECTOR_SHIFT", "volume_label_text",
]
