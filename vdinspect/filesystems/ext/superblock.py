"""ext2/3/4 superblock and block group descriptors, feature flags and checksums.

Facts from the Linux kernel's "ext4 Data Structures and Algorithms"
(Documentation/filesystems/ext4/), cross-checked against e2fsprogs' behaviour (mke2fs,
dumpe2fs, debugfs). Everything on disk is little-endian. The superblock lives at byte 1024
of the volume; backups sit at the start of some block groups (every group, or groups 0, 1
and the powers of 3, 5 and 7 with sparse_super, or the two listed in ``s_backup_bgs``
with sparse_super2). The group descriptor table follows the superblock's block.
"""

from __future__ import annotations

import struct
import uuid as uuidlib

import numpy as np
from construct import Array, Bytes, Int8ul, Int16ul, Int32ul, Int64ul, Struct

from ...io.checksums import crc32c

SUPERBLOCK_OFFSET = 1024
SUPERBLOCK_SIZE = 1024
EXT_MAGIC = 0xEF53

# --- on-disk structures ----------------------------------------------------------------

Superblock = Struct(
    "s_inodes_count" / Int32ul * "total inodes",
    "s_blocks_count_lo" / Int32ul * "total blocks, low 32 bits",
    "s_r_blocks_count_lo" / Int32ul * "blocks reserved for the superuser, low 32 bits",
    "s_free_blocks_count_lo" / Int32ul * "free blocks, low 32 bits",
    "s_free_inodes_count" / Int32ul * "free inodes",
    "s_first_data_block" / Int32ul * "block holding the superblock (1 for 1 KiB blocks, else 0)",
    "s_log_block_size" / Int32ul * "block size = 1024 << this",
    "s_log_cluster_size" / Int32ul * "cluster size = 1024 << this (bigalloc)",
    "s_blocks_per_group" / Int32ul * "blocks per group",
    "s_clusters_per_group" / Int32ul * "clusters per group (= blocks without bigalloc)",
    "s_inodes_per_group" / Int32ul * "inodes per group",
    "s_mtime" / Int32ul * "last mount time, seconds since the epoch",
    "s_wtime" / Int32ul * "last write time, seconds since the epoch",
    "s_mnt_count" / Int16ul * "mounts since the last fsck",
    "s_max_mnt_count" / Int16ul * "mounts allowed before a fsck (signed)",
    "s_magic" / Int16ul * "0xEF53",
    "s_state" / Int16ul * "1 cleanly unmounted, 2 errors detected, 4 orphans being recovered",
    "s_errors" / Int16ul * "on error: 1 continue, 2 remount read-only, 3 panic",
    "s_minor_rev_level" / Int16ul * "minor revision",
    "s_lastcheck" / Int32ul * "last fsck time, seconds since the epoch",
    "s_checkinterval" / Int32ul * "seconds between forced checks",
    "s_creator_os" / Int32ul * "0 Linux, 1 Hurd, 2 Masix, 3 FreeBSD, 4 Lites",
    "s_rev_level" / Int32ul * "0 original (128-byte inodes), 1 dynamic",
    "s_def_resuid" / Int16ul * "default uid of reserved blocks",
    "s_def_resgid" / Int16ul * "default gid of reserved blocks",
    "s_first_ino" / Int32ul * "first non-reserved inode (rev 1)",
    "s_inode_size" / Int16ul * "inode record size, bytes (rev 1)",
    "s_block_group_nr" / Int16ul * "block group holding this copy of the superblock",
    "s_feature_compat" / Int32ul * "compatible feature flags",
    "s_feature_incompat" / Int32ul * "incompatible feature flags",
    "s_feature_ro_compat" / Int32ul * "read-only compatible feature flags",
    "s_uuid" / Bytes(16) * "volume UUID",
    "s_volume_name" / Bytes(16) * "volume label, NUL padded",
    "s_last_mounted" / Bytes(64) * "directory where last mounted",
    "s_algorithm_usage_bitmap" / Int32ul * "compression algorithms",
    "s_prealloc_blocks" / Int8ul * "blocks to preallocate for files",
    "s_prealloc_dir_blocks" / Int8ul * "blocks to preallocate for directories",
    "s_reserved_gdt_blocks" / Int16ul * "blocks reserved after the GDT for growth",
    "s_journal_uuid" / Bytes(16) * "UUID of the journal superblock",
    "s_journal_inum" / Int32ul * "inode of the journal file (8)",
    "s_journal_dev" / Int32ul * "device number of an external journal",
    "s_last_orphan" / Int32ul * "head of the orphan inode list",
    "s_hash_seed" / Array(4, Int32ul) * "htree hash seed",
    "s_def_hash_version" / Int8ul * "default htree hash",
    "s_jnl_backup_type" / Int8ul * "1 = s_jnl_blocks holds a copy of the journal inode's i_block",
    "s_desc_size" / Int16ul * "group descriptor size, bytes (64bit feature)",
    "s_default_mount_opts" / Int32ul * "default mount options",
    "s_first_meta_bg" / Int32ul * "first meta block group (meta_bg)",
    "s_mkfs_time" / Int32ul * "creation time, seconds since the epoch",
    "s_jnl_blocks"
    / Array(17, Int32ul)
    * "copy of the journal inode's i_block, i_size_high, i_size",
    "s_blocks_count_hi" / Int32ul * "total blocks, high 32 bits (64bit)",
    "s_r_blocks_count_hi" / Int32ul * "reserved blocks, high 32 bits",
    "s_free_blocks_count_hi" / Int32ul * "free blocks, high 32 bits",
    "s_min_extra_isize" / Int16ul * "every inode has at least this many extra bytes",
    "s_want_extra_isize" / Int16ul * "new inodes should have this many extra bytes",
    "s_flags" / Int32ul * "1 signed hash, 2 unsigned hash, 4 test code",
    "s_raid_stride" / Int16ul * "RAID stride, blocks",
    "s_mmp_interval" / Int16ul * "multi-mount protection interval, seconds",
    "s_mmp_block" / Int64ul * "block holding the MMP record",
    "s_raid_stripe_width" / Int32ul * "RAID stripe width, blocks",
    "s_log_groups_per_flex" / Int8ul * "flex group size = 2 ** this",
    "s_checksum_type" / Int8ul * "metadata checksum type (1 = crc32c)",
    "s_reserved_pad" / Int16ul * "padding",
    "s_kbytes_written" / Int64ul * "KiB written over the filesystem's lifetime",
    "s_snapshot_inum" / Int32ul * "active snapshot inode",
    "s_snapshot_id" / Int32ul * "active snapshot id",
    "s_snapshot_r_blocks_count" / Int64ul * "blocks reserved for the active snapshot",
    "s_snapshot_list" / Int32ul * "head of the snapshot list",
    "s_error_count" / Int32ul * "errors seen",
    "s_first_error_time" / Int32ul * "first error time",
    "s_first_error_ino" / Int32ul * "inode of the first error",
    "s_first_error_block" / Int64ul * "block of the first error",
    "s_first_error_func" / Bytes(32) * "function of the first error",
    "s_first_error_line" / Int32ul * "source line of the first error",
    "s_last_error_time" / Int32ul * "last error time",
    "s_last_error_ino" / Int32ul * "inode of the last error",
    "s_last_error_line" / Int32ul * "source line of the last error",
    "s_last_error_block" / Int64ul * "block of the last error",
    "s_last_error_func" / Bytes(32) * "function of the last error",
    "s_mount_opts" / Bytes(64) * "mount options, ASCII",
    "s_usr_quota_inum" / Int32ul * "user quota inode",
    "s_grp_quota_inum" / Int32ul * "group quota inode",
    "s_overhead_clusters" / Int32ul * "overhead blocks/clusters",
    "s_backup_bgs" / Array(2, Int32ul) * "groups with backup superblocks (sparse_super2)",
    "s_encrypt_algos" / Bytes(4) * "encryption algorithms in use",
    "s_encrypt_pw_salt" / Bytes(16) * "salt for string2key",
    "s_lpf_ino" / Int32ul * "lost+found inode",
    "s_prj_quota_inum" / Int32ul * "project quota inode",
    "s_checksum_seed" / Int32ul * "crc32c(uuid) when the csum_seed feature is set",
    "s_wtime_hi" / Int8ul * "high 8 bits of s_wtime",
    "s_mtime_hi" / Int8ul * "high 8 bits of s_mtime",
    "s_mkfs_time_hi" / Int8ul * "high 8 bits of s_mkfs_time",
    "s_lastcheck_hi" / Int8ul * "high 8 bits of s_lastcheck",
    "s_first_error_time_hi" / Int8ul * "high 8 bits of s_first_error_time",
    "s_last_error_time_hi" / Int8ul * "high 8 bits of s_last_error_time",
    "s_first_error_errcode" / Int8ul * "errno of the first error",
    "s_last_error_errcode" / Int8ul * "errno of the last error",
    "s_encoding" / Int16ul * "filename charset encoding (casefold; 1 = utf8)",
    "s_encoding_flags" / Int16ul * "filename charset encoding flags",
    "s_orphan_file_inum" / Int32ul * "inode of the orphan file",
    "s_reserved" / Bytes(94 * 4) * "zero padding",
    "s_checksum" / Int32ul * "crc32c of the superblock up to here (metadata_csum)",
)  # 1024 bytes

