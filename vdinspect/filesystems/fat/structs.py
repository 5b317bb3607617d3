"""FAT on-disk layouts, named as Microsoft's FAT specification (fatgen103) names them.

The boot sector's BIOS parameter block (its common part and the FAT12/16 and FAT32
forms) and the 8.3 directory entry are declared in :mod:`vdinspect.volumes.fat_layout`,
because the filesystem probe reads them too; they are re-exported here with FSInfo, the
VFAT long-name entry, the FAT entries and the codes and flags. The fast paths below
(``DIRENT``, the long-name character slices, the FAT entry dtypes) come from these
declarations.
"""

from __future__ import annotations

from construct import Bytes, Const, FlagsEnum, Int8ul, Int16ul, Int32ul, Struct

from ...layout import field_slice, offset_of, scalar_dtype
from ...volumes.fat_layout import (
    ATTR_LONG_NAME,
    ATTR_LONG_NAME_MASK,
    DELETED,
    DIRENT,
    FAT12_MAX_CLUSTERS,
    FAT16_MAX_CLUSTERS,
    FAT32_ENTRY_MASK,
    KANJI_E5,
    NO_NAME,
    SECTOR_SIZES,
    Attribute,
    BootSector,
    DirEntry,
    Fat16Ext,
    Fat32Ext,
    FatGeometry,
    NtCase,
    check_bpb,
    fat_type,
)

FSInfo = Struct(
    "FSI_LeadSig" / Const(0x41615252, Int32ul) * "'RRaA'",
    "FSI_Reserved1" / Bytes(480) * "zero",
    "FSI_StrucSig" / Int32ul * "0x61417272 'rrAa'",
    "FSI_Free_Count" / Int32ul * "last known free cluster count (0xFFFFFFFF = unknown)",
    "FSI_Nxt_Free" / Int32ul * "hint: where to look for a free cluster",
    "FSI_Reserved2" / Bytes(12) * "zero",
    "FSI_TrailSig" / Int32ul * "0xAA550000",
)  # 512 bytes, FAT32 only

LfnEntry = Struct(
    "LDIR_Ord" / Int8ul * "sequence number 1..20; 0x40 marks the last (first stored) entry",
    "LDIR_Name1" / Bytes(10) * "characters 1-5 (UCS-2)",
    "LDIR_Attr" / FlagsEnum(Int8ul, Attribute) * "ATTR_LONG_NAME (0x0F)",
    "LDIR_Type" / Int8ul * "0",
    "LDIR_Chksum" / Int8ul * "checksum of the short name this entry belongs to",
    "LDIR_Name2" / Bytes(12) * "characters 6-11",
    "LDIR_FstClusLO" / Int16ul * "0",
    "LDIR_Name3" / Bytes(4) * "characters 12-13",
)  # 32 bytes

Fat16Entry = Int16ul * "next cluster: 0 free, 0xFFF7 bad, 0xFFF8..0xFFFF end of chain"
Fat32Entry = Int32ul * "next cluster in the low 28 bits (the top 4 are reserved)"

# FAT[1] on FAT16/FAT32: the two high bits Windows clears while the volume is in use
FAT16_CLEAN, FAT16_NO_ERROR = 0x8000, 0x4000
FAT32_CLEAN, FAT32_NO_ERROR = 0x08000000, 0x04000000
FAT32_MASK = FAT32_ENTRY_MASK  # FAT32 entries are 28 bits wide (one declaration)
FSI_STRUC_SIG, FSI_TRAIL_SIG = 0x61417272, 0xAA550000
FSI_UNKNOWN = 0xFFFFFFFF  # FSI_Free_Count / FSI_Nxt_Free not known
FSI_FREE_COUNT_AT = offset_of(FSInfo, "FSI_Free_Count")
LFN_LAST = 0x40  # LDIR_Ord bit: the last (first stored) long-name entry of a name
MAX_DIR_BYTES = 65536 * 32  # a directory holds at most 65536 entries

