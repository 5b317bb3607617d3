"""What the scans look for: each signature's place inside a 512-byte sector, derived from
the structure that holds it (declared once, in the volume or container package that reads
it: ``volumes/*_layout.py`` for the filesystems' superblocks and boot sectors, LUKS and
swap).

Every structure the scan looks for starts on a 512-byte boundary of the partition or
file that holds it, and partitions and image files start on such a boundary too, so a
signature is looked for only at its offset inside each sector of the disk.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...containers.vdi.structs import PreHeader as VdiPreHeader
from ...containers.vhd.structs import DynamicDiskHeader, HardDiskFooter
from ...containers.vmdk.structs import COWD_MAGIC, SPARSE_MAGIC
from ...layout import offset_of
from ...volumes.btrfs_layout import MAGIC as BTRFS_MAGIC
from ...volumes.btrfs_layout import Superblock as BtrfsSuperblock
from ...volumes.exfat_layout import EXFAT_NAME
from ...volumes.exfat_layout import BootSector as ExfatBootSector
from ...volumes.ext_layout import EXT_MAGIC
from ...volumes.ext_layout import Superblock as ExtSuperblock
from ...volumes.fat_layout import BootSector as FatBootSector
from ...volumes.fat_layout import Fat16Ext, Fat32Ext
from ...volumes.gpt import SIGNATURE as GPT_SIGNATURE
from ...volumes.gpt import GptHeader
from ...volumes.linux_layout import LUKS2_SECONDARY_MAGIC, LUKS_MAGIC, SWAP_MAGIC, SWAP_PAGE_SIZES
from ...volumes.lvm2 import LABEL_ID, LabelHeader
from ...volumes.mbr import BOOT_SIGNATURE, ENTRY_OFFSET, MasterBootRecord, PartitionEntry
from ...volumes.ntfs_layout import BITLOCKER_OEM as BITLOCKER_SIGNATURE
from ...volumes.ntfs_layout import NTFS_OEM
from ...volumes.ntfs_layout import BootSector as NtfsBootSector
from ...volumes.xfs_layout import XFS_SB_MAGIC_BYTES
from ...volumes.xfs_layout import Superblock as XfsSuperblock

SECTOR = 512  # the scan's step: every structure looked for starts on such a boundary

SESPARSE_MAGIC = b"\xbe\xba\xfe\xca\0\0\0\0"  # 0xcafebabe, little-endian 64 bits
VMDK_DESCRIPTOR = b"# Disk DescriptorFile"
VDI_SIGNATURE = b"\x7f\x10\xda\xbe"  # 0xbeda107f little-endian
PARALLELS_MAGICS = (b"WithoutFreeSpace", b"WithouFreSpacExt")


@dataclass(frozen=True)
class Signature:
    """A magic looked for at ``at`` bytes into each sector; ``name`` says what it marks.

    ``zero`` are more byte offsets in the sector that must hold 0, and ``flag`` offsets
    whose byte must be 0x00 or 0x80: cheap column tests that keep a short magic (two bytes)
    from matching once in every 65536 sectors of random data."""

    name: str
    at: int
    magic: bytes
    kind: str  # "partition" or "image"
    zero: tuple[int, ...] = ()
    flag: tuple[int, ...] = ()


def _high_bytes(st, field: str) -> tuple[int, ...]:
    """The offsets of a little-endian 32-bit field's three high bytes (0 for small values)."""
    at = offset_of(st, field)
    return (at + 1, at + 2, at + 3)


_FAT16_TYPE = FatBootSector.sizeof() + offset_of(Fat16Ext, "BS_FilSysType")
_FAT32_TYPE = FatBootSector.sizeof() + offset_of(Fat32Ext, "BS_FilSysType")
_EXT_MAGIC = offset_of(ExtSuperblock, "s_magic")

PARTITION_SIGNATURES = (
    Signature("ntfs", offset_of(NtfsBootSector, "oem_id"), NTFS_OEM, "partition"),
    Signature("exfat", offset_of(ExfatBootSector, "FileSystemName"), EXFAT_NAME, "partition"),
    Signature("bitlocker", offset_of(NtfsBootSector, "oem_id"), BITLOCKER_SIGNATURE,
              "partition"),
    Signature("fat", _FAT32_TYPE, b"FAT32   ", "partition"),
    Signature("fat", _FAT16_TYPE, b"FAT1", "partition"),  # FAT12 / FAT16
    Signature("fat", _FAT16_TYPE, b"FAT     ", "partition"),
    Signature("ext", _EXT_MAGIC, EXT_MAGIC.to_bytes(2, "little"), "partition",
              zero=_high_bytes(ExtSuperblock, "s_first_data_block")  # 0 or 1
              + _high_bytes(ExtSuperblock, "s_log_block_size")  # 0..6
              + _high_bytes(ExtSuperblock, "s_rev_level")),  # 0 or 1
    Signature("xfs", offset_of(XfsSuperblock, "sb_magicnum"), XFS_SB_MAGIC_BYTES, "partition"),
    Signature("btrfs", offset_of(BtrfsSuperblock, "magic"), BTRFS_MAGIC, "partition"),
    Signature("lvm2", offset_of(LabelHeader, "id"), LABEL_ID, "partition"),
    Signature("swap", (SWAP_PAGE_SIZES[0] - len(SWAP_MAGIC)) % SECTOR, SWAP_MAGIC,
              "partition"),
    Signature("luks", 0, LUKS_MAGIC, "partition"),
    Signature("luks2-secondary", 0, LUKS2_SECONDARY_MAGIC, "partition"),
    Signature("gpt", offset_of(GptHeader, "signature"), GPT_SIGNATURE, "partition"),
    Signature("mbr", offset_of(MasterBootRecord, "boot_signature"), BOOT_SIGNATURE,
              "partition", flag=tuple(ENTRY_OFFSET + k * PartitionEntry.sizeof()
                                      + offset_of(PartitionEntry, "status") for k in range(4))),
)

IMAGE_SIGNATURES = (
    Signature("qcow", 0, b"QFI\xfb", "image"),
    Signature("vmdk-sparse", 0, SPARSE_MAGIC, "image"),
    Signature("vmdk-cowd", 0, COWD_MAGIC, "image"),
    Signature("vmdk-sesparse", 0, SESPARSE_MAGIC, "image"),
    Signature("vmdk-descriptor", 0, VMDK_DESCRIPTOR, "image"),
    Signature("vhd-footer", offset_of(HardDiskFooter, "cookie"), b"conectix", "image"),
    Signature("vhd-dynamic-header", offset_of(DynamicDiskHeader, "cookie"), b"cxsparse",
              "image"),
    Signature("vhdx", 0, b"vhdxfile", "image"),
    Signature("vdi", offset_of(VdiPreHeader, "u32Signature"), VDI_SIGNATURE, "image"),
    *(Signature("parallels", 0, m, "image") for m in PARALLELS_MAGICS),
)