GroupDescriptor32 = Struct(
    "bg_block_bitmap_lo" / Int32ul * "block of the block (cluster) bitmap",
    "bg_inode_bitmap_lo" / Int32ul * "block of the inode bitmap",
    "bg_inode_table_lo" / Int32ul * "first block of the inode table",
    "bg_free_blocks_count_lo" / Int16ul * "free blocks",
    "bg_free_inodes_count_lo" / Int16ul * "free inodes",
    "bg_used_dirs_count_lo" / Int16ul * "directories",
    "bg_flags" / Int16ul * "1 INODE_UNINIT, 2 BLOCK_UNINIT, 4 ITABLE_ZEROED",
    "bg_exclude_bitmap_lo" / Int32ul * "snapshot exclusion bitmap",
    "bg_block_bitmap_csum_lo" / Int16ul * "block bitmap checksum, low 16 bits",
    "bg_inode_bitmap_csum_lo" / Int16ul * "inode bitmap checksum, low 16 bits",
    "bg_itable_unused_lo" / Int16ul * "unused inodes at the end of the table",
    "bg_checksum" / Int16ul * "crc16 (gdt_csum) or crc32c & 0xFFFF (metadata_csum)",
)  # 32 bytes

GroupDescriptor64 = Struct(
    "lo" / GroupDescriptor32,
    "bg_block_bitmap_hi" / Int32ul * "high 32 bits",
    "bg_inode_bitmap_hi" / Int32ul * "high 32 bits",
    "bg_inode_table_hi" / Int32ul * "high 32 bits",
    "bg_free_blocks_count_hi" / Int16ul * "high 16 bits",
    "bg_free_inodes_count_hi" / Int16ul * "high 16 bits",
    "bg_used_dirs_count_hi" / Int16ul * "high 16 bits",
    "bg_itable_unused_hi" / Int16ul * "high 16 bits",
    "bg_exclude_bitmap_hi" / Int32ul * "high 32 bits",
    "bg_block_bitmap_csum_hi" / Int16ul * "high 16 bits",
    "bg_inode_bitmap_csum_hi" / Int16ul * "high 16 bits",
    "bg_reserved" / Int32ul * "padding",
)  # 64 bytes (s_desc_size may be larger)

