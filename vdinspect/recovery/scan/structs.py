"""What the scans look for: each signature's place inside a 512-byte sector, derived from
the structure that holds it (declared once, in the filesystem, volume or container package),
and the two headers no package declared yet (LUKS, Linux swap).

Every structure the scan looks for starts on a 512-byte boundary of the partition or
file that holds it, and partitions and image files start on such a boundary too, so a
signature is looked for only at its offset inside each sector of the disk.

Sources: LUKS1 on-disk format specification 1.2.3 and LUKS2 on-disk format (cryptsetup
docs); linux include/linux/swap.h (``union swap_header``); BitLocker: libyal libbde
("BitLocker Drive Encryption (BDE) format").
"""

from __future__ import annotations

from dataclasses import dataclass

from construct import Bytes, Int32ub, Int32ul, Int64ub, Struct

from ...containers.vdi.structs import PreHeader as VdiPreHeader
from ...containers.vhd.structs import DynamicDiskHeader, HardDiskFooter
from ...containers.vmdk.structs import COWD_MAGIC, SPARSE_MAGIC
from ...filesystems.btrfs.structs import Superblock as BtrfsSuperblock
from ...filesystems.ext.superblock import Superblock as ExtSuperblock
from ...filesystems.ntfs.boot import NTFS_OEM
from ...filesystems.ntfs.boot import BootSector as NtfsBootSector
from ...filesystems.xfs.structs import Superblock as XfsSuperblock
from ...layout import offset_of
from ...volumes.exfat_layout import EXFAT_NAME
from ...volumes.exfat_layout import BootSector as ExfatBootSector
from ...volumes.fat_layout import BootSector as FatBootSector
from ...volumes.fat_layout import Fat16Ext, Fat32Ext
from ...volumes.gpt import SIGNATURE as GPT_SIGNATURE
from ...volumes.gpt import GptHeader
from ...volumes.lvm2 import LABEL_ID, LabelHeader
from ...volumes.mbr import BOOT_SIGNATURE, ENTRY_OFFSET, MasterBootRecord, PartitionEntry

SECTOR = 512  # the scan's step: every structure looked for starts on such a boundary

# --- headers no other package declares ---------------------------------------------------

LUKS_MAGIC = b"LUKS\xba\xbe"
LUKS2_SECONDARY_MAGIC = b"SKUL\xba\xbe"

Luks1Header = Struct(
    "magic" / Bytes(6) * 'LUKS\\xba\\xbe',
    "version" / Bytes(2) * "1, big-endian",
    "cipherName" / Bytes(32) * "cipher name, NUL padded",
    "cipherMode" / Bytes(32) * "cipher mode, NUL padded",
    "hashSpec" / Bytes(32) * "hash name, NUL padded",
    "payloadOffset" / Int32ub * "start of the encrypted data, 512-byte sectors",
    "keyBytes" / Int32ub * "master key length, bytes",
    "mkDigest" / Bytes(20) * "master key digest",
    "mkDigestSalt" / Bytes(32) * "salt of the digest",
    "mkDigestIterations" / Int32ub * "PBKDF2 iterations of the digest",
    "uuid" / Bytes(40) * "UUID as text, NUL padded",
)  # 208 bytes, then 8 key slots

Luks2BinaryHeader = Struct(
    "magic" / Bytes(6) * 'LUKS\\xba\\xbe (primary) or SKUL\\xba\\xbe (secondary)',
    "version" / Bytes(2) * "2, big-endian",
    "hdr_size" / Int64ub * "binary header plus JSON area, bytes",
    "seqid" / Int64ub * "sequence id, increased on every update",
    "label" / Bytes(48) * "label, NUL padded",
    "checksum_alg" / Bytes(32) * "checksum algorithm, NUL padded",
    "salt" / Bytes(64) * "salt, unique per header",
    "uuid" / Bytes(40) * "UUID as text, NUL padded",
    "subsystem" / Bytes(48) * "owner subsystem label",
    "hdr_offset" / Int64ub * "offset of this header from the device start, bytes",
)  # 256 bytes used of 4096

SWAP_MAGIC = b"SWAPSPACE2"  # the last 10 bytes of the first page
SWAP_HEADER_AT = 1024  # the header follows 1024 bytes of boot block
SwapHeader = Struct(
    "version" / Int32ul * "1",
    "last_page" / Int32ul * "last usable page; the area is last_page + 1 pages",
    "nr_badpages" / Int32ul * "bad pages listed after the header",
    "sws_uuid" / Bytes(16) * "UUID",
    "sws_volume" / Bytes(16) * "label, NUL padded",
)
SWAP_PAGE_SIZES = (4096, 8192, 16384, 65536)

BITLOCKER_SIGNATURE = b"-FVE-FS-"  # at the OEM name of a BitLocker volume's boot sector
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
    Signature("ext", _EXT_MAGIC, b"\x53\xef", "partition",  # 0xEF53 little-endian
              zero=_high_bytes(ExtSuperblock, "s_first_data_block")  # 0 or 1
              + _high_bytes(ExtSuperblock, "s_log_block_size")  # 0..6
              + _high_bytes(ExtSuperblock, "s_rev_level")),  # 0 or 1
    Signature("xfs", offset_of(XfsSuperblock, "sb_magicnum"), b"XFSB", "partition"),
    Signature("btrfs", offset_of(BtrfsSuperblock, "magic"), b"_BHRfS_M", "partition"),
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
