"""The ext2/3/4 superblock, declared once: its fields, feature flags and codes.

Declared here, below the filesystem drivers, because both the probe (``probes.py``, which
names the ``filesystem`` column of ``Disk.partitions()``) and the ext driver
(``vdinspect.filesystems.ext``) read it; the driver re-exports it from its ``superblock``
module. Field names are those of the Linux kernel's "ext4 Data Structures and Algorithms"
(Documentation/filesystems/ext4/); flag names as e2fsprogs spells them. Little-endian.
"""

from __future__ import annotations

from construct import Array, Bytes, Enum, FlagsEnum, Int8ul, Int16ul, Int32ul, Int64ul, Struct

from ..layout import flag_values

SUPERBLOCK_OFFSET = 1024
SUPERBLOCK_SIZE = 1024
EXT_MAGIC = 0xEF53

# --- codes and flags (names as e2fsprogs spells them: dumpe2fs "Filesystem features") ---

CompatFeatures = FlagsEnum(
    Int32ul,
    dir_prealloc=0x1,
    imagic_inodes=0x2,
    has_journal=0x4,
    ext_attr=0x8,
    resize_inode=0x10,
    dir_index=0x20,
    lazy_bg=0x40,
    exclude_inode=0x80,
    snapshot_bitmap=0x100,
    sparse_super2=0x200,
    fast_commit=0x400,
    stable_inodes=0x800,
    orphan_file=0x1000,
)
IncompatFeatures = FlagsEnum(
    Int32ul,
    compression=0x1,
    filetype=0x2,
    needs_recovery=0x4,
    journal_dev=0x8,
    meta_bg=0x10,
    extent=0x40,
    mmp=0x100,
    flex_bg=0x200,
    ea_inode=0x400,
    dirdata=0x1000,
    metadata_csum_seed=0x2000,
    large_dir=0x4000,
    inline_data=0x8000,
    encrypt=0x10000,
    casefold=0x20000,
    **{"64bit": 0x80},
)
RoCompatFeatures = FlagsEnum(
    Int32ul,
    sparse_super=0x1,
    large_file=0x2,
    btree_dir=0x4,
    huge_file=0x8,
    uninit_bg=0x10,
    dir_nlink=0x20,
    extra_isize=0x40,
    snapshot=0x80,
    quota=0x100,
    bigalloc=0x200,
    metadata_csum=0x400,
    replica=0x800,
    project=0x2000,
    shared_blocks=0x4000,
    verity=0x8000,
    orphan_present=0x10000,
    **{"read-only": 0x1000},
)
FsState = FlagsEnum(Int16ul, valid=0x1, error=0x2, orphan=0x4)
ErrorPolicy = Enum(Int16ul, remount_ro=2, panic=3, **{"continue": 1})
CreatorOS = Enum(Int32ul, linux=0, hurd=1, masix=2, freebsd=3, lites=4)
HashVersion = Enum(
    Int8ul,
    legacy=0,
    half_md4=1,
    tea=2,
    legacy_unsigned=3,
    half_md4_unsigned=4,
    tea_unsigned=5,
    siphash=6,
)
SuperblockFlags = FlagsEnum(Int32ul, signed_hash=0x1, unsigned_hash=0x2, test_filesys=0x4)
ChecksumType = Enum(Int8ul, crc32c=1)

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
    "s_state" / FsState * "1 cleanly unmounted, 2 errors detected, 4 orphans being recovered",
    "s_errors" / ErrorPolicy * "on error: 1 continue, 2 remount read-only, 3 panic",
    "s_minor_rev_level" / Int16ul * "minor revision",
    "s_lastcheck" / Int32ul * "last fsck time, seconds since the epoch",
    "s_checkinterval" / Int32ul * "seconds between forced checks",
    "s_creator_os" / CreatorOS * "0 Linux, 1 Hurd, 2 Masix, 3 FreeBSD, 4 Lites",
    "s_rev_level" / Int32ul * "0 original (128-byte inodes), 1 dynamic",
    "s_def_resuid" / Int16ul * "default uid of reserved blocks",
    "s_def_resgid" / Int16ul * "default gid of reserved blocks",
    "s_first_ino" / Int32ul * "first non-reserved inode (rev 1)",
    "s_inode_size" / Int16ul * "inode record size, bytes (rev 1)",
    "s_block_group_nr" / Int16ul * "block group holding this copy of the superblock",
    "s_feature_compat" / CompatFeatures * "compatible feature flags",
    "s_feature_incompat" / IncompatFeatures * "incompatible feature flags",
    "s_feature_ro_compat" / RoCompatFeatures * "read-only compatible feature flags",
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
    "s_def_hash_version" / HashVersion * "default htree hash",
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
    "s_flags" / SuperblockFlags * "1 signed hash, 2 unsigned hash, 4 test code",
    "s_raid_stride" / Int16ul * "RAID stride, blocks",
    "s_mmp_interval" / Int16ul * "multi-mount protection interval, seconds",
    "s_mmp_block" / Int64ul * "block holding the MMP record",
    "s_raid_stripe_width" / Int32ul * "RAID stripe width, blocks",
    "s_log_groups_per_flex" / Int8ul * "flex group size = 2 ** this",
    "s_checksum_type" / ChecksumType * "metadata checksum type (1 = crc32c)",
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

#: name -> bit of each feature word: the one table the probe and the reader use
COMPAT, INCOMPAT, RO_COMPAT = (flag_values(f) for f in
                               (CompatFeatures, IncompatFeatures, RoCompatFeatures))
_C, _I, _R = COMPAT, INCOMPAT, RO_COMPAT
# what ext2 and ext3 may hold (libblkid's EXT2/EXT3_FEATURE_*_SUPP): more is ext4
_EXT2_RO_SUPP = _R["sparse_super"] | _R["large_file"] | _R["btree_dir"]
_EXT2_INCOMPAT_SUPP = _I["filetype"] | _I["meta_bg"]
_EXT3_INCOMPAT_SUPP = _EXT2_INCOMPAT_SUPP | _I["needs_recovery"]


def blkid_type(compat: int, incompat: int, ro_compat: int) -> str:
    """The volume type blkid names from the feature flags: ``jbd`` (an external journal),
    ``ext2`` (no journal, ext2 features only), ``ext3`` (a journal, ext3 features only),
    else ``ext4``."""
    if incompat & _I["journal_dev"]:
        return "jbd"
    old_ro = not ro_compat & ~_EXT2_RO_SUPP
    if not compat & _C["has_journal"]:
        if old_ro and not incompat & ~_EXT2_INCOMPAT_SUPP:
            return "ext2"
    elif old_ro and not incompat & ~_EXT3_INCOMPAT_SUPP:
        return "ext3"
    return "ext4"


def feature_names(compat: int, incompat: int, ro_compat: int) -> list[str]:
    """The features set, as dumpe2fs lists them: compat, incompat, then ro_compat, each in
    bit order, an unknown bit as ``FEATURE_<C|I|R><bit>`` (e2p_feature2string's spelling)."""
    out = []
    for value, flags, tag in ((compat, COMPAT, "C"), (incompat, INCOMPAT, "I"),
                              (ro_compat, RO_COMPAT, "R")):
        names = {v: k for k, v in flags.items()}
        for bit in range(32):
            if value >> bit & 1:
                out.append(names.get(1 << bit, f"FEATURE_{tag}{bit}"))
    return out
