"""The ext2/3/4 superblock: its layout, feature flags and codes, and its checksum.

Facts from the Linux kernel's "ext4 Data Structures and Algorithms"
(Documentation/filesystems/ext4/), cross-checked against e2fsprogs' behaviour (mke2fs,
dumpe2fs, debugfs). Everything on disk is little-endian. The superblock lives at byte 1024
of the volume; backups sit at the start of some block groups (every group, or groups 0, 1
and the powers of 3, 5 and 7 with sparse_super, or the two listed in ``s_backup_bgs``
with sparse_super2). The group descriptor table follows the superblock's block.
"""

from __future__ import annotations

import uuid as uuidlib

from construct import Array, Bytes, Enum, FlagsEnum, Int8ul, Int16ul, Int32ul, Int64ul, Struct

from ...io.checksums import crc32c
from ...layout import flag_values, leaves, plain

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

_C, _I = flag_values(CompatFeatures), flag_values(IncompatFeatures)
_R = flag_values(RoCompatFeatures)
COMPAT_HAS_JOURNAL, COMPAT_SPARSE_SUPER2 = _C["has_journal"], _C["sparse_super2"]
COMPAT_ORPHAN_FILE = _C["orphan_file"]
INCOMPAT_COMPRESSION, INCOMPAT_FILETYPE = _I["compression"], _I["filetype"]
INCOMPAT_RECOVER, INCOMPAT_JOURNAL_DEV = _I["needs_recovery"], _I["journal_dev"]
INCOMPAT_META_BG, INCOMPAT_64BIT, INCOMPAT_MMP = _I["meta_bg"], _I["64bit"], _I["mmp"]
INCOMPAT_CSUM_SEED, INCOMPAT_CASEFOLD = _I["metadata_csum_seed"], _I["casefold"]
RO_COMPAT_SPARSE_SUPER, RO_COMPAT_LARGE_FILE = _R["sparse_super"], _R["large_file"]
RO_COMPAT_BTREE_DIR, RO_COMPAT_HUGE_FILE = _R["btree_dir"], _R["huge_file"]
RO_COMPAT_GDT_CSUM, RO_COMPAT_BIGALLOC = _R["uninit_bg"], _R["bigalloc"]
RO_COMPAT_METADATA_CSUM = _R["metadata_csum"]
_S = flag_values(FsState)
STATE_VALID, STATE_ERROR, STATE_ORPHAN = _S["valid"], _S["error"], _S["orphan"]
#: incompat features this reader understands (compression is read as metadata only)
INCOMPAT_SUPPORTED = sum(_I.values()) & ~INCOMPAT_JOURNAL_DEV

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

def feature_names(compat: int, incompat: int, ro_compat: int) -> list[str]:
    """Feature flags as e2fsprogs names them (unknown bits as FEATURE_<kind><bit>)."""
    out = []
    for value, flags, tag in ((compat, _C, "C"), (incompat, _I, "I"), (ro_compat, _R, "R")):
        names = {v: k for k, v in flags.items()}
        for bit in range(32):
            if value >> bit & 1:
                out.append(names.get(1 << bit, f"FEATURE_{tag}{bit}"))
    return out


#: the superblock with its codes and flags read as integers (what the reader computes with)
SUPERBLOCK_VALUES = plain(Superblock)
#: byte offset of each superblock field (for findings that point at a field)
SB_AT = {leaf.name: leaf.offset for leaf in leaves(Superblock)}

# --- checksums -------------------------------------------------------------------------


def ext4_chksum(seed: int, data: bytes) -> int:
    """The kernel's ``ext4_chksum``: raw crc32c from register ``seed``, no inversions
    (the standard CRC-32C with both inversions undone)."""
    return crc32c(data, seed ^ 0xFFFFFFFF) ^ 0xFFFFFFFF


def superblock_checksum(raw: bytes) -> int:
    """crc32c of the superblock's first 1020 bytes, as metadata_csum stores it."""
    return ext4_chksum(0xFFFFFFFF, raw[: SB_AT["s_checksum"]])


# --- the decoded superblock -----------------------------------------------------------


class SuperblockInfo:
    """The superblock's numbers that the reader uses, checked for sanity.

    ``problems`` lists what is wrong (empty when the superblock is usable); ``.raw`` is the
    construct Container and ``.data`` the 1024 bytes.
    """

    def __init__(self, data: bytes, offset: int) -> None:
        self.data = bytes(data)
        self.offset = offset
        self.raw = sb = SUPERBLOCK_VALUES.parse(self.data)
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


def backup_candidates(source_size: int) -> list[tuple[int, int, int]]:
    """Where backup superblocks usually are: (byte offset, block size, group).

    Groups 1, 3, 5, 7, 9, 25, 27 and the last group (where sparse_super2 keeps its
    second copy) with mke2fs's default of 8 x block size blocks per group, for every
    block size; ``SuperblockInfo.raw.s_block_group_nr`` confirms a hit.
    """
    out = set()
    for bs in (1024, 2048, 4096, 8192, 16384, 32768, 65536):
        first = 1 if bs == 1024 else 0
        per_group = 8 * bs
        last = -(-(source_size // bs - first) // per_group) - 1  # sparse_super2's second
        for g in (1, 3, 5, 7, 9, 25, 27, last):
            off = (first + g * per_group) * bs
            if g > 0 and off + SUPERBLOCK_SIZE <= source_size:
                out.add((off, bs, g))
    return sorted(out)


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