# the group descriptor table is decoded with numpy, one row per group
_GD32_FIELDS = [
    ("block_bitmap", "<u4"),
    ("inode_bitmap", "<u4"),
    ("inode_table", "<u4"),
    ("free_blocks", "<u2"),
    ("free_inodes", "<u2"),
    ("used_dirs", "<u2"),
    ("flags", "<u2"),
    ("exclude_bitmap", "<u4"),
    ("block_bitmap_csum", "<u2"),
    ("inode_bitmap_csum", "<u2"),
    ("itable_unused", "<u2"),
    ("checksum", "<u2"),
]
_GD64_FIELDS = [
    ("block_bitmap_hi", "<u4"),
    ("inode_bitmap_hi", "<u4"),
    ("inode_table_hi", "<u4"),
    ("free_blocks_hi", "<u2"),
    ("free_inodes_hi", "<u2"),
    ("used_dirs_hi", "<u2"),
    ("itable_unused_hi", "<u2"),
]

# --- feature flags -------------------------------------------------------------------

COMPAT_DIR_PREALLOC, COMPAT_IMAGIC_INODES, COMPAT_HAS_JOURNAL = 0x1, 0x2, 0x4
COMPAT_EXT_ATTR, COMPAT_RESIZE_INODE, COMPAT_DIR_INDEX = 0x8, 0x10, 0x20
COMPAT_SPARSE_SUPER2, COMPAT_FAST_COMMIT, COMPAT_ORPHAN_FILE = 0x200, 0x400, 0x1000

