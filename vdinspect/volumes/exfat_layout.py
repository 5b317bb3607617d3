"""The exFAT boot sector and volume label entry, and the one check of a boot sector.

Declared here, below the filesystem drivers, because both the probe (``probes.py``) and
the exFAT driver (``vdinspect.filesystems.exfat``) read them; the driver re-exports them
from its ``structs`` module. Field names are those of Microsoft's exFAT specification.
"""

from __future__ import annotations

import enum

from construct import Bytes, Enum, FlagsEnum, Int8ul, Int16ul, Int32ul, Int64ul, Struct

from ..layout import field_slice, offset_of
from .signatures import EXFAT_NAME


class EntryType(enum.IntEnum):
    """EntryType of an in-use directory entry; clearing bit 7 (InUse) marks it deleted."""

    END_OF_DIRECTORY = 0x00
    ALLOCATION_BITMAP = 0x81
    UPCASE_TABLE = 0x82
    VOLUME_LABEL = 0x83
    FILE = 0x85
    VOLUME_GUID = 0xA0
    STREAM_EXTENSION = 0xC0
    FILE_NAME = 0xC1


class VolumeFlags(enum.IntFlag):
    ActiveFat = 0x01  # 0 = first FAT and bitmap, 1 = second (TexFAT)
    VolumeDirty = 0x02
    MediaFailure = 0x04
    ClearToZero = 0x08



BootSector = Struct(
    "JumpBoot" / Bytes(3) * "EB 76 90",
    "FileSystemName" / Bytes(8) * "'EXFAT   '",
    "MustBeZero" / Bytes(53) * "zero (where a FAT BPB would be)",
    "PartitionOffset" / Int64ul * "sectors before the volume on the disk (0 = ignore)",
    "VolumeLength" / Int64ul * "sectors in the volume",
    "FatOffset" / Int32ul * "sector of the first FAT",
    "FatLength" / Int32ul * "sectors per FAT",
    "ClusterHeapOffset" / Int32ul * "sector of cluster 2",
    "ClusterCount" / Int32ul * "clusters in the heap",
    "FirstClusterOfRootDirectory" / Int32ul * "first cluster of the root directory",
    "VolumeSerialNumber" / Int32ul * "volume serial number",
    "FileSystemRevision" / Int16ul * "major.minor as two bytes (1.00)",
    "VolumeFlags" / FlagsEnum(Int16ul, VolumeFlags) * "active FAT, volume dirty, media failure",
    "BytesPerSectorShift" / Int8ul * "log2 of the sector size (9..12)",
    "SectorsPerClusterShift" / Int8ul * "log2 of sectors per cluster (sum with above <= 25)",
    "NumberOfFats" / Int8ul * "1, or 2 for TexFAT",
    "DriveSelect" / Int8ul * "INT 13h drive number",
    "PercentInUse" / Int8ul * "percentage of clusters in use (0xFF = unknown)",
    "Reserved" / Bytes(7) * "zero",
    "BootCode" / Bytes(390) * "boot code",
    "BootSignature" / Int16ul * "0xAA55",
)  # 512 bytes (the rest of a larger sector is padding)

VolumeLabelEntry = Struct(
    "EntryType" / Enum(Int8ul, EntryType) * "0x83 (0x03 = no label)",
    "CharacterCount" / Int8ul * "label length in UTF-16 units (0..11)",
    "VolumeLabel" / Bytes(22) * "11 UTF-16 units",
    "Reserved" / Bytes(8) * "zero (some formatters continue the label here)",
)

#: UTF-16 units a label may have: the specification says 11, but formatters (exfat-utils'
#: mkexfatfs, some cameras) write up to 15, running into Reserved; Windows and The Sleuth
#: Kit show all 15, so vdinspect does too
MAX_LABEL_UNITS = 15
_LABEL_AT = offset_of(VolumeLabelEntry, "VolumeLabel")


def volume_label_text(entry: bytes) -> str:
    """The label a Volume Label entry holds: CharacterCount UTF-16 units (at most 15, the
    last 4 in the Reserved bytes where a formatter put them there)."""
    count = min(entry[offset_of(VolumeLabelEntry, "CharacterCount")], MAX_LABEL_UNITS)
    return entry[_LABEL_AT : _LABEL_AT + 2 * count].decode("utf-16-le", "replace")


FILE_SYSTEM_NAME = field_slice(BootSector, "FileSystemName")
MIN_SECTOR_SHIFT, MAX_SECTOR_SHIFT = 9, 12  # 512..4096-byte sectors
MAX_CLUSTER_SHIFT = 25  # BytesPerSectorShift + SectorsPerClusterShift: clusters <= 32 MiB
_SECTOR_SHIFT_AT = offset_of(BootSector, "BytesPerSectorShift")
_CLUSTER_SHIFT_AT = offset_of(BootSector, "SectorsPerClusterShift")


def boot_sector_problem(bs: bytes) -> str | None:
    """Why a boot sector is not an exFAT one (name, sector and cluster size), or None.

    The one first check of an exFAT boot sector: the probe and the driver both call it
    (the driver then checks the whole boot region and its checksum).
    """
    if bs[FILE_SYSTEM_NAME] != EXFAT_NAME:
        return "no 'EXFAT' name"
    shift = bs[_SECTOR_SHIFT_AT]
    if not MIN_SECTOR_SHIFT <= shift <= MAX_SECTOR_SHIFT:
        return f"BytesPerSectorShift {shift} is not 9..12"
    if shift + bs[_CLUSTER_SHIFT_AT] > MAX_CLUSTER_SHIFT:
        return "the cluster size is over 32 MiB"
    return None