# the fast paths: integers for the hot loops, slices for the long-name pieces
ATTR_READ_ONLY, ATTR_HIDDEN, ATTR_SYSTEM = (int(Attribute.READ_ONLY), int(Attribute.HIDDEN),
                                            int(Attribute.SYSTEM))
ATTR_VOLUME_ID, ATTR_DIRECTORY, ATTR_ARCHIVE = (int(Attribute.VOLUME_ID),
                                                int(Attribute.DIRECTORY),
                                                int(Attribute.ARCHIVE))
NT_LOWER_BASE, NT_LOWER_EXT = int(NtCase.LOWER_BASE), int(NtCase.LOWER_EXT)
LFN_CHKSUM = offset_of(LfnEntry, "LDIR_Chksum")
LFN_NAME_PARTS = tuple(field_slice(LfnEntry, f) for f in ("LDIR_Name1", "LDIR_Name2",
                                                          "LDIR_Name3"))
FAT16_DTYPE = scalar_dtype(Fat16Entry)
FAT32_DTYPE = scalar_dtype(Fat32Entry)
BPB_BYTSPERSEC_AT = offset_of(BootSector, "BPB_BytsPerSec")
BPB_FATSZ16_AT = offset_of(BootSector, "BPB_FATSz16")
BPB_TOTSEC16_AT = offset_of(BootSector, "BPB_TotSec16")
BPB_RSVDSECCNT_AT = offset_of(BootSector, "BPB_RsvdSecCnt")
BPB_FATSZ32_AT = BootSector.sizeof() + offset_of(Fat32Ext, "BPB_FATSz32")
BPB_EXTFLAGS_AT = BootSector.sizeof() + offset_of(Fat32Ext, "BPB_ExtFlags")
BPB_ROOTCLUS_AT = BootSector.sizeof() + offset_of(Fat32Ext, "BPB_RootClus")
EXT_FLAGS_NO_MIRROR, EXT_FLAGS_ACTIVE = 0x80, 0x0F  # BPB_ExtFlags bits
NO_SECTOR = (0, 0xFFFF)  # BPB_FSInfo / BPB_BkBootSec values meaning "there is none"

_ATTR_LETTERS = tuple(zip("RHSVDA", (ATTR_READ_ONLY, ATTR_HIDDEN, ATTR_SYSTEM, ATTR_VOLUME_ID,
                                     ATTR_DIRECTORY, ATTR_ARCHIVE)))


def _letters(attr: int) -> str:
    return "".join(c for c, bit in _ATTR_LETTERS if attr & bit)


_ATTR_TEXT = tuple(_letters(a) for a in range(64))  # every combination of the six bits


def attr_text(attr: int) -> str:
    """Attribute letters present, in the order R H S V D A (FAT and exFAT; a table
    lookup: every listed entry asks)."""
    return _ATTR_TEXT[attr & 0x3F]


__all__ = [
    "ATTR_ARCHIVE", "ATTR_DIRECTORY", "ATTR_HIDDEN", "ATTR_LONG_NAME",
    "ATTR_LONG_NAME_MASK", "ATTR_READ_ONLY", "ATTR_SYSTEM", "ATTR_VOLUME_ID", "Attribute",
    "BootSector", "DELETED", "DIRENT", "DirEntry", "FAT12_MAX_CLUSTERS", "FAT16_CLEAN",
    "FAT16_DTYPE", "FAT16_MAX_CLUSTERS", "FAT16_NO_ERROR", "FAT32_CLEAN", "FAT32_DTYPE",
    "FAT32_MASK", "FAT32_NO_ERROR", "FSI_STRUC_SIG", "FSI_TRAIL_SIG", "FSInfo",
    "Fat16Entry", "Fat16Ext", "Fat32Entry", "Fat32Ext", "FatGeometry", "KANJI_E5",
    "LFN_CHKSUM", "LFN_LAST", "LFN_NAME_PARTS", "LfnEntry", "MAX_DIR_BYTES", "NO_NAME",
    "NO_SECTOR", "NT_LOWER_BASE", "NT_LOWER_EXT", "NtCase", "SECTOR_SIZES", "attr_text",
    "check_bpb", "fat_type",
]