INCOMPAT_COMPRESSION, INCOMPAT_FILETYPE, INCOMPAT_RECOVER = 0x1, 0x2, 0x4
INCOMPAT_JOURNAL_DEV, INCOMPAT_META_BG, INCOMPAT_EXTENTS = 0x8, 0x10, 0x40
INCOMPAT_64BIT, INCOMPAT_MMP, INCOMPAT_FLEX_BG, INCOMPAT_EA_INODE = 0x80, 0x100, 0x200, 0x400
INCOMPAT_DIRDATA, INCOMPAT_CSUM_SEED, INCOMPAT_LARGEDIR = 0x1000, 0x2000, 0x4000
INCOMPAT_INLINE_DATA, INCOMPAT_ENCRYPT, INCOMPAT_CASEFOLD = 0x8000, 0x10000, 0x20000

RO_COMPAT_SPARSE_SUPER, RO_COMPAT_LARGE_FILE, RO_COMPAT_BTREE_DIR = 0x1, 0x2, 0x4
RO_COMPAT_HUGE_FILE, RO_COMPAT_GDT_CSUM, RO_COMPAT_DIR_NLINK = 0x8, 0x10, 0x20
RO_COMPAT_EXTRA_ISIZE, RO_COMPAT_HAS_SNAPSHOT, RO_COMPAT_QUOTA = 0x40, 0x80, 0x100
RO_COMPAT_BIGALLOC, RO_COMPAT_METADATA_CSUM, RO_COMPAT_REPLICA = 0x200, 0x400, 0x800
RO_COMPAT_READONLY, RO_COMPAT_PROJECT, RO_COMPAT_SHARED_BLOCKS = 0x1000, 0x2000, 0x4000
RO_COMPAT_VERITY, RO_COMPAT_ORPHAN_PRESENT = 0x8000, 0x10000

#: names as e2fsprogs (dumpe2fs "Filesystem features") spells them
COMPAT_NAMES = {
    0x1: "dir_prealloc",
    0x2: "imagic_inodes",
    0x4: "has_journal",
    0x8: "ext_attr",
    0x10: "resize_inode",
    0x20: "dir_index",
    0x40: "lazy_bg",
    0x80: "exclude_inode",
    0x100: "snapshot_bitmap",
    0x200: "sparse_super2",
    0x400: "fast_commit",
    0x800: "stable_inodes",
    0x1000: "orphan_file",
}
INCOMPAT_NAMES = {
    0x1: "compression",
    0x2: "filetype",
    0x4: "needs_recovery",
    0x8: "journal_dev",
    0x10: "meta_bg",
    0x40: "extent",
    0x80: "64bit",
    0x100: "mmp",
    0x200: "flex_bg",
    0x400: "ea_inode",
    0x1000: "dirdata",
    0x2000: "metadata_csum_seed",
    0x4000: "large_dir",
    0x8000: "inline_data",
    0x10000: "encrypt",
    0x20000: "casefold",
}
RO_COMPAT_NAMES = {
    0x1: "sparse_super",
    0x2: "large_file",
    0x4: "btree_dir",
    0x8: "huge_file",
    0x10: "uninit_bg",
    0x20: "dir_nlink",
    0x40: "extra_isize",
    0x80: "snapshot",
    0x100: "quota",
    0x200: "bigalloc",
    0x400: "metadata_csum",
    0x800: "replica",
    0x1000: "read-only",
    0x2000: "project",
    0x4000: "shared_blocks",
    0x8000: "verity",
    0x10000: "orphan_present",
}
#: incompat features this reader understands (compression is read as metadata only)
INCOMPAT_SUPPORTED = sum(INCOMPAT_NAMES) & ~INCOMPAT_JOURNAL_DEV

BG_INODE_UNINIT, BG_BLOCK_UNINIT, BG_INODE_ZEROED = 0x1, 0x2, 0x4

STATE_VALID, STATE_ERROR, STATE_ORPHAN = 0x1, 0x2, 0x4


