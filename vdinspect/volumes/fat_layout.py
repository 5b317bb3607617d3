"""The FAT boot sector and directory entry, and the one check of a BIOS parameter block.

Declared here, below the filesystem drivers, because both the probe (``probes.py``, which
names the ``filesystem`` column of ``Disk.partitions()``) and the FAT driver
(``vdinspect.filesystems.fat``) read them; the driver re-exports them from its
``structs`` module. Field names are those of Microsoft's FAT specification (fatgen103).

The FAT type follows from the count of data clusters alone (fatgen103, "FAT Type
Determination"): fewer than 4085 clusters is FAT12, fewer than 65525 is FAT16, else
FAT32; a BPB with ``BPB_FATSz16 == 0`` is laid out as FAT32. At exactly 4084 clusters the
Linux kernel (``total_clusters > MAX_FAT12``, 0xFF4), ``fsck.fat`` and The Sleuth Kit
agree with the specification (FAT12); only libblkid's VERSION says FAT16 there.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from construct import Bytes, Container, FlagsEnum, Int8ul, Int16ul, Int32ul, Struct

from ..layout import struct_format
from ..units import SECTOR_SIZES, is_pow2

BootSector = Struct(
    "BS_jmpBoot" / Bytes(3) * "jump to the boot code (EB xx 90 or E9 xx xx)",
    "BS_OEMName" / Bytes(8) * "name of the formatting system",
    "BPB_BytsPerSec" / Int16ul * "bytes per sector: 512, 1024, 2048 or 4096",
    "BPB_SecPerClus" / Int8ul * "sectors per cluster: a power of 2, 1..128",
    "BPB_RsvdSecCnt" / Int16ul * "reserved sectors before the first FAT (>= 1)",
    "BPB_NumFATs" / Int8ul * "copies of the FAT (usually 2)",
    "BPB_RootEntCnt" / Int16ul * "32-byte entries in the fixed root directory (0 on FAT32)",
    "BPB_TotSec16" / Int16ul * "sectors in the volume if < 65536, else 0",
    "BPB_Media" / Int8ul * "media descriptor (F8 fixed disk, F0 removable)",
    "BPB_FATSz16" / Int16ul * "sectors per FAT on FAT12/16 (0 on FAT32)",
    "BPB_SecPerTrk" / Int16ul * "sectors per track (CHS geometry)",
    "BPB_NumHeads" / Int16ul * "heads (CHS geometry)",
    "BPB_HiddSec" / Int32ul * "sectors before this volume on the disk",
    "BPB_TotSec32" / Int32ul * "sectors in the volume if BPB_TotSec16 is 0",
)  # 36 bytes, common to all FAT types

Fat16Ext = Struct(
    "BS_DrvNum" / Int8ul * "BIOS drive number (0x80 hard disk)",
    "BS_Reserved1" / Int8ul * "reserved (Windows NT keeps dirty bits here)",
    "BS_BootSig" / Int8ul * "0x29 when the next three fields are present",
    "BS_VolID" / Int32ul * "volume serial number",
    "BS_VolLab" / Bytes(11) * "volume label, space padded ('NO NAME    ' = none)",
    "BS_FilSysType" / Bytes(8) * "informational 'FAT12   ' / 'FAT16   '",
)  # bytes 36..61 on FAT12/16

Fat32Ext = Struct(
    "BPB_FATSz32" / Int32ul * "sectors per FAT",
    "BPB_ExtFlags" / Int16ul * "bits 0-3 active FAT, bit 7 set = mirroring disabled",
    "BPB_FSVer" / Int16ul * "version (0.0)",
    "BPB_RootClus" / Int32ul * "first cluster of the root directory",
    "BPB_FSInfo" / Int16ul * "sector of the FSInfo structure",
    "BPB_BkBootSec" / Int16ul * "sector of the backup boot sector (usually 6)",
    "BPB_Reserved" / Bytes(12) * "zero",
    "BS_DrvNum" / Int8ul * "BIOS drive number",
    "BS_Reserved1" / Int8ul * "reserved",
    "BS_BootSig" / Int8ul * "0x29 when the next three fields are present",
    "BS_VolID" / Int32ul * "volume serial number",
    "BS_VolLab" / Bytes(11) * "volume label, space padded",
    "BS_FilSysType" / Bytes(8) * "informational 'FAT32   '",
)  # bytes 36..89 on FAT32


class Attribute(enum.IntFlag):
    """DIR_Attr bits (exFAT's FileAttributes use the same ones, without VOLUME_ID)."""

    READ_ONLY = 0x01
    HIDDEN = 0x02
    SYSTEM = 0x04
    VOLUME_ID = 0x08
    DIRECTORY = 0x10
    ARCHIVE = 0x20


class NtCase(enum.IntFlag):
    """DIR_NTRes bits Windows NT sets for an all-lower-case 8.3 base name or extension."""

    LOWER_BASE = 0x08
    LOWER_EXT = 0x10


DirEntry = Struct(
    "DIR_Name" / Bytes(11) * "8.3 name, space padded; [0] 0xE5 deleted, 0x00 end, 0x05 = 0xE5",
    "DIR_Attr" / FlagsEnum(Int8ul, Attribute) * "attribute bits; 0x0F marks a long-name entry",
    "DIR_NTRes" / FlagsEnum(Int8ul, NtCase) * "Windows NT: lower-case base name / extension",
    "DIR_CrtTimeTenth" / Int8ul * "creation time, units of 10 ms (0..199)",
    "DIR_CrtTime" / Int16ul * "creation time: hour<<11 | minute<<5 | seconds/2",
    "DIR_CrtDate" / Int16ul * "creation date: (year-1980)<<9 | month<<5 | day",
    "DIR_LstAccDate" / Int16ul * "last access date",
    "DIR_FstClusHI" / Int16ul * "high word of the first cluster (FAT32)",
    "DIR_WrtTime" / Int16ul * "last write time",
    "DIR_WrtDate" / Int16ul * "last write date",
    "DIR_FstClusLO" / Int16ul * "low word of the first cluster",
    "DIR_FileSize" / Int32ul * "size in bytes (0 for directories)",
)  # 32 bytes

#: the fast path of :data:`DirEntry` (one tuple per 32-byte entry, fields in order)
DIRENT = struct_format(DirEntry)
# DIR_Attr of a long-name entry, and the bits compared to find one (fast-path integers)
ATTR_LONG_NAME = int(
    Attribute.READ_ONLY | Attribute.HIDDEN | Attribute.SYSTEM | Attribute.VOLUME_ID
)
ATTR_LONG_NAME_MASK = int(ATTR_LONG_NAME | Attribute.DIRECTORY | Attribute.ARCHIVE)
DELETED, KANJI_E5 = 0xE5, 0x05  # DIR_Name[0]: a deleted entry; a name starting with 0xE5
NO_NAME = b"NO NAME    "
FAT12_MAX_CLUSTERS, FAT16_MAX_CLUSTERS = 4084, 65524  # more than this: the next type up
FAT32_MAX_CLUSTERS = 0x0FFFFFF6  # libblkid's limit for a FAT32 volume
FAT32_ENTRY_MASK = 0x0FFFFFFF  # FAT32 entries are 28 bits wide (the top 4 are reserved)


def fat_type(clusters: int, fat32_layout: bool) -> str:
    """'fat12', 'fat16' or 'fat32': FAT32 by its BPB, else FAT12 iff clusters < 4085."""
    if fat32_layout:
        return "fat32"
    return "fat12" if clusters <= FAT12_MAX_CLUSTERS else "fat16"


@dataclass(frozen=True)
class FatGeometry:
    """What a boot sector's BPB says about the volume (sector counts are in sectors)."""

    bpb: Container  # the common BPB, parsed with BootSector
    ext: Container  # Fat16Ext or Fat32Ext, parsed
    fat32_layout: bool  # BPB_FATSz16 == 0: the FAT32 form of the BPB
    total_sectors: int
    fat_sectors: int  # per FAT copy
    root_entries: int  # fixed root directory entries (0 on FAT32)
    root_dir_sectors: int
    data_sectors: int  # after the reserved sectors, the FATs and the root directory
    clusters: int  # CountofClusters (negative when the FATs do not fit)
    fstype: str  # fat12 / fat16 / fat32

    @property
    def sector_size(self) -> int:
        """BPB_BytsPerSec."""
        return self.bpb.BPB_BytsPerSec


def check_bpb(bs: bytes) -> FatGeometry | str:
    """The geometry a 512-byte boot sector's BPB describes, or why it is not a usable BPB.

    The one BPB check of the package: the probe and the FAT driver both call it.
    """
    if len(bs) < 512:
        return "shorter than 512 bytes"
    b = BootSector.parse(bs)
    ssize, spc = b.BPB_BytsPerSec, b.BPB_SecPerClus
    if ssize not in SECTOR_SIZES:
        return f"bytes per sector {ssize} is not 512..4096"
    if not is_pow2(spc):
        return f"sectors per cluster {spc} is not a power of 2"
    if b.BPB_RsvdSecCnt == 0:
        return "no reserved sectors"
    if b.BPB_NumFATs == 0:
        return "no FATs"
    fat32_layout = b.BPB_FATSz16 == 0
    ext = (Fat32Ext if fat32_layout else Fat16Ext).parse(bs[BootSector.sizeof():])
    fatsz = ext.BPB_FATSz32 if fat32_layout else b.BPB_FATSz16
    if fatsz == 0:
        return "FAT size is 0"
    total = b.BPB_TotSec16 or b.BPB_TotSec32
    if total == 0:
        return "total sectors is 0"
    root_entries = 0 if fat32_layout else b.BPB_RootEntCnt
    root_secs = (root_entries * 32 + ssize - 1) // ssize
    data = total - (b.BPB_RsvdSecCnt + b.BPB_NumFATs * fatsz + root_secs)
    clusters = data // spc
    return FatGeometry(b, ext, fat32_layout, total, fatsz, root_entries, root_secs, data,
                       clusters, fat_type(clusters, fat32_layout))