def feature_names(compat: int, incompat: int, ro_compat: int) -> list[str]:
    """Feature flags as e2fsprogs names them (unknown bits as FEATURE_<kind><bit>)."""
    out = []
    for value, names, tag in (
        (compat, COMPAT_NAMES, "C"),
        (incompat, INCOMPAT_NAMES, "I"),
        (ro_compat, RO_COMPAT_NAMES, "R"),
    ):
        for bit in range(32):
            if value >> bit & 1:
                out.append(names.get(1 << bit, f"FEATURE_{tag}{bit}"))
    return out


# --- checksums -------------------------------------------------------------------------


def _crc16_table() -> list[int]:
    out = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0xA001 if c & 1 else c >> 1  # reflected 0x8005
        out.append(c)
    return out


_CRC16_TABLE = _crc16_table()


def ext4_chksum(seed: int, data: bytes) -> int:
    """The kernel's ``ext4_chksum``: raw crc32c from register ``seed``, no inversions
    (the standard CRC-32C with both inversions undone)."""
    return crc32c(data, seed ^ 0xFFFFFFFF) ^ 0xFFFFFFFF


def crc16(seed: int, data: bytes) -> int:
    """The kernel's ``crc16`` (polynomial 0x8005 reflected, no final inversion)."""
    crc = seed
    t = _CRC16_TABLE
    for b in data:
        crc = t[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc


def superblock_checksum(raw: bytes) -> int:
    """crc32c of the superblock's first 1020 bytes, as metadata_csum stores it."""
    return ext4_chksum(0xFFFFFFFF, raw[:0x3FC])


# --- the decoded superblock -----------------------------------------------------------


class SuperblockInfo:
    """The superblock's numbers that the reader uses, checked for sanity.

    ``problems`` lists what is wrong (empty when the superblock is usable); ``.raw`` is the
    construct Container and ``.data`` the 1024 bytes.
    """

    def __init__(self, data: bytes, offset: int) -> None:
        self.data = bytes(data)
        self.offset = offset
        self.raw = sb = Superblock.parse(self.data)
        self.problems: list[str] = []
        self.magic_ok = sb.s_magic == EXT_MAGIC
        self.compat = sb.s_feature_compat
        self.incompat = sb.s_feature_incompat
        self.ro_compat = sb.s_feature_ro_compat
        self.is_64bit = bool(self.incompat & INCOMPAT_64BIT)
        self.log_block_size = sb.s_log_block_size
        self.block_size = 1024 << min(sb.s_log_block_size, 16)
        self.cluster_ratio = 1
        if self.ro_compat & RO_COMPAT_BIGALLOC and sb.s_log_cluster_size >= sb.s_log_block_size:
            self.cluster_ratio = 1 << min(sb.s_log_cluster_size - sb.s_log_block_size, 20)
        self.blocks_count = sb.s_blocks_count_lo | (
            sb.s_blocks_count_hi << 32 if self.is_64bit else 0
        )
        self.free_blocks = sb.s_free_blocks_count_lo | (
            sb.s_free_blocks_count_hi << 32 if self.is_64bit else 0
        )
        self.reserved_blocks = sb.s_r_blocks_count_lo | (
            sb.s_r_blocks_count_hi << 32 if self.is_64bit else 0
        )
        self.inodes_count = sb.s_inodes_count
        self.first_data_block = sb.s_first_data_block
        self.blocks_per_group = sb.s_blocks_per_group
        self.inodes_per_group = sb.s_inodes_per_group
        self.rev_level = sb.s_rev_level
        self.inode_size = sb.s_inode_size if sb.s_rev_level >= 1 else 128
        self.first_ino = sb.s_first_ino if sb.s_rev_level >= 1 else 11
        self.desc_size = (sb.s_desc_size or 32) if self.is_64bit else 32
        self.group_count = 0
        self.uuid = str(uuidlib.UUID(bytes=bytes(sb.s_uuid)))
        self.label = sb.s_volume_name.split(b"\0", 1)[0].decode("utf-8", "replace") or None
        self.metadata_csum = bool(self.ro_compat & RO_COMPAT_METADATA_CSUM)
        self.gdt_csum = bool(self.ro_compat & RO_COMPAT_GDT_CSUM) and not self.metadata_csum
        if self.incompat & INCOMPAT_CSUM_SEED:
            self.csum_seed = sb.s_checksum_seed
        else:
            self.csum_seed = ext4_chksum(0xFFFFFFFF, bytes(sb.s_uuid))
        self.checksum_ok = None
        if self.metadata_csum:
            self.checksum_ok = superblock_checksum(self.data) == sb.s_checksum
        self._validate()

    def _validate(self) -> None:
        sb = self.raw
        p = self.problems
        if not self.magic_ok:
            p.append(f"bad magic {sb.s_magic:#06x} (expected 0xef53)")
            return
        if sb.s_log_block_size > 6:
            p.append(f"block size 1024 << {sb.s_log_block_size} is out of range")
        if self.ro_compat & RO_COMPAT_BIGALLOC and sb.s_log_cluster_size < sb.s_log_block_size:
            p.append("cluster size smaller than the block size")
        if self.cluster_ratio > 1 << 16:
            p.append(f"cluster ratio {self.cluster_ratio} is out of range")
        bits = 8 * self.block_size
        if not 0 < self.blocks_per_group <= bits * self.cluster_ratio:
            p.append(f"blocks per group {self.blocks_per_group} out of range")
        elif self.cluster_ratio > 1 and (
            sb.s_clusters_per_group * self.cluster_ratio != self.blocks_per_group
        ):
            p.append("blocks per group != clusters per group x cluster ratio")
        if not 0 < self.inodes_per_group <= bits:
            p.append(f"inodes per group {self.inodes_per_group} out of range")
        if self.rev_level >= 1 and (
            self.inode_size < 128
            or self.inode_size & (self.inode_size - 1)
            or self.inode_size > self.block_size
        ):
            p.append(f"inode size {self.inode_size} is not a power of two in 128..block size")
        if self.is_64bit and (
            self.desc_size < 32 or self.desc_size > 1024 or self.desc_size & (self.desc_size - 1)
        ):
            p.append(f"group descriptor size {self.desc_size} invalid")
        if self.first_data_block >= max(self.blocks_count, 1):
            p.append(f"first data block {self.first_data_block} beyond the block count")
        if self.block_size == 1024 and self.cluster_ratio == 1 and self.first_data_block != 1:
            p.append(f"first data block {self.first_data_block} (expected 1 for 1 KiB blocks)")
        if self.rev_level >= 1 and not 1 <= self.first_ino <= self.inodes_count:
            p.append(f"first inode {self.first_ino} out of range")
        if p:
            return
        self.group_count = -(-(self.blocks_count - self.first_data_block) // self.blocks_per_group)
        if self.group_count * self.inodes_per_group != self.inodes_count:
            p.append(
                f"inode count {self.inodes_count} != {self.group_count} groups x "
                f"{self.inodes_per_group} inodes per group"
            )

    # --- layout helpers ------------------------------------------------------------
    def group_first_block(self, g: int) -> int:
        return self.first_data_block + g * self.blocks_per_group

    def has_super(self, g: int) -> bool:
        """Whether block group ``g`` holds a copy of the superblock and descriptors."""
        if g == 0:
            return True
        if self.compat & COMPAT_SPARSE_SUPER2:
            return g in tuple(self.raw.s_backup_bgs)
        if not self.ro_compat & RO_COMPAT_SPARSE_SUPER or g == 1:
            return True
        if g % 2 == 0:
            return False
        for base in (3, 5, 7):
            n = g
            while n % base == 0:
                n //= base
            if n == 1:
                return True
        return False

    @property
    def desc_per_block(self) -> int:
        return self.block_size // self.desc_size

    @property
    def gdt_blocks(self) -> int:
        return -(-self.group_count // self.desc_per_block)

    def descriptor_blocks(self, backup_group: int | None = None) -> list[int]:
        """Block numbers of the descriptor table, in order (primary, or at a backup group)."""
        sb_block = (
            1024 // self.block_size
            if backup_group is None
            else (self.group_first_block(backup_group))
        )
        first_meta = self.gdt_blocks
        if self.incompat & INCOMPAT_META_BG:
            first_meta = min(self.raw.s_first_meta_bg, self.gdt_blocks)
        out = [sb_block + 1 + i for i in range(first_meta)]
        dpb = self.desc_per_block
        for i in range(first_meta, self.gdt_blocks):
            g = i * dpb
            if backup_group is not None:
                g += 1  # a meta group's first backup lives in its second group
            out.append(self.group_first_block(g) + (1 if self.has_super(g) else 0))
        return out

    def time(self, name: str) -> int:
        """A superblock timestamp with its high bits, seconds since the epoch."""
        return self.raw[f"s_{name}"] | (self.raw.get(f"s_{name}_hi", 0) << 32)


def decode_descriptors(data: bytes, count: int, desc_size: int, is_64bit: bool) -> np.ndarray:
    """The group descriptor table as a numpy record array (64-bit fields combined)."""
    fields = list(_GD32_FIELDS)
    if is_64bit and desc_size >= 64:
        fields += _GD64_FIELDS
    names = [f for f, _ in fields]
    offsets, pos = [], 0
    for _, t in fields:
        offsets.append(pos)
        pos += int(t[-1])
    dt = np.dtype(
        dict(names=names, formats=[t for _, t in fields], offsets=offsets, itemsize=desc_size)
    )
    raw = np.frombuffer(data, dtype=dt, count=count)
    out = np.zeros(
        count,
        dtype=[
            ("block_bitmap", "<u8"),
            ("inode_bitmap", "<u8"),
            ("inode_table", "<u8"),
            ("free_blocks", "<u4"),
            ("free_inodes", "<u4"),
            ("used_dirs", "<u4"),
            ("flags", "<u2"),
            ("itable_unused", "<u4"),
            ("checksum", "<u2"),
        ],
    )
    for name in (
        "block_bitmap",
        "inode_bitmap",
        "inode_table",
        "free_blocks",
        "free_inodes",
        "used_dirs",
        "itable_unused",
    ):
        out[name] = raw[name]
        if f"{name}_hi" in names:
            shift = 32 if name in ("block_bitmap", "inode_bitmap", "inode_table") else 16
            out[name] |= raw[f"{name}_hi"].astype(out.dtype[name]) << shift
    out["flags"] = raw["flags"]
    out["checksum"] = raw["checksum"]
    return out


def descriptor_checksum(sbi: SuperblockInfo, group: int, desc: bytes) -> int | None:
    """The checksum a group descriptor should carry (None when the volume has none)."""
    le_group = struct.pack("<I", group)
    if sbi.metadata_csum:
        body = desc[:0x1E] + b"\0\0" + desc[0x20:]
        return ext4_chksum(ext4_chksum(sbi.csum_seed, le_group), body) & 0xFFFF
    if sbi.gdt_csum:
        crc = crc16(0xFFFF, bytes(sbi.raw.s_uuid))
        crc = crc16(crc, le_group)
        crc = crc16(crc, desc[:0x1E])
        if len(desc) > 0x20:
            crc = crc16(crc, desc[0x20:])
        return crc
    return None


def backup_candidates(source_size: int) -> list[tuple[int, int, int]]:
    """Where backup superblocks usually are: (byte offset, block size, group).

    Groups 1, 3, 5, 7, 9 with mke2fs's default of 8 x block size blocks per group, for
    every block size; ``SuperblockInfo.raw.s_block_group_nr`` confirms a hit.
    """
    out = []
    for bs in (1024, 2048, 4096, 8192, 16384, 32768, 65536):
        first = 1 if bs == 1024 else 0
        per_group = 8 * bs
        for g in (1, 3, 5, 7, 9, 25, 27):
            off = (first + g * per_group) * bs
            if off + SUPERBLOCK_SIZE <= source_size:
                out.append((off, bs, g))
    out.sort()
    return out


def uuid_text(b: bytes) -> str:
    """A 16-byte UUID field as text."""
    return str(uuidlib.UUID(bytes=bytes(b)))


def fs_kind(sb: SuperblockInfo) -> str:
    """ext2, ext3 or ext4, decided from the features as blkid does."""
    ext2_ro = RO_COMPAT_SPARSE_SUPER | RO_COMPAT_LARGE_FILE | RO_COMPAT_BTREE_DIR
    ext2_inc = INCOMPAT_FILETYPE | INCOMPAT_META_BG
    ext3_inc = ext2_inc | INCOMPAT_RECOVER
    if sb.ro_compat & ~ext2_ro:
        return "ext4"
    if sb.compat & COMPAT_HAS_JOURNAL:
        return "ext3" if not sb.incompat & ~ext3_inc else "ext4"
    return "ext2" if not sb.incompat & ~ext2_inc else "ext4"
